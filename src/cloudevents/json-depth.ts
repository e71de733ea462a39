// How deeply JSON text nests, found by one linear pass over its bytes (no recursion, no parse):
// brackets and braces outside strings count. UTF-8 multi-byte sequences never hold ASCII bytes,
// so the scan works on the raw bytes. Used by the ingress to refuse pathological data before
// JSON.parse and JSON.stringify see it.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

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
