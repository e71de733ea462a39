// Header plumbing shared by the NATS and HTTP bindings: percent-encoding of attribute values
// (CloudEvents HTTP binding §3.1.3.2, which the NATS binding reuses) and normalisation of the
// header shapes the clients hand us.
import { InvalidEventError } from './errors.ts';

/** Node's IncomingHttpHeaders, a plain record, fetch `Headers`, or NATS `MsgHdrs`. */
export type HeadersLike =
  | Readonly<Record<string, string | readonly string[] | undefined>>
  | Iterable<readonly [string, string | readonly string[]]>;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function mustEncode(code: number): boolean {
  // outside printable ASCII U+0021..U+007E, plus space, double quote and percent
  return code < 0x21 || code > 0x7e || code === 0x22 || code === 0x25;
}

// printable ASCII U+0021..U+007E without double quote and percent: nothing to encode
const NOTHING_TO_ENCODE = /^[\x21\x23\x24\x26-\x7e]*$/;

/** Percent-encodes a header value: the UTF-8 bytes of every character that must be encoded. */
export function percentEncode(value: string): string {
  if (NOTHING_TO_ENCODE.test(value)) return value; // the common case, without a copy
  let out = '';
  for (const char of value) {
    const code = char.codePointAt(0) ?? 0;
    if (!mustEncode(code)) {
      out += char;
      continue;
    }
    for (const byte of encoder.encode(char))
      out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const PERCENT_RUN = /(?:%[0-9A-Fa-f]{2})+/g;

/**
 * Decodes a percent-encoded header value. Throws InvalidEventError (`bad-encoding`) for a
 * `%` not followed by two hex digits or bytes that are not UTF-8.
 */
export function percentDecode(value: string, field: string): string {
  if (!value.includes('%')) return value;
  // a % that does not start a valid escape
  if (value.replace(PERCENT_RUN, '').includes('%')) throw badPercent(field);
  return value.replace(PERCENT_RUN, (run) => decodeRun(run, field));
}

function decodeRun(run: string, field: string): string {
  const bytes = new Uint8Array(run.length / 3);
  for (let i = 0; i < bytes.length; i += 1) {
    bytes[i] = Number.parseInt(run.slice(i * 3 + 1, i * 3 + 3), 16);
  }
  try {
    return strictDecoder.decode(bytes);
  } catch (cause) {
    throw new InvalidEventError(
      'bad-encoding',
      `header for ${field} has percent-encoded bytes that are not UTF-8`,
      { field, fix: 'percent-encode the UTF-8 bytes of the value', cause },
    );
  }
}

function badPercent(field: string): InvalidEventError {
  return new InvalidEventError(
    'bad-encoding',
    `header for ${field} has a % that is not followed by two hex digits`,
    {
      field,
      fix: 'encode a literal percent sign as %25',
    },
  );
}

function firstValue(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value[0];
}

function isIterable(h: HeadersLike): h is Iterable<readonly [string, string | readonly string[]]> {
  return typeof (h as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function';
}

/** Lower-cased header names to their first value. */
export function normalizeHeaders(headers: HeadersLike | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (headers === undefined) return out;
  const entries = isIterable(headers) ? headers : Object.entries(headers);
  for (const [name, raw] of entries) {
    const value = firstValue(raw);
    const key = name.toLowerCase();
    if (value !== undefined && !out.has(key)) out.set(key, value);
  }
  return out;
}
