// Linear scans of JSON text over its bytes (no recursion, no parse): how deeply it nests, and
// where the `data` members of JSON-format events are. Brackets, braces, colons and commas
// outside strings count; UTF-8 multi-byte sequences never hold ASCII bytes, so the scans work
// on the raw bytes. Used to refuse pathological data before JSON.parse and JSON.stringify see
// it, and to keep JSON data exactly as it was sent.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COLON = 0x3a;
const DATA_KEY = Buffer.from('"data"');

/** What holds the scanned JSON: a bare value, one JSON-format event, or a batch of them. */
export type JsonContainer = 'value' | 'event' | 'batch';

/** Where the nesting went too deep: the batch position and the event member, when known. */
export interface DeepJson {
  readonly index?: number;
  readonly member?: string;
}

/** Nesting levels of the container itself (the batch array, the event object). */
const OWN_LEVELS: Record<JsonContainer, number> = { value: 0, event: 1, batch: 2 };

/** The index of the quote closing the string opened at `start` (text.length when unclosed). */
function endOfString(text: Uint8Array, start: number): number {
  let i = text.indexOf(QUOTE, start + 1);
  while (i !== -1) {
    let backslashes = 0;
    while (text[i - 1 - backslashes] === BACKSLASH) backslashes += 1;
    if (backslashes % 2 === 0) return i;
    i = text.indexOf(QUOTE, i + 1);
  }
  return text.length;
}

function memberName(text: Uint8Array, start: number, end: number): string | undefined {
  try {
    const name: unknown = JSON.parse(
      Buffer.from(text.buffer, text.byteOffset + start, end + 1 - start).toString(),
    );
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined; // not a JSON string: the caller names the whole value
  }
}

/** The scan's position: depth, batch index, and the member being read at the event's level. */
interface ScanState {
  depth: number;
  index: number;
  /** the last string at the event's own level (a member name when `:` follows it) */
  string: [number, number] | undefined;
  /** the member whose value is being scanned */
  member: [number, number] | undefined;
}

function opened(text: Uint8Array, s: ScanState, own: number, limit: number): DeepJson | undefined {
  if (s.depth === own) s.member = s.string;
  s.depth += 1;
  if (s.depth <= limit) return undefined;
  const member = s.member === undefined ? undefined : memberName(text, ...s.member);
  return member === undefined ? {} : { member };
}

/**
 * Finds the first place where JSON text nests more than `maxDepth` arrays or objects deep
 * (counted inside an event's members for `event` and `batch`: `{"data":[[1]]}` nests
 * `data` 2 deep). Undefined when it does not; the text need not be valid JSON.
 */
export function findDeepJson(
  text: Uint8Array,
  maxDepth: number,
  container: JsonContainer,
): DeepJson | undefined {
  const own = OWN_LEVELS[container];
  const limit = maxDepth + own;
  const s: ScanState = { depth: 0, index: 0, string: undefined, member: undefined };
  for (let i = 0; i < text.length; i += 1) {
    const byte = text[i];
    if (byte === QUOTE) {
      const end = endOfString(text, i);
      if (s.depth === own && own > 0) s.string = [i, end];
      i = end;
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      const found = opened(text, s, own, limit);
      if (found !== undefined) return container === 'batch' ? { ...found, index: s.index } : found;
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      s.depth -= 1;
      if (s.depth < own) [s.string, s.member] = [undefined, undefined];
    } else if (byte === COMMA && s.depth === 1 && container === 'batch') {
      s.index += 1;
    }
  }
  return undefined;
}

/** Where a `data` member's value lies in the text: [start, end). */
export type Span = readonly [number, number];

interface SpanState {
  depth: number;
  index: number;
  /** the last member name at the event's level was exactly "data" */
  dataKey: boolean;
  /** start of the data value being read */
  start: number;
  readonly spans: (Span | undefined)[];
}

function isWhitespace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

function skipWhitespace(text: Uint8Array, from: number): number {
  let i = from;
  while (isWhitespace(text[i])) i += 1;
  return i;
}

function endValue(text: Uint8Array, s: SpanState, at: number): void {
  if (s.start < 0) return;
  let end = at;
  while (end > s.start && isWhitespace(text[end - 1])) end -= 1;
  s.spans[s.index] = [s.start, end]; // a later data member replaces it, as in JSON.parse
  s.start = -1;
}

function atEventLevel(text: Uint8Array, s: SpanState, i: number, byte: number | undefined): void {
  if (byte === COLON) {
    if (s.dataKey) s.start = skipWhitespace(text, i + 1);
  } else if (byte === COMMA) {
    endValue(text, s, i);
  }
}

/**
 * The spans of the `data` member values of a JSON-format event (`event`) or of each event of a
 * batch (`batch`, by index), for text that JSON.parse accepted. A member name written with
 * escapes (`"d\u0061ta"`) is not found: the caller then re-serialises the parsed value.
 */
export function findDataSpans(
  text: Uint8Array,
  container: 'event' | 'batch',
): (Span | undefined)[] {
  const own = OWN_LEVELS[container];
  const s: SpanState = { depth: 0, index: 0, dataKey: false, start: -1, spans: [] };
  for (let i = 0; i < text.length; i += 1) {
    const byte = text[i];
    if (byte === QUOTE) {
      const end = endOfString(text, i);
      if (s.depth === own && s.start < 0) {
        s.dataKey = end - i + 1 === DATA_KEY.length && DATA_KEY.equals(text.subarray(i, end + 1));
      }
      i = end;
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      s.depth += 1;
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      if (s.depth === own) endValue(text, s, i);
      s.depth -= 1;
    } else if (s.depth === own) {
      atEventLevel(text, s, i, byte);
    } else if (byte === COMMA && s.depth === 1 && container === 'batch') {
      s.index += 1;
    }
  }
  return s.spans;
}
