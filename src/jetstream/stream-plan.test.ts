import { describe, expect, it } from 'vitest';
import {
  defaultStreamName,
  describeImmutable,
  diffStream,
  replicasBeyondCluster,
  toStreamConfig,
  type StreamSettings,
} from './stream-plan.ts';

const base: StreamSettings = {
  name: 'SHOP',
  subjects: ['shop.>'],
  storage: 'file',
  replicas: 1,
  retention: 'limits',
  maxAgeMs: 604_800_000,
  maxBytes: -1,
  maxMsgs: -1,
  maxMsgSize: -1,
  discard: 'old',
  duplicateWindowMs: 120_000,
  owner: 'shop/shop',
};

describe('defaultStreamName', () => {
  it('derives an upper-case JetStream-safe name from namespace and name', () => {
    expect(defaultStreamName('shop', 'orders')).toBe('SHOP_ORDERS');
    expect(defaultStreamName('team-a', 'web.events')).toBe('TEAM-A_WEB_EVENTS');
  });

  it('keeps long names within 64 characters and distinct', () => {
    const a = defaultStreamName('n'.repeat(63), 'a'.repeat(80));
    const b = defaultStreamName('n'.repeat(63), 'b'.repeat(80));
    expect(a.length).toBeLessThanOrEqual(64);
    expect(a).not.toBe(b);
  });
});

describe('diffStream', () => {
  it('finds nothing to do when the stream matches', () => {
    expect(diffStream(toStreamConfig(base), base)).toEqual({ immutable: [], mutable: [] });
  });

  it('applies limit changes in place', () => {
    const d = diffStream(toStreamConfig(base), { ...base, maxAgeMs: 3_600_000, discard: 'new' });
    expect(d.immutable).toEqual([]);
    expect(d.mutable.map((c) => c.field)).toEqual(['maxAge', 'discard']);
  });

  it('reports storage and retention changes as immutable, with the way out', () => {
    const d = diffStream(toStreamConfig(base), {
      ...base,
      storage: 'memory',
      retention: 'workqueue',
    });
    expect(d.immutable.map((c) => c.field)).toEqual(['storage', 'retention']);
    const msg = describeImmutable(d.immutable, 'SHOP');
    expect(msg).toContain('storage "file" -> "memory"');
    expect(msg).toContain('no data was touched');
  });
});

describe('replicasBeyondCluster', () => {
  it('names spec.replicas and the cluster size when the replicas do not fit', () => {
    const r = replicasBeyondCluster('SHOP', 5, { cluster: 'east', servers: 3 });
    expect(r?.reason).toBe('ReplicasExceedClusterSize');
    expect(r?.message).toBe(
      'spec.replicas is 5 but NATS cluster east has 3 servers with JetStream, so JetStream ' +
        'cannot place 5 copies of stream SHOP. Set spec.replicas to at most 3, or add servers ' +
        'to the cluster.',
    );
  });

  it('says when the NATS server is not clustered', () => {
    const r = replicasBeyondCluster('SHOP', 3, { cluster: undefined, servers: 1 });
    expect(r?.message).toMatch(
      /^spec\.replicas is 3 but the NATS server is not part of a cluster \(a cluster size of 1\)/,
    );
    expect(r?.message).toMatch(/Set spec\.replicas to at most 1/);
  });

  it('leaves a refusal with enough servers to JetStream’s own message', () => {
    expect(replicasBeyondCluster('SHOP', 3, { cluster: 'east', servers: 3 })).toBeUndefined();
    expect(replicasBeyondCluster('SHOP', 3, { cluster: 'east', servers: 5 })).toBeUndefined();
  });
});
