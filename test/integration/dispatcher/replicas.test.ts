// Ordered subscriptions served by several `eventwire dispatcher` processes (issue 12): the
// real controller makes each key/strict subscription's consumer a pinned-client priority group,
// the dispatchers spread the subscriptions among themselves, and one of them is SIGKILLed, one
// stopped gracefully and one added while events flow. No two events of one key are ever at the
// sink at once, every key is delivered in stream order (at least once: a redelivered event may
// repeat, never come back after a later one), nothing is lost.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventSubscription } from '../../../src/api/types.ts';
import { makeEvent, type CloudEvent } from '../../../src/cloudevents/index.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import { freePort } from '../../../src/devenv/processes.ts';
import {
  Resources,
  ensureNamespace,
  eventStream,
  eventSubscription,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { startSink, type SinkRequest, type TestSink } from '../../harness/sink.ts';
import { spawnGroup, type GroupProcess } from '../cli/process-group.ts';
import { natsAt, publish, untilWithin, type Nats } from './helpers.ts';

const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');
const until = untilWithin(60_000, 100);
/** how long the sink holds each request: long enough for a second one of a key to overlap */
const SINK_HOLD_MS = 3;
const MAX_IN_FLIGHT = 16;
/** delivery.timeout 2s + the 10 s consumer-plan adds */
const ACK_WAIT_MS = 12_000;

interface Dispatcher {
  readonly name: string;
  readonly proc: GroupProcess;
  readonly opsPort: number;
}

/** What the sink saw, per subscription (its path) and key. */
class Recorder {
  readonly inFlight = new Map<string, number>();
  /** two requests of one key (one subscription, for strict) at the sink at once */
  readonly overlaps: string[] = [];

  readonly #keyOf: (r: SinkRequest) => string;

  constructor(keyOf: (r: SinkRequest) => string) {
    this.#keyOf = keyOf;
  }

  readonly script = async (r: SinkRequest) => {
    const k = `${r.path} ${this.#keyOf(r)}`;
    const n = (this.inFlight.get(k) ?? 0) + 1;
    this.inFlight.set(k, n);
    if (n > 1) this.overlaps.push(`${k} seq ${r.event?.extensions.seq ?? '?'}`);
    await new Promise((resolve) => setTimeout(resolve, SINK_HOLD_MS));
    this.inFlight.set(k, (this.inFlight.get(k) ?? 1) - 1);
    return { status: 200 };
  };
}

const seqOf = (r: SinkRequest) => Number(r.event?.extensions.seq ?? '-1');

/** Per key: the stream positions in arrival order must never go back (repeats allowed). */
function orderViolations(requests: readonly SinkRequest[], keyOf: (r: SinkRequest) => string) {
  const last = new Map<string, number>();
  const bad: string[] = [];
  for (const r of requests) {
    const k = `${r.path} ${keyOf(r)}`;
    const seq = seqOf(r);
    const prev = last.get(k) ?? -1;
    if (seq < prev) bad.push(`${k}: ${String(seq)} after ${String(prev)}`);
    last.set(k, Math.max(prev, seq));
  }
  return bad;
}

/** The longest pause between two deliveries of one path within [from, to]. */
function longestPause(requests: readonly SinkRequest[], from: number, to: number): number {
  const lastAt = new Map<string, number>();
  let longest = 0;
  for (const r of requests) {
    const prev = lastAt.get(r.path);
    if (prev !== undefined && r.receivedAt >= from && prev <= to) {
      longest = Math.max(longest, r.receivedAt - prev);
    }
    lastAt.set(r.path, r.receivedAt);
  }
  return longest;
}

describe('ordered subscriptions with several dispatcher processes', () => {
  const kubeconfigPath = inject('kubeconfigPath');
  const natsUrl = inject('natsUrl');
  const scope = `replicas-${randomUUID().slice(0, 8)}`;
  /** each test has its own namespace, which its dispatchers watch */
  let ns = scope;
  const kc = new KubeConfig();
  let res: Resources;
  let controller: ControllerHandle;
  let n: Nats;
  const dispatchers: Dispatcher[] = [];
  const sinks: TestSink[] = [];
  let serial = 0;

  beforeAll(async () => {
    kc.loadFromFile(kubeconfigPath);
    await installCrds(kc);
    res = new Resources(kc);
    controller = await startTestController({ kubeconfigPath, natsUrl, scope });
    n = await natsAt(natsUrl);
  });
  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') {
      // what each replica did about placement and pins
      const interesting =
        /replicas changed|"pinned"|pin released|pin lost|pin window settled|stopping delivery|"delivering"|error/;
      for (const d of dispatchers) {
        const lines = d.proc
          .output()
          .split('\n')
          .filter((l) => interesting.test(l));
        process.stdout.write(`--- ${d.name}\n${lines.join('\n')}\n`);
      }
    }
    for (const d of dispatchers.splice(0)) d.proc.killGroup();
    await Promise.all(sinks.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await controller.stop();
    await n.nc.close();
  });

  async function startDispatcher(): Promise<Dispatcher> {
    serial += 1;
    const opsPort = await freePort();
    const proc = spawnGroup(process.execPath, [main, 'dispatcher'], {
      ...process.env,
      KUBECONFIG: kubeconfigPath,
      EVENTWIRE_NATS_URL: natsUrl,
      EVENTWIRE_WATCH_NAMESPACE: ns,
      EVENTWIRE_OPS_HOST: '127.0.0.1',
      EVENTWIRE_OPS_PORT: String(opsPort),
      EVENTWIRE_SHUTDOWN_GRACE_PERIOD: '3s',
      EVENTWIRE_LOG_LEVEL: 'info',
    });
    const d = { name: `d${String(serial)}`, proc, opsPort };
    dispatchers.push(d);
    // placement ready: it heard the others and serves its share of the ordered subscriptions
    await proc.waitFor(/"msg":"serving ordered subscriptions"/, 60_000);
    return d;
  }

  /** Every ordered subscription served by exactly one of `live`, twice in a row. */
  async function placed(live: readonly Dispatcher[], subscriptions: number): Promise<void> {
    let stable = 0;
    await until(`${String(subscriptions)} subscriptions to be placed`, async () => {
      const counts = await servingCounts(live);
      stable = counts.reduce((a, b) => a + b, 0) === subscriptions ? stable + 1 : 0;
      return stable >= 2;
    });
  }

  /** The subscriptions a dispatcher process delivers (its eventwire_dispatcher_subscriptions). */
  async function serving(d: Dispatcher): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${String(d.opsPort)}/metrics`)).text();
    const m = /^eventwire_dispatcher_subscriptions (\d+)/m.exec(text);
    return Number(m?.[1] ?? '0');
  }

  async function servingCounts(live: readonly Dispatcher[]): Promise<number[]> {
    return Promise.all(live.map((d) => serving(d)));
  }

  async function createStream(prefix: string): Promise<void> {
    await res.createStream(
      eventStream(
        scope,
        { namespace: ns, name: prefix },
        { subjectPrefix: prefix, storage: 'file' },
      ),
    );
    await waitForCondition('the stream', () => res.getStream(ns, prefix), 'Ready', 'True');
  }

  async function createSub(
    name: string,
    stream: string,
    type: string,
    sinkUri: string,
    delivery: NonNullable<EventSubscription['spec']['delivery']>,
  ): Promise<void> {
    await res.createSub(
      eventSubscription(
        scope,
        { namespace: ns, name },
        {
          stream: { name: stream },
          startFrom: 'all',
          filters: [{ exact: { type } }],
          sink: { uri: sinkUri },
          delivery: { timeout: '2s', retry: 3, maxInFlight: MAX_IN_FLIGHT, ...delivery },
        },
      ),
    );
    await waitForCondition(`subscription ${name}`, () => res.getSub(ns, name), 'Ready', 'True');
  }

  function eventOf(i: number, type: string, key: string): CloudEvent {
    return makeEvent({
      id: `e-${String(i)}`,
      source: '/replicas-test',
      type,
      datacontenttype: 'application/json',
      data: new TextEncoder().encode(JSON.stringify({ i })),
      extensions: { partitionkey: key, seq: String(i) },
    });
  }

  async function useNamespace(suffix: string): Promise<void> {
    ns = `${scope}-${suffix}`;
    await ensureNamespace(kc, ns);
  }

  it('key: 20,000 events over 200 keys, 3 dispatchers, one SIGKILLed and one added mid-stream', async () => {
    await useNamespace('key');
    const prefix = ns.replaceAll('-', '');
    const subsCount = 4;
    const keys = 200;
    const total = 20_000;
    const keyOf = (r: SinkRequest) => r.event?.extensions.partitionkey ?? '';
    const rec = new Recorder(keyOf);
    const sink = await startSink(rec.script);
    sinks.push(sink);
    await createStream(prefix);
    const types = Array.from({ length: subsCount }, (_, j) => `com.example.t${String(j)}`);
    for (const [j, type] of types.entries()) {
      await createSub(`k${String(j)}`, prefix, type, `${sink.url}/k${String(j)}`, {
        ordering: 'key',
        orderingKey: 'partitionkey',
      });
    }
    const live = [await startDispatcher(), await startDispatcher(), await startDispatcher()];
    await placed(live, subsCount);
    process.stdout.write(
      `[replicas] subscriptions per dispatcher: ${JSON.stringify(await servingCounts(live))}\n`,
    );

    // key k belongs to subscription k % 4: 50 keys each, 5,000 events each
    const events = Array.from({ length: total }, (_, i) => {
      const key = i % keys;
      return eventOf(i, types[key % subsCount] ?? '', `key${String(key)}`);
    });
    const started = Date.now();
    await publish(n, prefix, events);
    const delivered = () => new Set(sink.delivered().map((e) => e.id)).size;
    const deliveredTo = (path: string) =>
      new Set(
        sink
          .delivered()
          .filter((e) => e.type === `com.example.t${path.slice(2)}`)
          .map((e) => e.id),
      ).size;

    await until('a quarter delivered', () => delivered() >= total / 4);
    const counts = await servingCounts(live);
    const victim = live[counts.indexOf(Math.max(...counts))];
    if (victim === undefined) throw new Error('no dispatcher serves a subscription');
    const killedServing = Math.max(...counts);
    const killedAt = Date.now();
    process.kill(-victim.proc.pid, 'SIGKILL');
    const survivors = live.filter((d) => d !== victim);
    // every subscription delivering again (or done) after the failover
    const paths = types.map((_, j) => `/k${String(j)}`);
    await until(
      'every subscription to deliver again after the SIGKILL',
      () =>
        paths.every(
          (p) =>
            deliveredTo(p) === total / subsCount ||
            sink.requests.some((r) => r.path === p && r.receivedAt > killedAt + 1_000),
        ),
      90_000,
    );
    const failedOverAt = Date.now();
    expect(delivered()).toBeLessThan(total * 0.9); // still mid-stream for the join

    const joinedAt = Date.now();
    survivors.push(await startDispatcher());
    await placed(survivors, subsCount);

    await until('every event delivered', () => delivered() === total, 120_000);
    const finished = Date.now();
    // late duplicates (a redelivery after ack_wait) would come within a few seconds
    await new Promise((resolve) => setTimeout(resolve, 1_000));

    const ok = sink.requests.filter((r) => r.ok);
    expect(rec.overlaps).toEqual([]);
    expect(orderViolations(ok, keyOf)).toEqual([]);
    expect(delivered()).toBe(total);
    const duplicates = ok.length - total;
    // only what the killed replica had received and not acknowledged
    expect(duplicates).toBeLessThanOrEqual(MAX_IN_FLIGHT * killedServing);
    // the killed replica's unacknowledged events hold its subscriptions' consumers at
    // max_ack_pending until ack_wait (delivery.timeout + 10 s) passes: the bound of a failover.
    // Reported, not asserted: on a loaded 2-core machine pauses stretch (speed belongs in
    // benchmarks); a failover that never happens fails the delivery assertions above.
    const gap = longestPause(ok, killedAt, failedOverAt);
    const joinPause = longestPause(ok, joinedAt, finished);
    process.stdout.write(
      `[replicas] failover gap ${String(gap)} ms (SIGKILL of a replica serving ${String(killedServing)} of ${String(subsCount)} subscriptions, ack_wait ${String(ACK_WAIT_MS)} ms); ` +
        `longest pause after the join ${String(joinPause)} ms; duplicates ${String(duplicates)}; ` +
        `${String(total)} events in ${String(finished - started)} ms; ` +
        `subscriptions per dispatcher after the join ${JSON.stringify(await servingCounts(survivors))}\n`,
    );
  }, 300_000);

  it('strict: 3 dispatchers, the serving one stopped gracefully, then the next one SIGKILLed', async () => {
    await useNamespace('strict');
    const prefix = ns.replaceAll('-', '');
    const total = 3_000;
    const keyOf = () => '';
    const rec = new Recorder(keyOf);
    const sink = await startSink(rec.script);
    sinks.push(sink);
    await createStream(prefix);
    await createSub('strict', prefix, 'com.example.s', `${sink.url}/strict`, {
      ordering: 'strict',
    });
    const live = [await startDispatcher(), await startDispatcher(), await startDispatcher()];
    await placed(live, 1);
    await publish(
      n,
      prefix,
      Array.from({ length: total }, (_, i) => eventOf(i, 'com.example.s', 'all')),
    );
    const delivered = () => new Set(sink.delivered().map((e) => e.id)).size;
    const servingOne = async () => {
      const counts = await servingCounts(live);
      const d = live[counts.indexOf(1)];
      if (d === undefined) throw new Error(`no dispatcher serves it: ${JSON.stringify(counts)}`);
      return d;
    };

    await until('a third delivered', () => delivered() >= total / 3);
    const first = await servingOne();
    const drainedAt = Date.now();
    process.kill(first.proc.pid, 'SIGTERM');
    expect(await first.proc.exit(15_000)).toEqual({ code: 0, signal: null });
    live.splice(live.indexOf(first), 1);
    await placed(live, 1);
    await until('two thirds delivered', () => delivered() >= (total * 2) / 3);
    const drainPause = longestPause(sink.requests, drainedAt, Date.now());

    const second = await servingOne();
    const killedAt = Date.now();
    process.kill(-second.proc.pid, 'SIGKILL');
    await until('every event delivered', () => delivered() === total, 120_000);
    const finished = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 1_000));

    const ok = sink.requests.filter((r) => r.ok);
    expect(rec.overlaps).toEqual([]);
    expect(orderViolations(ok, keyOf)).toEqual([]);
    const duplicates = ok.length - total;
    expect(duplicates).toBeLessThanOrEqual(MAX_IN_FLIGHT);
    // a graceful stop hands over at once (the replica says it leaves and releases its pin), a
    // SIGKILL after the ack wait: reported, not asserted (pauses stretch on a loaded machine)
    const killGap = longestPause(ok, killedAt, finished);
    process.stdout.write(
      `[replicas] strict: longest pause after a graceful stop ${String(drainPause)} ms, failover gap after SIGKILL ${String(killGap)} ms, duplicates ${String(duplicates)}\n`,
    );
  }, 300_000);
});
