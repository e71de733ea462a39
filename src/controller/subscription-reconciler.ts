// EventSubscription -> durable pull consumer + resolved sink + status.
// Order: finalizer; filters (compile CEL); stream (exists, Ready, allows this namespace);
// consumer (create / update in place / migrate after the ack floor); sink (Service,
// managed Service for a Deployment, or URI); status with conditions and stats; clean-up of
// a consumer replaced by a migration once status names the new one.
import type { ConsumerInfo, StreamInfo } from '@nats-io/jetstream';
import {
  CoreV1Api,
  type KubeConfig,
  type V1Deployment,
  type V1Service,
} from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { parseDuration } from '../api/duration.ts';
import {
  DELIVERY_DEFAULTS,
  type EventStream,
  type EventSubscription,
  type EventSubscriptionStatus,
} from '../api/types.ts';
import { compileFilters } from '../dispatcher/filter.ts';
import { JetStreamAdminError, type JetStreamAdmin } from '../jetstream/admin.ts';
import {
  consumerSettingsFor,
  planConsumer,
  streamCreatedOf,
  type ConsumerObservation,
  type ConsumerPlan,
  type ConsumerSettings,
  type ResumeNote,
  type StartPosition,
} from '../jetstream/consumer-plan.ts';
import { pushdownSubjects } from '../jetstream/subject.ts';
import {
  hasFinalizer,
  withFinalizer,
  withoutFinalizer,
  type CustomResources,
} from '../k8s/resources.ts';
import type { Logger } from '../observability/logger.ts';
import { isTrue, mergeConditions, type ConditionInput } from './conditions.ts';
import {
  FINALIZER,
  NOT_READY_REQUEUE_MS,
  type ReconcileOutcome,
  type StatusReporter,
} from './reconcile-common.ts';
import { resolveSink, type SinkInput, type SinkOptions, type SinkResolution } from './sink.ts';
import { streamNameOf } from './stream-reconciler.ts';
import { allowsNamespace, deadLetterCondition, replyCondition } from './targets.ts';
import { consumerStatusOf, lossesOf, lossReport } from './consumer-status.ts';

export interface Lookup<T> {
  get(namespace: string, name: string): T | undefined;
}

/** The EventStreams the controller knows: by name, and all of them (dead-letter capture). */
export interface StreamLookup extends Lookup<EventStream> {
  list(): EventStream[];
}

/** Counters of what the reconciler found lost or reset (the controller's /metrics). */
export interface SubscriptionMetrics {
  discardedUnread(subscription: string, count: number): void;
  streamRecreated(subscription: string): void;
  /** the consumer's lag as last read: events not yet delivered, and delivered but unacked */
  lag(subscription: string, pending: number, ackPending: number): void;
  /** the subscription is gone: drop its series */
  forget(subscription: string): void;
}

export interface SubscriptionReconcilerDeps {
  readonly subscriptions: CustomResources<EventSubscription>;
  readonly streams: StreamLookup;
  readonly services: Lookup<V1Service>;
  readonly deployments: Lookup<V1Deployment>;
  readonly kubeConfig: KubeConfig;
  readonly js: JetStreamAdmin;
  readonly status: StatusReporter<EventSubscription>;
  readonly sink: SinkOptions;
  readonly defaultStream?: { readonly namespace: string; readonly name: string };
  readonly log: Logger;
  readonly metrics?: SubscriptionMetrics;
  readonly now?: () => Date;
}

type Cond = ConditionInput;
const ok = (type: string, reason: string, message: string): Cond => ({
  type,
  status: 'True',
  reason,
  message,
});
const bad = (type: string, reason: string, message: string): Cond => ({
  type,
  status: 'False',
  reason,
  message,
});

interface ConsumerOutcome {
  readonly cond: Cond;
  readonly info?: ConsumerInfo;
  /** a consumer this one replaced, deleted once status names the new one */
  readonly replaced?: { readonly stream: string; readonly name: string };
  /** the stream read when the consumer had to be recreated */
  readonly stream?: StreamInfo;
  /** why a recreated consumer did not resume after its recorded ack floor */
  readonly note?: ResumeNote;
}

interface StreamTarget {
  readonly es: EventStream;
  readonly streamName: string;
  readonly prefix: string;
}

/** The Ready condition: the first problem in order of what a person must fix first. */
function readyOf(conds: readonly Cond[]): Cond {
  const order = ['InvalidFilter', 'InvalidSpec'];
  const firstBad =
    conds.find((c) => c.status !== 'True' && order.includes(c.reason)) ??
    conds.find((c) => c.status !== 'True');
  if (!firstBad) return ok('Ready', 'Ready', 'events are delivered to the sink');
  return {
    type: 'Ready',
    status: firstBad.status === 'Unknown' ? 'Unknown' : 'False',
    reason: firstBad.reason,
    message: firstBad.message,
  };
}

function startOf(sub: EventSubscription): StartPosition {
  const from = sub.spec.startFrom ?? 'new';
  if (from === 'time')
    return { policy: 'time', startTime: sub.spec.startTime ?? new Date(0).toISOString() };
  return { policy: from };
}

function statsOf(
  info: ConsumerInfo | undefined,
  prev: EventSubscriptionStatus['stats'],
  discarded: number,
): EventSubscriptionStatus['stats'] {
  if (!info) return prev;
  const last = info.ack_floor.last_active as unknown;
  return {
    ...(prev ?? {}),
    ...(discarded > 0 ? { discardedUnread: (prev?.discardedUnread ?? 0) + discarded } : {}),
    pending: info.num_pending,
    ackPending: info.num_ack_pending,
    redelivered: info.num_redelivered,
    ...(typeof last === 'string' && !last.startsWith('0001-') ? { lastDelivery: last } : {}),
  };
}

const idOf = (sub: EventSubscription): string =>
  `${sub.metadata?.namespace ?? ''}/${sub.metadata?.name ?? ''}`;

type Observed = ConsumerObservation & { readonly streamInfo?: StreamInfo };

/**
 * The stream's identity decides where a recreated consumer starts: read the stream fresh
 * then, when a new consumer records it, and while neither status nor the consumer knows it.
 */
function needsStreamRead(
  current: ConsumerInfo | undefined,
  previous: ConsumerInfo | undefined,
  created: string | undefined,
): boolean {
  if (!current && !previous) return true;
  return (created ?? streamCreatedOf(current) ?? streamCreatedOf(previous)) === undefined;
}

function observation(o: {
  current: ConsumerInfo | undefined;
  previous: ConsumerInfo | undefined;
  floor: number | undefined;
  created: string | undefined;
  stream: StreamInfo | undefined;
}): Observed {
  const { current, previous, floor, created, stream } = o;
  return {
    ...(current ? { current } : {}),
    ...(previous ? { previous } : {}),
    ...(floor === undefined ? {} : { lastKnownAckFloor: floor }),
    ...(created === undefined ? {} : { lastKnownStreamCreated: created }),
    ...(stream
      ? {
          stream: {
            created: stream.created,
            firstSeq: stream.state.first_seq,
            lastSeq: stream.state.last_seq,
          },
          streamInfo: stream,
        }
      : {}),
  };
}

const CONSUMER_RESET_REASON = 'StreamRecreated';

/**
 * A consumer on another stream than the one status recorded, found after the fact: the
 * reconcile that recreated it could not write status (a conflict), so this one says what
 * happened. Derived from status and the consumer, so it holds until status is written.
 */
function unrecordedReset(
  sub: EventSubscription,
  s: ConsumerSettings,
  info: ConsumerInfo | undefined,
): ResumeNote | undefined {
  const recorded = sub.status?.consumer;
  const created = streamCreatedOf(info);
  if (recorded?.name !== s.name || recorded.streamCreated === undefined) return undefined;
  if (created === undefined || created === recorded.streamCreated) return undefined;
  return {
    kind: 'stream-recreated',
    previousCreated: recorded.streamCreated,
    created,
    lastKnownAckFloor: recorded.ackFloor ?? 0,
  };
}

/**
 * ConsumerReady. After a consumer was recreated on a new stream, the reason says so for the
 * rest of this generation, so `kubectl get evsub` shows it after the Warning Event.
 */
function consumerCondition(
  sub: EventSubscription,
  s: ConsumerSettings,
  note: ResumeNote | undefined,
): Cond {
  if (note?.kind === 'stream-recreated') {
    return ok(
      'ConsumerReady',
      CONSUMER_RESET_REASON,
      `durable consumer ${s.stream}/${s.name} starts at the first message of stream ${s.stream}, which was recreated (created ${note.created}); the ack floor ${String(note.lastKnownAckFloor)} counted in the old stream`,
    );
  }
  return (
    keptReset(sub, s) ??
    ok('ConsumerReady', 'ConsumerReady', `durable consumer ${s.stream}/${s.name}`)
  );
}

/** The StreamRecreated reason stays for the rest of the generation, on the same consumer. */
function keptReset(sub: EventSubscription, s: ConsumerSettings): Cond | undefined {
  const prev = sub.status?.conditions?.find((c) => c.type === 'ConsumerReady');
  if (
    prev?.reason === CONSUMER_RESET_REASON &&
    prev.status === 'True' &&
    prev.observedGeneration === sub.metadata?.generation &&
    sub.status?.consumer?.name === s.name
  ) {
    return ok('ConsumerReady', prev.reason, prev.message);
  }
  return undefined;
}

/** Do two Services agree on what eventwire manages: selector, ports, owners? */
function sameService(a: V1Service, b: V1Service): boolean {
  const ports = (s: V1Service) => (s.spec?.ports ?? []).map((p) => [p.port, p.targetPort]);
  const owners = (s: V1Service) => (s.metadata?.ownerReferences ?? []).map((o) => o.uid);
  return (
    isDeepStrictEqual(a.spec?.selector, b.spec?.selector) &&
    isDeepStrictEqual(ports(a), ports(b)) &&
    isDeepStrictEqual(owners(a), owners(b))
  );
}

export class SubscriptionReconciler {
  private readonly deps: SubscriptionReconcilerDeps;
  private readonly core: CoreV1Api;

  constructor(deps: SubscriptionReconcilerDeps) {
    this.deps = deps;
    this.core = deps.kubeConfig.makeApiClient(CoreV1Api);
  }

  async reconcile(observed: EventSubscription): Promise<ReconcileOutcome> {
    let sub = observed;
    const ns = sub.metadata?.namespace ?? '';
    const log = this.deps.log.child({ eventsubscription: `${ns}/${sub.metadata?.name ?? ''}` });
    if (sub.metadata?.deletionTimestamp) return this.finalize(sub, log);
    if (!hasFinalizer(sub, FINALIZER)) {
      // go on with the object as written: saves a round trip through the informer
      sub = await this.deps.subscriptions.replace(withFinalizer(sub, FINALIZER));
    }
    const conds: Cond[] = [];
    const filterCond = this.checkFilters(sub);
    const stream = this.resolveStream(sub);
    conds.push(
      'cond' in stream
        ? stream.cond
        : ok('StreamReady', 'StreamReady', `stream ${stream.streamName} is ready`),
    );
    let consumer: Omit<ConsumerOutcome, 'cond'> = {};
    if (filterCond.status !== 'True') {
      conds.push(filterCond);
    } else if ('cond' in stream) {
      conds.push(bad('ConsumerReady', 'StreamNotReady', 'waiting for the stream'));
    } else {
      const result = await this.ensureConsumer(sub, stream, log);
      consumer = result;
      conds.push(result.cond);
    }
    const sink = await this.ensureSink(sub, sub.spec.sink, log);
    conds.push(
      sink.ok
        ? ok('SinkResolved', 'SinkResolved', `events go to ${sink.uri}`)
        : bad('SinkResolved', sink.reason, sink.message),
    );
    const dlSink = await this.ensureOutputs(sub, conds, log);
    await this.writeStatus(sub, conds, { sink, dlSink, consumer, stream }, log);
    if (consumer.replaced) {
      await this.deps.js.deleteConsumer(consumer.replaced.stream, consumer.replaced.name);
      log.info({ consumer: consumer.replaced.name }, 'replaced consumer deleted');
    }
    return readyOf(conds).status === 'True' ? {} : { requeueAfterMs: NOT_READY_REQUEUE_MS };
  }

  /** The dead letter and the reply stream: conditions, and the dead-letter sink if any. */
  private async ensureOutputs(
    sub: EventSubscription,
    conds: Cond[],
    log: Logger,
  ): Promise<SinkResolution | undefined> {
    const dlSinkSpec = sub.spec.delivery?.deadLetter?.sink;
    const dlSink = dlSinkSpec ? await this.ensureSink(sub, dlSinkSpec, log) : undefined;
    conds.push(deadLetterCondition(sub, this.deps.streams.list(), dlSink));
    conds.push(replyCondition(sub, (n, name) => this.deps.streams.get(n, name)));
    return dlSink;
  }

  private checkFilters(sub: EventSubscription): Cond {
    const compiled = compileFilters(sub.spec.filters ?? []);
    if (!compiled.ok)
      return bad('ConsumerReady', 'InvalidFilter', `spec.${compiled.path}: ${compiled.message}`);
    try {
      const d = sub.spec.delivery;
      parseDuration(d?.timeout ?? '30s', 'spec.delivery.timeout');
    } catch (err) {
      return bad('ConsumerReady', 'InvalidSpec', (err as Error).message);
    }
    return ok('ConsumerReady', 'FiltersValid', 'filters compile');
  }

  private resolveStream(sub: EventSubscription): StreamTarget | { cond: Cond } {
    const ns = sub.metadata?.namespace ?? '';
    const ref = sub.spec.stream
      ? { namespace: sub.spec.stream.namespace ?? ns, name: sub.spec.stream.name }
      : this.deps.defaultStream;
    if (!ref) {
      return {
        cond: bad(
          'StreamReady',
          'NoStream',
          'set spec.stream: this installation has no default stream',
        ),
      };
    }
    const es = this.deps.streams.get(ref.namespace, ref.name);
    const id = `${ref.namespace}/${ref.name}`;
    if (!es)
      return {
        cond: bad(
          'StreamReady',
          'StreamNotFound',
          `EventStream ${id} does not exist; create it or fix spec.stream`,
        ),
      };
    if (!allowsNamespace(es, ns)) {
      return {
        cond: bad(
          'StreamReady',
          'NamespaceNotAllowed',
          `EventStream ${id} does not allow namespace ${ns}; add it to the stream's spec.allowedNamespaces`,
        ),
      };
    }
    if (!isTrue(es.status?.conditions, 'Ready')) {
      const r = es.status?.conditions?.find((c) => c.type === 'Ready');
      return {
        cond: bad(
          'StreamReady',
          'StreamNotReady',
          `EventStream ${id} is not ready${r ? `: ${r.reason}: ${r.message}` : ''}`,
        ),
      };
    }
    return {
      es,
      streamName: es.status?.streamName ?? streamNameOf(es),
      prefix: es.spec.subjectPrefix,
    };
  }

  private settingsFor(sub: EventSubscription, stream: StreamTarget): ConsumerSettings {
    const d = { ...DELIVERY_DEFAULTS, ...sub.spec.delivery };
    return consumerSettingsFor({
      namespace: sub.metadata?.namespace ?? '',
      name: sub.metadata?.name ?? '',
      stream: stream.streamName,
      filterSubjects: pushdownSubjects(stream.prefix, sub.spec.filters ?? []),
      timeoutMs: parseDuration(d.timeout, 'spec.delivery.timeout'),
      retry: d.retry,
      maxInFlight: d.maxInFlight,
      start: startOf(sub),
      ordering: d.ordering,
    });
  }

  /** The desired consumer, the one status names (if replaced), and the last known floor. */
  private async observe(sub: EventSubscription, s: ConsumerSettings): Promise<Observed> {
    const js = this.deps.js;
    const prev = sub.status?.consumer;
    const current = await js.consumerInfo(s.stream, s.name);
    const replaced = prev?.name !== undefined && prev.stream !== undefined && prev.name !== s.name;
    const previous = replaced
      ? await js.consumerInfo(prev.stream ?? '', prev.name ?? '')
      : undefined;
    const sameName = prev?.stream === s.stream;
    const floor = sameName ? prev.ackFloor : undefined;
    const created = sameName ? prev.streamCreated : undefined;
    const read = needsStreamRead(current, previous, created);
    const stream = read ? await js.streamInfo(s.stream) : undefined;
    return observation({ current, previous, floor, created, stream });
  }

  private async applyPlan(
    s: ConsumerSettings,
    plan: ConsumerPlan,
    seen: ConsumerObservation,
    log: Logger,
  ): Promise<ConsumerInfo | undefined> {
    switch (plan.kind) {
      case 'none':
        return seen.current;
      case 'wait':
        throw new JetStreamAdminError(`${plan.reason}; retrying`, true, undefined);
      case 'update': {
        const info = await this.deps.js.updateConsumer(s.stream, plan.config);
        log.info(
          { consumer: s.name, changes: plan.changes.map((c) => c.field) },
          'consumer updated',
        );
        return info;
      }
      case 'create':
      case 'migrate': {
        const info = await this.deps.js.addConsumer(s.stream, plan.config);
        const startSeq = plan.config.opt_start_seq;
        log.info({ consumer: s.name, plan: plan.kind, startSeq }, 'consumer created');
        return info;
      }
    }
  }

  private async ensureConsumer(
    sub: EventSubscription,
    stream: StreamTarget,
    log: Logger,
  ): Promise<ConsumerOutcome> {
    const settings = this.settingsFor(sub, stream);
    try {
      const seen = await this.observe(sub, settings);
      const plan = planConsumer(settings, seen);
      const info = await this.applyPlan(settings, plan, seen, log);
      const prev = seen.previous;
      const note =
        (plan.kind === 'create' ? plan.note : undefined) ?? unrecordedReset(sub, settings, info);
      return {
        cond: consumerCondition(sub, settings, note),
        ...(info ? { info } : {}),
        ...(prev ? { replaced: { stream: prev.stream_name, name: prev.name } } : {}),
        ...(seen.streamInfo ? { stream: seen.streamInfo } : {}),
        ...(note ? { note } : {}),
      };
    } catch (err) {
      if (!(err instanceof JetStreamAdminError)) throw err;
      log.warn({ err }, 'jetstream request failed');
      if (err.transient) throw err;
      return { cond: bad('ConsumerReady', 'ConsumerRejected', err.message) };
    }
  }

  /** Resolves the sink, or the dead-letter sink, under the same rules. */
  private async ensureSink(
    sub: EventSubscription,
    spec: SinkInput,
    log: Logger,
  ): Promise<SinkResolution> {
    const ns = sub.metadata?.namespace ?? '';
    const ref = spec.ref;
    const lookup: { service?: V1Service; deployment?: V1Deployment } = {};
    if (ref) {
      const service = this.deps.services.get(ns, ref.name);
      const deployment =
        ref.kind === 'Deployment' ? this.deps.deployments.get(ns, ref.name) : undefined;
      if (service) lookup.service = service;
      if (deployment) lookup.deployment = deployment;
    }
    const identity = {
      namespace: ns,
      name: sub.metadata?.name ?? '',
      uid: sub.metadata?.uid ?? '',
    };
    const res = resolveSink(identity, spec, lookup, this.deps.sink);
    if (res.ok && res.managedService) {
      await this.applyManagedService(res.managedService, lookup.service, log);
    }
    return res;
  }

  private async applyManagedService(
    want: V1Service,
    existing: V1Service | undefined,
    log: Logger,
  ): Promise<void> {
    const namespace = want.metadata?.namespace ?? '';
    const name = want.metadata?.name ?? '';
    if (!existing) {
      await this.core.createNamespacedService({ namespace, body: want });
      log.info({ service: name }, 'managed service created');
      return;
    }
    if (sameService(existing, want)) return;
    await this.core.replaceNamespacedService({ namespace, name, body: want });
    log.info({ service: name }, 'managed service updated');
  }

  private async writeStatus(
    sub: EventSubscription,
    conds: Cond[],
    out: {
      readonly sink: SinkResolution;
      readonly dlSink: SinkResolution | undefined;
      readonly consumer: Omit<ConsumerOutcome, 'cond'>;
      readonly stream: StreamTarget | { cond: Cond };
    },
    log: Logger,
  ): Promise<void> {
    const now = this.deps.now?.() ?? new Date();
    const prev = sub.status ?? {};
    const { sink, dlSink, consumer } = out;
    const info = consumer.info;
    const losses = lossesOf(prev, consumer, 'es' in out.stream ? out.stream.es : undefined);
    const kept = { ...prev };
    // each URI is present only while it resolves: the dispatcher calls nothing else
    delete kept.sinkUri;
    delete kept.deadLetterSinkUri;
    const stats = statsOf(info, prev.stats, losses.discarded);
    const status: EventSubscriptionStatus = {
      ...kept,
      observedGeneration: sub.metadata?.generation ?? 0,
      conditions: mergeConditions(
        prev.conditions,
        [readyOf(conds), ...conds],
        sub.metadata?.generation,
        now,
      ),
      ...(sink.ok ? { sinkUri: sink.uri } : {}),
      ...(dlSink?.ok ? { deadLetterSinkUri: dlSink.uri } : {}),
      ...(info ? { consumer: consumerStatusOf(info, losses) } : {}),
      ...(stats ? { stats } : {}),
    };
    // after the write: a failed write (a conflict) finds the same again on the retry, from
    // status and the consumer, and reports it then, once
    await this.deps.status.update(sub, status);
    this.reportConsumer(sub, info, consumer.note, losses.discarded, log);
  }

  /**
   * The consumer's lag as metrics; a Warning Event, metrics and a log for a stream recreated
   * or messages discarded unread.
   */
  private reportConsumer(
    sub: EventSubscription,
    info: ConsumerInfo | undefined,
    note: ResumeNote | undefined,
    discarded: number,
    log: Logger,
  ): void {
    const id = idOf(sub);
    if (!info) return;
    this.deps.metrics?.lag(id, info.num_pending, info.num_ack_pending);
    const stream = info.stream_name;
    const report = lossReport(stream, note, discarded);
    if (report === undefined) return;
    if (note?.kind === 'stream-recreated') this.deps.metrics?.streamRecreated(id);
    if (discarded > 0) this.deps.metrics?.discardedUnread(id, discarded);
    log.warn({ stream, discarded, reason: report.reason }, 'events lost unread');
    this.deps.status.warn(sub, report.reason, report.message);
  }

  private async finalize(sub: EventSubscription, log: Logger): Promise<ReconcileOutcome> {
    if (!hasFinalizer(sub, FINALIZER)) return {};
    const owner = `${sub.metadata?.namespace ?? ''}/${sub.metadata?.name ?? ''}`;
    const target = this.resolveStream(sub);
    const streams = new Set([
      sub.status?.consumer?.stream,
      'es' in target ? target.streamName : undefined,
    ]);
    // every consumer this subscription owns, also one created before status recorded it
    for (const stream of [...streams].filter((x): x is string => Boolean(x))) {
      for (const name of await this.deps.js.consumersOwnedBy(stream, owner)) {
        await this.deps.js.deleteConsumer(stream, name);
        log.info({ consumer: name }, 'consumer deleted with its subscription');
      }
    }
    await this.deps.subscriptions.replace(withoutFinalizer(sub, FINALIZER));
    this.deps.metrics?.forget(idOf(sub));
    return {};
  }
}
