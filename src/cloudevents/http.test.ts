import { describe, expect, it } from 'vitest';
import { eventsEqual, makeEvent } from './event.ts';
import { fromHttpRequest, fromHttpResponse, toHttpBatchRequest, toHttpRequest } from './http.ts';
import { maxMessageSizeCheck } from './nats.ts';
import { SAMPLE_EVENTS as SAMPLES } from './samples.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('HTTP binding: round trips', () => {
  it('event → binary request → the same event', () => {
    for (const event of SAMPLES) {
      const req = toHttpRequest(event, 'binary');
      const back = fromHttpRequest(req);
      expect(
        back.ok && back.events.length === 1 && eventsEqual(back.events[0] ?? event, event),
      ).toBe(true);
      expect(back.ok && back.batch).toBe(false);
    }
  });

  it('event → structured request → the same event', () => {
    for (const event of SAMPLES) {
      const req = toHttpRequest(event, 'structured');
      expect(req.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
      const back = fromHttpRequest(req);
      expect(back.ok, JSON.stringify(back)).toBe(true);
      if (back.ok)
        expect(eventsEqual(back.events[0] ?? event, event), dec.decode(req.body)).toBe(true);
    }
  });

  it('inlines JSON data, strings text, base64-encodes binary', () => {
    const body = (i: number) =>
      JSON.parse(
        dec.decode(
          toHttpRequest(SAMPLES[i] ?? makeEvent({ id: '', source: '', type: '' }), 'structured')
            .body,
        ),
      ) as Record<string, unknown>;
    expect(body(1).data).toEqual({ total: 150, items: [{ sku: 'a' }] });
    expect(body(1).partitionkey).toBe('customer-7');
    expect(body(2).data).toBe('hello é');
    expect(body(3).data_base64).toBe('AP+ACg==');
    expect(body(3).data).toBeUndefined();
    expect(body(4).data_base64).toBe('wyg=');
    expect('data' in body(0) || 'data_base64' in body(0)).toBe(false);
    const untyped = makeEvent({
      id: '1',
      source: '/s',
      type: 't',
      data: enc.encode('{"a": [1, 2]}'),
    });
    const req = toHttpRequest(untyped, 'structured');
    expect(JSON.parse(dec.decode(req.body))).toMatchObject({ data: { a: [1, 2] } });
    const back = fromHttpRequest(req);
    // the data's bytes as sent, not re-serialised
    expect(back.ok && dec.decode(back.events[0]?.data)).toBe('{"a": [1, 2]}');
    expect(back.ok && back.events[0]?.datacontenttype).toBeUndefined();
  });

  it('batch → the same events, flagged as a batch', () => {
    const back = fromHttpRequest(toHttpBatchRequest(SAMPLES));
    expect(back.ok && back.batch).toBe(true);
    expect(
      back.ok &&
        back.events.every((e, i) => SAMPLES[i] !== undefined && eventsEqual(e, SAMPLES[i])),
    ).toBe(true);
  });

  it('carries W3C trace context in structured mode too', () => {
    const req = toHttpRequest(
      SAMPLES[1] ?? makeEvent({ id: '', source: '', type: '' }),
      'structured',
    );
    expect(req.headers.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });
});

describe('HTTP binding: replies', () => {
  const reply = makeEvent({
    id: 'r1',
    source: '/handler',
    type: 'com.example.order.accepted',
    datacontenttype: 'application/json',
    data: enc.encode('{"ok":true}'),
  });

  it('reads a binary or structured CloudEvent from a 2xx answer', () => {
    for (const format of ['binary', 'structured'] as const) {
      const res = toHttpRequest(reply, format);
      const got = fromHttpResponse({ ...res, status: 200 });
      expect(got !== undefined && eventsEqual(got, reply)).toBe(true);
    }
  });

  it('ignores non-2xx answers and bodies that are not CloudEvents', () => {
    expect(fromHttpResponse({ ...toHttpRequest(reply), status: 500 })).toBeUndefined();
    expect(
      fromHttpResponse({
        headers: { 'content-type': 'application/json' },
        body: enc.encode('{"ok":true}'),
        status: 200,
      }),
    ).toBeUndefined();
    expect(fromHttpResponse({ headers: {}, body: new Uint8Array(), status: 204 })).toBeUndefined();
    expect(
      fromHttpResponse({
        headers: { 'ce-specversion': '1.0' },
        body: new Uint8Array(),
        status: 200,
      }),
    ).toBeUndefined();
  });
});

describe('HTTP binding: ingress errors', () => {
  it('names the bad field', () => {
    const res = fromHttpRequest({
      headers: { 'ce-specversion': '1.0', 'ce-source': '/s', 'ce-type': 't' },
      body: new Uint8Array(),
    });
    expect(res.ok ? undefined : res.error.toProblem()).toEqual({
      field: 'id',
      message: 'required attribute id is missing',
      fix: 'set the id attribute (ce-id header, or "id" in structured mode)',
      reason: 'missing-attribute',
    });
  });

  it('rejects a whole batch for one bad event, naming its index', () => {
    const good = { specversion: '1.0', id: '1', source: '/s', type: 't' };
    const body = enc.encode(JSON.stringify([good, { ...good, type: undefined }]));
    const res = fromHttpRequest({
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body,
    });
    expect(res.ok ? undefined : [res.error.field, res.error.index, res.error.httpStatus]).toEqual([
      'type',
      1,
      400,
    ]);
    const notArray = fromHttpRequest({
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: enc.encode('{}'),
    });
    expect(notArray.ok ? undefined : notArray.error.reason).toBe('bad-json');
  });
});

describe('HTTP binding: ingress error classes', () => {
  const structured = { 'content-type': 'application/cloudevents+json' };
  const attrs = '"specversion":"1.0","id":"1","source":"/s","type":"t"';
  const cases: [string, Record<string, string>, string | Uint8Array, string, number][] = [
    ['plain JSON', { 'content-type': 'application/json' }, '{}', 'not-a-cloudevent', 400],
    [
      'protobuf',
      { 'content-type': 'application/cloudevents+protobuf' },
      '',
      'unsupported-media-type',
      415,
    ],
    ['truncated JSON', structured, '{"specversion":', 'bad-json', 400],
    ['not UTF-8', structured, new Uint8Array([0xff]), 'bad-encoding', 400],
    ['bad base64', structured, `{${attrs},"data_base64":"%%"}`, 'bad-base64', 400],
    [
      'data twice',
      structured,
      `{${attrs},"data":1,"data_base64":"AA=="}`,
      'invalid-attribute',
      400,
    ],
    [
      'numeric id',
      structured,
      '{"specversion":"1.0","id":1,"source":"/s","type":"t"}',
      'invalid-attribute',
      400,
    ],
    ['object extension', structured, `{${attrs},"ext":{"a":1}}`, 'invalid-attribute', 400],
  ];

  it.each(cases)('%s → %s', (_name, headers, body, reason, status) => {
    const res = fromHttpRequest({
      headers,
      body: typeof body === 'string' ? enc.encode(body) : body,
    });
    expect(res.ok ? undefined : [res.error.reason, res.error.httpStatus]).toEqual([reason, status]);
  });

  it('rejects a body over the limit with 413', () => {
    const res = fromHttpRequest(
      { headers: structured, body: enc.encode('{}') },
      { maxBodyBytes: 1 },
    );
    expect(res.ok ? undefined : [res.error.reason, res.error.httpStatus]).toEqual([
      'too-large',
      413,
    ]);
  });

  it('runs the per-event size hook', () => {
    const event = makeEvent({ id: '1', source: '/s', type: 't', data: new Uint8Array(1000) });
    const res = fromHttpRequest(toHttpRequest(event), { checkEvent: maxMessageSizeCheck(500) });
    expect(res.ok ? undefined : [res.error.reason, res.error.field]).toEqual(['too-large', 'data']);
    expect(
      fromHttpRequest(toHttpRequest(event), { checkEvent: maxMessageSizeCheck(5000) }).ok,
    ).toBe(true);
  });
});
