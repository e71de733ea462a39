// Dead-letter events (pure). A dead-lettered event keeps every attribute and its data and
// gains error extensions (lower-case alphanumerics, at most 20 characters):
//   ewerrorcode    the HTTP status of the last attempt (absent for connection errors, timeouts)
//   ewerrordest    where delivery was attempted (the sink URI)
//   ewerrorreason  non-retryable-status | retries-exhausted | invalid-event | reply-hop-limit
//   ewerrordata    the start of the response body, or the error message (at most 1024 chars)
//   ewattempts     how many attempts were made
//   ewsubscription namespace/name of the EventSubscription
// A message that is not a CloudEvent is wrapped in a new event (see invalidMessageEvent).
import { createHash } from 'node:crypto';
import {
  makeEvent,
  validateEvent,
  type CloudEvent,
  type InvalidEventError,
} from '../cloudevents/index.ts';
import type { FailureReason } from './outcome.ts';

export const EXT = {
  code: 'ewerrorcode',
  dest: 'ewerrordest',
  reason: 'ewerrorreason',
  data: 'ewerrordata',
  attempts: 'ewattempts',
  subscription: 'ewsubscription',
  natsSubject: 'ewnatssubject',
  hops: 'ewhops',
} as const;

/** Longest ewerrordata value, in characters. */
export const MAX_ERROR_DATA = 1024;
/** The type of the event wrapping a message that was not a CloudEvent. */
export const INVALID_MESSAGE_TYPE = 'io.eventwire.dispatcher.invalidmessage';

export interface FailureInfo {
  readonly reason: FailureReason;
  readonly code?: number | undefined;
  readonly dest: string;
  readonly detail?: string | undefined;
  readonly attempts: number;
  readonly subscription: string;
}

function truncate(s: string): string {
  const wellFormed = s.toWellFormed();
  return wellFormed.length <= MAX_ERROR_DATA ? wellFormed : wellFormed.slice(0, MAX_ERROR_DATA);
}

function errorExtensions(f: FailureInfo): Record<string, string> {
  const ext: Record<string, string> = {
    [EXT.dest]: f.dest,
    [EXT.reason]: f.reason,
    [EXT.attempts]: String(f.attempts),
    [EXT.subscription]: f.subscription,
  };
  if (f.code !== undefined) ext[EXT.code] = String(f.code);
  if (f.detail !== undefined && f.detail !== '') ext[EXT.data] = truncate(f.detail);
  return ext;
}

/** The event to dead-letter: the original with the error extensions (replacing older ones). */
export function deadLetterEvent(event: CloudEvent, f: FailureInfo): CloudEvent {
  const extensions = { ...event.extensions };
  for (const name of [EXT.code, EXT.data]) Reflect.deleteProperty(extensions, name);
  return { ...event, extensions: { ...extensions, ...errorExtensions(f) } };
}

export interface RawMessage {
  readonly stream: string;
  readonly streamSequence: number;
  readonly subject: string;
  readonly contentType?: string | undefined;
  readonly data: Uint8Array;
}

/**
 * A message that is not a CloudEvent, wrapped for the dead letter: id `<stream>-<seq>`,
 * source `/eventwire/<namespace>/<subscription>`, type io.eventwire.dispatcher.invalidmessage,
 * the raw payload as data (its content-type as datacontenttype when that is a media type),
 * the NATS subject in ewnatssubject and the decoding error in ewerrordata.
 */
export function invalidMessageEvent(
  raw: RawMessage,
  error: InvalidEventError,
  f: Omit<FailureInfo, 'reason' | 'detail'>,
): CloudEvent {
  const base = {
    id: `${raw.stream}-${raw.streamSequence}`,
    source: `/eventwire/${f.subscription}`,
    type: INVALID_MESSAGE_TYPE,
    data: raw.data,
    extensions: {
      [EXT.natsSubject]: raw.subject,
      ...errorExtensions({
        ...f,
        reason: 'invalid-event',
        detail: `${error.reason} (${error.field}): ${error.message}`,
      }),
    },
  };
  const contentType = raw.contentType === '' ? undefined : raw.contentType;
  const withType = makeEvent({ ...base, datacontenttype: contentType });
  return validateEvent(withType) === undefined
    ? withType
    : makeEvent({ ...base, datacontenttype: 'application/octet-stream' });
}

/**
 * The JetStream message id of a dead-letter publish: distinct from the original's (the dead
 * letter subject may live in the same stream), stable for the same event and subscription so
 * a second dead-lettering after a crash is de-duplicated.
 */
export function deadLetterMsgId(event: CloudEvent, subscription: string): string {
  return createHash('sha256')
    .update(JSON.stringify(['deadletter', subscription, event.source, event.id]))
    .digest('hex');
}
