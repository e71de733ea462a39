// `eventwire dispatcher`: watches EventSubscriptions (and the EventStreams their replies
// name) and runs one SubscriptionWorker per Ready subscription that has status.sinkUri and
// status.consumer. A changed spec or status restarts that subscription's worker (graceful
// stop, then a new one: JetStream hands unacked messages to the new one); a deleted or
// no-longer-Ready subscription stops its worker. Several replicas share the durable pull
// consumer of an unordered subscription: JetStream spreads messages over every replica pulling
// it. An ordered subscription (key, strict) is served by one replica, chosen by rendezvous
// hashing over the live replicas (membership.ts, placement.ts); its consumer's pinned-client
// group makes sure only one replica receives even while they disagree (ADR 0011). The
// dispatcher owns status.stats.deadLettered: each replica adds the dead letters it sent
// (stats-flush.ts).
import { KubeConfig } from '@kubernetes/client-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import {
  API_GROUP_VERSION,
  EVENTSTREAM_PLURAL,
  EVENTSUBSCRIPTION_PLURAL,
  type EventStream,
  type EventSubscription,
} from '../api/types.ts';
import { closeNats, connectNats } from '../jetstream/connection.ts';
import { Informer, objectKey } from '../k8s/informer.ts';
import { EventRecorder } from '../k8s/resources.ts';
import { startOpsServer, type OpsServer } from '../observability/http-server.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { runStopSteps } from '../util/shutdown.ts';
import type { DispatcherConfig } from './config.ts';
import { DispatcherMetrics } from './metrics.ts';
import { NOT_RECONCILED, workerSpecFor, type WorkerSpec } from './settings.ts';
import { DeadLetterStats, kubeSubscriptionStatusApi } from './stats-flush.ts';
import { HEARTBEAT_MS, Membership } from './membership.ts';
import { ownerOf } from './placement.ts';
import { SubscriptionWorker, type TerminalInfo, type WorkerAlert } from './subscription-worker.ts';

export interface DispatcherDeps {
  readonly kubeConfig?: KubeConfig;
  readonly log?: Logger;
  readonly metrics?: DispatcherMetrics;
  /** skip the ops server (tests) */
  readonly opsServer?: boolean;
}

export interface Dispatcher {
  readonly opsPort: number | undefined;
  /** subscription ids (namespace/name) with a running worker */
  subscriptions(): string[];
  /** graceful stop: every worker drains within graceMs */
  stop(graceMs?: number): Promise<void>;
}

interface Running {
  readonly worker: SubscriptionWorker;
  readonly key: string;
}

function apiPath(plural: string, namespace: string | undefined): string {
  const ns = namespace === undefined ? '' : `/namespaces/${namespace}`;
  return `/apis/${API_GROUP_VERSION}${ns}/${plural}`;
}

class Reconciler {
  readonly #running = new Map<string, Running>();
  readonly #subs: Informer<EventSubscription>;
  readonly #streams: Informer<EventStream>;
  readonly #js: JetStreamClient;
  readonly #nc: NatsConnection;
  readonly #membership: Membership;
  /** ordered subscriptions wait until the other replicas had time to be heard */
  #placementReady = false;
  readonly #metrics: DispatcherMetrics;
  readonly #log: Logger;
  readonly #cfg: DispatcherConfig;
  readonly #recorder: EventRecorder;
  readonly #deadLettered: DeadLetterStats;
  #chain: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(o: {
    cfg: DispatcherConfig;
    kc: KubeConfig;
    nc: NatsConnection;
    metrics: DispatcherMetrics;
    log: Logger;
    deadLettered: DeadLetterStats;
  }) {
    const { cfg, kc, log } = o;
    this.#cfg = cfg;
    this.#deadLettered = o.deadLettered;
    this.#nc = o.nc;
    this.#js = jetstream(o.nc);
    this.#membership = new Membership({
      nc: o.nc,
      namespace: cfg.namespace,
      log,
      onChange: () => {
        this.kick();
      },
    });
    this.#metrics = o.metrics;
    this.#log = log;
    this.#recorder = new EventRecorder(kc, 'eventwire-dispatcher');
    this.#subs = new Informer<EventSubscription>({
      kubeConfig: kc,
      path: apiPath(EVENTSUBSCRIPTION_PLURAL, cfg.namespace),
      logger: log.child({ informer: EVENTSUBSCRIPTION_PLURAL }),
    });
    this.#streams = new Informer<EventStream>({
      kubeConfig: kc,
      path: apiPath(EVENTSTREAM_PLURAL, undefined),
      logger: log.child({ informer: EVENTSTREAM_PLURAL }),
    });
    for (const inf of [this.#subs, this.#streams] as Informer<EventStream | EventSubscription>[]) {
      const kick = () => {
        this.kick();
      };
      inf.onAdd(kick);
      inf.onUpdate(kick);
      inf.onDelete(kick);
    }
  }

  get synced(): boolean {
    return this.#subs.hasSynced() && this.#streams.hasSynced();
  }

  subscriptions(): string[] {
    return [...this.#running.keys()].sort();
  }

  async start(): Promise<void> {
    this.#membership.start();
    await Promise.all([this.#streams.start(), this.#subs.start()]);
    this.kick();
    await this.#chain;
    // unordered subscriptions at once; ordered ones once the other replicas had time to be
    // heard, so a replica starting does not take every ordered subscription for a moment
    const timer = setTimeout(() => {
      if (this.#stopped) return;
      this.#placementReady = true;
      this.#membership.setReady();
      this.#log.info(
        { replicas: this.#membership.candidates().length },
        'serving ordered subscriptions',
      );
      this.kick();
    }, HEARTBEAT_MS * 1.5);
    timer.unref();
  }

  /** Ordered subscriptions are served by one replica (placement.ts); others by every one. */
  #servedHere(spec: WorkerSpec): boolean {
    if (spec.delivery.ordering === 'none') return true;
    if (!this.#placementReady) return false;
    return ownerOf(spec.id, this.#membership.candidates()) === this.#membership.self.id;
  }

  /** Schedules a reconcile of every subscription (serialised). */
  kick(): void {
    this.#chain = this.#chain.then(
      () => this.#reconcile(),
      () => this.#reconcile(),
    );
  }

  async #reconcile(): Promise<void> {
    if (this.#stopped) return;
    const desired = new Map<string, WorkerSpec>();
    for (const sub of this.#subs.list()) {
      const id = objectKey(sub);
      const r = workerSpecFor(sub, (ns, name) => this.#streams.get(ns, name));
      const running = this.#running.get(id);
      // a spec the controller has not checked yet: go on with the last one it checked
      const spec = r.ok
        ? r.spec
        : r.reason === NOT_RECONCILED && running
          ? running.worker.spec
          : undefined;
      if (spec === undefined) {
        if (!r.ok) this.#log.debug({ subscription: id, reason: r.reason }, 'not delivering');
      } else if (this.#servedHere(spec)) {
        desired.set(id, spec);
      }
    }
    const stops: Promise<void>[] = [];
    for (const [id, running] of this.#running) {
      const spec = desired.get(id);
      if (spec !== undefined && JSON.stringify(spec) === running.key) continue;
      this.#running.delete(id);
      this.#log.info({ subscription: id, changed: spec !== undefined }, 'stopping delivery');
      stops.push(running.worker.stop(this.#cfg.gracePeriodMs));
    }
    await Promise.all(stops);
    for (const [id, spec] of desired) {
      if (this.#running.has(id)) continue;
      this.#startWorker(id, spec);
    }
    this.#metrics.workers.set(this.#running.size);
  }

  #startWorker(id: string, spec: WorkerSpec): void {
    try {
      const worker = new SubscriptionWorker({
        js: this.#js,
        nc: this.#nc,
        spec,
        metrics: this.#metrics,
        log: this.#log,
        onTerminal: (info) => {
          this.#recordTerminal(info);
        },
        onAlert: (alert) => {
          this.#recordWarning(alert.subscription, alert.reason, alert.message, alert.eventId);
        },
        onDeadLettered: () => {
          const [namespace = '', name = ''] = id.split('/');
          this.#deadLettered.add(id, this.#subs.get(namespace, name)?.metadata?.uid);
        },
      });
      worker.start();
      this.#running.set(id, { worker, key: JSON.stringify(spec) });
      this.#log.info({ subscription: id, sinkUri: spec.sinkUri }, 'delivering');
    } catch (err) {
      this.#log.error({ err, subscription: id }, 'cannot start delivery');
    }
  }

  #recordTerminal(info: TerminalInfo): void {
    const code = info.code === undefined ? '' : ` (HTTP ${info.code})`;
    this.#recordWarning(
      info.subscription,
      'EventTerminated',
      `event ${info.eventId} was terminated without a dead letter: ${info.reason}${code}; set spec.delivery.deadLetter to keep such events`,
      info.eventId,
    );
  }

  /** A Warning Kubernetes Event on the subscription. */
  #recordWarning(
    subscription: string,
    reason: WorkerAlert['reason'] | 'EventTerminated',
    message: string,
    eventId: string,
  ): void {
    const [namespace, name] = subscription.split('/');
    const sub = this.#subs.get(namespace, name ?? '');
    if (sub === undefined) return;
    this.#recorder.record(sub, 'Warning', reason, message).catch((err: unknown) => {
      this.#log.warn({ err, eventId }, 'recording a Kubernetes Event failed');
    });
  }

  async stop(graceMs: number): Promise<void> {
    // first: the other replicas start pulling this one's ordered subscriptions now, and
    // receive them as soon as its workers release their pins
    this.#membership.stop();
    this.#stopped = true;
    await Promise.all([this.#subs.stop(), this.#streams.stop()]);
    await this.#chain.catch(() => undefined);
    const running = [...this.#running.values()];
    this.#running.clear();
    await Promise.all(running.map((r) => r.worker.stop(graceMs)));
  }
}

function kubeConfigFor(cfg: DispatcherConfig): KubeConfig {
  const kc = new KubeConfig();
  if (cfg.kubeconfig) kc.loadFromFile(cfg.kubeconfig);
  else kc.loadFromCluster();
  return kc;
}

export async function startDispatcher(
  cfg: DispatcherConfig,
  deps: DispatcherDeps = {},
): Promise<Dispatcher> {
  const log = deps.log ?? createLogger({ component: 'dispatcher', level: cfg.logLevel });
  const metrics = deps.metrics ?? new DispatcherMetrics();
  const nc: NatsConnection = await connectNats(cfg.nats, log);
  const kc = deps.kubeConfig ?? kubeConfigFor(cfg);
  const deadLettered = new DeadLetterStats({
    api: kubeSubscriptionStatusApi(kc),
    intervalMs: cfg.statsFlushIntervalMs,
    log,
    onFailure: (subscription) => {
      metrics.statsFlushFailures.inc({ subscription });
    },
  });
  const reconciler = new Reconciler({ cfg, kc, nc, metrics, log, deadLettered });
  let ops: OpsServer | undefined;
  try {
    if (deps.opsServer !== false) {
      ops = await startOpsServer({
        host: cfg.opsHost,
        port: cfg.opsPort,
        registry: metrics.registry,
        readiness: {
          nats: () => ({ ready: !nc.isClosed(), reason: 'the NATS connection is closed' }),
          informers: () => ({ ready: reconciler.synced, reason: 'informers not synced yet' }),
        },
        log,
      });
    }
    await reconciler.start();
  } catch (err) {
    await ops?.close();
    await nc.close();
    throw new Error('the dispatcher could not start', { cause: err });
  }
  log.info({ subscriptions: reconciler.subscriptions().length }, 'dispatcher started');
  return {
    opsPort: ops?.port,
    subscriptions: () => reconciler.subscriptions(),
    // ends within graceMs + 7.5 s even when NATS or the API server is gone
    stop: async (graceMs = cfg.gracePeriodMs) => {
      log.info({ graceMs }, 'dispatcher stopping');
      const unfinished = await runStopSteps(
        [
          {
            name: 'drain the subscriptions',
            timeoutMs: graceMs + 3_000,
            run: () => reconciler.stop(graceMs),
          },
          {
            // after the workers stopped: the dead letters of the drain count too
            name: 'write the dead-letter counts',
            timeoutMs: 1_000,
            run: () => deadLettered.stop(),
          },
          { name: 'close the ops server', timeoutMs: 1_000, run: async () => ops?.close() },
          {
            name: 'close the NATS connection',
            timeoutMs: 2_500,
            run: () => closeNats(nc, log, 2_000),
          },
        ],
        log,
      );
      log.info({ unfinished }, 'dispatcher stopped');
    },
  };
}
