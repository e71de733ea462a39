// EventStream -> JetStream stream. The planner is stream-plan.ts; this file does the I/O:
// read the stream, create or update it, report immutable changes as a condition (never
// applied destructively), honour deletionPolicy behind a finalizer, and fill status.
import type { StreamInfo } from '@nats-io/jetstream';
import { parseDuration } from '../api/duration.ts';
import { EVENTSTREAM_DEFAULTS, type EventStream, type EventStreamStatus } from '../api/types.ts';
import { JetStreamAdminError, type JetStreamAdmin } from '../jetstream/admin.ts';
import {
  OWNER_METADATA_KEY,
  defaultStreamName,
  describeImmutable,
  diffStream,
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
import { mergeConditions, type ConditionInput } from './conditions.ts';
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
    owner: `${es.metadata?.namespace ?? ''}/${es.metadata?.name ?? ''}`,
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

  constructor(deps: StreamReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(observed: EventStream): Promise<ReconcileOutcome> {
    let es = observed;
    const log = this.deps.log.child({
      eventstream: `${es.metadata?.namespace ?? ''}/${es.metadata?.name ?? ''}`,
    });
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
      return await this.report(es, info, condition);
    } catch (err) {
      if (!(err instanceof JetStreamAdminError)) throw err;
      log.warn({ err }, 'jetstream request failed');
      await this.report(
        es,
        undefined,
        notReady('JetStreamUnavailable', `${err.message}; retrying`),
      );
      throw err;
    }
  }

  private async apply(
    s: StreamSettings,
    log: Logger,
  ): Promise<{ info: StreamInfo; condition: ConditionInput }> {
    const existing = await this.deps.js.streamInfo(s.name);
    if (!existing) {
      const info = await this.deps.js.addStream(toStreamConfig(s));
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
      info = await this.deps.js.updateStream({
        ...toStreamConfig(s),
        storage: existing.config.storage,
        retention: existing.config.retention,
      });
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
    if (!hasFinalizer(es, FINALIZER)) return {};
    const name = streamNameOf(es);
    if (es.spec.deletionPolicy === 'Delete') {
      const info = await this.deps.js.streamInfo(name);
      const owner = info?.config.metadata?.[OWNER_METADATA_KEY];
      const me = `${es.metadata?.namespace ?? ''}/${es.metadata?.name ?? ''}`;
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
