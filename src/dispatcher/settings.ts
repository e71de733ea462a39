// EventSubscription (+ the EventStreams it names) -> the typed settings one delivery loop runs
// with: durations parsed, defaults applied, the sink and consumer taken from status, the reply
// stream's subject prefix and the dead letter resolved. Pure: no I/O.
import { parseDuration } from '../api/duration.ts';
import { DELIVERY_DEFAULTS, type EventStream, type EventSubscription } from '../api/types.ts';
import type { Filter } from '../cloudevents/filter-dialect.ts';

export type DeadLetterTarget =
  | { readonly kind: 'subject'; readonly subject: string }
  | { readonly kind: 'sink'; readonly uri: string };

export interface DeliverySettings {
  readonly format: 'binary' | 'structured';
  readonly timeoutMs: number;
  /** retries after the first attempt */
  readonly retry: number;
  readonly backoffPolicy: 'exponential' | 'linear';
  readonly backoffDelayMs: number;
  readonly backoffMaxMs: number;
  /** 0 ignores Retry-After */
  readonly retryAfterMaxMs: number;
  readonly maxInFlight: number;
  readonly ordering: 'none' | 'key' | 'strict';
  readonly orderingKey?: string | undefined;
  readonly deadLetter?: DeadLetterTarget | undefined;
}

/** Everything one subscription's delivery loop needs; equal JSON means nothing changed. */
export interface WorkerSpec {
  /** namespace/name of the EventSubscription */
  readonly id: string;
  readonly sinkUri: string;
  readonly stream: string;
  readonly consumer: string;
  readonly filters: readonly Filter[];
  readonly delivery: DeliverySettings;
  /** replies are published on `<subjectPrefix>.enc(type)` */
  readonly reply?: { readonly subjectPrefix: string } | undefined;
}

export type SettingsResult =
  | { readonly ok: true; readonly spec: WorkerSpec }
  | { readonly ok: false; readonly reason: string; readonly message: string };

/** The reason of a spec the controller has not checked yet; see reconciled(). */
export const NOT_RECONCILED = 'NotReconciled';

/**
 * The dead letter of a subscription. A dead-letter sink is called only at the URI the
 * controller resolved into status.deadLetterSinkUri, under the same rules as the sink (same
 * namespace, external URIs allowed or not); without it there is nothing to serve yet.
 */
function deadLetterOf(sub: EventSubscription): DeadLetterTarget | undefined {
  const dl = sub.spec.delivery?.deadLetter;
  if (dl?.subject !== undefined && dl.subject !== '')
    return { kind: 'subject', subject: dl.subject };
  if (dl?.sink === undefined) return undefined;
  const uri = sub.status?.deadLetterSinkUri;
  if (uri === undefined) {
    throw new Error('status.deadLetterSinkUri is not set: the controller has not resolved it');
  }
  return { kind: 'sink', uri };
}

/** Parses and defaults `spec.delivery`; throws DurationError for a malformed duration. */
export function deliverySettings(sub: EventSubscription): DeliverySettings {
  const d = { ...DELIVERY_DEFAULTS, ...sub.spec.delivery };
  const deadLetter = deadLetterOf(sub);
  return {
    format: d.format,
    timeoutMs: parseDuration(d.timeout, 'spec.delivery.timeout'),
    retry: d.retry,
    backoffPolicy: d.backoffPolicy,
    backoffDelayMs: parseDuration(d.backoffDelay, 'spec.delivery.backoffDelay'),
    backoffMaxMs: parseDuration(d.backoffMax, 'spec.delivery.backoffMax'),
    retryAfterMaxMs: parseDuration(d.retryAfterMax, 'spec.delivery.retryAfterMax'),
    maxInFlight: d.maxInFlight,
    ordering: d.ordering,
    orderingKey: d.ordering === 'key' ? (d.orderingKey ?? 'partitionkey') : undefined,
    deadLetter,
  };
}

function isReady(sub: EventSubscription): boolean {
  return (sub.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/**
 * Has the controller checked this generation of the spec? Until it has, the dead letter, the
 * reply stream and the filters may name targets it has not vetted, so a new spec is not
 * served (a running worker keeps the last vetted spec, see dispatcher.ts).
 */
function reconciled(sub: EventSubscription): boolean {
  const ready = (sub.status?.conditions ?? []).find((c) => c.type === 'Ready');
  const generation = sub.metadata?.generation;
  return generation === undefined || ready?.observedGeneration === generation;
}

/** An EventStream's subject prefix, looked up by namespace and name. */
export type StreamLookup = (namespace: string, name: string) => EventStream | undefined;

function replyOf(
  sub: EventSubscription,
  streams: StreamLookup,
): SettingsResult | { readonly subjectPrefix: string } | undefined {
  const ref = sub.spec.reply?.stream;
  if (ref === undefined) return undefined;
  const ns = ref.namespace ?? sub.metadata?.namespace ?? 'default';
  const prefix = streams(ns, ref.name)?.spec.subjectPrefix;
  if (prefix === undefined) {
    return {
      ok: false,
      reason: 'ReplyStreamNotFound',
      message: `the reply stream ${ns}/${ref.name} does not exist`,
    };
  }
  return { subjectPrefix: prefix };
}

function targetOf(
  sub: EventSubscription,
  id: string,
): SettingsResult | { sinkUri: string; stream: string; consumer: string } {
  const sinkUri = sub.status?.sinkUri;
  const consumer = sub.status?.consumer;
  if (!reconciled(sub)) {
    return {
      ok: false,
      reason: NOT_RECONCILED,
      message: `${id}: the controller has not checked generation ${String(sub.metadata?.generation)} yet`,
    };
  }
  if (!isReady(sub)) return { ok: false, reason: 'NotReady', message: `${id} is not Ready` };
  if (sinkUri === undefined || consumer?.stream === undefined || consumer.name === undefined) {
    return {
      ok: false,
      reason: 'NoStatus',
      message: `${id} has no status.sinkUri or status.consumer yet`,
    };
  }
  return { sinkUri, stream: consumer.stream, consumer: consumer.name };
}

/**
 * The worker spec of a subscription the dispatcher should serve, or why not: it must be
 * Ready and have status.sinkUri and status.consumer.
 */
export function workerSpecFor(sub: EventSubscription, streams: StreamLookup): SettingsResult {
  const id = `${sub.metadata?.namespace ?? ''}/${sub.metadata?.name ?? ''}`;
  const target = targetOf(sub, id);
  if (!('sinkUri' in target)) return target;
  const { sinkUri, stream, consumer } = target;
  const reply = replyOf(sub, streams);
  if (reply !== undefined && 'ok' in reply) return reply;
  let delivery: DeliverySettings;
  try {
    delivery = deliverySettings(sub);
  } catch (err) {
    return { ok: false, reason: 'InvalidDelivery', message: (err as Error).message };
  }
  return {
    ok: true,
    spec: {
      id,
      sinkUri,
      stream,
      consumer,
      filters: sub.spec.filters ?? [],
      delivery,
      reply,
    },
  };
}
