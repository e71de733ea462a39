// EventStream -> JetStream stream: the desired configuration, and what changing an existing
// stream to it means. Pure: no I/O.
import { createHash } from 'node:crypto';
import { DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig } from '@nats-io/jetstream';
import { msToNanos } from '../api/duration.ts';

export const OWNER_METADATA_KEY = 'eventwire.io/owner';

export interface StreamSettings {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly storage: 'file' | 'memory';
  readonly replicas: number;
  readonly retention: 'limits' | 'interest' | 'workqueue';
  /** 0: unlimited */
  readonly maxAgeMs: number;
  /** -1: unlimited */
  readonly maxBytes: number;
  readonly maxMsgs: number;
  readonly maxMsgSize: number;
  readonly discard: 'old' | 'new';
  readonly duplicateWindowMs: number;
  /** namespace/name of the EventStream that owns the stream */
  readonly owner: string;
}

export interface FieldChange {
  readonly field: string;
  readonly from: string;
  readonly to: string;
}

export interface StreamDiff {
  /** changes JetStream cannot apply to an existing stream */
  readonly immutable: readonly FieldChange[];
  /** changes applied in place */
  readonly mutable: readonly FieldChange[];
}

/**
 * The default JetStream name of an EventStream: upper-cased namespace and name, with every
 * character JetStream forbids in a name replaced; long names end in a short hash.
 */
export function defaultStreamName(namespace: string, name: string): string {
  const base = `${namespace}_${name}`.toUpperCase().replace(/[^A-Z0-9_-]/g, '_');
  if (base.length <= 64) return base;
  const hash = createHash('sha256').update(`${namespace}/${name}`).digest('hex').slice(0, 8);
  return `${base.slice(0, 55)}_${hash.toUpperCase()}`;
}

const STORAGE = { file: StorageType.File, memory: StorageType.Memory } as const;
const RETENTION = {
  limits: RetentionPolicy.Limits,
  interest: RetentionPolicy.Interest,
  workqueue: RetentionPolicy.Workqueue,
} as const;
const DISCARD = { old: DiscardPolicy.Old, new: DiscardPolicy.New } as const;

export function toStreamConfig(s: StreamSettings): Partial<StreamConfig> & { name: string } {
  return {
    name: s.name,
    description: `eventwire EventStream ${s.owner}`,
    subjects: [...s.subjects],
    storage: STORAGE[s.storage],
    num_replicas: s.replicas,
    retention: RETENTION[s.retention],
    max_age: msToNanos(s.maxAgeMs),
    max_bytes: s.maxBytes,
    max_msgs: s.maxMsgs,
    max_msg_size: s.maxMsgSize,
    discard: DISCARD[s.discard],
    duplicate_window: msToNanos(s.duplicateWindowMs),
    allow_direct: true,
    metadata: { [OWNER_METADATA_KEY]: s.owner },
  };
}

function change(field: string, from: unknown, to: unknown): FieldChange | undefined {
  const a = JSON.stringify(from);
  const b = JSON.stringify(to);
  return a === b ? undefined : { field, from: a, to: b };
}

/** What it takes to turn the existing stream's configuration into the desired one. */
export function diffStream(existing: Partial<StreamConfig>, desired: StreamSettings): StreamDiff {
  const want = toStreamConfig(desired);
  const immutable = [
    change('storage', existing.storage, want.storage),
    change('retention', existing.retention, want.retention),
  ].filter((c): c is FieldChange => c !== undefined);
  const mutable = [
    change('subjects', [...(existing.subjects ?? [])].sort(), [...(want.subjects ?? [])].sort()),
    change('replicas', existing.num_replicas, want.num_replicas),
    change('maxAge', existing.max_age, want.max_age),
    change('maxBytes', existing.max_bytes, want.max_bytes),
    change('maxMsgs', existing.max_msgs, want.max_msgs),
    change('maxMsgSize', existing.max_msg_size, want.max_msg_size),
    change('discard', existing.discard, want.discard),
    change('duplicateWindow', existing.duplicate_window, want.duplicate_window),
    change('owner', existing.metadata?.[OWNER_METADATA_KEY], desired.owner),
  ].filter((c): c is FieldChange => c !== undefined);
  return { immutable, mutable };
}

/** A sentence for a person about immutable changes, with the way out. */
export function describeImmutable(changes: readonly FieldChange[], streamName: string): string {
  const what = changes.map((c) => `${c.field} ${c.from} -> ${c.to}`).join(', ');
  return (
    `JetStream cannot change ${what} on the existing stream ${streamName}; the stream keeps its ` +
    'old settings and no data was touched. Revert the field, or create a new EventStream with ' +
    'another streamName and move subscriptions to it.'
  );
}

/** The servers a stream's replicas can be placed on, as the controller found them. */
export interface JetStreamServers {
  /** the NATS cluster's name; undefined for a server that is not in a cluster */
  readonly cluster: string | undefined;
  /** servers of that cluster with JetStream that answered */
  readonly servers: number;
}

/** JetStream's error codes when it cannot place a stream's replicas. */
export const PLACEMENT_ERROR_CODES = {
  /** "no suitable peers for placement" (400) */
  noSuitablePeers: 10005,
  /** "insufficient resources" (503), also for scaling up an existing stream */
  insufficientResources: 10023,
  /** "replicas > 1 not supported in non-clustered mode" (500) */
  notClustered: 10074,
} as const;

/**
 * When JetStream refused to place the stream: why, for a person, if `replicas` is more than
 * the servers found; undefined when enough servers answered (the refusal has another cause:
 * a server offline, storage, placement tags, which JetStream's own message names).
 */
export function replicasBeyondCluster(
  streamName: string,
  replicas: number,
  found: JetStreamServers,
): { reason: 'ReplicasExceedClusterSize'; message: string } | undefined {
  if (found.servers >= replicas) return undefined;
  const where =
    found.cluster === undefined
      ? 'the NATS server is not part of a cluster (a cluster size of 1)'
      : `NATS cluster ${found.cluster} has ${String(found.servers)} server${found.servers === 1 ? '' : 's'} with JetStream`;
  return {
    reason: 'ReplicasExceedClusterSize',
    message:
      `spec.replicas is ${String(replicas)} but ${where}, so JetStream cannot place ` +
      `${String(replicas)} copies of stream ${streamName}. Set spec.replicas to at most ` +
      `${String(found.servers)}, or add servers to the cluster.`,
  };
}
