import type { ConsumerInfo, StreamInfo } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import type { EventStream, EventSubscriptionStatus } from '../api/types.ts';
import { STREAM_CREATED_METADATA_KEY } from '../jetstream/consumer-plan.ts';
import { consumerStatusOf, lossesOf, lossReport } from './consumer-status.ts';

const T0 = '2026-12-01T10:00:00Z';
const T1 = '2026-12-02T09:00:00Z';

function consumer(delivered: number, ackFloor: number, created = T0): ConsumerInfo {
  return {
    stream_name: 'SHOP',
    name: 'c',
    config: { filter_subjects: ['shop.>'], metadata: { [STREAM_CREATED_METADATA_KEY]: created } },
    delivered: { stream_seq: delivered, consumer_seq: delivered },
    ack_floor: { stream_seq: ackFloor, consumer_seq: ackFloor },
    num_pending: 0,
    num_ack_pending: 0,
  } as unknown as ConsumerInfo;
}

const streamWithFirst = (firstSeq: number): EventStream => ({
  spec: { subjectPrefix: 'shop' },
  status: { firstSeq },
});

const recorded = (streamFirstSeq: number, pending = 0): EventSubscriptionStatus => ({
  consumer: { stream: 'SHOP', name: 'c', ackFloor: 5, streamCreated: T0, streamFirstSeq },
  stats: { pending },
});

describe('lossesOf', () => {
  it('counts sequences the stream discarded past what the consumer delivered, once', () => {
    // delivered up to 5, the stream now starts at 26: 6..25 were never read
    const first = lossesOf(recorded(1), { info: consumer(5, 5) }, streamWithFirst(26));
    expect(first).toEqual({ discarded: 20, identity: { streamCreated: T0, streamFirstSeq: 26 } });
    // the next check, nothing new discarded: nothing counted again
    expect(lossesOf(recorded(26), { info: consumer(5, 5) }, streamWithFirst(26)).discarded).toBe(0);
    // the consumer read on from 26 meanwhile and more was discarded past it: only that part
    expect(lossesOf(recorded(26), { info: consumer(30, 30) }, streamWithFirst(41)).discarded).toBe(
      10,
    );
  });

  it('counts nothing for discards the consumer had already delivered', () => {
    expect(lossesOf(recorded(1), { info: consumer(50, 50) }, streamWithFirst(26)).discarded).toBe(
      0,
    );
  });

  it('takes no first check as a loss (a status written before identities were recorded)', () => {
    const legacy: EventSubscriptionStatus = {
      consumer: { stream: 'SHOP', name: 'c', ackFloor: 5 },
    };
    expect(lossesOf(legacy, { info: consumer(5, 5) }, streamWithFirst(26))).toEqual({
      discarded: 0,
      identity: { streamCreated: T0, streamFirstSeq: 26 },
    });
  });

  it('counts what was pending in a recreated stream as lost, and records the new identity', () => {
    const stream = { created: T1, state: { first_seq: 1 } } as unknown as StreamInfo;
    const losses = lossesOf(
      recorded(1, 7),
      {
        info: consumer(0, 0, T1),
        stream,
        note: { kind: 'stream-recreated', previousCreated: T0, created: T1, lastKnownAckFloor: 5 },
      },
      streamWithFirst(1),
    );
    expect(losses).toEqual({ discarded: 7, identity: { streamCreated: T1, streamFirstSeq: 1 } });
    expect(consumerStatusOf(consumer(0, 0, T1), losses)).toEqual({
      stream: 'SHOP',
      name: 'c',
      filterSubjects: ['shop.>'],
      ackFloor: 0,
      streamCreated: T1,
      streamFirstSeq: 1,
    });
  });
});

describe('lossReport', () => {
  it('says what was lost, or nothing', () => {
    expect(lossReport('SHOP', undefined, 0)).toBeUndefined();
    expect(lossReport('SHOP', undefined, 20)).toMatchObject({
      reason: 'MessagesDiscardedUnread',
      message: expect.stringContaining('up to 20 messages') as unknown,
    });
    const note = {
      kind: 'stream-recreated',
      previousCreated: T0,
      created: T1,
      lastKnownAckFloor: 30,
    } as const;
    expect(lossReport('SHOP', note, 0)?.reason).toBe('StreamRecreated');
    expect(lossReport('SHOP', note, 4)?.message).toContain('4 events pending in the old stream');
  });
});
