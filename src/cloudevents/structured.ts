// The JSON event format (structured mode and batches). Data is inlined as JSON when
// datacontenttype is JSON or absent and the bytes are JSON, as a string for textual media
// types, and as `data_base64` otherwise. JSON data is embedded as the text it was (never
// parsed and re-serialised, so any depth the bytes have is written); reading a JSON-format
// event keeps the bytes of a `data` object, array or number as they were sent (numbers beyond
// 2^53 stay exact). Extension values of JSON type number or boolean are read as their
// canonical string form; `null` members are absent.
import { InvalidEventError } from './errors.ts';
import {
  checked,
  CORE_ATTRIBUTES,
  isJsonMediaType,
  isTextMediaType,
  type CloudEvent,
  type EventResult,
} from './event.ts';
import { findDataSpans, type Span } from './json-depth.ts';

export const STRUCTURED_CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';
export const BATCH_CONTENT_TYPE = 'application/cloudevents-batch+json; charset=utf-8';

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function tryText(data: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(data);
  } catch {
    return undefined; // not UTF-8: carried as data_base64 instead
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text); // iterative in V8: never a RangeError, whatever the depth
    return true;
  } catch {
    return false; // not JSON: carried as a string or data_base64 instead
  }
}

/**
 * The data members of the JSON format for an event's data; JSON data as its text (`json`),
 * to be embedded as it is.
 */
function dataMembers(event: CloudEvent): { json?: string; members: Record<string, unknown> } {
  if (event.data === undefined || event.data.length === 0) return { members: {} };
  const text = tryText(event.data);
  // JSON types, and no datacontenttype at all (which the JSON format reads as JSON)
  const jsonish = isJsonMediaType(event.datacontenttype) || event.datacontenttype === undefined;
  if (text !== undefined && jsonish && isJson(text)) return { json: text, members: {} };
  if (text !== undefined && isTextMediaType(event.datacontenttype)) {
    return { members: { data: text } };
  }
  return { members: { data_base64: Buffer.from(event.data).toString('base64') } };
}

function attributeMembers(event: CloudEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    specversion: event.specversion,
    id: event.id,
    source: event.source,
    type: event.type,
  };
  for (const name of ['subject', 'time', 'datacontenttype', 'dataschema'] as const) {
    if (event[name] !== undefined) out[name] = event[name];
  }
  for (const [name, value] of Object.entries(event.extensions)) out[name] = value;
  return out;
}

/**
 * The JSON-format object of an event (before stringification); JSON data parsed. Prefer
 * `toStructuredBody`, which embeds JSON data without parsing it.
 */
export function toJsonObject(event: CloudEvent): Record<string, unknown> {
  const { json, members } = dataMembers(event);
  const data = json === undefined ? members : { data: JSON.parse(json) as unknown };
  return { ...attributeMembers(event), ...data };
}

/** One event as JSON-format text: JSON data embedded as the text it is (never a RangeError). */
function structuredText(event: CloudEvent): string {
  const { json, members } = dataMembers(event);
  const text = JSON.stringify({ ...attributeMembers(event), ...members });
  // the object always has members (specversion...): insert before its closing brace
  return json === undefined ? text : `${text.slice(0, -1)},"data":${json}}`;
}

/** Serialises one event in the JSON format. */
export function toStructuredBody(event: CloudEvent): Uint8Array {
  return utf8.encode(structuredText(event));
}

/** Serialises a batch in the JSON batch format. */
export function toBatchBody(events: readonly CloudEvent[]): Uint8Array {
  return utf8.encode(`[${events.map(structuredText).join(',')}]`);
}

interface Failure {
  ok: false;
  error: InvalidEventError;
}

function fail(
  reason: 'bad-json' | 'bad-base64' | 'invalid-attribute',
  field: string,
  message: string,
  fix: string,
): Failure {
  return { ok: false, error: new InvalidEventError(reason, message, { field, fix }) };
}

/** Parses a body as UTF-8 JSON; errors name `field`. */
export function parseJsonBody(body: Uint8Array): { ok: true; value: unknown } | Failure {
  let text: string;
  try {
    text = strictUtf8.decode(body);
  } catch (cause) {
    const error = new InvalidEventError('bad-encoding', 'the body is not UTF-8', {
      field: 'body',
      fix: 'send the JSON body as UTF-8',
      cause,
    });
    return { ok: false, error };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (cause) {
    const message = `the body is not JSON: ${cause instanceof Error ? cause.message : String(cause)}`;
    const error = new InvalidEventError('bad-json', message, {
      field: 'body',
      fix: 'send a JSON object in the CloudEvents JSON format',
      cause,
    });
    return { ok: false, error };
  }
}

function extensionValue(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number' && Number.isInteger(value)) return String(value);
  return undefined;
}

function isBase64(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const compact = value.replace(/\s/g, '');
  return /^[A-Za-z0-9+/]*={0,2}$/.test(compact) && compact.length % 4 === 0;
}

function decodeData(
  obj: Record<string, unknown>,
  raw: Uint8Array | undefined,
): { ok: true; data: Uint8Array | undefined } | Failure {
  const hasData = obj.data !== undefined && obj.data !== null;
  const hasBase64 = obj.data_base64 !== undefined && obj.data_base64 !== null;
  if (hasData && hasBase64)
    return fail(
      'invalid-attribute',
      'data',
      'both data and data_base64 are set',
      'send only one of data and data_base64',
    );
  if (hasBase64) {
    const b64 = obj.data_base64;
    if (!isBase64(b64)) {
      return fail(
        'bad-base64',
        'data_base64',
        'data_base64 is not a base64 string',
        'encode the data with standard base64 (RFC 4648)',
      );
    }
    return { ok: true, data: new Uint8Array(Buffer.from(b64, 'base64')) };
  }
  if (!hasData) return { ok: true, data: undefined };
  const ct = typeof obj.datacontenttype === 'string' ? obj.datacontenttype : undefined;
  // a string with a non-JSON content type is the text itself; everything else is a JSON value
  if (typeof obj.data === 'string' && ct !== undefined && !isJsonMediaType(ct))
    return { ok: true, data: utf8.encode(obj.data) };
  return raw === undefined ? reserialised(obj.data) : { ok: true, data: raw };
}

/** JSON data read from a JSON-format event, as compact JSON text. */
function reserialised(data: unknown): { ok: true; data: Uint8Array } | Failure {
  try {
    return { ok: true, data: utf8.encode(JSON.stringify(data)) };
  } catch (cause) {
    // JSON.stringify recurses: data nested thousands of levels deep exhausts the stack
    const error = new InvalidEventError('bad-json', 'data is nested too deeply to be read', {
      field: 'data',
      fix: 'send JSON data nested less deeply',
      cause,
    });
    return { ok: false, error };
  }
}

function readAttributes(
  obj: Record<string, unknown>,
): { ok: true; attrs: Record<string, unknown>; extensions: Record<string, string> } | Failure {
  const attrs: Record<string, unknown> = {};
  // entries, not assignments: a member named __proto__ must stay a member (and be refused)
  const extensions: [string, string][] = [];
  for (const [name, value] of Object.entries(obj)) {
    if (name === 'data' || name === 'data_base64' || value === null) continue;
    if (CORE_ATTRIBUTES.has(name)) {
      if (typeof value !== 'string')
        return fail(
          'invalid-attribute',
          name,
          `attribute ${name} must be a string`,
          `send ${name} as a JSON string`,
        );
      attrs[name] = value;
      continue;
    }
    const ext = extensionValue(value);
    if (ext === undefined)
      return fail(
        'invalid-attribute',
        name,
        `extension ${name} must be a string, integer or boolean`,
        'send extension values as JSON strings, integers or booleans',
      );
    extensions.push([name, ext]);
  }
  return { ok: true, attrs, extensions: Object.fromEntries(extensions) };
}

/**
 * Reads one event from a parsed JSON-format value (an object), validating it. `rawData`, the
 * bytes of its `data` member as sent, is kept as the data instead of re-serialising the parsed
 * value (which would round numbers beyond 2^53 and turn 1e400 into null).
 */
export function fromJsonObject(value: unknown, rawData?: Uint8Array): EventResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(
      'bad-json',
      'body',
      'a structured CloudEvent must be a JSON object',
      'send one JSON object, or use application/cloudevents-batch+json for an array',
    );
  }
  const obj = value as Record<string, unknown>;
  const attributes = readAttributes(obj);
  if (!attributes.ok) return attributes;
  const data = decodeData(obj, rawData);
  if (!data.ok) return data;
  const event = { ...attributes.attrs, extensions: attributes.extensions } as unknown as CloudEvent;
  return checked(data.data === undefined ? event : { ...event, data: data.data });
}

/** Whether a parsed member holds JSON data that re-serialising could change (numbers). */
function numericData(item: unknown): boolean {
  if (typeof item !== 'object' || item === null) return false;
  const data = (item as Record<string, unknown>).data;
  return typeof data === 'number' || (typeof data === 'object' && data !== null);
}

/** The bytes of the `data` members of a body, by event index, found only when needed. */
function rawDataOf(
  body: Uint8Array,
  container: 'event' | 'batch',
): (index: number, item: unknown) => Uint8Array | undefined {
  let spans: (Span | undefined)[] | undefined;
  return (index, item) => {
    if (!numericData(item)) return undefined;
    spans ??= findDataSpans(body, container);
    const span = spans[index];
    return span === undefined ? undefined : body.slice(span[0], span[1]);
  };
}

/** Reads one structured-mode event from a body. */
export function fromStructuredBody(body: Uint8Array): EventResult {
  const parsed = parseJsonBody(body);
  if (!parsed.ok) return parsed;
  return fromJsonObject(parsed.value, rawDataOf(body, 'event')(0, parsed.value));
}

/** Reads a batch; the whole batch fails on the first invalid event (its index is recorded). */
export function fromBatchBody(body: Uint8Array): { ok: true; events: CloudEvent[] } | Failure {
  const parsed = parseJsonBody(body);
  if (!parsed.ok) return parsed;
  if (!Array.isArray(parsed.value)) {
    const error = new InvalidEventError('bad-json', 'a batch must be a JSON array of CloudEvents', {
      field: 'body',
      fix: 'send a JSON array of JSON-format events',
    });
    return { ok: false, error };
  }
  const events: CloudEvent[] = [];
  const raw = rawDataOf(body, 'batch');
  for (const [index, item] of (parsed.value as unknown[]).entries()) {
    const result = fromJsonObject(item, raw(index, item));
    if (!result.ok) return { ok: false, error: result.error.atIndex(index) };
    events.push(result.event);
  }
  return { ok: true, events };
}
