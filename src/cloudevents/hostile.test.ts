// Hostile input against the CloudEvents core: JSON nested thousands of levels deep, attribute
// values that cannot be NATS or HTTP header values, raw non-ASCII header bytes, and member
// names that are special to JavaScript objects. Nothing may throw: every case is either
// encoded or refused with an InvalidEventError naming the field.
import { describe, expect, it } from 'vitest';
import { binaryHeaders } from './binary.ts';
import { makeEvent, validateEvent, type CloudEvent } from './event.ts';
import { fromHttpRequest, fromHttpResponse, toHttpBatchRequest, toHttpRequest } from './http.ts';
import { findDeepJson } from './json-depth.ts';
import { fromNatsMessage } from './nats.ts';
import { fromBatchBody, fromStructuredBody, toStructuredBody } from './structured.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

function nested(levels: number, open = '[', close = ']'): string {
  return open.repeat(levels) + close.repeat(levels);
}

const base = { specversion: '1.0', id: '1', source: '/s', type: 't' };
const structured = { 'content-type': 'application/cloudevents+json' };
const batch = { 'content-type': 'application/cloudevents-batch+json' };

describe('JSON nested deeply', () => {
  it('the structured encoder embeds valid JSON data as it is, however deep', () => {
    const data = nested(5000);
    const event = makeEvent({
      ...base,
      datacontenttype: 'application/json',
      data: enc.encode(data),
    });
    const body = dec.decode(toStructuredBody(event));
    expect(body.endsWith(`"data":${data}}`)).toBe(true);
    const spaced = makeEvent({ ...base, data: enc.encode(' {"a" : [1, 2]} ') });
    expect(dec.decode(toHttpRequest(spaced, 'structured').body)).toContain(
      '"data": {"a" : [1, 2]} }',
    );
    const parsed = JSON.parse(dec.decode(toHttpBatchRequest([spaced, event]).body)) as unknown[];
    expect(parsed).toHaveLength(2);
  });

  it('decoding structured or batch data nested 5,000 deep keeps it, or is an error naming data, never a RangeError', () => {
    const deep = nested(5000);
    const one = enc.encode(
      `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${deep}}`,
    );
    const single = fromStructuredBody(one);
    expect(single.ok && dec.decode(single.event.data)).toBe(deep);
    const many = fromBatchBody(enc.encode(`[${dec.decode(one)}]`));
    expect(many.ok && dec.decode(many.events[0]?.data)).toBe(deep);
    expect(fromNatsMessage({ headers: structured, data: one }).ok).toBe(true);
    // a member name written with escapes is found only by parsing: the value is re-serialised
    const escaped = enc.encode(
      `{"specversion":"1.0","id":"1","source":"/s","type":"t","d\\u0061ta":${deep}}`,
    );
    const failed = fromStructuredBody(escaped);
    expect(!failed.ok && [failed.error.field, failed.error.httpStatus]).toEqual(['data', 400]);
    const failedBatch = fromBatchBody(
      enc.encode(`[${JSON.stringify(base)},${dec.decode(escaped)}]`),
    );
    expect(!failedBatch.ok && [failedBatch.error.field, failedBatch.error.index]).toEqual([
      'data',
      1,
    ]);
  });
});

describe('the JSON depth limit', () => {
  it('findDeepJson scans linearly: strings, escapes, batch index and member', () => {
    expect(findDeepJson(enc.encode(nested(3)), 3, 'value')).toBeUndefined();
    expect(findDeepJson(enc.encode(nested(4)), 3, 'value')).toEqual({});
    expect(findDeepJson(enc.encode(`"${'['.repeat(10)}"`), 3, 'value')).toBeUndefined();
    expect(findDeepJson(enc.encode(`["\\"[[[[[", 1]`), 2, 'value')).toBeUndefined();
    expect(findDeepJson(enc.encode(`["\\\\", [[[1]]]]`), 3, 'value')).toEqual({});
    const event = enc.encode(`{"id":"[[[[","data":${nested(3, '{"a":', '}')}}`);
    expect(findDeepJson(event, 3, 'event')).toBeUndefined();
    expect(findDeepJson(event, 2, 'event')).toEqual({ member: 'data' });
    const list = enc.encode(`[{"data":[1,[2]]},{"ext":"x","a\\u0062":${nested(3)}}]`);
    expect(findDeepJson(list, 2, 'batch')).toEqual({ index: 1, member: 'ab' });
    expect(findDeepJson(enc.encode(`[${nested(5)}]`), 2, 'batch')).toEqual({ index: 0 });
    expect(findDeepJson(enc.encode(nested(100_000)), 64, 'value')).toEqual({});
  });

  it('fromHttpRequest refuses JSON nested deeper than maxJsonDepth, naming data', () => {
    const limits = { maxJsonDepth: 4 };
    const binary = (data: string, type = 'application/json') => ({
      headers: {
        'ce-specversion': '1.0',
        'ce-id': '1',
        'ce-source': '/s',
        'ce-type': 't',
        'content-type': type,
      },
      body: enc.encode(data),
    });
    expect(fromHttpRequest(binary(nested(4)), limits).ok).toBe(true);
    const deep = fromHttpRequest(binary(nested(5)), limits);
    expect(!deep.ok && [deep.error.field, deep.error.httpStatus]).toEqual(['data', 400]);
    // only JSON media types are scanned: other bytes are not JSON
    expect(fromHttpRequest(binary(nested(5), 'application/octet-stream'), limits).ok).toBe(true);
    const event = (data: string) =>
      `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${data}}`;
    expect(
      fromHttpRequest({ headers: structured, body: enc.encode(event(nested(4))) }, limits).ok,
    ).toBe(true);
    const s = fromHttpRequest({ headers: structured, body: enc.encode(event(nested(5))) }, limits);
    expect(!s.ok && s.error.field).toBe('data');
    const b = fromHttpRequest(
      { headers: batch, body: enc.encode(`[${event('1')},${event(nested(5))}]`) },
      limits,
    );
    expect(!b.ok && [b.error.field, b.error.index]).toEqual(['data', 1]);
  });
});

describe('attribute values that cannot be header values', () => {
  it('refuses a datacontenttype with CR, LF or other control characters, naming it', () => {
    for (const ct of [
      'application/json\r\n',
      'application/json\n',
      'text/plain; a=b\rc',
      'a/b;\u0000',
      'a/b; x=\u00e9',
    ]) {
      const err = validateEvent(makeEvent({ ...base, datacontenttype: ct }));
      expect(err?.field, JSON.stringify(ct)).toBe('datacontenttype');
    }
    expect(
      validateEvent(makeEvent({ ...base, datacontenttype: 'text/plain;\tcharset="utf-8"' })),
    ).toBeUndefined();
  });

  it('every header of a valid event is a valid NATS and HTTP header value, whatever its attributes hold', () => {
    const headerSafe = /^[\t\x20-\x7e]*$/;
    for (let code = 0; code < 0x3000; code += 1) {
      if (code >= 0xd800 && code <= 0xdfff) continue;
      const c = String.fromCharCode(code);
      const candidates: CloudEvent[] = [
        makeEvent({ ...base, id: `a${c}`, source: `/${c}`, type: `t${c}`, subject: c }),
        makeEvent({ ...base, datacontenttype: `text/plain; x=${c}` }),
        makeEvent({
          ...base,
          extensions: { ext: c, traceparent: `00-${c}`, tracestate: `a=${c}` },
        }),
      ];
      for (const event of candidates) {
        if (validateEvent(event) !== undefined) continue;
        for (const [name, value] of Object.entries(binaryHeaders(event))) {
          expect(headerSafe.test(value), `${name} for U+${code.toString(16)}`).toBe(true);
        }
      }
    }
  });

  it('refuses structured and batch events whose datacontenttype holds CR/LF', () => {
    const body = JSON.stringify({ ...base, datacontenttype: 'application/json\r\n', data: 1 });
    const s = fromHttpRequest({ headers: structured, body: enc.encode(body) });
    expect(!s.ok && [s.error.field, s.error.httpStatus]).toEqual(['datacontenttype', 400]);
    const b = fromHttpRequest({
      headers: batch,
      body: enc.encode(`[${JSON.stringify(base)},${body}]`),
    });
    expect(!b.ok && [b.error.field, b.error.index]).toEqual(['datacontenttype', 1]);
  });
});

describe('raw header bytes (Node and fetch give header values as latin1 strings)', () => {
  const latin1 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
  const headers = (extra: Record<string, string>) => ({
    'ce-specversion': '1.0',
    'ce-id': '1',
    'ce-source': '/s',
    'ce-type': 't',
    ...extra,
  });

  it('reads raw UTF-8 bytes as UTF-8', () => {
    const res = fromHttpRequest({
      headers: headers({ 'ce-source': latin1('/café'), 'ce-myext': latin1('ü %C3%BC') }),
      body: new Uint8Array(),
    });
    expect(res.ok && [res.events[0]?.source, res.events[0]?.extensions.myext]).toEqual([
      '/café',
      'ü ü',
    ]);
    const reply = fromHttpResponse({
      status: 200,
      headers: headers({ 'ce-type': latin1('tÿpe') }),
      body: new Uint8Array(),
    });
    expect(reply?.type).toBe('tÿpe');
  });

  it('refuses bytes that are not UTF-8, naming the attribute', () => {
    for (const [header, field] of [
      ['ce-source', 'source'],
      ['ce-id', 'id'],
      ['ce-myext', 'myext'],
      ['ce-traceparent', 'traceparent'],
      ['traceparent', 'traceparent'],
      ['content-type', 'datacontenttype'],
    ] as const) {
      const res = fromHttpRequest({
        headers: headers({ [header]: '\u00ff\u00fe' }),
        body: new Uint8Array(),
      });
      expect(!res.ok && [res.error.field, res.error.reason, res.error.httpStatus], header).toEqual([
        field,
        'bad-encoding',
        400,
      ]);
    }
  });
});

describe('member names special to JavaScript objects', () => {
  it('refuses an extension named __proto__ (structured and binary) instead of dropping it', () => {
    const s = fromStructuredBody(
      enc.encode('{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":"x"}'),
    );
    expect(!s.ok && s.error.field).toBe('__proto__');
    const b = fromHttpRequest({
      headers: {
        'ce-specversion': '1.0',
        'ce-id': '1',
        'ce-source': '/s',
        'ce-type': 't',
        'ce-__proto__': 'x',
      },
      body: new Uint8Array(),
    });
    expect(!b.ok && b.error.field).toBe('__proto__');
  });
});

describe('JSON data read from JSON-format events', () => {
  const event = (data: string, extra = '') =>
    `{"specversion":"1.0","id":"1","source":"/s","type":"t"${extra},"data":${data}}`;

  it('keeps the bytes of data as sent: big integers, 1e400 and formatting survive', () => {
    for (const data of [
      '12345678901234567890',
      '1e400',
      '[1, 2 ,{"a" : 0.10}]',
      '"\\ud800"',
      '-0',
    ]) {
      const one = fromStructuredBody(enc.encode(event(data)));
      expect(one.ok && dec.decode(one.event.data), data).toBe(data);
    }
    const spaced = fromStructuredBody(
      enc.encode(
        `{ "data" :\n 12345678901234567891 ,"specversion":"1.0","id":"1","source":"/s","type":"t"}`,
      ),
    );
    expect(spaced.ok && dec.decode(spaced.event.data)).toBe('12345678901234567891');
    const many = fromBatchBody(
      enc.encode(
        `[${event('1')}, ${event('{"data": 98765432109876543210}', ',"subject":"data"')}]`,
      ),
    );
    expect(many.ok && many.events.map((e) => dec.decode(e.data))).toEqual([
      '1',
      '{"data": 98765432109876543210}',
    ]);
  });

  it('takes the last of duplicate data members, as JSON.parse does', () => {
    const dup = fromStructuredBody(enc.encode(event('2', ',"data":12345678901234567890')));
    expect(dup.ok && dec.decode(dup.event.data)).toBe('2');
  });
});
