// The CloudEvents HTTP binding: what the dispatcher sends (binary or structured), what a
// handler may answer (a reply event), and what the ingress accepts (binary, structured,
// batch) with errors naming the bad field and an optional size limit.
import { binaryHeaders, fromBinary, isBinaryMode, W3C_HEADER_VALUE } from './binary.ts';
import { InvalidEventError } from './errors.ts';
import { isJsonMediaType, mediaTypeOf, type CloudEvent, type EventResult } from './event.ts';
import { normalizeHeaders, type HeadersLike } from './headers.ts';
import { findDeepJson, type JsonContainer } from './json-depth.ts';
import {
  BATCH_CONTENT_TYPE,
  fromBatchBody,
  fromStructuredBody,
  STRUCTURED_CONTENT_TYPE,
  toBatchBody,
  toStructuredBody,
} from './structured.ts';

export type HttpFormat = 'binary' | 'structured';

export interface HttpMessage {
  /** Lower-case header names. */
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

export interface HttpMessageLike {
  readonly headers?: HeadersLike | undefined;
  readonly body: Uint8Array;
}

/** The request the dispatcher POSTs. Transport headers (`prefer: reply`...) are the caller's. */
export function toHttpRequest(event: CloudEvent, format: HttpFormat = 'binary'): HttpMessage {
  if (format === 'structured') {
    const headers: Record<string, string> = { 'content-type': STRUCTURED_CONTENT_TYPE };
    for (const name of ['traceparent', 'tracestate'] as const) {
      const value = event.extensions[name];
      if (value !== undefined && W3C_HEADER_VALUE.test(value)) headers[name] = value;
    }
    return { headers, body: toStructuredBody(event) };
  }
  return { headers: binaryHeaders(event), body: event.data ?? new Uint8Array() };
}

/** A batch request (`application/cloudevents-batch+json`), e.g. for producers and tests. */
export function toHttpBatchRequest(events: readonly CloudEvent[]): HttpMessage {
  return { headers: { 'content-type': BATCH_CONTENT_TYPE }, body: toBatchBody(events) };
}

type Mode = 'binary' | 'structured' | 'batch' | 'unsupported' | 'none';

function modeOf(headers: ReadonlyMap<string, string>): Mode {
  const mediaType = mediaTypeOf(headers.get('content-type'));
  if (mediaType === 'application/cloudevents+json') return 'structured';
  if (mediaType === 'application/cloudevents-batch+json') return 'batch';
  if (mediaType?.startsWith('application/cloudevents') === true) return 'unsupported';
  return isBinaryMode(headers) ? 'binary' : 'none';
}

const NOT_ASCII = /[\u0080-\uffff]/;
const BEYOND_LATIN1 = /[\u0100-\uffff]/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The attribute an HTTP header carries in binary mode, if any. */
function attributeOfHeader(name: string): string | undefined {
  if (name.startsWith('ce-')) return name.slice(3);
  if (name === 'content-type') return 'datacontenttype';
  return name === 'traceparent' || name === 'tracestate' ? name : undefined;
}

/**
 * Normalised HTTP headers with the values of CloudEvents headers read as UTF-8. Node and
 * fetch give header values as latin1 strings (a character per byte): raw bytes of 0x80 and
 * above, which the binding says to percent-encode, are read as UTF-8 when they are UTF-8 and
 * are an error naming the attribute when not. A value with characters beyond U+00FF is
 * already text (a caller's record) and is kept.
 */
function httpHeaders(raw: HeadersLike | undefined): Map<string, string> | InvalidEventError {
  const headers = normalizeHeaders(raw);
  for (const [name, value] of headers) {
    if (!NOT_ASCII.test(value) || BEYOND_LATIN1.test(value)) continue;
    const attribute = attributeOfHeader(name);
    if (attribute === undefined) continue;
    try {
      headers.set(name, strictUtf8.decode(Buffer.from(value, 'latin1')));
    } catch (cause) {
      return new InvalidEventError(
        'bad-encoding',
        `header ${name} holds bytes that are not UTF-8`,
        {
          field: attribute,
          fix: 'percent-encode the UTF-8 bytes of non-ASCII characters, as the CloudEvents HTTP binding says',
          cause,
        },
      );
    }
  }
  return headers;
}

/** Reads one event in binary or structured mode; undefined when it is neither. */
function readSingle(
  headers: ReadonlyMap<string, string>,
  body: Uint8Array,
): EventResult | undefined {
  const mode = modeOf(headers);
  if (mode === 'structured') return fromStructuredBody(body);
  if (mode === 'binary') return fromBinary(headers, body);
  return undefined;
}

/**
 * A CloudEvent in a handler's answer (binary or structured mode), or undefined when the
 * status is not 2xx or the body is not a valid CloudEvent: such bodies are ignored.
 */
export function fromHttpResponse(
  res: HttpMessageLike & { status?: number },
): CloudEvent | undefined {
  if (res.status !== undefined && (res.status < 200 || res.status > 299)) return undefined;
  const headers = httpHeaders(res.headers);
  if (headers instanceof InvalidEventError) return undefined;
  const result = readSingle(headers, res.body);
  return result?.ok === true ? result.event : undefined;
}

export interface IngressLimits {
  /** Largest accepted body; larger gives `too-large` (413). */
  readonly maxBodyBytes?: number | undefined;
  /**
   * Deepest nesting of arrays and objects accepted in JSON data (binary mode with a JSON
   * content type, structured mode, batches); deeper gives `bad-json` (400) naming the member.
   */
  readonly maxJsonDepth?: number | undefined;
  /**
   * Called for every decoded event (e.g. with the stream's max message size through
   * `natsMessageSize`); a returned error rejects the whole request.
   */
  readonly checkEvent?:
    ((event: CloudEvent, index: number) => InvalidEventError | undefined) | undefined;
}

export type IngressResult =
  { ok: true; events: CloudEvent[]; batch: boolean } | { ok: false; error: InvalidEventError };

function tooLarge(size: number, max: number): InvalidEventError {
  return new InvalidEventError(
    'too-large',
    `the body has ${size} bytes, more than the limit of ${max}`,
    {
      field: 'body',
      fix: 'send smaller events or fewer events per batch',
    },
  );
}

function decodeRequest(headers: ReadonlyMap<string, string>, body: Uint8Array): IngressResult {
  const mode = modeOf(headers);
  if (mode === 'batch') {
    const batch = fromBatchBody(body);
    return batch.ok ? { ok: true, events: batch.events, batch: true } : batch;
  }
  const single = readSingle(headers, body);
  if (single !== undefined)
    return single.ok ? { ok: true, events: [single.event], batch: false } : single;
  const contentType = headers.get('content-type') ?? '(none)';
  const error =
    mode === 'unsupported'
      ? new InvalidEventError(
          'unsupported-media-type',
          `content type ${contentType} is not supported`,
          {
            field: 'content-type',
            fix: 'use binary mode, application/cloudevents+json or application/cloudevents-batch+json',
          },
        )
      : new InvalidEventError(
          'not-a-cloudevent',
          'the request is not a CloudEvent: no ce-specversion header and no CloudEvents content type',
          {
            field: 'specversion',
            fix: 'send ce-specversion, ce-id, ce-source and ce-type headers, or a structured CloudEvent',
          },
        );
  return { ok: false, error };
}

/** JSON nested more than `maxDepth` deep in the request, as an error naming the member. */
function tooDeep(
  headers: ReadonlyMap<string, string>,
  body: Uint8Array,
  maxDepth: number,
): InvalidEventError | undefined {
  const mode = modeOf(headers);
  let container: JsonContainer | undefined;
  if (mode === 'structured') container = 'event';
  else if (mode === 'batch') container = 'batch';
  else if (mode === 'binary' && isJsonMediaType(headers.get('content-type'))) container = 'value';
  const found = container === undefined ? undefined : findDeepJson(body, maxDepth, container);
  if (found === undefined) return undefined;
  const field = found.member ?? (container === 'value' ? 'data' : 'body');
  const error = new InvalidEventError(
    'bad-json',
    `${field} nests JSON arrays and objects more than ${String(maxDepth)} levels deep`,
    { field, fix: `send JSON nested at most ${String(maxDepth)} levels deep` },
  );
  return found.index === undefined ? error : error.atIndex(found.index);
}

/** Reads an ingress request: binary, structured or batch; a batch is validated whole. */
export function fromHttpRequest(req: HttpMessageLike, limits: IngressLimits = {}): IngressResult {
  if (limits.maxBodyBytes !== undefined && req.body.length > limits.maxBodyBytes) {
    return { ok: false, error: tooLarge(req.body.length, limits.maxBodyBytes) };
  }
  const headers = httpHeaders(req.headers);
  if (headers instanceof InvalidEventError) return { ok: false, error: headers };
  const deep =
    limits.maxJsonDepth === undefined ? undefined : tooDeep(headers, req.body, limits.maxJsonDepth);
  if (deep !== undefined) return { ok: false, error: deep };
  const result = decodeRequest(headers, req.body);
  if (!result.ok || limits.checkEvent === undefined) return result;
  for (const [index, event] of result.events.entries()) {
    const error = limits.checkEvent(event, index);
    if (error !== undefined)
      return { ok: false, error: result.batch ? error.atIndex(index) : error };
  }
  return result;
}
