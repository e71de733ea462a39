// Horizontal scaling of the dispatcher: 100 key-ordered subscriptions on one stream share one
// backlog, published once, drained by 1, then 2, then 3 `eventwire dispatcher` processes (the
// real command, run by the real controller's Ready subscriptions). Each count gets its own
// namespace of 100 fresh subscriptions (startFrom: all, so fresh consumers at the stream's
// first message) and its own sink, so every count drains the same backlog. Reported per count:
// events/s (ratio to the 1-process run: the scaling), CPU per 1,000 events summed over the
// dispatcher processes (/proc/<pid>/stat utime + stime; ratio to the 1-process value: it must
// not grow with replicas), and the per-key order check at the sink.
//
// The order of a count: its sink, then its dispatcher processes, until each says it is ready
// (its heartbeat, membership.ts) and has heard the others; then the 100 subscriptions, made
// Ready by the controller, which the replicas place among themselves (none moves during the
// drain). The sink holds every request unanswered until the processes together run the 100
// workers and what they pulled has arrived; then it answers them and everything after
// (sink.ts). Events/s counts the events that first arrived inside the window, from the gate's
// opening to the last event's arrival; the CPU is read at the same two moments, so the
// processes' start is not counted (what they compile while draining is).
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { API_GROUP, API_VERSION } from '../../src/api/types.ts';
import { makeEvent, toNatsMessage } from '../../src/cloudevents/index.ts';
import { HEARTBEAT_MS, MEMBERSHIP_SUBJECT } from '../../src/dispatcher/membership.ts';
import { startControlPlane } from '../../src/devenv/control-plane.ts';
import { startNats } from '../../src/devenv/nats.ts';
import { freePort, waitFor } from '../../src/devenv/processes.ts';
import { defaultCacheDir, requireTools } from '../../src/devenv/tools.ts';
import { subjectFor } from '../../src/jetstream/subject.ts';
import { installCrds } from '../../test/harness/crds.ts';
import { stopChild } from '../child.ts';
import type { BenchResult, BenchSuite } from '../types.ts';
import type { FromSink, SinkCounts, ToSink } from './sink.ts';

/** The suite's settings, read once. */
const SETTINGS = (() => {
  const events = Number(process.env.BENCH_HORIZONTAL_EVENTS ?? '60000');
  const counts = (process.env.BENCH_HORIZONTAL_PROCESSES ?? '1,2,3').split(',').map(Number);
  if (!Number.isInteger(events) || events < 2_000)
    throw new Error(`BENCH_HORIZONTAL_EVENTS must be an integer of at least 2000, not ${events}`);
  if (counts.some((n) => !Number.isInteger(n) || n < 1) || counts[0] !== 1)
    throw new Error(
      'BENCH_HORIZONTAL_PROCESSES must be process counts starting with 1, e.g. 1,2,3',
    );
  return { events, counts };
})();
const SUBSCRIPTIONS = 100;
const KEYS_PER_SUBSCRIPTION = 20;
const STREAM_NAMESPACE = 'hz';
const PREFIX = 'hz';
const G = { group: API_GROUP, version: API_VERSION };
const MAIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Event j goes to subscription j mod 100, key (j div 100) mod 20, as that key's seq-th event. */
function eventAt(j: number) {
  const sub = j % SUBSCRIPTIONS;
  const key = Math.floor(j / SUBSCRIPTIONS) % KEYS_PER_SUBSCRIPTION;
  const seq = Math.floor(j / (SUBSCRIPTIONS * KEYS_PER_SUBSCRIPTION));
  return makeEvent({
    id: `h-${j}`,
    source: '/bench/horizontal',
    type: `bench.s${sub}`,
    datacontenttype: 'application/json',
    data: new TextEncoder().encode(`{"j":${j},"pad":"${'x'.repeat(200)}"}`),
    extensions: { partitionkey: `k${key}`, benchseq: String(seq) },
  });
}

/** One producer, publishes pipelined on one connection: stored in this order. */
async function publishBacklog(js: JetStreamClient): Promise<void> {
  const acks: Promise<unknown>[] = [];
  for (let j = 0; j < SETTINGS.events; j += 1) {
    const e = eventAt(j);
    const m = toNatsMessage(e);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
    acks.push(js.publish(subjectFor(PREFIX, e.type), m.data, { headers: h, msgID: m.msgId }));
    if (acks.length >= 1_000) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the fields after "(comm)": state is field 3, utime 14, stime 15
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Logs of the components (pino writes to stdout), named in an error. */
const LOG_DIR = mkdtempSync(join(tmpdir(), 'eventwire-bench-horizontal-'));

function component(command: string, name: string, env: Record<string, string>): ChildProcess {
  const log = openSync(join(LOG_DIR, `${name}.log`), 'a');
  try {
    return spawn(process.execPath, [MAIN, command], {
      env: {
        ...process.env,
        EVENTWIRE_LOG_LEVEL: 'warn',
        EVENTWIRE_OPS_HOST: '127.0.0.1',
        ...env,
      },
      stdio: ['ignore', log, 'inherit'],
    });
  } finally {
    closeSync(log);
  }
}

interface Sink {
  readonly url: string;
  readonly child: ChildProcess;
  counts(): Promise<SinkCounts>;
  open(): void;
  readonly done: Promise<SinkCounts>;
}

async function startSink(expected: number): Promise<Sink> {
  const child = fork(join(import.meta.dirname, 'sink.ts'), [String(expected)], {
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiting = new Set<{ pick: (m: FromSink) => boolean; fail: (e: Error) => void }>();
  child.on('message', (m: FromSink) => {
    for (const w of waiting) if (w.pick(m)) waiting.delete(w);
  });
  child.once('exit', (code) => {
    for (const w of waiting) w.fail(new Error(`the sink exited (code ${String(code)})`));
    waiting.clear();
  });
  const next = <T>(pick: (m: FromSink) => T | undefined): Promise<T> =>
    new Promise((resolve, reject) => {
      waiting.add({
        pick: (m) => {
          const v = pick(m);
          if (v !== undefined) resolve(v);
          return v !== undefined;
        },
        fail: reject,
      });
    });
  const done = next((m) => ('done' in m ? m.done : undefined));
  done.catch(() => undefined);
  const port = await next((m) => ('port' in m ? m.port : undefined));
  const tell = (m: ToSink) => child.send(m);
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    counts: () => {
      const c = next((m) => ('counts' in m ? m.counts : undefined));
      tell({ report: true });
      return c;
    },
    open: () => tell({ open: true }),
    done,
  };
}

function subscription(namespace: string, i: number, sinkUrl: string) {
  return {
    apiVersion: `${API_GROUP}/${API_VERSION}`,
    kind: 'EventSubscription',
    metadata: { name: `s${i}`, namespace },
    spec: {
      stream: { name: 'bench', namespace: STREAM_NAMESPACE },
      startFrom: 'all',
      filters: [{ exact: { type: `bench.s${i}` } }],
      sink: { uri: `${sinkUrl}/${namespace}/s${i}` },
      delivery: { ordering: 'key', orderingKey: 'partitionkey' },
    },
  };
}

interface Ready {
  status?: { conditions?: { type: string; status: string }[] };
}

async function countReady(api: CustomObjectsApi, namespace: string, plural: string) {
  const list = (await api.listNamespacedCustomObject({ ...G, namespace, plural })) as {
    items: Ready[];
  };
  const ready = list.items.filter((s) =>
    s.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  ).length;
  return { total: list.items.length, ready };
}

async function metric(opsPort: number, name: string): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${opsPort}/metrics`).catch(() => undefined);
  if (res?.ok !== true) return undefined;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : undefined;
}

interface Drain {
  readonly processes: number;
  readonly eventsPerSecond: number;
  readonly cpuMsPer1000: number;
  readonly counts: SinkCounts;
  readonly windowEvents: number;
  readonly windowSeconds: number;
  /** dispatcher CPU seconds in the window over its length */
  readonly cores: number;
  /** the machine's 1-minute load average when the window opened */
  readonly load: number;
  /** subscriptions each process served */
  readonly served: readonly number[];
}

/** Resolves once `count` dispatchers serving `namespace` said they are ready (their heartbeats). */
function readyReplicas(
  nc: NatsConnection,
  namespace: string,
  count: number,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const ids = new Set<string>();
    const sub = nc.subscribe(MEMBERSHIP_SUBJECT, {
      callback: (_err, msg) => {
        let hb: { id?: unknown; namespace?: unknown; ready?: unknown };
        try {
          hb = msg.json();
        } catch {
          return;
        }
        if (hb.namespace === namespace && hb.ready === true && typeof hb.id === 'string')
          ids.add(hb.id);
        if (ids.size < count) return;
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      },
    });
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(
        new Error(
          `${ids.size} of ${count} dispatchers ready after ${timeoutMs} ms (logs in ${LOG_DIR})`,
        ),
      );
    }, timeoutMs);
  });
}

async function drainWith(
  count: number,
  api: CustomObjectsApi,
  nc: NatsConnection,
  env: Record<string, string>,
): Promise<Drain> {
  const namespace = `hz-${count}`;
  const sink = await startSink(SETTINGS.events);
  const dispatchers: { child: ChildProcess; opsPort: number }[] = [];
  try {
    // the replicas first, so they have placed each other before any subscription exists and
    // none hands a subscription over during the measurement
    const replicasReady = readyReplicas(nc, namespace, count, 120_000);
    for (let p = 0; p < count; p += 1) {
      const opsPort = await freePort();
      const child = component('dispatcher', `dispatcher-${count}-${p + 1}`, {
        ...env,
        EVENTWIRE_OPS_PORT: String(opsPort),
        EVENTWIRE_WATCH_NAMESPACE: namespace,
        EVENTWIRE_SHUTDOWN_GRACE_PERIOD: '5s',
      });
      dispatchers.push({ child, opsPort });
    }
    await replicasReady;
    await sleep(2 * HEARTBEAT_MS);
    await Promise.all(
      Array.from({ length: SUBSCRIPTIONS }, (_, i) =>
        api.createNamespacedCustomObject({
          ...G,
          namespace,
          plural: 'eventsubscriptions',
          body: subscription(namespace, i, sink.url),
        }),
      ),
    );
    await waitFor(
      `${SUBSCRIPTIONS} Ready subscriptions in ${namespace}`,
      async () => (await countReady(api, namespace, 'eventsubscriptions')).ready === SUBSCRIPTIONS,
      { timeoutMs: 180_000, intervalMs: 500 },
    );
    // every subscription has its worker, and what they pulled has reached the held sink
    let served: number[] = [];
    let last = '';
    const deadline = Date.now() + 120_000;
    for (;;) {
      await sleep(1_000);
      served = (
        await Promise.all(
          dispatchers.map((d) => metric(d.opsPort, 'eventwire_dispatcher_subscriptions')),
        )
      ).map((n) => n ?? 0);
      const held = (await sink.counts()).distinct;
      const state = `${served.join(',')} ${held}`;
      if (served.reduce((a, b) => a + b, 0) === SUBSCRIPTIONS && held > 0 && state === last) break;
      if (Date.now() > deadline)
        throw new Error(
          `the dispatchers serve ${served.join(', ')} subscriptions and ${held} events reached the sink after 120 s (logs in ${LOG_DIR})`,
        );
      last = state;
    }
    const pids = dispatchers.map((d) => d.child.pid ?? 0);
    const cpu0 = pids.reduce((s, pid) => s + cpuSeconds(pid), 0);
    const load = loadavg()[0] ?? 0;
    sink.open();
    const timeout = new AbortController();
    const late = sleep(600_000, undefined, { signal: timeout.signal }).then(async () => {
      const c = await sink.counts();
      throw new Error(
        `the drain with ${processesText(count)} did not finish in 10 min: ${c.distinct} of ${SETTINGS.events} events arrived`,
      );
    });
    late.catch(() => undefined); // aborted once the drain is done
    const counts = await Promise.race([sink.done, late]).finally(() => {
      timeout.abort();
    });
    const cpu = pids.reduce((s, pid) => s + cpuSeconds(pid), 0) - cpu0;
    const windowEvents = SETTINGS.events - counts.beforeOpen;
    const windowSeconds = (counts.lastArrivalMs - counts.openedAtMs) / 1000;
    return {
      processes: count,
      eventsPerSecond: windowEvents / windowSeconds,
      cpuMsPer1000: (cpu * 1000) / (windowEvents / 1000),
      counts: await sink.counts(),
      windowEvents,
      windowSeconds,
      cores: cpu / windowSeconds,
      load,
      served,
    };
  } finally {
    await Promise.all(dispatchers.map((d, i) => stopChild(d.child, `dispatcher ${i + 1}`)));
    await stopChild(sink.child, 'the sink');
    // the controller deletes the consumers; done before the next count drains
    await api.deleteCollectionNamespacedCustomObject({
      ...G,
      namespace,
      plural: 'eventsubscriptions',
    });
    await waitFor(
      `the subscriptions of ${namespace} deleted`,
      async () => (await countReady(api, namespace, 'eventsubscriptions')).total === 0,
      { timeoutMs: 120_000, intervalMs: 500 },
    );
  }
}

function processesText(n: number): string {
  return n === 1 ? '1 process' : `${n} processes`;
}

async function run(): Promise<BenchResult[]> {
  const tools = await requireTools({
    cacheDir: defaultCacheDir(process.env),
    kubebuilderAssets: process.env.KUBEBUILDER_ASSETS,
    path: process.env.PATH,
  });
  const [cp, nats] = await Promise.all([
    startControlPlane({ tools, controllerManager: false }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  const api = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const nc = await connect({ servers: nats.url });
  const env = { KUBECONFIG: cp.kubeconfigPath, EVENTWIRE_NATS_URL: nats.url };
  const controller = { proc: undefined as ChildProcess | undefined };
  try {
    await installCrds(kc);
    for (const ns of [STREAM_NAMESPACE, ...SETTINGS.counts.map((n) => `hz-${n}`)])
      await core.createNamespace({ body: { metadata: { name: ns } } });
    // no resync during the drains: the controller works only when resources change
    controller.proc = component('controller', 'controller', {
      ...env,
      EVENTWIRE_LEADER_ELECT: 'false',
      EVENTWIRE_OPS_PORT: String(await freePort()),
      EVENTWIRE_RESYNC_PERIOD: '1h',
    });
    await api.createNamespacedCustomObject({
      ...G,
      namespace: STREAM_NAMESPACE,
      plural: 'eventstreams',
      body: {
        apiVersion: `${API_GROUP}/${API_VERSION}`,
        kind: 'EventStream',
        metadata: { name: 'bench', namespace: STREAM_NAMESPACE },
        spec: { subjectPrefix: PREFIX, storage: 'memory', allowedNamespaces: ['*'] },
      },
    });
    await waitFor(
      'the EventStream Ready',
      async () => (await countReady(api, STREAM_NAMESPACE, 'eventstreams')).ready === 1,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    await publishBacklog(jetstream(nc));

    const drains: Drain[] = [];
    for (const n of SETTINGS.counts) drains.push(await drainWith(n, api, nc, env));
    const one = drains[0];
    if (one === undefined) return [];
    const perKey = SETTINGS.events / (SUBSCRIPTIONS * KEYS_PER_SUBSCRIPTION);
    const results: BenchResult[] = [];
    for (const d of drains) {
      const base = d.processes === 1 ? undefined : one;
      const c = d.counts;
      results.push(
        {
          name: `drain, ${processesText(d.processes)}`,
          unit: 'events/s',
          value: d.eventsPerSecond,
          ...(base && { baseline: { name: processesText(1), value: base.eventsPerSecond } }),
          note: `${d.windowEvents} events in ${d.windowSeconds.toFixed(1)} s, the dispatchers busy ${d.cores.toFixed(2)} cores, load average ${d.load.toFixed(1)}`,
        },
        {
          name: `dispatcher CPU per 1,000 events, ${processesText(d.processes)}`,
          unit: 'ms',
          value: d.cpuMsPer1000,
          ...(base && { baseline: { name: processesText(1), value: base.cpuMsPer1000 } }),
          note: `summed over the dispatcher processes; subscriptions per process ${d.served.join('/')}`,
        },
        {
          name: `per-key order, ${processesText(d.processes)}`,
          unit: 'violations',
          value: c.violations,
          note: `${c.overlaps} overlapping, ${c.duplicates} duplicates, ${SETTINGS.events - c.distinct} lost; ${SUBSCRIPTIONS * KEYS_PER_SUBSCRIPTION} keys of ${perKey} events`,
        },
      );
    }
    rmSync(LOG_DIR, { recursive: true, force: true });
    return results;
  } finally {
    // the controller first, while the API server and NATS it talks to are still up
    if (controller.proc) await stopChild(controller.proc, 'the controller');
    await nc.close();
    await Promise.all([cp.stop(), nats.dispose()]);
  }
}

const suite: BenchSuite = {
  description: `dispatcher scaling: ${SUBSCRIPTIONS} key-ordered subscriptions, one backlog of ${SETTINGS.events} events, drained by ${SETTINGS.counts.join(', ')} dispatcher processes`,
  run,
};
export default suite;
