// Where a subscription writes besides its sink: the dead letter (a subject some EventStream
// must capture, or an HTTP sink) and the reply stream. Pure: the reconciler passes the
// EventStreams it knows and the resolved dead-letter sink. A subscription may write only into
// an EventStream that allows its namespace (the stream's own namespace always may), the same
// rule as for reading, so a dead letter or a reply can never land in another team's stream.
import type { EventStream, EventSubscription } from '../api/types.ts';
import { isTrue, type ConditionInput } from './conditions.ts';
import type { SinkResolution } from './sink.ts';

export const DEAD_LETTER_CONDITION = 'DeadLetterResolved';
export const REPLY_CONDITION = 'ReplyResolved';

const cond = (type: string, ok: boolean, reason: string, message: string): ConditionInput => ({
  type,
  status: ok ? 'True' : 'False',
  reason,
  message,
});

const idOf = (es: EventStream): string =>
  `${es.metadata?.namespace ?? ''}/${es.metadata?.name ?? ''}`;

export function allowsNamespace(es: EventStream, namespace: string): boolean {
  if (es.metadata?.namespace === namespace) return true;
  const allowed = es.spec.allowedNamespaces ?? [];
  return allowed.includes('*') || allowed.includes(namespace);
}

/** The EventStreams whose subjects (`<subjectPrefix>.>`) include `subject`. */
export function streamsCapturing(subject: string, streams: readonly EventStream[]): EventStream[] {
  return streams.filter((es) => subject.startsWith(`${es.spec.subjectPrefix}.`));
}

/**
 * DeadLetterResolved: True when no dead letter is configured, when the dead-letter subject is
 * captured by a Ready EventStream that allows the subscription's namespace, or when the
 * dead-letter sink resolved under the sink rules.
 */
export function deadLetterCondition(
  sub: EventSubscription,
  streams: readonly EventStream[],
  sink: SinkResolution | undefined,
): ConditionInput {
  const dl = sub.spec.delivery?.deadLetter;
  const ns = sub.metadata?.namespace ?? '';
  if (dl?.subject !== undefined) return subjectCondition(dl.subject, ns, streams);
  if (sink !== undefined) {
    return sink.ok
      ? cond(
          DEAD_LETTER_CONDITION,
          true,
          'DeadLetterSinkResolved',
          `dead letters go to ${sink.uri}`,
        )
      : cond(
          DEAD_LETTER_CONDITION,
          false,
          `DeadLetter${sink.reason}`,
          `spec.delivery.deadLetter.sink: ${sink.message}`,
        );
  }
  return cond(
    DEAD_LETTER_CONDITION,
    true,
    'NotConfigured',
    'no dead letter: events that cannot be delivered are terminated with a Warning Event',
  );
}

function subjectCondition(
  subject: string,
  namespace: string,
  streams: readonly EventStream[],
): ConditionInput {
  const field = `spec.delivery.deadLetter.subject ${subject}`;
  const capturing = streamsCapturing(subject, streams);
  const allowed = capturing.filter((es) => allowsNamespace(es, namespace));
  const ready = allowed.find((es) => isTrue(es.status?.conditions, 'Ready'));
  if (ready) {
    return cond(
      DEAD_LETTER_CONDITION,
      true,
      'DeadLetterStreamReady',
      `dead letters go to EventStream ${idOf(ready)}`,
    );
  }
  const [notReady] = allowed;
  if (notReady) {
    return cond(
      DEAD_LETTER_CONDITION,
      false,
      'DeadLetterStreamNotReady',
      `${field} is captured by EventStream ${idOf(notReady)}, which is not Ready`,
    );
  }
  const [forbidden] = capturing;
  if (forbidden) {
    return cond(
      DEAD_LETTER_CONDITION,
      false,
      'DeadLetterNamespaceNotAllowed',
      `${field} is captured by EventStream ${idOf(forbidden)}, which does not allow namespace ${namespace}; add it to that stream's spec.allowedNamespaces or choose a subject of a stream that does`,
    );
  }
  return cond(
    DEAD_LETTER_CONDITION,
    false,
    'DeadLetterNotCaptured',
    `${field} is captured by no EventStream, so dead letters could not be stored; create an EventStream whose subjectPrefix the subject starts with (for example ${subject.split('.')[0] ?? subject}) or change the subject`,
  );
}

/** ReplyResolved: True without reply, or when the reply stream exists, allows us and is Ready. */
export function replyCondition(
  sub: EventSubscription,
  lookup: (namespace: string, name: string) => EventStream | undefined,
): ConditionInput {
  const ref = sub.spec.reply?.stream;
  if (ref === undefined) {
    return cond(REPLY_CONDITION, true, 'NotConfigured', 'response bodies are ignored');
  }
  const ns = sub.metadata?.namespace ?? '';
  const id = `${ref.namespace ?? ns}/${ref.name}`;
  const es = lookup(ref.namespace ?? ns, ref.name);
  if (!es) {
    return cond(
      REPLY_CONDITION,
      false,
      'ReplyStreamNotFound',
      `spec.reply.stream: EventStream ${id} does not exist; create it or fix spec.reply.stream`,
    );
  }
  if (!allowsNamespace(es, ns)) {
    return cond(
      REPLY_CONDITION,
      false,
      'ReplyNamespaceNotAllowed',
      `spec.reply.stream: EventStream ${id} does not allow namespace ${ns}; add it to the stream's spec.allowedNamespaces`,
    );
  }
  if (!isTrue(es.status?.conditions, 'Ready')) {
    return cond(
      REPLY_CONDITION,
      false,
      'ReplyStreamNotReady',
      `spec.reply.stream: EventStream ${id} is not Ready`,
    );
  }
  return cond(REPLY_CONDITION, true, 'ReplyStreamReady', `replies go to EventStream ${id}`);
}
