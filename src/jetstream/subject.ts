// Subject convention: an event of type T in a stream with prefix P lives on `P.enc(T)`, and
// top-level type filters become the consumer's `filter_subjects` (pushdown), so JetStream
// drops non-matching events server-side. The dispatcher still evaluates every filter, so
// pushdown only has to select a superset. See docs/subjects-and-filters.md.
//
// enc(T): split T on '.', encode each token, join with '.'.
//   - an empty token (leading, trailing or doubled dot) becomes the marker `%_`;
//   - in other tokens the characters A-Z a-z 0-9 - _ ~ : / @ + = stay as they are, and every
//     other UTF-8 byte (space and other whitespace, control characters, `*`, `>`, `%`, `$`,
//     quotes, non-ASCII...) becomes `%XX` (upper-case hex).
// Every produced token is non-empty, free of whitespace, `*` and `>`, and decodes back
// uniquely (`%` is always followed by two hex digits or by `_` alone), so enc is injective.
import { validateFilters, type CheckedFilter, type Filter } from '../cloudevents/filter-dialect.ts';

/** Marker for an empty token: can never be produced by percent-encoding a non-empty token. */
export const EMPTY_TOKEN = '%_';
/** More pushed-down subjects than this fall back to the whole stream. */
export const MAX_FILTER_SUBJECTS = 20;

const KEEP = /^[A-Za-z0-9\-_~:/@+=]$/;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function encodeToken(token: string): string {
  if (token === '') return EMPTY_TOKEN;
  let out = '';
  for (const char of token) {
    if (KEEP.test(char)) {
      out += char;
      continue;
    }
    for (const byte of utf8.encode(char)) {
      out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  return out;
}

/**
 * The subject tokens of an event type (without the stream prefix). Throws a TypeError for a
 * string that is not well-formed Unicode (a lone surrogate has no UTF-8 form; validated
 * events never hold one).
 */
export function encodeTypeToSubject(type: string): string {
  if (!type.isWellFormed()) throw new TypeError('event type is not well-formed Unicode');
  return type.split('.').map(encodeToken).join('.');
}

/** The subject an event of `type` is published on in a stream with `prefix`. */
export function subjectFor(prefix: string, type: string): string {
  return `${prefix}.${encodeTypeToSubject(type)}`;
}

/** The subjects a stream with `prefix` captures. */
export function streamSubjects(prefix: string): string[] {
  return [`${prefix}.>`];
}

function decodeToken(token: string): string {
  if (token === EMPTY_TOKEN) return '';
  if (!/^(?:[A-Za-z0-9\-_~:/@+=]|%[0-9A-F]{2})+$/.test(token)) {
    throw new Error(`subject token ${JSON.stringify(token)} is not an encoded type token`);
  }
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i += 1) {
    if (token[i] === '%') {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(token.charCodeAt(i));
    }
  }
  return strictUtf8.decode(new Uint8Array(bytes));
}

/**
 * The type a subject encodes, for tests and debugging only: consumers read the type from
 * the `ce-type` header. Throws for a subject outside the prefix or not produced by enc.
 */
export function decodeSubjectToType(prefix: string, subject: string): string {
  if (!subject.startsWith(`${prefix}.`)) {
    throw new Error(`subject ${subject} is not under prefix ${prefix}`);
  }
  return subject
    .slice(prefix.length + 1)
    .split('.')
    .map(decodeToken)
    .join('.');
}

/** A valid NATS subject or stream prefix: non-empty tokens without whitespace (wildcards optional). */
export function isValidSubject(subject: string, allowWildcards = false): boolean {
  const tokens = subject.split('.');
  return tokens.every(
    (token, i) =>
      token !== '' &&
      !/\s/.test(token) &&
      (allowWildcards
        ? token === '*' || (token === '>' && i === tokens.length - 1) || !/[*>]/.test(token)
        : !/[*>]/.test(token)),
  );
}

/** NATS subject matching: `*` matches one token, a final `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i += 1) {
    if (p[i] === '>') return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

// ---- pushdown -------------------------------------------------------------------------

/** Encoded tokens after the prefix; `wild` adds a final `>`. `{[], wild}` is the whole stream. */
interface Pattern {
  readonly tokens: readonly string[];
  readonly wild: boolean;
}

const ALL: readonly Pattern[] = [{ tokens: [], wild: true }];

function covers(a: Pattern, b: Pattern): boolean {
  if (!a.wild)
    return (
      !b.wild && a.tokens.length === b.tokens.length && a.tokens.every((t, i) => t === b.tokens[i])
    );
  const longEnough = b.wild
    ? b.tokens.length >= a.tokens.length
    : b.tokens.length > a.tokens.length;
  return longEnough && a.tokens.every((t, i) => t === b.tokens[i]);
}

function intersect(a: Pattern, b: Pattern): Pattern | undefined {
  if (covers(a, b)) return b;
  if (covers(b, a)) return a;
  return undefined; // these pattern shapes (literal or `tokens.>`) never overlap partially
}

/** Patterns matching every event both sets match (a superset when it would be empty). */
function intersectSets(a: readonly Pattern[], b: readonly Pattern[]): readonly Pattern[] {
  const out: Pattern[] = [];
  for (const x of a) {
    for (const y of b) {
      const both = intersect(x, y);
      if (both !== undefined) out.push(both);
    }
  }
  // empty: no event can pass all filters; keep the smaller set so filter_subjects is never
  // empty (empty would mean "everything") and the dispatcher drops what arrives
  if (out.length === 0) return a.length <= b.length ? a : b;
  return normalize(out);
}

function normalize(patterns: readonly Pattern[]): readonly Pattern[] {
  if (patterns.some((p) => p.tokens.length === 0 && p.wild)) return ALL;
  const kept = patterns.filter(
    (p, i) => !patterns.some((q, j) => j !== i && covers(q, p) && (!covers(p, q) || j < i)),
  );
  return kept.length > MAX_FILTER_SUBJECTS ? ALL : kept;
}

function typePrefixPattern(typePrefix: string): readonly Pattern[] {
  const tokens = typePrefix.split('.');
  tokens.pop(); // the last token may be partial (or empty after a final dot): not pushable
  if (tokens.length === 0) return ALL;
  return [{ tokens: tokens.map(encodeToken), wild: true }];
}

function typeOf(attributes: readonly (readonly [string, string])[]): string | undefined {
  return attributes.find(([name]) => name === 'type')?.[1];
}

function patternsOf(filter: CheckedFilter): readonly Pattern[] {
  switch (filter.dialect) {
    case 'exact': {
      const type = typeOf(filter.attributes);
      return !type?.isWellFormed()
        ? ALL
        : [{ tokens: encodeTypeToSubject(type).split('.'), wild: false }];
    }
    case 'prefix': {
      const type = typeOf(filter.attributes);
      return !type?.isWellFormed() ? ALL : typePrefixPattern(type);
    }
    case 'all':
      return conjunction(filter.filters);
    case 'any':
      return normalize(filter.filters.flatMap(patternsOf));
    default:
      return ALL; // suffix, not, cel: no subject can express them
  }
}

function conjunction(filters: readonly CheckedFilter[]): readonly Pattern[] {
  return filters.map(patternsOf).reduce(intersectSets, ALL);
}

function render(prefix: string, p: Pattern): string {
  return [prefix, ...p.tokens, ...(p.wild ? ['>'] : [])].join('.');
}

/**
 * The consumer's `filter_subjects` for a subscription's top-level filters: sorted,
 * de-duplicated, none covering another, at most MAX_FILTER_SUBJECTS, never empty. Structurally
 * invalid filters push nothing down (`P.>`); the controller reports them as InvalidFilter.
 */
export function pushdownSubjects(prefix: string, filters: readonly Filter[] | undefined): string[] {
  const checked = validateFilters(filters);
  if (!checked.ok) return streamSubjects(prefix);
  return normalize(conjunction(checked.value))
    .map((p) => render(prefix, p))
    .sort();
}
