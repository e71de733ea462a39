// Binary content mode, shared by the NATS and HTTP bindings: every attribute a `ce-<name>`
// header with a percent-encoded value, datacontenttype as `content-type`, data as the payload.
// W3C trace context: the Distributed Tracing extension (`traceparent`, `tracestate`) is also
// written as the plain W3C headers, and a plain header is adopted when no `ce-` one is set.
import { InvalidEventError } from './errors.ts';
import { checked, type CloudEvent, type EventResult } from './event.ts';
import { normalizeHeaders, percentDecode, percentEncode, type HeadersLike } from './headers.ts';

export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;
// W3C trace headers are plain printable ASCII (tracestate may hold spaces); never percent-encoded
export const W3C_HEADER_VALUE = /^[\x20-\x7e]*$/;
/** Attributes read from `ce-<name>` headers into the event itself (not extensions). */
const HEADER_ATTRIBUTES: ReadonlySet<string> = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'dataschema',
]);

/** The binary-mode headers of an event (names lower-case). */
export function binaryHeaders(event: CloudEvent): Record<string, string> {
  const headers: Record<string, string> = {
    'ce-specversion': event.specversion,
    'ce-id': percentEncode(event.id),
    'ce-source': percentEncode(event.source),
    'ce-type': percentEncode(event.type),
  };
  for (const name of ['subject', 'time', 'dataschema'] as const) {
    const value = event[name];
    if (value !== undefined) headers[`ce-${name}`] = percentEncode(value);
  }
  if (event.datacontenttype !== undefined) headers['content-type'] = event.datacontenttype;
  for (const [name, value] of Object.entries(event.extensions)) {
    headers[`ce-${name}`] = percentEncode(value);
  }
  for (const name of TRACE_HEADERS) {
    const value = event.extensions[name];
    if (value !== undefined && W3C_HEADER_VALUE.test(value)) headers[name] = value;
  }
  return headers;
}

/** True when the headers carry a binary-mode event (a `ce-specversion` header). */
export function isBinaryMode(headers: ReadonlyMap<string, string>): boolean {
  return headers.has('ce-specversion');
}

function readCeHeaders(headers: ReadonlyMap<string, string>): Record<string, unknown> {
  const attrs: Record<string, unknown> = {};
  // entries, not assignments: a header named ce-__proto__ must stay an extension (and be refused)
  const extensions = new Map<string, string>();
  for (const [name, raw] of headers) {
    if (!name.startsWith('ce-')) continue;
    const attr = name.slice(3);
    const value = percentDecode(raw, attr);
    if (HEADER_ATTRIBUTES.has(attr)) {
      attrs[attr] = value;
    } else if (attr !== 'datacontenttype') {
      extensions.set(attr, value);
    }
  }
  for (const name of TRACE_HEADERS) {
    const plain = headers.get(name);
    if (!extensions.has(name) && plain !== undefined) extensions.set(name, plain);
  }
  return { ...attrs, extensions: Object.fromEntries(extensions) };
}

/**
 * Reads a binary-mode event from normalised headers and the payload. An empty payload is
 * absent data. `ce-datacontenttype` is ignored in favour of `content-type`, as the bindings say.
 */
export function fromBinary(headers: ReadonlyMap<string, string>, body: Uint8Array): EventResult {
  let fields: Record<string, unknown>;
  try {
    fields = readCeHeaders(headers);
  } catch (err) {
    if (err instanceof InvalidEventError) return { ok: false, error: err };
    throw err;
  }
  const contentType = headers.get('content-type');
  if (contentType !== undefined) fields.datacontenttype = contentType;
  if (body.length > 0) fields.data = body;
  return checked(fields as unknown as CloudEvent);
}

/** Convenience: normalise any header shape, then `fromBinary`. */
export function fromBinaryHeaders(headers: HeadersLike | undefined, body: Uint8Array): EventResult {
  return fromBinary(normalizeHeaders(headers), body);
}
