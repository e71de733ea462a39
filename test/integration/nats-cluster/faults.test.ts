// eventwire on a 3-node NATS JetStream cluster with an R3 EventStream (issue 12, part 2): the
// controller, the ingress and the dispatcher run against all three servers' URLs, producers
// publish through the ingress while a subscription delivers to a sink, and a server fails:
// the stream leader's server SIGKILLed and restarted, a non-leader (the ingress's server)
// SIGKILLed and restarted, all three restarted one by one (a rolling upgrade), and two of the
// three SIGKILLed (no quorum). Each test asserts that every event answered 202 reached the
// sink, counts the duplicates (bounded by what was in flight), that the ingress answered 503 +
// Retry-After only while the stream had no leader (never another 5xx), and that the
// EventStream and EventSubscription are Ready afterwards. It prints two lines per fault with
// the numbers docs/operations.md quotes. Also: `replicas: 3` makes an R3 stream, and replicas
// beyond the cluster's size are refused with a condition naming both.
import { CoreV1Api } from '@kubernetes/client-node';
import { jetstreamManager, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEvent, toHttpRequest } from '../../../src/cloudevents/index.ts';
import { parseDispatcherConfig } from '../../../src/dispatcher/config.ts';
import { startDispatcher, type Dispatcher } from '../../../src/dispatcher/dispatcher.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import { createLogger, silentLogger, type Logger } from '../../../src/observability/logger.ts';
import {
  Resources,
  condition,
  ensureNamespace,
  eventStream,
  eventSubscription,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import {
  harnessTools,
  startControlPlane,
  startNatsCluster,
  type ControlPlane,
  type NatsCluster,
  type NatsServer,
} from '../../harness/index.ts';
import { startSink, type TestSink } from '../../harness/sink.ts';
import { untilWithin } from '../dispatcher/helpers.ts';
import { post, startTestIngress } from '../ingress/helpers.ts';

const SCOPE = 'nats-cluster';
const NS = 'nats-cluster';
/** the subscription's maxInFlight: what a fault can leave unacknowledged, so redelivered */
const MAX_IN_FLIGHT = 32;
const PRODUCERS = 4;
const until = untilWithin(90_000, 100);
/** how often the stream's leader is sampled */
const SAMPLE_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function testLogger(component: string): Logger {
  return process.env.EVENTWIRE_TEST_LOGS
    ? createLogger({ component, level: 'debug', destination: process.stderr })
    : silentLogger();
}

/** One answer of the ingress to a producer. */
interface Answer {
  readonly start: number;
  readonly end: number;
  /** 0: no HTTP answer (connection refused or reset) */
  readonly status: number;
  readonly retryAfter: string | null;
  readonly detail: string;
}

/**
 * Producers posting numbered events to the ingress one after another, as a well-behaved
 * producer does: a 202 counts the event as acknowledged; a 503 is retried with the same event
 * after its Retry-After; anything else is a violation (and the event is dropped).
 */
function startLoad(url: string, tag: string) {
  const acked = new Set<string>();
  const answers: Answer[] = [];
  const violations: string[] = [];
  const state = { stopping: false };
  const stopping = () => state.stopping;
  const send = async (id: string): Promise<Answer> => {
    const req = toHttpRequest(
      makeEvent({ id, source: '/nats-cluster', type: 'cluster.fault', data: Buffer.from(id) }),
      'binary',
    );
    const start = Date.now();
    try {
      const a = await post(url, req.headers, req.body);
      const detail = typeof a.body.detail === 'string' ? a.body.detail : '';
      return {
        start,
        end: Date.now(),
        status: a.status,
        retryAfter: a.headers.get('retry-after'),
        detail,
      };
    } catch (err) {
      return { start, end: Date.now(), status: 0, retryAfter: null, detail: String(err) };
    }
  };
  const loops = Array.from({ length: PRODUCERS }, async (_, p) => {
    for (let n = 0; !stopping(); n += 1) {
      const id = `${tag}-${String(p)}-${String(n)}`;
      for (;;) {
        const a = await send(id);
        answers.push(a);
        if (a.status === 202) {
          acked.add(id);
          break;
        }
        const retryAfter = Number(a.retryAfter);
        if (a.status === 503 && a.retryAfter !== null && retryAfter > 0) {
          if (stopping()) break;
          await sleep(retryAfter * 1_000);
          continue;
        }
        violations.push(
          `${id}: ${String(a.status)} (Retry-After ${String(a.retryAfter)}) ${a.detail}`,
        );
        break;
      }
      await sleep(10);
    }
  });
  return {
    acked,
    answers,
    violations,
    stop: async () => {
      state.stopping = true;
      await Promise.all(loops);
    },
  };
}

/** When the stream had a leader, sampled every 100 ms through a client of its own. */
class LeaderWatch {
  readonly samples: { at: number; leader: string | undefined }[] = [];
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(jsm: JetStreamManager, stream: string) {
    this.#loop = (async () => {
      while (!this.#stopped) {
        let leader: string | undefined;
        try {
          leader = (await jsm.streams.info(stream)).cluster?.leader;
        } catch {
          leader = undefined; // no leader, or this client is reconnecting
        }
        this.samples.push({ at: Date.now(), leader });
        await sleep(SAMPLE_MS);
      }
    })();
  }

  /** The first time at or after `from` the stream had a leader other than `not`. */
  leaderSince(from: number, not?: string): number | undefined {
    return this.samples.find((s) => s.at >= from && s.leader !== undefined && s.leader !== not)?.at;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

/** A span of time in which the stream may have had no leader: a fault until a leader is back. */
interface Outage {
  readonly from: number;
  readonly to: number;
}

/** The conditions (type=status reason) an object went through, sampled every 250 ms. */
function watchConditions(read: () => Promise<{ status?: { conditions?: Cond[] } }>) {
  const seen = new Set<string>();
  const state = { stopped: false };
  const loop = (async () => {
    while (!state.stopped) {
      try {
        for (const c of (await read()).status?.conditions ?? []) {
          if (c.type === 'Ready') seen.add(`${c.status} ${c.reason}`);
        }
      } catch {
        // the API server is not what is being tested
      }
      await sleep(250);
    }
  })();
  return {
    seen,
    stop: async () => {
      state.stopped = true;
      await loop;
    },
  };
}

interface Cond {
  type: string;
  status: string;
  reason: string;
  message?: string;
}

/**
 * The longest time in which no new event reached the sink (redeliveries do not count), from
 * `from` until the last event of `ids` first arrived.
 */
function longestPause(sink: TestSink, ids: ReadonlySet<string>, from: number): number {
  const first = new Map<string, number>();
  for (const r of sink.requests) {
    const id = r.event?.id;
    if (r.ok && id !== undefined && !first.has(id)) first.set(id, r.receivedAt);
  }
  const to = Math.max(...[...ids].map((id) => first.get(id) ?? 0));
  const times = [...first.values()].filter((t) => t >= from && t <= to).sort((a, b) => a - b);
  let longest = 0;
  let previous = from;
  for (const t of [...times, to]) {
    longest = Math.max(longest, t - previous);
    previous = t;
  }
  return longest;
}

describe('eventwire on a 3-node NATS cluster with R3 streams', () => {
  let cluster: NatsCluster;
  let cp: ControlPlane;
  let controller: ControllerHandle;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;
  let dispatcher: Dispatcher;
  let nc: NatsConnection;
  /** what beforeAll started, stopped in reverse order */
  const started: (() => Promise<unknown>)[] = [];
  let jsm: JetStreamManager;
  let res: Resources;
  const sinks: TestSink[] = [];

  beforeAll(async () => {
    const tools = await harnessTools();
    const [natsCluster, controlPlane] = await Promise.allSettled([
      startNatsCluster({ tool: tools['nats-server'] }),
      startControlPlane({ tools, controllerManager: false }),
    ]);
    if (natsCluster.status === 'fulfilled') started.push(() => natsCluster.value.dispose());
    if (controlPlane.status === 'fulfilled') started.push(() => controlPlane.value.stop());
    if (natsCluster.status === 'rejected') throw natsCluster.reason;
    if (controlPlane.status === 'rejected') throw controlPlane.reason;
    cluster = natsCluster.value;
    cp = controlPlane.value;
    // every component gets all three servers, as EVENTWIRE_NATS_URL takes them
    const urls = cluster.urls.join(',');
    await installCrds(cp.kubeConfig);
    await ensureNamespace(cp.kubeConfig, NS);
    res = new Resources(cp.kubeConfig);
    controller = await startTestController({
      kubeconfigPath: cp.kubeconfigPath,
      natsUrl: urls,
      scope: SCOPE,
    });
    started.push(() => controller.stop());
    ingress = await startTestIngress(
      {
        EVENTWIRE_NATS_URL: urls,
        KUBECONFIG: cp.kubeconfigPath,
        EVENTWIRE_INGRESS_PUBLISH_TIMEOUT: '3s',
        EVENTWIRE_INGRESS_RETRY_AFTER_SECONDS: '1',
      },
      { log: testLogger('ingress'), kubeConfig: cp.kubeConfig },
    );
    started.push(() => ingress.close());
    dispatcher = await startDispatcher(
      parseDispatcherConfig({
        EVENTWIRE_NATS_URL: urls,
        EVENTWIRE_OPS_HOST: '127.0.0.1',
        EVENTWIRE_OPS_PORT: '0',
        EVENTWIRE_WATCH_NAMESPACE: NS,
      }),
      { kubeConfig: cp.kubeConfig, log: testLogger('dispatcher') },
    );
    started.push(() => dispatcher.stop(1_000));
    nc = await connect({
      servers: [...cluster.urls],
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      timeout: 2_000,
    });
    started.push(() => nc.close());
    jsm = await jetstreamManager(nc, { timeout: 1_000 });
  }, 180_000);

  afterAll(async () => {
    await Promise.all(sinks.map((s) => s.close()));
    for (const stop of started.reverse()) await stop();
  }, 120_000);

  const streamOf = (name: string) => res.getStream(NS, name);
  /** The reasons of the Warning Events recorded on the EventStream `name`. */
  const warningsOf = async (name: string): Promise<string[]> => {
    const list = await cp.kubeConfig.makeApiClient(CoreV1Api).listNamespacedEvent({
      namespace: NS,
      fieldSelector: `involvedObject.kind=EventStream,involvedObject.name=${name}`,
    });
    return list.items.filter((e) => e.type === 'Warning').map((e) => e.reason ?? '');
  };
  const subOf = (name: string) => res.getSub(NS, name);

  /** An R3 EventStream and a subscription delivering it to a new sink, both Ready. */
  async function pipeline(name: string): Promise<{ streamName: string; sink: TestSink }> {
    await res.createStream(
      eventStream(SCOPE, { namespace: NS, name }, { subjectPrefix: `nc.${name}`, replicas: 3 }),
    );
    const es = await waitForCondition(name, () => streamOf(name), 'Ready', 'True');
    const sink = await startSink();
    sinks.push(sink);
    await res.createSub(
      eventSubscription(
        SCOPE,
        { namespace: NS, name },
        {
          stream: { name },
          startFrom: 'all',
          sink: { uri: `${sink.url}/events` },
          delivery: { timeout: '5s', maxInFlight: MAX_IN_FLIGHT, backoffDelay: '100ms' },
        },
      ),
    );
    await waitForCondition(name, () => subOf(name), 'Ready', 'True');
    await until('the dispatcher to deliver the subscription', () =>
      dispatcher.subscriptions().includes(`${NS}/${name}`),
    );
    return { streamName: es.status?.streamName ?? '', sink };
  }

  async function info(stream: string): Promise<StreamInfo> {
    return jsm.streams.info(stream);
  }

  /** Every replica of the stream current, with a leader, on `size` servers. */
  async function caughtUp(stream: string, size = 3): Promise<boolean> {
    const c = (await info(stream)).cluster;
    const replicas = c?.replicas ?? [];
    return (
      c?.leader !== undefined &&
      replicas.length === size - 1 &&
      replicas.every((r) => r.current && !r.offline)
    );
  }

  function serverNamed(name: string | undefined): NatsServer {
    const s = cluster.servers.find((x) => x.name === name);
    if (!s) throw new Error(`no server named ${String(name)}`);
    return s;
  }

  it('creates an R3 stream for replicas: 3, and names spec.replicas and the cluster size when it is too large', async () => {
    const { streamName } = await pipeline('r3');
    const si = await info(streamName);
    // the subscription's consumer is replicated like its stream
    const consumer = (await subOf('r3')).status?.consumer;
    const ci = await jsm.consumers.info(streamName, consumer?.name ?? '');
    expect(ci.cluster?.replicas).toHaveLength(2);
    expect(si.config.num_replicas).toBe(3);
    expect(si.cluster?.leader).toBeDefined();
    expect((si.cluster?.replicas ?? []).map((r) => r.name).sort()).toEqual(
      cluster.servers
        .map((s) => s.name)
        .filter((n) => n !== si.cluster?.leader)
        .sort(),
    );

    await res.createStream(
      eventStream(SCOPE, { namespace: NS, name: 'r5' }, { subjectPrefix: 'nc.r5', replicas: 5 }),
    );
    const refused = await waitForCondition(
      'r5',
      () => streamOf('r5'),
      'Ready',
      'False',
      'ReplicasExceedClusterSize',
    );
    const message = refused.status?.conditions?.find((c) => c.type === 'Ready')?.message;
    expect(message).toMatch(/^spec\.replicas is 5 but NATS cluster eventwire has 3 servers/);
    // lowering replicas to the cluster size is the fix
    await res.updateStream(NS, 'r5', (s) => {
      s.spec.replicas = 3;
    });
    const fixed = await waitForCondition('r5', () => streamOf('r5'), 'Ready', 'True');
    expect((await info(fixed.status?.streamName ?? '')).config.num_replicas).toBe(3);
  });

  /**
   * Load through the ingress, `fault` in the middle of it, then the checks every fault shares.
   * `fault` returns the outages it caused: from each server's death until the stream had a
   * leader again.
   */
  async function underLoad(
    title: string,
    name: string,
    fault: (ctx: { streamName: string; watch: LeaderWatch; acked: () => number }) => Promise<{
      outages: Outage[];
      faults: number;
    }>,
  ): Promise<void> {
    const { streamName, sink } = await pipeline(name);
    const watch = new LeaderWatch(jsm, streamName);
    const streamConds = watchConditions(() => streamOf(name));
    const subConds = watchConditions(() => subOf(name));
    const load = startLoad(`${ingress.url}/${NS}/${name}`, name);
    const loadStart = Date.now();
    const delivered = () => new Set(sink.delivered().map((e) => e.id)).size;
    await until('events delivered before the fault', () => delivered() >= 300);

    const { outages, faults } = await fault({
      streamName,
      watch,
      acked: () => load.acked.size,
    });
    const ackedAfter = load.acked.size;
    await until('events acknowledged after recovery', () => load.acked.size >= ackedAfter + 300);
    await load.stop();
    await watch.stop();

    // zero loss: every event answered 202 reached the sink
    await until(
      'every acknowledged event delivered',
      () => {
        const ids = new Set(sink.delivered().map((e) => e.id));
        return [...load.acked].every((id) => ids.has(id));
      },
      120_000,
    );
    // and nothing is left to redeliver: the duplicates counted below are final
    await until(
      'the consumer to have nothing pending',
      async () => {
        const sub = await subOf(name);
        const c = sub.status?.consumer;
        const ci = await jsm.consumers.info(c?.stream ?? '', c?.name ?? '');
        return ci.num_pending === 0 && ci.num_ack_pending === 0;
      },
      120_000,
    );
    const deliveries = sink.delivered().map((e) => e.id);
    const distinct = new Set(deliveries);
    const duplicates = deliveries.length - distinct.size;
    const pause = longestPause(sink, load.acked, loadStart);
    const unavailable = load.answers.filter((a) => a.status === 503);
    process.stdout.write(
      `[nats-cluster] ${title}: published ${String(load.acked.size)}, delivered ${String(distinct.size)}, duplicates ${String(duplicates)}, longest pause ${String(pause)} ms\n`,
    );
    await Promise.all([streamConds.stop(), subConds.stop()]);
    const leaderless = outages.map((o) => `${String(o.to - o.from)} ms`).join(', ') || 'never';
    const seen = (conds: Set<string>) => [...conds].join(', ');
    const warnings = (await warningsOf(name)).join(', ') || 'none';
    process.stdout.write(
      `[nats-cluster] ${title}: 503 answers ${String(unavailable.length)}; stream without a ` +
        `leader: ${leaderless}; EventStream Ready: ${seen(streamConds.seen)}; ` +
        `EventSubscription Ready: ${seen(subConds.seen)}; Warning Events: ${warnings}\n`,
    );

    expect(load.violations).toEqual([]);
    const missing = [...load.acked].filter((id) => !distinct.has(id));
    expect(missing).toEqual([]);
    // each event is stored once: producer retries were de-duplicated by the stream
    expect((await info(streamName)).state.messages).toBe(distinct.size);
    // a fault can leave at most maxInFlight deliveries unacknowledged, which come again
    expect(duplicates).toBeLessThanOrEqual(MAX_IN_FLIGHT * faults);
    // 503 only for a request made while the stream had no leader
    const unjustified = unavailable.filter(
      (a) => !outages.some((o) => a.start <= o.to + SAMPLE_MS && a.end >= o.from),
    );
    expect(
      unjustified.map(
        (a) => `${new Date(a.start).toISOString()} +${String(a.end - a.start)} ms: ${a.detail}`,
      ),
    ).toEqual([]);
    // the conditions recover
    await waitForCondition(name, () => streamOf(name), 'Ready', 'True');
    await waitForCondition(name, () => subOf(name), 'Ready', 'True');
  }

  /**
   * Stops or kills `server` and waits until the stream has a leader on another server. Returns
   * the time the stream had no leader, when the leader changed: from the fault until the new
   * leader was first seen.
   */
  async function takeDown(
    server: NatsServer,
    how: 'kill' | 'stop',
    streamName: string,
    watch: LeaderWatch,
  ): Promise<Outage[]> {
    const before = (await info(streamName)).cluster?.leader;
    const from = Date.now();
    await (how === 'kill' ? server.kill() : server.stop());
    await until(
      `a stream leader other than ${server.name}`,
      () => watch.leaderSince(from, server.name) !== undefined,
    );
    const to = watch.leaderSince(from, server.name) ?? from;
    const after = watch.samples.find((x) => x.at === to)?.leader;
    return after === before ? [] : [{ from, to }];
  }

  /** Restarts `server` on its store and waits until every replica of the stream is current. */
  async function bringBack(server: NatsServer, streamName: string): Promise<void> {
    await server.restart();
    await server.waitCaughtUp();
    await until('every replica current', () => caughtUp(streamName));
  }

  it("loses nothing when the stream leader's server is SIGKILLed and restarted", async () => {
    await underLoad('leader SIGKILL', 'leader', async ({ streamName, watch, acked }) => {
      const leader = serverNamed((await info(streamName)).cluster?.leader);
      const outages = await takeDown(leader, 'kill', streamName, watch);
      const before = acked();
      await until('events acknowledged by the two left', () => acked() >= before + 300);
      await bringBack(leader, streamName);
      return { outages, faults: 1 };
    });
  }, 240_000);

  /** The server the ingress is connected to, from the servers' /connz. */
  async function ingressServer(): Promise<NatsServer> {
    for (const server of cluster.servers) {
      const res = await fetch(`${server.monitorUrl}/connz`);
      const connz = (await res.json()) as { connections?: { name?: string }[] };
      if ((connz.connections ?? []).some((c) => c.name === 'eventwire-ingress')) return server;
    }
    throw new Error('the ingress is connected to no server of the cluster');
  }

  /** Asks the stream's leader to step down and waits for another leader: an election. */
  async function moveLeader(streamName: string, watch: LeaderWatch): Promise<Outage> {
    const before = (await info(streamName)).cluster?.leader;
    const from = Date.now();
    await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${streamName}`, undefined, {
      timeout: 5_000,
    });
    await until('a new stream leader', () => watch.leaderSince(from, before) !== undefined);
    return { from, to: watch.leaderSince(from, before) ?? from };
  }

  it('loses nothing when a non-leader is SIGKILLed and restarted', async () => {
    await underLoad('non-leader SIGKILL', 'follower', async ({ streamName, watch, acked }) => {
      // the server the ingress publishes through: its reconnection is part of the test
      const victim = await ingressServer();
      const outages: Outage[] = [];
      if ((await info(streamName)).cluster?.leader === victim.name) {
        outages.push(await moveLeader(streamName, watch));
      }
      // the leader keeps its quorum: the ingress has no reason to answer 503
      outages.push(...(await takeDown(victim, 'kill', streamName, watch)));
      const before = acked();
      await until('events acknowledged by the two left', () => acked() >= before + 300);
      await bringBack(victim, streamName);
      return { outages, faults: 1 };
    });
  }, 240_000);

  it('loses nothing in a rolling restart of all three servers', async () => {
    await underLoad('rolling restart', 'rolling', async ({ streamName, watch, acked }) => {
      const outages: Outage[] = [];
      for (const server of cluster.servers) {
        outages.push(...(await takeDown(server, 'stop', streamName, watch)));
        const before = acked();
        await until('events acknowledged meanwhile', () => acked() >= before + 100);
        await bringBack(server, streamName);
      }
      return { outages, faults: cluster.servers.length };
    });
  }, 300_000);

  it('answers 503 while two of the three servers are down, keeps the resources Ready, and loses nothing', async () => {
    await underLoad('two servers SIGKILLed', 'quorum', async ({ streamName, watch }) => {
      const leader = serverNamed((await info(streamName)).cluster?.leader);
      const follower = cluster.servers.find((s) => s !== leader);
      if (!follower) throw new Error('no follower');
      const from = Date.now();
      await leader.kill();
      await follower.kill();
      // the controller (resync 2 s) finds the stream unanswered for a while: it keeps the
      // EventStream Ready, which would otherwise stop its subscription and keep producers out
      // after the quorum is back. Its Warning Event JetStreamUnavailable depends on how the
      // remaining server fails the request (a timeout or an error answer): reported in the
      // summary line, not awaited (a CI run under load waited 90 s for it in vain).
      await until(
        'the stream without a leader for 5 s',
        () => watch.samples.filter((x) => x.at >= from && x.leader === undefined).length >= 50,
      );
      expect(condition(await streamOf('quorum'), 'Ready')?.status).toBe('True');
      expect(condition(await subOf('quorum'), 'Ready')?.status).toBe('True');
      await Promise.all([leader.restart(), follower.restart()]);
      await until('a stream leader', () => watch.leaderSince(from) !== undefined);
      const outage = { from, to: watch.leaderSince(from) ?? from };
      await Promise.all([leader.waitCaughtUp(), follower.waitCaughtUp()]);
      await until('every replica current', () => caughtUp(streamName));
      return { outages: [outage], faults: 2 };
    });
  }, 300_000);
});
