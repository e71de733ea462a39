// EventSubscription -> durable pull consumer: the desired configuration, its name, and the
// plan to reach it from what exists. Pure: no I/O.
//
// JetStream updates ack_wait, max_deliver, max_ack_pending, filter_subjects, description and
// metadata in place. The deliver policy (startFrom, startTime) cannot change: such a change
// gets a new consumer name, and the new consumer starts right after the old consumer's ack
// floor, so no event is skipped (events acknowledged out of order above the floor are
// delivered again: at least once, never lost).
//
// Ordered subscriptions (`key`, `strict`) get a consumer with a pinned-client priority group
// (NATS 2.11+): one dispatcher replica at a time receives its messages (docs/ordering.md,
// ADR 0011). The priority policy is part of the consumer's identity, so switching a
// subscription between `none` and an ordered mode moves it to a new consumer at the old one's
// ack floor (ADR 0002) instead of changing how a live consumer hands out messages.
import { createHash } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  ReplayPolicy,
  type ConsumerConfig,
  type PriorityPolicy,
  type ConsumerInfo,
} from '@nats-io/jetstream';
import { msToNanos } from '../api/duration.ts';
import { OWNER_METADATA_KEY, type FieldChange } from './stream-plan.ts';

/**
 * Deliveries JetStream allows beyond the configured retries. The dispatcher dead-letters
 * after `retry` retries itself; the headroom keeps a message deliverable while the dead
 * letter target is unavailable or a dispatcher dies mid-attempt, so JetStream never gives
 * up on a message the dispatcher has not settled.
 */
export const MAX_DELIVER_HEADROOM = 100;

/**
 * Consumer metadata naming the creation time of the stream the consumer was created on: the
 * identity of the sequence space its ack floor counts in. The consumer dies with its stream,
 * so the key always names the stream it is on.
 */
export const STREAM_CREATED_METADATA_KEY = 'eventwire.io/stream-created';

/** Added to delivery.timeout for ack_wait: the dispatcher's own work after an attempt. */
export const ACK_WAIT_GRACE_MS = 10_000;

/** The priority group every dispatcher replica pulls an ordered subscription's consumer in. */
export const PIN_GROUP = 'eventwire';

/**
 * priority_timeout of an ordered subscription's consumer: the pin moves to another replica's
 * waiting pull when the pinned replica has not pulled for this long (it pulls every third of
 * it, see src/dispatcher/puller.ts). The failover time after a pinned replica dies.
 */
export const PIN_TIMEOUT_MS = 6_000;

export type OrderingMode = 'none' | 'key' | 'strict';

const PINNED_CLIENT: PriorityPolicy = 'pinned_client';
const NO_PRIORITY: PriorityPolicy = 'none';

/** The pinned-client priority group of an ordered subscription's consumer. */
export interface PinSettings {
  readonly group: string;
  readonly timeoutMs: number;
}

export type StartPosition =
  | { readonly policy: 'new' }
  | { readonly policy: 'all' }
  | { readonly policy: 'time'; readonly startTime: string }
  | { readonly policy: 'sequence'; readonly startSeq: number };

export interface ConsumerSettings {
  readonly stream: string;
  readonly name: string;
  readonly filterSubjects: readonly string[];
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly maxAckPending: number;
  readonly start: StartPosition;
  /** namespace/name of the EventSubscription */
  readonly owner: string;
  /** ordered subscriptions: one replica at a time is pinned; none: every replica pulls */
  readonly pin?: PinSettings | undefined;
}

export interface ConsumerSettingsInput {
  readonly namespace: string;
  readonly name: string;
  readonly stream: string;
  readonly filterSubjects: readonly string[];
  readonly timeoutMs: number;
  readonly retry: number;
  readonly maxInFlight: number;
  readonly start: StartPosition;
  readonly ordering: OrderingMode;
}

function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '_');
}

function pinFor(ordering: OrderingMode): PinSettings | undefined {
  return ordering === 'none' ? undefined : { group: PIN_GROUP, timeoutMs: PIN_TIMEOUT_MS };
}

/**
 * The consumer name: namespace, name and a hash of its identity: what JetStream cannot change
 * in place (the stream and the start position) and how it hands out messages (shared, or
 * pinned to one replica for ordered subscriptions), so such a change yields a new name. The
 * identity of a `none` subscription is what it was before priority groups existed.
 */
export function consumerNameFor(input: ConsumerSettingsInput): string {
  const pin = pinFor(input.ordering);
  const identity: unknown[] = [input.stream, input.start];
  if (pin !== undefined) identity.push({ priority: PINNED_CLIENT, group: pin.group });
  const key = JSON.stringify(identity);
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8);
  const base = `${sanitize(input.namespace)}_${sanitize(input.name)}`;
  return `${base.length > 100 ? base.slice(0, 100) : base}_${hash}`;
}

export function consumerSettingsFor(input: ConsumerSettingsInput): ConsumerSettings {
  return {
    stream: input.stream,
    name: consumerNameFor(input),
    filterSubjects: [...input.filterSubjects].sort(),
    ackWaitMs: input.timeoutMs + ACK_WAIT_GRACE_MS,
    maxDeliver: input.retry + 1 + MAX_DELIVER_HEADROOM,
    maxAckPending: input.maxInFlight,
    start: input.start,
    owner: `${input.namespace}/${input.name}`,
    pin: pinFor(input.ordering),
  };
}

function deliverFields(start: StartPosition): Partial<ConsumerConfig> {
  switch (start.policy) {
    case 'new':
      return { deliver_policy: DeliverPolicy.New };
    case 'all':
      return { deliver_policy: DeliverPolicy.All };
    case 'time':
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.startTime };
    case 'sequence':
      return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start.startSeq };
  }
}

/** The priority fields; JetStream changes them in place, the name carries the policy. */
function priorityFields(s: ConsumerSettings): Partial<ConsumerConfig> {
  if (s.pin === undefined) return {};
  return {
    priority_policy: PINNED_CLIENT,
    priority_groups: [s.pin.group],
    priority_timeout: msToNanos(s.pin.timeoutMs),
  };
}

function mutableFields(s: ConsumerSettings): Partial<ConsumerConfig> {
  return {
    description: `eventwire EventSubscription ${s.owner}`,
    filter_subjects: [...s.filterSubjects],
    ack_wait: msToNanos(s.ackWaitMs),
    max_deliver: s.maxDeliver,
    max_ack_pending: s.maxAckPending,
    ...priorityFields(s),
    metadata: { [OWNER_METADATA_KEY]: s.owner },
  };
}

/** The full configuration to create the consumer with, starting at `start`. */
export function toConsumerConfig(
  s: ConsumerSettings,
  start = s.start,
  streamCreated?: string,
): Partial<ConsumerConfig> {
  const mutable = mutableFields(s);
  return {
    durable_name: s.name,
    ack_policy: AckPolicy.Explicit,
    replay_policy: ReplayPolicy.Instant,
    ...deliverFields(start),
    ...mutable,
    metadata: {
      ...mutable.metadata,
      ...(streamCreated === undefined ? {} : { [STREAM_CREATED_METADATA_KEY]: streamCreated }),
    },
  };
}

/** The creation time of the stream a consumer was created on, from its metadata. */
export function streamCreatedOf(info: ConsumerInfo | undefined): string | undefined {
  return info?.config.metadata?.[STREAM_CREATED_METADATA_KEY];
}

function sortedSubjects(c: Partial<ConsumerConfig>): string[] {
  const list = c.filter_subjects ?? (c.filter_subject ? [c.filter_subject] : []);
  return [...list].sort();
}

function priorityPolicyOf(c: Partial<ConsumerConfig>): string {
  return c.priority_policy ?? NO_PRIORITY;
}

/** The mutable differences between an existing consumer and the desired settings. */
export function diffConsumer(
  existing: Partial<ConsumerConfig>,
  s: ConsumerSettings,
): FieldChange[] {
  const want = mutableFields(s);
  const pairs: [string, unknown, unknown][] = [
    ['filterSubjects', sortedSubjects(existing), want.filter_subjects],
    ['ackWait', existing.ack_wait, want.ack_wait],
    ['maxDeliver', existing.max_deliver, want.max_deliver],
    ['maxAckPending', existing.max_ack_pending, want.max_ack_pending],
    ['priorityPolicy', priorityPolicyOf(existing), want.priority_policy ?? NO_PRIORITY],
    ['priorityGroups', existing.priority_groups ?? [], want.priority_groups ?? []],
    ['priorityTimeout', existing.priority_timeout ?? 0, want.priority_timeout ?? 0],
    ['owner', existing.metadata?.[OWNER_METADATA_KEY], s.owner],
  ];
  return pairs.flatMap(([field, from, to]) => {
    const a = JSON.stringify(from);
    const b = JSON.stringify(to);
    return a === b ? [] : [{ field, from: a, to: b }];
  });
}

/**
 * Why a recreated consumer does not simply resume after its last recorded ack floor:
 * - `stream-recreated`: the stream is not the one the floor counts in (another creation time,
 *   or its sequences went backwards), so the consumer starts at the new stream's first message;
 * - `discarded`: the stream discarded messages after the floor before they were read (its
 *   limits), so the consumer starts at the stream's first message and `discarded` stream
 *   sequences were lost (an upper bound: the filters might have skipped some of them).
 */
export type ResumeNote =
  | {
      readonly kind: 'stream-recreated';
      readonly previousCreated: string | undefined;
      readonly created: string;
      readonly lastKnownAckFloor: number;
    }
  | { readonly kind: 'discarded'; readonly discarded: number; readonly firstSeq: number };

export type ConsumerPlan =
  | { readonly kind: 'none' }
  /** the stream to resume in is missing: create nothing until it is there */
  | { readonly kind: 'wait'; readonly reason: string }
  | {
      readonly kind: 'create';
      readonly config: Partial<ConsumerConfig>;
      readonly note?: ResumeNote;
    }
  | {
      readonly kind: 'update';
      readonly config: Partial<ConsumerConfig>;
      readonly changes: readonly FieldChange[];
    }
  | {
      /** create the new consumer after the old one's ack floor, then delete the old one */
      readonly kind: 'migrate';
      readonly config: Partial<ConsumerConfig>;
      readonly from: { readonly stream: string; readonly name: string };
    };

export interface ConsumerObservation {
  /** the consumer with the desired name, when it exists */
  readonly current?: ConsumerInfo;
  /** the consumer the subscription used before (status.consumer), when it still exists */
  readonly previous?: ConsumerInfo;
  /** the last ack floor recorded in status for the previous consumer, if any */
  readonly lastKnownAckFloor?: number;
  /** the creation time of the stream that floor counts in, when status recorded it */
  readonly lastKnownStreamCreated?: string;
  /** the stream as it is now (read when a consumer must be recreated) */
  readonly stream?: StreamIdentity;
}

/** What identifies a stream's sequence space, and where that space starts and ends now. */
export interface StreamIdentity {
  readonly created: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
}

/**
 * Is `stream` the stream an ack floor recorded earlier counts in? Its creation time says so
 * when status recorded it; otherwise a floor past the stream's last sequence means the
 * sequences went backwards, i.e. a new stream.
 */
export function sameStream(
  stream: StreamIdentity,
  lastKnownAckFloor: number,
  lastKnownCreated: string | undefined,
): boolean {
  if (lastKnownCreated !== undefined) return lastKnownCreated === stream.created;
  return lastKnownAckFloor <= stream.lastSeq;
}

/** The consumer to recreate after its last recorded ack floor (deleted out of band, or lost). */
function planResume(
  s: ConsumerSettings,
  floor: number,
  seen: ConsumerObservation,
): Extract<ConsumerPlan, { kind: 'create' | 'wait' }> {
  const stream = seen.stream;
  if (stream === undefined) {
    // a consumer created now could land in a stream created right after this look-up, at a
    // sequence that means nothing there
    return { kind: 'wait', reason: `JetStream stream ${s.stream} does not exist` };
  }
  if (!sameStream(stream, floor, seen.lastKnownStreamCreated)) {
    return {
      kind: 'create',
      config: toConsumerConfig(s, { policy: 'all' }, stream.created),
      note: {
        kind: 'stream-recreated',
        previousCreated: seen.lastKnownStreamCreated,
        created: stream.created,
        lastKnownAckFloor: floor,
      },
    };
  }
  const discarded = stream.firstSeq - 1 - floor;
  if (discarded > 0) {
    return {
      kind: 'create',
      config: toConsumerConfig(s, { policy: 'all' }, stream.created),
      note: { kind: 'discarded', discarded, firstSeq: stream.firstSeq },
    };
  }
  return {
    kind: 'create',
    config: toConsumerConfig(s, { policy: 'sequence', startSeq: floor + 1 }, stream.created),
  };
}

export function planConsumer(s: ConsumerSettings, seen: ConsumerObservation): ConsumerPlan {
  if (seen.current) {
    const changes = diffConsumer(seen.current.config, s);
    if (changes.length === 0) return { kind: 'none' };
    const mutable = mutableFields(s);
    // keep the metadata eventwire does not diff (the stream identity)
    const metadata = { ...seen.current.config.metadata, ...mutable.metadata };
    // every priority field comes from the settings: a shared consumer given a priority group
    // out of band loses it again
    const kept: Partial<ConsumerConfig> = { ...seen.current.config };
    delete kept.priority_policy;
    delete kept.priority_groups;
    delete kept.priority_timeout;
    return { kind: 'update', config: { ...kept, ...mutable, metadata }, changes };
  }
  if (seen.previous?.stream_name === s.stream) {
    const startSeq = seen.previous.ack_floor.stream_seq + 1;
    const created = streamCreatedOf(seen.previous) ?? seen.stream?.created;
    return {
      kind: 'migrate',
      config: toConsumerConfig(s, { policy: 'sequence', startSeq }, created),
      from: { stream: seen.previous.stream_name, name: seen.previous.name },
    };
  }
  if (seen.lastKnownAckFloor !== undefined) {
    // the consumer vanished (deleted out of band, or with its stream): resume after the last
    // recorded floor, in the same stream only
    return planResume(s, seen.lastKnownAckFloor, seen);
  }
  return { kind: 'create', config: toConsumerConfig(s, s.start, seen.stream?.created) };
}
