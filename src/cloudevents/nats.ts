// The CloudEvents NATS protocol binding. Written in binary mode: every attribute a `ce-`
// header (percent-encoded), datacontenttype as `content-type`, data as the payload, plus a
// `Nats-Msg-Id` for JetStream de-duplication derived from source and id. Read in binary mode
// and in structured mode (content-type `application/cloudevents+json`).
import { hash } from 'node:crypto';
import { binaryHeaders, fromBinary, isBinaryMode } from './binary.ts';
import { InvalidEventError } from './errors.ts';
import { mediaTypeOf, type CloudEvent, type EventResult } from './event.ts';
import { normalizeHeaders, type HeadersLike } from './headers.ts';
import { fromStructuredBody } from './structured.ts';

export interface NatsMessage {
  /** Header names as written (lower-case `ce-*`, `content-type`, trace headers). */
  readonly headers: Record<string, string>;
  readonly data: Uint8Array;
  /** Pass as JetStream's `msgID` publish option (it sets the `Nats-Msg-Id` header). */
  readonly msgId: string;
}

/** What a received NATS message offers: `MsgHdrs`, a record, or nothing; and the payload. */
export interface NatsMessageLike {
  readonly headers?: HeadersLike | undefined;
  readonly data: Uint8Array;
}

/**
 * The JetStream message id of an event: lower-case hex SHA-256 of the JSON array
 * `[source, id]` (unambiguous whatever characters the two contain). CloudEvents says
 * source + id identify an event, so a producer retrying the same event is de-duplicated
 * inside the stream's duplicate window.
 */
export function natsMsgId(event: Pick<CloudEvent, 'source' | 'id'>): string {
  // one-shot hash: the same digest as createHash().update().digest(), without the Hash object
  return hash('sha256', JSON.stringify([event.source, event.id]), 'hex');
}

/** The binary-mode NATS message of an event. */
export function toNatsMessage(event: CloudEvent): NatsMessage {
  return {
    headers: binaryHeaders(event),
    data: event.data ?? new Uint8Array(),
    msgId: natsMsgId(event),
  };
}

/**
 * Reads an event from a NATS message (binary or structured mode). A message that is
 * neither, or is invalid, gives `{ ok: false, error }` whose `reason` and message the
 * dispatcher puts on the dead letter.
 */
export function fromNatsMessage(msg: NatsMessageLike): EventResult {
  const headers = normalizeHeaders(msg.headers);
  const mediaType = mediaTypeOf(headers.get('content-type'));
  if (mediaType === 'application/cloudevents+json') return fromStructuredBody(msg.data);
  if (isBinaryMode(headers)) return fromBinary(headers, msg.data);
  if (mediaType?.startsWith('application/cloudevents') === true) {
    const error = new InvalidEventError(
      'unsupported-media-type',
      `structured format ${mediaType} is not supported`,
      { field: 'content-type', fix: 'publish binary mode or application/cloudevents+json' },
    );
    return { ok: false, error };
  }
  const error = new InvalidEventError(
    'not-a-cloudevent',
    'the message is not a CloudEvent: no ce-specversion header and not application/cloudevents+json',
    {
      field: 'specversion',
      fix: 'publish CloudEvents in binary mode (ce-* headers) or structured mode',
    },
  );
  return { ok: false, error };
}

/**
 * The size a JetStream stream's `max_msg_size` is compared with, approximately: payload
 * plus header block (`NATS/1.0\r\n`, `name: value\r\n` per header, the message id, `\r\n`).
 */
export function natsMessageSize(event: CloudEvent): number {
  const msg = toNatsMessage(event);
  let headerBytes = 'NATS/1.0\r\n\r\n'.length + `Nats-Msg-Id: ${msg.msgId}\r\n`.length;
  for (const [name, value] of Object.entries(msg.headers)) {
    headerBytes += Buffer.byteLength(`${name}: ${value}\r\n`);
  }
  return headerBytes + msg.data.length;
}

/** A `checkEvent` hook for `fromHttpRequest` enforcing a stream's maximum message size. */
export function maxMessageSizeCheck(
  maxBytes: number,
): (event: CloudEvent) => InvalidEventError | undefined {
  return (event) => {
    const size = natsMessageSize(event);
    if (size <= maxBytes) return undefined;
    return new InvalidEventError(
      'too-large',
      `the event ${event.id} needs ${size} bytes, more than the stream's limit of ${maxBytes}`,
      {
        field: 'data',
        fix: 'send smaller events, or raise maxMsgSize on the EventStream',
      },
    );
  };
}
