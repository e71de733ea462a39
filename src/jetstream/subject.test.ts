import { describe, expect, it } from 'vitest';
import type { CloudEvent } from '../cloudevents/event.ts';
import type { Filter } from '../cloudevents/filter-dialect.ts';
import { compileFilters } from '../dispatcher/filter.ts';
import {
  decodeSubjectToType,
  encodeTypeToSubject,
  isValidSubject,
  MAX_FILTER_SUBJECTS,
  pushdownSubjects,
  streamSubjects,
  subjectFor,
  subjectMatches,
} from './subject.ts';

const TRICKY = [
  'com.example.order.created',
  'com.example.order.created.',
  '.com.example',
  'a..b',
  '.',
  '..',
  '',
  'a b',
  'a\tb',
  'a\nb',
  '*',
  'a.*.b',
  '>',
  'a.>',
  'a>b',
  '%',
  '%_',
  '%25',
  '%41',
  'A',
  '_',
  'ü.日本',
  'emoji.😀',
  '\u0000',
  '\u007f',
  '$JS.API',
  'a/b:c@d+e=f~g-h_i',
  'quote"s\'',
];

/** Random strings biased toward the characters that matter. */
function randomType(rng: () => number): string {
  const alphabet = [
    'a',
    'b',
    '.',
    '.',
    ' ',
    '*',
    '>',
    '%',
    '_',
    '2',
    'F',
    'é',
    '😀',
    '\t',
    '$',
    '-',
  ];
  const length = Math.floor(rng() * 10);
  let out = '';
  for (let i = 0; i < length; i += 1) out += alphabet[Math.floor(rng() * alphabet.length)] ?? '';
  return out;
}

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

describe('subject encoding', () => {
  it('keeps ordinary reverse-DNS types readable', () => {
    expect(subjectFor('shop', 'com.example.order.created')).toBe('shop.com.example.order.created');
    expect(encodeTypeToSubject('order-v2.created_at')).toBe('order-v2.created_at');
  });

  it('encodes wildcards, whitespace, empty tokens and the escape character', () => {
    expect(encodeTypeToSubject('a.*.b')).toBe('a.%2A.b');
    expect(encodeTypeToSubject('a.>')).toBe('a.%3E');
    expect(encodeTypeToSubject('a b')).toBe('a%20b');
    expect(encodeTypeToSubject('a..b.')).toBe('a.%_.b.%_');
    expect(encodeTypeToSubject('100%')).toBe('100%25');
    expect(encodeTypeToSubject('%_')).toBe('%25_');
    expect(encodeTypeToSubject('ü')).toBe('%C3%BC');
    expect(encodeTypeToSubject('')).toBe('%_');
  });

  it('produces only valid literal subjects and round-trips', () => {
    for (const type of TRICKY) {
      const subject = subjectFor('shop', type);
      expect(isValidSubject(subject), `${JSON.stringify(type)} → ${subject}`).toBe(true);
      expect(/[\s*>]/.test(subject)).toBe(false);
      expect(decodeSubjectToType('shop', subject)).toBe(type);
    }
  });

  it('is injective on tricky and random types', () => {
    const rng = seeded(42);
    const types = new Set([...TRICKY, ...Array.from({ length: 5000 }, () => randomType(rng))]);
    const subjects = new Map<string, string>();
    for (const type of types) {
      const subject = subjectFor('p', type);
      const other = subjects.get(subject);
      expect(other, `${JSON.stringify(type)} and ${JSON.stringify(other)}`).toBeUndefined();
      subjects.set(subject, type);
      expect(isValidSubject(subject)).toBe(true);
      expect(decodeSubjectToType('p', subject)).toBe(type);
    }
  });

  it('rejects types that are not well-formed Unicode and subjects it did not produce', () => {
    expect(() => encodeTypeToSubject('a\uD800')).toThrow(TypeError);
    expect(() => decodeSubjectToType('p', 'p.a%2')).toThrow();
    expect(() => decodeSubjectToType('p', 'q.a')).toThrow();
    expect(() => decodeSubjectToType('p', 'p.a%2a')).toThrow(); // lower-case hex is not canonical
  });

  it('streams capture the whole prefix', () => {
    expect(streamSubjects('shop')).toEqual(['shop.>']);
  });
});

describe('subjectMatches', () => {
  it('follows NATS wildcard rules', () => {
    expect(subjectMatches('a.>', 'a.b')).toBe(true);
    expect(subjectMatches('a.>', 'a.b.c')).toBe(true);
    expect(subjectMatches('a.>', 'a')).toBe(false);
    expect(subjectMatches('a.*', 'a.b')).toBe(true);
    expect(subjectMatches('a.*', 'a.b.c')).toBe(false);
    expect(subjectMatches('a.b', 'a.b')).toBe(true);
    expect(subjectMatches('a.b', 'a.b.c')).toBe(false);
    expect(isValidSubject('a.>', true)).toBe(true);
    expect(isValidSubject('a.>.b', true)).toBe(false);
    expect(isValidSubject('a..b')).toBe(false);
  });
});

const P = 'shop';

describe('pushdownSubjects', () => {
  it('pushes an exact type down as one literal subject', () => {
    expect(pushdownSubjects(P, [{ exact: { type: 'com.example.order.created' } }])).toEqual([
      'shop.com.example.order.created',
    ]);
    expect(pushdownSubjects(P, [{ exact: { type: 'a b.*' } }])).toEqual(['shop.a%20b.%2A']);
  });

  it('matches everything without type filters', () => {
    expect(pushdownSubjects(P, undefined)).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ exact: { source: '/x' } }])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ suffix: { type: '.created' } }])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ not: { exact: { type: 'a' } } }])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ cel: 'true' }])).toEqual(['shop.>']);
  });

  it('pushes type prefixes down to their complete tokens', () => {
    expect(pushdownSubjects(P, [{ prefix: { type: 'com.example.' } }])).toEqual([
      'shop.com.example.>',
    ]);
    expect(pushdownSubjects(P, [{ prefix: { type: 'com.example.or' } }])).toEqual([
      'shop.com.example.>',
    ]);
    expect(pushdownSubjects(P, [{ prefix: { type: 'com' } }])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ prefix: { type: '' } }])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ prefix: { type: '.x' } }])).toEqual(['shop.%_.>']);
  });

  it('unions any, removing duplicates and subsumed subjects, sorted', () => {
    const filters: Filter[] = [
      {
        any: [
          { exact: { type: 'b.x' } },
          { exact: { type: 'a.x.y' } },
          { prefix: { type: 'a.x.' } },
          { exact: { type: 'b.x' } },
          { prefix: { type: 'a.' } },
        ],
      },
    ];
    expect(pushdownSubjects(P, filters)).toEqual(['shop.a.>', 'shop.b.x']);
    expect(
      pushdownSubjects(P, [{ any: [{ exact: { type: 'a' } }, { exact: { source: 's' } }] }]),
    ).toEqual(['shop.>']);
  });

  it('intersects top-level filters and all', () => {
    expect(pushdownSubjects(P, [{ prefix: { type: 'a.' } }, { exact: { type: 'a.b' } }])).toEqual([
      'shop.a.b',
    ]);
    expect(
      pushdownSubjects(P, [{ all: [{ prefix: { type: 'a.' } }, { prefix: { type: 'a.b.' } }] }]),
    ).toEqual(['shop.a.b.>']);
    const anyOf = { any: [{ exact: { type: 'a.b' } }, { exact: { type: 'c.d' } }] };
    expect(pushdownSubjects(P, [anyOf, { prefix: { type: 'c.' } }])).toEqual(['shop.c.d']);
    // disjoint: nothing can match, yet filter_subjects never becomes empty (= everything)
    expect(pushdownSubjects(P, [{ exact: { type: 'a' } }, { exact: { type: 'b' } }])).toEqual([
      'shop.a',
    ]);
  });

  it('falls back to the whole stream past the limit, and for invalid filters', () => {
    const many = Array.from({ length: MAX_FILTER_SUBJECTS + 1 }, (_, i) => ({
      exact: { type: `t${i}` },
    }));
    expect(pushdownSubjects(P, [{ any: many }])).toEqual(['shop.>']);
    expect(pushdownSubjects(P, [{ any: many.slice(0, MAX_FILTER_SUBJECTS) }])).toHaveLength(
      MAX_FILTER_SUBJECTS,
    );
    expect(pushdownSubjects(P, [{ exact: {} }])).toEqual(['shop.>']);
  });
});

const pieces = ['a', 'b', 'ab', '', 'c', ' ', '*', '>', 'é'];

function randomPushdownType(rng: () => number): string {
  const tokens = Array.from(
    { length: 1 + Math.floor(rng() * 4) },
    () => pieces[Math.floor(rng() * pieces.length)] ?? '',
  );
  return tokens.join('.');
}

function randomTypeFilter(rng: () => number, depth: number): Filter {
  const roll = rng();
  const type = randomPushdownType(rng);
  const cut = type.slice(0, Math.floor(rng() * (type.length + 1)));
  if (depth > 1 || roll < 0.35) return { exact: { type } };
  if (roll < 0.7) return { prefix: { type: cut } };
  if (roll < 0.8) return { suffix: { type: cut } };
  if (roll < 0.9)
    return { any: [randomTypeFilter(rng, depth + 1), randomTypeFilter(rng, depth + 1)] };
  return { all: [randomTypeFilter(rng, depth + 1), randomTypeFilter(rng, depth + 1)] };
}

describe('pushdown is a superset of the filter', () => {
  it('every event that passes is on a pushed-down subject', () => {
    const rng = seeded(7);
    const universe = Array.from({ length: 400 }, () => randomPushdownType(rng));
    let checkedPasses = 0;
    for (let round = 0; round < 300; round += 1) {
      const filters = Array.from({ length: 1 + Math.floor(rng() * 2) }, () =>
        randomTypeFilter(rng, 0),
      );
      const compiled = compileFilters(filters);
      if (!compiled.ok) throw new Error(compiled.message);
      const subjects = pushdownSubjects(P, filters);
      expect(subjects.length).toBeGreaterThan(0);
      // pushed-down patterns never overlap (JetStream rejects overlapping filter subjects)
      for (const a of subjects)
        for (const b of subjects) if (a !== b) expect(subjectMatches(a, b)).toBe(false);
      const candidates = [
        ...universe,
        ...filters.flatMap((f) =>
          'exact' in f && f.exact?.type !== undefined ? [f.exact.type] : [],
        ),
      ];
      for (const type of candidates) {
        const event: CloudEvent = {
          specversion: '1.0',
          id: '1',
          source: '/s',
          type,
          extensions: {},
        };
        if (!compiled.filter.matches(event)) continue;
        checkedPasses += 1;
        const subject = subjectFor(P, type);
        expect(
          subjects.some((s) => subjectMatches(s, subject)),
          `${JSON.stringify(filters)} ${type} ${subjects.join(',')}`,
        ).toBe(true);
      }
    }
    expect(checkedPasses).toBeGreaterThan(100);
  });
});
