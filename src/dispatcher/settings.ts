// EventSubscription (+ the EventStreams it names) -> the typed settings one delivery loop runs
// with: durations parsed, defaults applied, the sink and consumer taken from status, the reply
// stream's subject prefix and the dead letter resolved. Pure: no I/O.
import { parseDuration } from '../api/duration.ts';
import {
  DELIVERY_DEFAULTS,
  type EventStream,
  type EventSubscription,
  type SinkSpec,
} from '../api/types.ts';
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

export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

/** Parses and defaults `spec.delivery`; throws DurationError for a malformed duration. */
export function deliverySettings(
  sub: EventSubscription,
  clusterDomain = DEFAULT_CLUSTER_DOMAIN,
): DeliverySettings {
  const d = { ...DELIVERY_DEFAULTS, ...sub.spec.delivery };
  const dl = sub.spec.delivery?.deadLetter;
  let deadLetter: DeadLetterTarget | undefined;
  if (dl?.subject !== undefined && dl.subject !== '') {
    deadLetter = { kind: 'subject', subject: dl.subject };
  } else if (dl?.sink !== undefined) {
    deadLetter = {
      kind: 'sink',
      uri: sinkUriOf(dl.sink, sub.metadata?.namespace ?? 'default', clusterDomain),
    };
  }
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

/**
 * The URI of a dead-letter sink. An absolute uri is used as it is; a ref becomes the
 * Service's cluster DNS name (a Deployment ref: the Service eventwire manages, named after
 * the Deployment) on the given numeric port (80 by default). A named port cannot be resolved
 * without reading the Service, so it is rejected.
 */
export function sinkUriOf(sink: SinkSpec, namespace: string, clusterDomain: string): string {
  if (!sink.ref) return sink.uri ?? '';
  const port = sink.ref.port ?? 80;
  if (typeof port !== 'number') {
    throw new Error(
      `deadLetter.sink.ref.port ${JSON.stringify(port)} is a name; give the port number`,
    );
  }
  return `http://${sink.ref.name}.${namespace}.svc.${clusterDomain}:${port}${sink.uri ?? ''}`;
}

function isReady(sub: EventSubscription): boolean {
  return (sub.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
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
export function workerSpecFor(
  sub: EventSubscription,
  streams: StreamLookup,
  clusterDomain = DEFAULT_CLUSTER_DOMAIN,
): SettingsResult {
  const id = `${sub.metadata?.namespace ?? ''}/${sub.metadata?.name ?? ''}`;
  const target = targetOf(sub, id);
  if (!('sinkUri' in target)) return target;
  const { sinkUri, stream, consumer } = target;
  const reply = replyOf(sub, streams);
  if (reply !== undefined && 'ok' in reply) return reply;
  let delivery: DeliverySettings;
  try {
    delivery = deliverySettings(sub, clusterDomain);
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
