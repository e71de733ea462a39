// What the ingress checks beyond the CloudEvents core (src/cloudevents validates attributes,
// names, specversion and the bindings): data against its datacontenttype, how deeply JSON
// data nests, extensions only eventwire may write, the subject the type encodes to, and the
// message size against the stream's and the server's limits.
import {
  attributesOf,
  InvalidEventError,
  isJsonMediaType,
  mediaTypeOf,
  type CloudEvent,
} from '../cloudevents/index.ts';
import { subjectFor } from '../jetstream/subject.ts';

/**
 * Longest subject accepted, in bytes. NATS refuses a protocol line longer than its
 * max_control_line (4 KiB by default), which holds the subject, the reply inbox and sizes.
 */
export const MAX_SUBJECT_BYTES = 3072;

/**
 * Deepest nesting of arrays and objects accepted in JSON data. Every handler's JSON parser must
 * read what the ingress stores: .NET (System.Text.Json and Json.NET) refuse more than 64 levels
 * by default, Ruby 100, serde_json 128; Node's JSON.stringify breaks at a few thousand.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Extensions the dispatcher writes (src/dispatcher/dead-letter.ts EXT) and trusts on events it
 * reads back: a producer may not set them. Exactly these names, not every `ew` prefix.
 */
export const RESERVED_EXTENSIONS: ReadonlySet<string> = new Set([
  'ewhops',
  'ewerrorcode',
  'ewerrordest',
  'ewerrorreason',
  'ewerrordata',
  'ewattempts',
  'ewsubscription',
  'ewnatssubject',
]);

/** A producer's event may not carry the extensions eventwire itself writes. */
export function checkReserved(event: CloudEvent): InvalidEventError | undefined {
  for (const name of Object.keys(event.extensions)) {
    if (!RESERVED_EXTENSIONS.has(name)) continue;
    return new InvalidEventError(
      'invalid-attribute-name',
      `extension ${name} is reserved for eventwire and may not be sent by producers`,
      {
        field: name,
        fix: 'remove the extension (to replay a dead letter, remove every reserved ew* extension first)',
      },
    );
  }
  return undefined;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function utf8Text(data: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(data);
  } catch {
    return undefined; // not UTF-8: the caller names the field
  }
}

function charsetOf(contentType: string): string | undefined {
  const m = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType);
  return m?.[1]?.toLowerCase();
}

/** Data must be what its datacontenttype says: JSON for JSON types, UTF-8 for UTF-8 text. */
export function checkData(event: CloudEvent): InvalidEventError | undefined {
  const data = event.data;
  const contentType = event.datacontenttype;
  if (data === undefined || data.length === 0 || contentType === undefined) return undefined;
  const charset = charsetOf(contentType);
  const json = isJsonMediaType(contentType);
  const utf8Declared = charset === 'utf-8' || charset === 'utf8';
  if (!json && !(utf8Declared && mediaTypeOf(contentType)?.startsWith('text/') === true)) {
    return undefined;
  }
  const text = utf8Text(data);
  if (text === undefined) {
    return new InvalidEventError('bad-encoding', `data of type ${contentType} is not UTF-8`, {
      field: 'data',
      fix: 'send UTF-8 data, or a datacontenttype that matches the bytes (application/octet-stream)',
    });
  }
  if (!json) return undefined;
  try {
    JSON.parse(text);
  } catch (cause) {
    return new InvalidEventError(
      'bad-json',
      `data is not JSON although datacontenttype is ${contentType}`,
      {
        field: 'data',
        fix: 'send valid JSON data, or a datacontenttype that matches it',
        cause,
      },
    );
  }
  return undefined;
}

/** Longer types are not memoised (bounds the memo's size). */
const MAX_CACHED_TYPE_LENGTH = 256;

/**
 * `subjectFor` with a bounded memo: producers send few distinct types, and the subject is
 * needed twice per event (this check and the publish). Cleared whole when full.
 */
export class SubjectCache {
  readonly #subjects = new Map<string, string>();
  readonly #max: number;

  constructor(max = 10_000) {
    this.#max = max;
  }

  subjectFor(prefix: string, type: string): string {
    if (type.length > MAX_CACHED_TYPE_LENGTH) return subjectFor(prefix, type);
    const key = `${prefix}\n${type}`; // a prefix is a NATS subject: never holds a newline
    let subject = this.#subjects.get(key);
    if (subject === undefined) {
      subject = subjectFor(prefix, type);
      if (this.#subjects.size >= this.#max) this.#subjects.clear();
      this.#subjects.set(key, subject);
    }
    return subject;
  }
}

/** The type must encode to a subject NATS accepts. */
export function checkSubject(
  prefix: string,
  event: CloudEvent,
  subjects?: SubjectCache,
): InvalidEventError | undefined {
  const subject = subjects?.subjectFor(prefix, event.type) ?? subjectFor(prefix, event.type);
  const bytes = Buffer.byteLength(subject);
  if (bytes <= MAX_SUBJECT_BYTES) return undefined;
  return new InvalidEventError(
    'invalid-attribute',
    `type is too long: its subject has ${bytes} bytes, more than ${MAX_SUBJECT_BYTES}`,
    { field: 'type', fix: 'use a shorter type' },
  );
}

/** The `checkEvent` hook for `fromHttpRequest` (sizes are checked on the encoded events). */
export function eventChecker(
  subjectPrefix: string,
  subjects?: SubjectCache,
): (event: CloudEvent) => InvalidEventError | undefined {
  return (event) =>
    checkReserved(event) ?? checkData(event) ?? checkSubject(subjectPrefix, event, subjects);
}

/** An event whose NATS message exceeds `maxBytes` (the stream's or the server's limit). */
export function tooLargeForStream(
  event: CloudEvent,
  size: number,
  maxBytes: number,
): InvalidEventError {
  return new InvalidEventError(
    'too-large',
    `the event ${event.id} needs ${size} bytes, more than the stream's limit of ${maxBytes}`,
    { field: 'data', fix: 'send smaller events, or raise maxMsgSize on the EventStream' },
  );
}

/** Largest NATS header block JetStream stores (it refuses more with error 10097). */
export const MAX_HEADER_BYTES = 65_535;

/**
 * An event whose attributes need a NATS header block larger than JetStream stores. Names the
 * largest attribute, the one to shorten.
 */
export function tooLargeHeaders(event: CloudEvent, headerSize: number): InvalidEventError {
  let largest = 'source';
  let largestLength = -1;
  for (const [name, value] of attributesOf(event)) {
    if (value.length > largestLength) [largest, largestLength] = [name, value.length];
  }
  return new InvalidEventError(
    'too-large',
    `the attributes of event ${event.id} need ${String(headerSize)} bytes of NATS headers, more than the ${String(MAX_HEADER_BYTES)} JetStream stores`,
    { field: largest, fix: `send shorter attributes (${largest} is the longest)` },
  );
}

/** The smallest of the defined limits. */
export function smallestLimit(...limits: (number | undefined)[]): number | undefined {
  const defined = limits.filter((l): l is number => l !== undefined && l > 0);
  return defined.length === 0 ? undefined : Math.min(...defined);
}
