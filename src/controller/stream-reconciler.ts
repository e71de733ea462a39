// EventStream -> JetStream stream. The planner is stream-plan.ts; this file does the I/O:
// read the stream, create or update it, report immutable changes as a condition (never
// applied destructively), report replicas that the NATS cluster cannot hold, honour
// deletionPolicy behind a finalizer, and fill status. A Ready EventStream stays Ready while
// JetStream does not answer for a moment (a stream leader election, a reconnecting
// controller): producers and subscriptions get JetStream's own answers; a Warning Event says
// what happened.
import type { StreamInfo } from '@nats-io/jetstream';
import { parseDuration } from '../api/duration.ts';
import { EVENTSTREAM_DEFAULTS, type EventStream, type EventStreamStatus } from '../api/types.ts';
import { JetStreamAdminError, type JetStreamAdmin } from '../jetstream/admin.ts';
import {
  OWNER_METADATA_KEY,
  PLACEMENT_ERROR_CODES,
  defaultStreamName,
  describeImmutable,
  diffStream,
  replicasBeyondCluster,
  toStreamConfig,
  type StreamSettings,
} from '../jetstream/stream-plan.ts';
import { streamSubjects } from '../jetstream/subject.ts';
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

export interface StreamReconcilerDeps {
  readonly streams: CustomResources<EventStream>;
  readonly js: JetStreamAdmin;
  readonly status: StatusReporter<EventStream>;
  readonly log: Logger;
  readonly now?: () => Date;
}

/** namespace/name: the owner recorded in the stream's metadata */
function ownerOf(es: EventStream): string {
  return `${es.metadata?.namespace ?? ''}/${es.metadata?.name ?? ''}`;
}

export function streamNameOf(es: EventStream): string {
  return (
    es.spec.streamName ?? defaultStreamName(es.metadata?.namespace ?? '', es.metadata?.name ?? '')
  );
}

export class InvalidSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidSpecError';
  }
}

function durationField(v: string | undefined, field: string, fallback: number): number {
  if (v === undefined) return fallback;
  try {
    return parseDuration(v, field);
  } catch (err) {
    throw new InvalidSpecError((err as Error).message);
  }
}

/** EventStream spec -> stream settings; throws InvalidSpecError naming the field. */
export function streamSettingsFor(es: EventStream): StreamSettings {
  // the API server applies these defaults; repeated for objects that bypassed it
  const spec = { ...EVENTSTREAM_DEFAULTS, ...es.spec };
  const maxAgeMs = durationField(spec.maxAge, 'spec.maxAge', 0);
  const duplicateWindowMs = durationField(spec.duplicateWindow, 'spec.duplicateWindow', 120_000);
  if (maxAgeMs > 0 && duplicateWindowMs > maxAgeMs) {
    throw new InvalidSpecError(
      `spec.duplicateWindow (${spec.duplicateWindow}) is longer than spec.maxAge (${spec.maxAge ?? ''}); shorten duplicateWindow or raise maxAge`,
    );
  }
  return {
    name: streamNameOf(es),
    subjects: streamSubjects(spec.subjectPrefix),
    storage: spec.storage,
    replicas: spec.replicas,
    retention: spec.retention,
    maxAgeMs,
    maxBytes: spec.maxBytes ?? -1,
    maxMsgs: spec.maxMsgs ?? -1,
    maxMsgSize: spec.maxMsgSize ?? -1,
    discard: spec.discard,
    duplicateWindowMs,
    owner: ownerOf(es),
  };
}

const ready = (reason: string, message: string): ConditionInput => ({
  type: 'Ready',
  status: 'True',
  reason,
  message,
});
const notReady = (reason: string, message: string): ConditionInput => ({
  type: 'Ready',
  status: 'False',
  reason,
  message,
});

function statsFrom(info: StreamInfo | undefined): Partial<EventStreamStatus> {
  if (!info) return {};
  return {
    messages: info.state.messages,
    bytes: info.state.bytes,
    firstSeq: info.state.first_seq,
    lastSeq: info.state.last_seq,
    consumerCount: info.state.consumer_count,
  };
}

export class StreamReconciler {
  private readonly deps: StreamReconcilerDeps;
  /** Ready EventStreams (namespace/name) whose JetStream did not answer: warned about once */
  private readonly unanswered = new Set<string>();

  constructor(deps: StreamReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(observed: EventStream): Promise<ReconcileOutcome> {
    let es = observed;
    const log = this.deps.log.child({ eventstream: ownerOf(es) });
    if (es.metadata?.deletionTimestamp) return this.finalize(es, log);
    if (!hasFinalizer(es, FINALIZER)) {
      // go on with the object as written: saves a round trip through the informer
      es = await this.deps.streams.replace(withFinalizer(es, FINALIZER));
    }
    let settings: StreamSettings;
    try {
      settings = streamSettingsFor(es);
    } catch (err) {
      if (!(err instanceof InvalidSpecError)) throw err;
      return this.report(es, undefined, notReady('InvalidSpec', err.message));
    }
    try {
      const { info, condition } = await this.apply(settings, log);
      this.unanswered.delete(settings.owner);
      return await this.report(es, info, condition);
    } catch (err) {
      if (!(err instanceof JetStreamAdminError)) throw err;
      log.warn({ err }, 'jetstream request failed');
      await this.reportUnanswered(es, settings.owner, err);
      throw err;
    }
  }

  /**
   * JetStream did not answer or refused. A Ready EventStream stays Ready through a transient
   * failure: the stream is there as last applied, and marking it not Ready would make the
   * ingress refuse producers and stop its subscriptions' deliveries, also after JetStream is
   * back (this answer can come late: it waited for the request timeout). A Warning Event says
   * what happened, once until JetStream answers again.
   */
  private async reportUnanswered(
    es: EventStream,
    owner: string,
    err: JetStreamAdminError,
  ): Promise<void> {
    const message = `${err.message}; retrying`;
    if (!err.transient || !isTrue(es.status?.conditions, 'Ready')) {
      await this.report(es, undefined, notReady('JetStreamUnavailable', message));
    } else if (!this.unanswered.has(owner)) {
      this.unanswered.add(owner);
      this.deps.status.warn(es, 'JetStreamUnavailable', message);
    }
  }

  /**
   * The condition for JetStream refusing to place the stream's replicas, when that is what
   * happened and spec.replicas is more than the cluster's servers with JetStream.
   */
  private async placementRefused(
    s: StreamSettings,
    err: unknown,
  ): Promise<ConditionInput | undefined> {
    if (!(err instanceof JetStreamAdminError) || s.replicas <= 1) return undefined;
    const codes = PLACEMENT_ERROR_CODES;
    let found;
    if (err.code === codes.notClustered) found = { cluster: undefined, servers: 1 };
    else if (err.code === codes.noSuitablePeers || err.code === codes.insufficientResources) {
      found = await this.deps.js.jetStreamServers();
    }
    const refused = found && replicasBeyondCluster(s.name, s.replicas, found);
    return refused ? notReady(refused.reason, refused.message) : undefined;
  }

  private async apply(
    s: StreamSettings,
    log: Logger,
  ): Promise<{ info: StreamInfo | undefined; condition: ConditionInput }> {
    const existing = await this.deps.js.streamInfo(s.name);
    if (!existing) {
      let info;
      try {
        info = await this.deps.js.addStream(toStreamConfig(s));
      } catch (err) {
        const refused = await this.placementRefused(s, err);
        if (refused === undefined) throw err;
        return { info: undefined, condition: refused };
      }
      log.info({ stream: s.name }, 'stream created');
      return {
        info,
        condition: ready(
          'StreamCreated',
          `JetStream stream ${s.name} captures ${s.subjects.join(', ')}`,
        ),
      };
    }
    const owner = existing.config.metadata?.[OWNER_METADATA_KEY];
    if (owner !== undefined && owner !== s.owner) {
      return {
        info: existing,
        condition: notReady(
          'StreamNameConflict',
          `JetStream stream ${s.name} belongs to EventStream ${owner}; set a different spec.streamName`,
        ),
      };
    }
    const diff = diffStream(existing.config, s);
    let info = existing;
    if (diff.mutable.length > 0) {
      // keep what cannot change as it is, apply the rest
      try {
        info = await this.deps.js.updateStream({
          ...toStreamConfig(s),
          storage: existing.config.storage,
          retention: existing.config.retention,
        });
      } catch (err) {
        const refused = await this.placementRefused(s, err);
        if (refused === undefined) throw err;
        return { info: existing, condition: refused };
      }
      log.info({ stream: s.name, changes: diff.mutable.map((c) => c.field) }, 'stream updated');
    }
    if (diff.immutable.length > 0) {
      return {
        info,
        condition: notReady('ImmutableFieldChanged', describeImmutable(diff.immutable, s.name)),
      };
    }
    return {
      info,
      condition: ready(
        'StreamReady',
        `JetStream stream ${s.name} captures ${s.subjects.join(', ')}`,
      ),
    };
  }

  private async report(
    es: EventStream,
    info: StreamInfo | undefined,
    condition: ConditionInput,
  ): Promise<ReconcileOutcome> {
    const now = this.deps.now?.() ?? new Date();
    const status: EventStreamStatus = {
      ...(es.status ?? {}),
      observedGeneration: es.metadata?.generation ?? 0,
      streamName: streamNameOf(es),
      ...statsFrom(info),
      conditions: mergeConditions(es.status?.conditions, [condition], es.metadata?.generation, now),
    };
    await this.deps.status.update(es, status);
    return condition.status === 'True' ? {} : { requeueAfterMs: NOT_READY_REQUEUE_MS };
  }

  private async finalize(es: EventStream, log: Logger): Promise<ReconcileOutcome> {
    const me = ownerOf(es);
    this.unanswered.delete(me);
    if (!hasFinalizer(es, FINALIZER)) return {};
    const name = streamNameOf(es);
    if (es.spec.deletionPolicy === 'Delete') {
      const info = await this.deps.js.streamInfo(name);
      const owner = info?.config.metadata?.[OWNER_METADATA_KEY];
      if (info && (owner === undefined || owner === me)) {
        await this.deps.js.deleteStream(name);
        log.info({ stream: name }, 'stream deleted with its EventStream (deletionPolicy Delete)');
      }
    } else {
      log.info(
        { stream: name },
        'stream retained after its EventStream was deleted (deletionPolicy Retain)',
      );
    }
    await this.deps.streams.replace(withoutFinalizer(es, FINALIZER));
    return {};
  }
}
