import type { ConsumerInfo } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import {
  ACK_WAIT_GRACE_MS,
  MAX_DELIVER_HEADROOM,
  PIN_GROUP,
  PIN_TIMEOUT_MS,
  consumerSettingsFor,
  planConsumer,
  toConsumerConfig,
  type ConsumerSettingsInput,
} from './consumer-plan.ts';

const input: ConsumerSettingsInput = {
  namespace: 'shop',
  name: 'order-created',
  stream: 'SHOP',
  filterSubjects: ['shop.com.example.order.created'],
  timeoutMs: 30_000,
  retry: 10,
  maxInFlight: 32,
  start: { policy: 'new' },
  ordering: 'none',
};

function info(cfg: ReturnType<typeof toConsumerConfig>, ackFloor = 0): ConsumerInfo {
  return {
    stream_name: 'SHOP',
    name: cfg.durable_name ?? '',
    config: cfg,
    ack_floor: { stream_seq: ackFloor, consumer_seq: ackFloor, last_active: 0 },
  } as unknown as ConsumerInfo;
}

describe('consumerSettingsFor', () => {
  it('maps the delivery settings to the consumer', () => {
    const s = consumerSettingsFor(input);
    const cfg = toConsumerConfig(s);
    expect(cfg.ack_wait).toBe((30_000 + ACK_WAIT_GRACE_MS) * 1e6);
    expect(cfg.max_deliver).toBe(11 + MAX_DELIVER_HEADROOM);
    expect(cfg.max_ack_pending).toBe(32);
    expect(cfg.filter_subjects).toEqual(['shop.com.example.order.created']);
    expect(cfg.deliver_policy).toBe('new');
    expect(cfg.ack_policy).toBe('explicit');
    expect(s.name).toMatch(/^shop_order-created_[0-9a-f]{8}$/);
  });

  it('names the consumer after what cannot change in place', () => {
    const a = consumerSettingsFor(input).name;
    expect(consumerSettingsFor({ ...input, retry: 3, maxInFlight: 1 }).name).toBe(a);
    expect(consumerSettingsFor({ ...input, start: { policy: 'all' } }).name).not.toBe(a);
    expect(consumerSettingsFor({ ...input, stream: 'OTHER' }).name).not.toBe(a);
  });
});

describe('the priority group of ordered subscriptions', () => {
  it('none: one consumer every replica shares, named as before priority groups existed', () => {
    const s = consumerSettingsFor(input);
    const cfg = toConsumerConfig(s);
    expect(cfg.priority_policy).toBeUndefined();
    expect(cfg.priority_groups).toBeUndefined();
    // the name the code before priority groups gave it: existing none consumers keep it
    expect(s.name).toBe('shop_order-created_5deb397a');
  });

  it('key and strict: a pinned-client group, so one replica at a time receives the messages', () => {
    for (const ordering of ['key', 'strict'] as const) {
      const cfg = toConsumerConfig(consumerSettingsFor({ ...input, ordering }));
      expect(cfg.priority_policy).toBe('pinned_client');
      expect(cfg.priority_groups).toEqual([PIN_GROUP]);
      expect(cfg.priority_timeout).toBe(PIN_TIMEOUT_MS * 1e6);
    }
  });

  it('the priority policy is identity: switching to or from an ordered mode migrates at the ack floor', () => {
    const none = consumerSettingsFor(input);
    const key = consumerSettingsFor({ ...input, ordering: 'key' });
    const strict = consumerSettingsFor({ ...input, ordering: 'strict' });
    expect(key.name).not.toBe(none.name);
    // key and strict differ only in how the dispatcher schedules: the same consumer
    expect(strict.name).toBe(key.name);
    const plan = planConsumer(key, { previous: info(toConsumerConfig(none), 41) });
    expect(plan).toMatchObject({
      kind: 'migrate',
      from: { name: none.name },
      config: { deliver_policy: 'by_start_sequence', opt_start_seq: 42 },
    });
    if (plan.kind === 'migrate') expect(plan.config.priority_policy).toBe('pinned_client');
  });

  it('repairs priority settings changed out of band in place', () => {
    const key = consumerSettingsFor({ ...input, ordering: 'key' });
    const drifted = { ...toConsumerConfig(key), priority_timeout: 120e9 };
    const plan = planConsumer(key, { current: info(drifted) });
    expect(plan).toMatchObject({ kind: 'update', changes: [{ field: 'priorityTimeout' }] });
    if (plan.kind === 'update') expect(plan.config.priority_timeout).toBe(PIN_TIMEOUT_MS * 1e6);
    const none = consumerSettingsFor(input);
    const pinned = { ...toConsumerConfig(none), ...toConsumerConfig(key), durable_name: none.name };
    const back = planConsumer(none, { current: info(pinned) });
    expect(back.kind).toBe('update');
    if (back.kind === 'update') {
      expect(back.config.priority_policy).toBeUndefined();
      expect(back.config.priority_groups).toBeUndefined();
    }
  });
});

describe('planConsumer', () => {
  const s = consumerSettingsFor(input);

  it('creates a missing consumer with the configured start', () => {
    const plan = planConsumer(s, {});
    expect(plan.kind).toBe('create');
    if (plan.kind === 'create') expect(plan.config.deliver_policy).toBe('new');
  });

  it('does nothing when the consumer matches, and updates mutable drift in place', () => {
    expect(planConsumer(s, { current: info(toConsumerConfig(s)) })).toEqual({ kind: 'none' });
    const drifted = info({
      ...toConsumerConfig(s),
      max_ack_pending: 1,
      filter_subjects: ['shop.>'],
    });
    const plan = planConsumer(s, { current: drifted });
    expect(plan.kind).toBe('update');
    if (plan.kind === 'update') {
      expect(plan.changes.map((c) => c.field)).toEqual(['filterSubjects', 'maxAckPending']);
      expect(plan.config.max_ack_pending).toBe(32);
      expect(plan.config.durable_name).toBe(s.name);
    }
  });

  it('migrates an immutable change to a new consumer starting after the old ack floor', () => {
    const old = consumerSettingsFor({ ...input, start: { policy: 'all' } });
    const plan = planConsumer(s, { previous: info(toConsumerConfig(old), 41) });
    expect(plan).toMatchObject({
      kind: 'migrate',
      from: { stream: 'SHOP', name: old.name },
      config: { durable_name: s.name, deliver_policy: 'by_start_sequence', opt_start_seq: 42 },
    });
  });

  it('recreates a consumer deleted out of band after its last recorded ack floor', () => {
    // without the stream to compare with, nothing is created: the floor may mean nothing there
    expect(planConsumer(s, { lastKnownAckFloor: 99 })).toMatchObject({ kind: 'wait' });
    const same = { created: '2026-12-01T10:00:00Z', firstSeq: 1, lastSeq: 150 };
    const again = planConsumer(s, {
      lastKnownAckFloor: 99,
      lastKnownStreamCreated: same.created,
      stream: same,
    });
    expect(again).toEqual({
      kind: 'create',
      config: expect.objectContaining({ opt_start_seq: 100 }) as unknown,
    });
  });
});

describe('planConsumer after the consumer vanished', () => {
  const s = consumerSettingsFor(input);

  it('starts at the first message of a stream recreated since the floor was recorded', () => {
    // a memory stream after a nats-server restart: same name, new creation time, seq 1 again
    const stream = { created: '2026-12-02T09:00:00Z', firstSeq: 1, lastSeq: 40 };
    const plan = planConsumer(s, {
      lastKnownAckFloor: 30,
      lastKnownStreamCreated: '2026-12-01T10:00:00Z',
      stream,
    });
    expect(plan).toMatchObject({
      kind: 'create',
      config: { deliver_policy: 'all' },
      note: { kind: 'stream-recreated', lastKnownAckFloor: 30, created: stream.created },
    });
    if (plan.kind === 'create') expect(plan.config.opt_start_seq).toBeUndefined();
  });

  it('without a recorded creation time, takes sequences that went backwards for a new stream', () => {
    const fresh = { created: '2026-12-02T09:00:00Z', firstSeq: 0, lastSeq: 0 };
    expect(planConsumer(s, { lastKnownAckFloor: 30, stream: fresh })).toMatchObject({
      config: { deliver_policy: 'all' },
      note: { kind: 'stream-recreated' },
    });
    const grown = { created: '2026-12-02T09:00:00Z', firstSeq: 1, lastSeq: 30 };
    expect(planConsumer(s, { lastKnownAckFloor: 30, stream: grown })).toMatchObject({
      config: { opt_start_seq: 31 },
    });
  });

  it('counts the messages the stream discarded after the floor before they were read', () => {
    const created = '2026-12-01T10:00:00Z';
    const stream = { created, firstSeq: 71, lastSeq: 120 };
    const plan = planConsumer(s, {
      lastKnownAckFloor: 20,
      lastKnownStreamCreated: created,
      stream,
    });
    expect(plan).toMatchObject({
      config: { deliver_policy: 'all' },
      note: { kind: 'discarded', discarded: 50, firstSeq: 71 },
    });
  });
});
