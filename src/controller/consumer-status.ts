// status.consumer and the loss accounting of a subscription. Pure: the reconciler passes what
// it read (the consumer, the stream when it read it, the EventStream's cached status).
//
// The ack floor recorded in status.consumer only means something in the stream it was counted
// in, so status also records that stream's identity (its creation time) and the first sequence
// it had at the last check. From these, each reconcile finds what was lost unread:
// - a consumer recreated on a new stream of the same name lost what was pending in the old one
//   (stats.pending at the last check);
// - a consumer recreated after its stream discarded messages past the floor lost those;
// - a consumer that was there lost the sequences the stream discarded since the last check
//   that it had not delivered yet (stream sequences, so an upper bound: its filters might have
//   skipped some of them).
import type { ConsumerInfo, StreamInfo } from '@nats-io/jetstream';
import type { EventStream, EventSubscriptionStatus } from '../api/types.ts';
import { streamCreatedOf, type ResumeNote } from '../jetstream/consumer-plan.ts';

type ConsumerStatus = NonNullable<EventSubscriptionStatus['consumer']>;

export interface ConsumerReading {
  readonly info?: ConsumerInfo | undefined;
  /** the stream, when the reconciler read it (the consumer had to be recreated) */
  readonly stream?: StreamInfo | undefined;
  readonly note?: ResumeNote | undefined;
}

export interface Losses {
  /** stream sequences lost unread, found on this reconcile */
  readonly discarded: number;
  readonly identity: Pick<ConsumerStatus, 'streamCreated' | 'streamFirstSeq'>;
}

function identity(created: string | undefined, firstSeq: number | undefined): Losses['identity'] {
  return {
    ...(created === undefined ? {} : { streamCreated: created }),
    ...(firstSeq === undefined ? {} : { streamFirstSeq: firstSeq }),
  };
}

/** The stream's identity and first sequence now, and its first sequence at the last check. */
function streamNow(
  recorded: EventSubscriptionStatus['consumer'],
  info: ConsumerInfo,
  read: StreamInfo | undefined,
  es: EventStream | undefined,
): { created?: string | undefined; firstSeq?: number | undefined; before?: number | undefined } {
  // the same stream name: the recorded identity and first sequence still apply (a migration
  // to a new consumer included); a recreated stream comes with a fresh read
  const same = recorded?.stream === info.stream_name ? recorded : undefined;
  return {
    created: read?.created ?? streamCreatedOf(info) ?? same?.streamCreated,
    firstSeq: read?.state.first_seq ?? es?.status?.firstSeq,
    before: same?.streamFirstSeq,
  };
}

/** What this reconcile found lost unread, and the stream identity to record. */
export function lossesOf(
  prev: EventSubscriptionStatus,
  c: ConsumerReading,
  es: EventStream | undefined,
): Losses {
  const info = c.info;
  if (!info) return { discarded: 0, identity: {} };
  const { created, firstSeq, before } = streamNow(prev.consumer, info, c.stream, es);
  const found = (discarded: number, first = firstSeq): Losses => ({
    discarded,
    identity: identity(created, first),
  });
  if (c.note?.kind === 'stream-recreated') return found(prev.stats?.pending ?? 0);
  if (c.note?.kind === 'discarded') return found(c.note.discarded);
  if (before === undefined || firstSeq === undefined) return found(0);
  const read = Math.max(info.delivered.stream_seq, before - 1);
  return found(Math.max(0, firstSeq - 1 - read), Math.max(firstSeq, before));
}

/** status.consumer for the consumer as read, with the stream identity. */
export function consumerStatusOf(info: ConsumerInfo, losses: Losses): ConsumerStatus {
  const c = info.config;
  return {
    stream: info.stream_name,
    name: info.name,
    filterSubjects: [...(c.filter_subjects ?? (c.filter_subject ? [c.filter_subject] : []))],
    ackFloor: info.ack_floor.stream_seq,
    ...losses.identity,
  };
}

export interface LossReport {
  readonly reason: 'StreamRecreated' | 'MessagesDiscardedUnread';
  readonly message: string;
}

/** The Warning Event to record for what this reconcile found, if any. */
export function lossReport(
  stream: string,
  note: ResumeNote | undefined,
  discarded: number,
): LossReport | undefined {
  if (note?.kind === 'stream-recreated') {
    const was = note.previousCreated ? `, was ${note.previousCreated}` : '';
    const lost =
      discarded > 0
        ? `; ${String(discarded)} events pending in the old stream at the last check were lost with it`
        : '';
    return {
      reason: 'StreamRecreated',
      message: `JetStream stream ${stream} was recreated (created ${note.created}${was}); the consumer starts at its first message instead of after the old ack floor ${String(note.lastKnownAckFloor)}${lost}`,
    };
  }
  if (discarded <= 0) return undefined;
  return {
    reason: 'MessagesDiscardedUnread',
    message: `JetStream stream ${stream} discarded up to ${String(discarded)} messages (its maxAge, maxMsgs or maxBytes) before this subscription read them; see status.stats.discardedUnread`,
  };
}
