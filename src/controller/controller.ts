// `eventwire controller`: informers on EventStreams, EventSubscriptions, Services and
// Deployments feed one rate-limited work queue; only the elected leader runs its workers.
import {
  KubeConfig,
  type KubernetesObject,
  type V1Deployment,
  type V1Service,
} from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import {
  API_GROUP,
  API_VERSION,
  EVENTSTREAM_PLURAL,
  EVENTSUBSCRIPTION_PLURAL,
  type EventStream,
  type EventSubscription,
} from '../api/types.ts';
import { JetStreamAdmin } from '../jetstream/admin.ts';
import { closeNats, connectNats } from '../jetstream/connection.ts';
import { isConflict } from '../k8s/errors.ts';
import { Informer } from '../k8s/informer.ts';
import { LeaderElector } from '../k8s/leader-election.ts';
import { CustomResources, EventRecorder } from '../k8s/resources.ts';
import { WorkQueue, type WorkResult } from '../k8s/work-queue.ts';
import { startOpsServer } from '../observability/http-server.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { runStopSteps } from '../util/shutdown.ts';
import type { ControllerConfig } from './config.ts';
import { StatusReporter, type ReconcileOutcome } from './reconcile-common.ts';
import { StreamReconciler } from './stream-reconciler.ts';
import { SubscriptionReconciler } from './subscription-reconciler.ts';
import { streamsCapturing } from './targets.ts';

export interface ControllerHandle {
  readonly opsPort: number;
  isLeader(): boolean;
  /** resolves when leadership is lost (the process should exit and be restarted) */
  readonly lostLeadership: Promise<void>;
  /** stop; `releaseLease: false` keeps the lease held until it expires, as a crash would */
  stop(opts?: { readonly releaseLease?: boolean }): Promise<void>;
}

export interface ControllerOverrides {
  readonly kubeConfig?: KubeConfig;
  readonly log?: Logger;
  readonly nats?: NatsConnection;
}

function loadKubeConfig(cfg: ControllerConfig): KubeConfig {
  const kc = new KubeConfig();
  if (cfg.kubeconfig) kc.loadFromFile(cfg.kubeconfig);
  else kc.loadFromCluster();
  return kc;
}

type Metrics = ReturnType<typeof metrics>;

function metrics(registry: Registry) {
  return {
    reconciles: new Counter({
      name: 'eventwire_controller_reconciles_total',
      help: 'Reconciles by resource kind and result (success, requeue, error, conflict)',
      labelNames: ['kind', 'result'] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'eventwire_controller_reconcile_duration_seconds',
      help: 'Time spent in one reconcile',
      labelNames: ['kind'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'eventwire_controller_workqueue_depth',
      help: 'Keys waiting in the work queue',
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'eventwire_controller_leader',
      help: '1 while this replica is the elected leader',
      registers: [registry],
    }),
    discardedUnread: new Counter({
      name: 'eventwire_controller_discarded_unread_total',
      help: 'Stream messages discarded (stream limits, or a recreated stream) before the subscription read them; an upper bound of the events lost',
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    pending: new Gauge({
      name: 'eventwire_controller_subscription_pending',
      help: "Events in the stream not yet delivered to the subscription (its consumer's num_pending at the last reconcile)",
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    ackPending: new Gauge({
      name: 'eventwire_controller_subscription_ack_pending',
      help: 'Events delivered to the subscription and not yet acknowledged (num_ack_pending at the last reconcile)',
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
    streamRecreated: new Counter({
      name: 'eventwire_controller_stream_recreated_total',
      help: "Times a subscription's consumer was recreated on a new stream of the same name and started at its first message",
      labelNames: ['subscription'] as const,
      registers: [registry],
    }),
  };
}

const keyOf = (kind: 'stream' | 'sub', obj: KubernetesObject): string =>
  `${kind}:${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;

function parseKey(key: string): { kind: string; namespace: string; name: string } {
  const [kind = '', rest = ''] = key.split(':', 2);
  const [namespace = '', name = ''] = rest.split('/', 2);
  return { kind, namespace, name };
}

interface Informers {
  readonly streams: Informer<EventStream>;
  readonly subs: Informer<EventSubscription>;
  readonly services: Informer<V1Service>;
  readonly deployments: Informer<V1Deployment>;
}

function makeInformers(kc: KubeConfig, cfg: ControllerConfig, log: Logger): Informers {
  const logger = log.child({ part: 'informer' });
  const selector = cfg.resourceSelector ? { labelSelector: cfg.resourceSelector } : {};
  const custom = <T extends KubernetesObject>(plural: string): Informer<T> =>
    new Informer<T>({
      kubeConfig: kc,
      path: `/apis/${API_GROUP}/${API_VERSION}/${plural}`,
      logger,
      resyncMs: cfg.resyncMs,
      ...selector,
    });
  const core = <T extends KubernetesObject>(path: string): Informer<T> =>
    new Informer<T>({ kubeConfig: kc, path, logger });
  return {
    streams: custom<EventStream>(EVENTSTREAM_PLURAL),
    subs: custom<EventSubscription>(EVENTSUBSCRIPTION_PLURAL),
    services: core<V1Service>('/api/v1/services'),
    deployments: core<V1Deployment>('/apis/apps/v1/deployments'),
  };
}

const allInformers = (i: Informers): Informer<KubernetesObject>[] =>
  [i.streams, i.subs, i.services, i.deployments] as Informer<KubernetesObject>[];

type Reconcile = (key: string) => Promise<WorkResult>;

/** After a write conflict: long enough for the watch to bring the newer object. */
const CONFLICT_REQUEUE_MS = 250;

interface HandlerContext {
  readonly kc: KubeConfig;
  readonly cfg: ControllerConfig;
  readonly js: JetStreamAdmin;
  readonly inf: Informers;
  readonly log: Logger;
  readonly m: Metrics;
}

function makeHandler({
  kc,
  cfg,
  js,
  inf,
  log,
  m,
}: HandlerContext): (queue: WorkQueue) => Reconcile {
  const ref = (plural: string) => ({ group: API_GROUP, version: API_VERSION, plural });
  const streamsApi = new CustomResources<EventStream>(kc, ref(EVENTSTREAM_PLURAL));
  const subsApi = new CustomResources<EventSubscription>(kc, ref(EVENTSUBSCRIPTION_PLURAL));
  const recorder = new EventRecorder(kc, 'eventwire-controller');
  const streamReconciler = new StreamReconciler({
    streams: streamsApi,
    js,
    status: new StatusReporter(streamsApi, recorder, log),
    log,
  });
  const subReconciler = new SubscriptionReconciler({
    subscriptions: subsApi,
    streams: inf.streams,
    services: inf.services,
    deployments: inf.deployments,
    kubeConfig: kc,
    js,
    status: new StatusReporter(subsApi, recorder, log),
    sink: { clusterDomain: cfg.clusterDomain, allowExternalUris: cfg.allowExternalSinkUris },
    ...(cfg.defaultStream ? { defaultStream: cfg.defaultStream } : {}),
    log,
    metrics: {
      discardedUnread: (subscription, n) => {
        m.discardedUnread.inc({ subscription }, n);
      },
      streamRecreated: (subscription) => {
        m.streamRecreated.inc({ subscription });
      },
      lag: (subscription, pending, ackPending) => {
        m.pending.set({ subscription }, pending);
        m.ackPending.set({ subscription }, ackPending);
      },
      forget: (subscription) => {
        for (const metric of [m.pending, m.ackPending, m.discardedUnread, m.streamRecreated]) {
          metric.remove({ subscription });
        }
      },
    },
  });
  const reconcileKey = async (key: string): Promise<ReconcileOutcome> => {
    const { kind, namespace, name } = parseKey(key);
    if (kind === 'stream') {
      const obj = inf.streams.get(namespace, name);
      return obj ? streamReconciler.reconcile(obj) : {};
    }
    const obj = inf.subs.get(namespace, name);
    return obj ? subReconciler.reconcile(obj) : {};
  };
  return (queue) => async (key) => {
    const kind = parseKey(key).kind;
    const end = m.duration.startTimer({ kind });
    try {
      const out = await reconcileKey(key);
      m.reconciles.inc({ kind, result: out.requeueAfterMs ? 'requeue' : 'success' });
      return out.requeueAfterMs ? { requeueAfterMs: out.requeueAfterMs } : undefined;
    } catch (err) {
      if (isConflict(err)) {
        // the cache was behind the object: routine, so no error log; retry on a fresh copy
        m.reconciles.inc({ kind, result: 'conflict' });
        return { requeueAfterMs: CONFLICT_REQUEUE_MS };
      }
      m.reconciles.inc({ kind, result: 'error' });
      throw err;
    } finally {
      end();
      m.queueDepth.set(queue.len());
    }
  };
}

/** How long each step of a stop may take; the whole stop takes at most five of them. */
export const STOP_STEP_MS = 2_500;

const bounded = (run: () => Promise<unknown>) => ({ timeoutMs: STOP_STEP_MS, run });

interface Leadership {
  readonly isLeader: () => boolean;
  readonly lost: Promise<void>;
  stop(release: boolean): Promise<void>;
}

/** Run the queue's workers while this replica leads (always, without leader election). */
function lead(
  cfg: ControllerConfig,
  kc: KubeConfig,
  log: Logger,
  onStart: () => void,
  onStop: () => Promise<void>,
): Leadership {
  let leading = false;
  let resolveLost: () => void = () => undefined;
  const lost = new Promise<void>((r) => {
    resolveLost = r;
  });
  const begin = (): void => {
    leading = true;
    onStart();
  };
  const le = cfg.leaderElection;
  if (!le.enabled) {
    begin();
    return { isLeader: () => leading, lost, stop: () => Promise.resolve() };
  }
  const elector = new LeaderElector({
    kubeConfig: kc,
    namespace: le.namespace,
    name: le.leaseName,
    identity: le.identity,
    leaseDurationMs: le.leaseDurationMs,
    renewDeadlineMs: le.renewDeadlineMs,
    retryPeriodMs: le.retryPeriodMs,
    logger: log,
    onStartedLeading: begin,
    onStoppedLeading: () => {
      if (!leading) return;
      leading = false;
      log.warn({}, 'leadership lost; stopping reconciles');
      void onStop().finally(resolveLost);
    },
  });
  elector.start();
  return { isLeader: () => leading, lost, stop: (release) => elector.stop({ release }) };
}

export async function startController(
  cfg: ControllerConfig,
  overrides: ControllerOverrides = {},
): Promise<ControllerHandle> {
  const log = overrides.log ?? createLogger({ component: 'controller', level: cfg.logLevel });
  const kc = overrides.kubeConfig ?? loadKubeConfig(cfg);
  const nc = overrides.nats ?? (await connectNats(cfg.nats, log));
  const js = new JetStreamAdmin(await jetstreamManager(nc));
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const m = metrics(registry);
  const inf = makeInformers(kc, cfg, log);
  const queue = new WorkQueue({ workers: cfg.workers, logger: log.child({ part: 'workqueue' }) });
  wireEvents({ queue, ...inf, defaultStream: cfg.defaultStream });
  const handler = makeHandler({ kc, cfg, js, inf, log, m })(queue);

  await Promise.all(allInformers(inf).map((i) => i.start()));
  log.info({}, 'informers synced');
  const leadership = lead(
    cfg,
    kc,
    log,
    () => {
      m.leader.set(1);
      queue.start(handler);
      for (const o of inf.streams.list()) queue.add(keyOf('stream', o));
      for (const o of inf.subs.list()) queue.add(keyOf('sub', o));
    },
    async () => {
      m.leader.set(0);
      await queue.shutdown();
    },
  );
  const ops = await startOpsServer({
    host: cfg.opsHost,
    port: cfg.opsPort,
    registry,
    log,
    readiness: {
      informers: () => ({
        ready: allInformers(inf).every((i) => i.hasSynced()),
        reason: 'informers not synced',
      }),
      nats: () => ({ ready: !nc.isClosed(), reason: 'nats connection closed' }),
    },
  });
  let stopped: Promise<void> | undefined;
  const stop = async (releaseLease: boolean): Promise<void> => {
    // each step is bounded: the API server or NATS may be gone (STOP_STEP_MS)
    const unfinished = await runStopSteps(
      [
        { name: 'stop leading', ...bounded(() => leadership.stop(releaseLease)) },
        { name: 'finish reconciles in progress', ...bounded(() => queue.shutdown()) },
        {
          name: 'stop the informers',
          ...bounded(() => Promise.all(allInformers(inf).map((i) => i.stop()))),
        },
        { name: 'close the ops server', ...bounded(() => ops.close()) },
        {
          name: 'close the NATS connection',
          ...bounded(() => (overrides.nats ? Promise.resolve() : closeNats(nc, log, 2_000))),
        },
      ],
      log,
    );
    log.info({ unfinished }, 'controller stopped');
  };
  return {
    opsPort: ops.port,
    isLeader: leadership.isLeader,
    lostLeadership: leadership.lost,
    // idempotent: a second call waits for the first
    stop: (opts = {}) => (stopped ??= stop(opts.releaseLease ?? true)),
  };
}

interface WireInput {
  readonly queue: WorkQueue;
  readonly streams: Informer<EventStream>;
  readonly subs: Informer<EventSubscription>;
  readonly services: Informer<V1Service>;
  readonly deployments: Informer<V1Deployment>;
  readonly defaultStream: ControllerConfig['defaultStream'];
}

const sameRef = (
  es: EventStream,
  ref: { namespace?: string | undefined; name: string } | undefined,
  own: string | undefined,
): boolean =>
  ref !== undefined &&
  (ref.namespace ?? own) === es.metadata?.namespace &&
  ref.name === es.metadata?.name;

/** Does the subscription read from, reply into or dead-letter into the stream? */
function usesStream(
  sub: EventSubscription,
  es: EventStream,
  defaultStream: ControllerConfig['defaultStream'],
): boolean {
  const own = sub.metadata?.namespace;
  const dlSubject = sub.spec.delivery?.deadLetter?.subject;
  return (
    sameRef(es, sub.spec.stream ?? defaultStream, own) ||
    sameRef(es, sub.spec.reply?.stream, own) ||
    (dlSubject !== undefined && streamsCapturing(dlSubject, [es]).length > 0)
  );
}

/** Which informer events enqueue which keys. */
function wireEvents(w: WireInput): void {
  const enqueueSub = (o: EventSubscription): void => {
    w.queue.add(keyOf('sub', o));
  };
  w.subs.onAdd(enqueueSub);
  w.subs.onUpdate(enqueueSub);
  w.subs.onDelete(enqueueSub);
  const streamChanged = (es: EventStream): void => {
    w.queue.add(keyOf('stream', es));
    for (const sub of w.subs.list()) {
      if (usesStream(sub, es, w.defaultStream)) enqueueSub(sub);
    }
  };
  w.streams.onAdd(streamChanged);
  w.streams.onUpdate(streamChanged);
  w.streams.onDelete(streamChanged);
  const targetChanged = (obj: KubernetesObject): void => {
    const ns = obj.metadata?.namespace;
    for (const sub of w.subs.list()) {
      if (sub.metadata?.namespace === ns && sub.spec.sink.ref?.name === obj.metadata?.name)
        enqueueSub(sub);
    }
  };
  for (const inf of [w.services, w.deployments] as Informer<KubernetesObject>[]) {
    inf.onAdd(targetChanged);
    inf.onUpdate(targetChanged);
    inf.onDelete(targetChanged);
  }
}
