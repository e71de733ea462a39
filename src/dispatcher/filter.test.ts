import { describe, expect, it } from 'vitest';
import { makeEvent, type CloudEvent } from '../cloudevents/event.ts';
import type { Filter } from '../cloudevents/filter-dialect.ts';
import { celEvent, compileFilters, type CompiledFilter } from './filter.ts';

const enc = new TextEncoder();

const order = makeEvent({
  id: '1',
  source: '/shop/eu',
  type: 'com.example.order.created',
  subject: 'order-42',
  time: '2024-05-01T12:00:00Z',
  datacontenttype: 'application/json',
  data: enc.encode(
    '{"total":150,"count":3,"items":[{"sku":"a"},{"sku":"b"}],"customer":{"tier":"gold"}}',
  ),
  extensions: { partitionkey: 'c7', region: 'eu-west' },
});

function compile(filters: readonly Filter[] | undefined): CompiledFilter {
  const result = compileFilters(filters);
  if (!result.ok) throw new Error(`${result.path}: ${result.message}`);
  return result.filter;
}

const matches = (filters: readonly Filter[], event: CloudEvent = order): boolean =>
  compile(filters).matches(event);

describe('string dialects', () => {
  it('exact, prefix and suffix over attributes and extensions; all entries must match', () => {
    expect(matches([{ exact: { type: 'com.example.order.created' } }])).toBe(true);
    expect(matches([{ exact: { type: 'com.example.order' } }])).toBe(false);
    expect(matches([{ exact: { type: 'com.example.order.created', source: '/shop/eu' } }])).toBe(
      true,
    );
    expect(matches([{ exact: { type: 'com.example.order.created', source: '/shop/us' } }])).toBe(
      false,
    );
    expect(matches([{ prefix: { source: '/shop/' } }])).toBe(true);
    expect(matches([{ prefix: { type: 'com.example.or' } }])).toBe(true);
    expect(matches([{ suffix: { type: '.created' } }])).toBe(true);
    expect(matches([{ suffix: { type: '.deleted' } }])).toBe(false);
    expect(matches([{ exact: { region: 'eu-west' } }])).toBe(true);
    expect(matches([{ exact: { specversion: '1.0' } }])).toBe(true);
  });

  it('is case-sensitive, and a missing attribute never matches', () => {
    expect(matches([{ exact: { type: 'COM.EXAMPLE.ORDER.CREATED' } }])).toBe(false);
    expect(matches([{ exact: { dataschema: '' } }])).toBe(false);
    expect(matches([{ prefix: { missingext: '' } }])).toBe(false);
    expect(matches([{ suffix: { tostring: '' } }])).toBe(false);
    expect(matches([{ not: { exact: { missingext: 'x' } } }])).toBe(true);
  });

  it('matches everything without filters', () => {
    expect(compile(undefined).matches(order)).toBe(true);
    expect(compile([]).matches(order)).toBe(true);
  });
});

describe('composite dialects', () => {
  it('all, any, not and top-level conjunction, nested', () => {
    expect(matches([{ any: [{ exact: { type: 'a' } }, { suffix: { type: '.created' } }] }])).toBe(
      true,
    );
    expect(matches([{ any: [{ exact: { type: 'a' } }, { exact: { type: 'b' } }] }])).toBe(false);
    expect(
      matches([{ all: [{ prefix: { type: 'com.' } }, { exact: { subject: 'order-42' } }] }]),
    ).toBe(true);
    expect(matches([{ all: [{ prefix: { type: 'com.' } }, { exact: { subject: 'x' } }] }])).toBe(
      false,
    );
    expect(matches([{ not: { exact: { subject: 'test' } } }])).toBe(true);
    expect(matches([{ not: { not: { exact: { subject: 'order-42' } } } }])).toBe(true);
    expect(matches([{ prefix: { source: '/shop/' } }, { exact: { type: 'other' } }])).toBe(false);
    const spec: Filter[] = [
      { exact: { type: 'com.example.order.created' } },
      { prefix: { source: '/shop/' } },
      { any: [{ exact: { type: 'a' } }, { suffix: { type: '.created' } }] },
      { not: { exact: { subject: 'test' } } },
      { cel: "event.data.total > 100 && event.source.startsWith('/shop')" },
    ];
    expect(matches(spec)).toBe(true);
    expect(matches(spec, { ...order, subject: 'test' })).toBe(false);
  });
});

describe('CEL filters', () => {
  it('sees attributes, extensions and JSON data', () => {
    expect(matches([{ cel: "event.data.total > 100 && event.source.startsWith('/shop')" }])).toBe(
      true,
    );
    expect(matches([{ cel: 'event.data.total > 200' }])).toBe(false);
    expect(matches([{ cel: 'event.data.count == 3' }])).toBe(true);
    expect(matches([{ cel: "event.data.items.exists(i, i.sku == 'b')" }])).toBe(true);
    expect(matches([{ cel: "event.data.customer.tier in ['gold', 'platinum']" }])).toBe(true);
    expect(
      matches([{ cel: "event.region == 'eu-west' && event.partitionkey.startsWith('c')" }]),
    ).toBe(true);
    expect(matches([{ cel: 'has(event.subject) && !has(event.dataschema)' }])).toBe(true);
    expect(matches([{ cel: "timestamp(event.time) > timestamp('2024-01-01T00:00:00Z')" }])).toBe(
      true,
    );
    expect(matches([{ cel: "event.type.lowerAscii().endsWith('created')" }])).toBe(true);
    expect(matches([{ cel: "event.type.matches('^com\\\\.example\\\\.')" }])).toBe(true);
  });

  it('gives text as a string, other data as bytes, no data as absent', () => {
    const text = makeEvent({
      id: '1',
      source: '/s',
      type: 't',
      datacontenttype: 'text/plain',
      data: enc.encode('hello'),
    });
    expect(matches([{ cel: "event.data == 'hello'" }], text)).toBe(true);
    const bin = makeEvent({
      id: '1',
      source: '/s',
      type: 't',
      datacontenttype: 'application/octet-stream',
      data: new Uint8Array([1, 2]),
    });
    expect(matches([{ cel: 'size(event.data) == 2 && event.data == b"\\x01\\x02"' }], bin)).toBe(
      true,
    );
    const untyped = makeEvent({ id: '1', source: '/s', type: 't', data: enc.encode('{"a":1}') });
    expect(matches([{ cel: 'event.data.a == 1' }], untyped)).toBe(true);
    const none = makeEvent({ id: '1', source: '/s', type: 't' });
    expect(matches([{ cel: '!has(event.data)' }], none)).toBe(true);
    expect(celEvent(none)).toEqual({ specversion: '1.0', id: '1', source: '/s', type: 't' });
    const badJson = makeEvent({
      id: '1',
      source: '/s',
      type: 't',
      datacontenttype: 'application/json',
      data: enc.encode('{'),
    });
    expect(matches([{ cel: '!has(event.data)' }], badJson)).toBe(true);
  });

  it('counts runtime errors and non-boolean results as no match, and reports them', () => {
    const errors: string[] = [];
    const result = compileFilters([{ cel: 'event.data.missing > 1' }, { cel: 'true' }], {
      onCelError: (path, error) => errors.push(`${path}: ${error.message}`),
    });
    expect(result.ok && result.filter.matches(order)).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^filters\[0\]\.cel: /);
    expect(matches([{ cel: 'event.subject' }])).toBe(false);
    expect(matches([{ cel: '1' }])).toBe(false);
    expect(matches([{ cel: "event.source + 1 == 'x'" }])).toBe(false);
    expect(
      matches([{ cel: 'event.data.total > 100' }], makeEvent({ id: '1', source: '/s', type: 't' })),
    ).toBe(false);
    expect(matches([{ not: { cel: 'event.nothing == 1' } }])).toBe(true);
  });
});

describe('compile errors', () => {
  const cases: [string, unknown, string, RegExp][] = [
    [
      'CEL syntax',
      [{ exact: { type: 'a' } }, { cel: 'event.data.total >' }],
      'filters[1].cel',
      /./,
    ],
    [
      'nested CEL syntax',
      [{ any: [{ exact: { type: 'a' } }, { not: { cel: '((' } }] }],
      'filters[0].any[1].not.cel',
      /./,
    ],
    ['undeclared variable', [{ cel: 'x == 1' }], 'filters[0].cel', /undeclared reference to 'x'/],
    [
      'undeclared function',
      [{ cel: 'foo(event.id)' }],
      'filters[0].cel',
      /undeclared function 'foo'/,
    ],
    ['empty CEL', [{ cel: ' ' }], 'filters[0].cel', /non-empty/],
    [
      'two dialects',
      [{ exact: { type: 'a' }, prefix: { type: 'b' } }],
      'filters[0]',
      /exactly one/,
    ],
    ['no dialect', [{}], 'filters[0]', /one of/],
    ['unknown dialect', [{ regex: { type: 'a' } }], 'filters[0].regex', /unknown filter dialect/],
    ['empty map', [{ exact: {} }], 'filters[0].exact', /at least one/],
    ['bad attribute name', [{ prefix: { Type: 'a' } }], 'filters[0].prefix.Type', /attribute name/],
    ['non-string value', [{ suffix: { type: 1 } }], 'filters[0].suffix.type', /string/],
    ['empty any', [{ any: [] }], 'filters[0].any', /non-empty list/],
    ['not a list', { exact: { type: 'a' } }, 'filters', /list/],
    ['not an object', ['x'], 'filters[0]', /filter object/],
  ];

  it.each(cases)('%s', (_name, filters, path, message) => {
    const result = compileFilters(filters as Filter[]);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.path).toBe(path);
    expect(result.message).toMatch(message);
  });

  it('accepts comprehension variables and type names', () => {
    const result = compileFilters([
      { cel: 'event.data.items.all(i, type(i) == map) && [1].exists(x, x == int(1.0))' },
    ]);
    expect(result.ok && result.filter.celPrograms).toBe(1);
    expect(result.ok && result.filter.matches(order)).toBe(true);
  });
});

describe('throughput', () => {
  it('evaluates a mixed filter set over many events (no timing assertion)', () => {
    const filter = compile([
      { prefix: { type: 'com.example.' } },
      { any: [{ exact: { region: 'eu-west' } }, { suffix: { source: '/us' } }] },
      { cel: "event.data.total > 100 && event.source.startsWith('/shop')" },
    ]);
    const n = 20_000;
    const start = performance.now();
    let passed = 0;
    for (let i = 0; i < n; i += 1) if (filter.matches({ ...order, id: String(i) })) passed += 1;
    const perSecond = Math.round(n / ((performance.now() - start) / 1000));
    expect(passed).toBe(n);
    // informational only: printed for people comparing runs
    process.stdout.write(`filter throughput: ${perSecond} events/s\n`);
  });
});
