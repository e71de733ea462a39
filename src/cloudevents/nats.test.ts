import { describe, expect, it } from 'vitest';
import { eventsEqual, type CloudEvent } from './event.ts';
import { SAMPLE_EVENTS as SAMPLES } from './samples.ts';
import {
  fromNatsMessage,
  maxMessageSizeCheck,
  natsMessageSize,
  natsMsgId,
  toNatsMessage,
} from './nats.ts';

const enc = new TextEncoder();

describe('NATS binding: writing', () => {
  it('writes binary mode: ce- headers percent-encoded, content-type, payload, message id', () => {
    const event = SAMPLES[1];
    if (event === undefined) throw new Error('sample');
    const msg = toNatsMessage(event);
    expect(msg.headers['ce-specversion']).toBe('1.0');
    expect(msg.headers['ce-id']).toBe('%C3%BC%20%22quoted%22%20100%25');
    expect(msg.headers['ce-source']).toBe('https://example.com/a%20b?x=1');
    expect(msg.headers['content-type']).toBe('application/json');
    expect(msg.headers['ce-datacontenttype']).toBeUndefined();
    expect(msg.headers['ce-partitionkey']).toBe('customer-7');
    expect(msg.headers['ce-newline']).toBe('a%0D%0Ab');
    expect(msg.headers.traceparent).toBe(event.extensions.traceparent);
    expect(msg.headers.tracestate).toBe('vendor=a, other=b');
    expect(msg.headers['ce-tracestate']).toBe('vendor=a,%20other=b');
    expect(msg.data).toEqual(event.data);
    for (const value of Object.values(msg.headers)) expect(value).not.toMatch(/[\r\n]/);
  });

  it('derives Nats-Msg-Id from source and id only, unambiguously', () => {
    const [a] = SAMPLES;
    if (a === undefined) throw new Error('sample');
    expect(natsMsgId(a)).toMatch(/^[0-9a-f]{64}$/);
    const changed: CloudEvent = { ...a, type: 'other', data: new Uint8Array([1]) };
    expect(natsMsgId(changed)).toBe(natsMsgId(a));
    expect(natsMsgId({ source: 'a\n', id: 'b' })).not.toBe(natsMsgId({ source: 'a', id: '\nb' }));
    expect(natsMsgId({ source: '/x', id: '1' })).not.toBe(natsMsgId({ source: '/y', id: '1' }));
  });

  it('estimates the stored size and checks it against a limit', () => {
    const [a] = SAMPLES;
    if (a === undefined) throw new Error('sample');
    const size = natsMessageSize(a);
    expect(size).toBeGreaterThan(100);
    expect(maxMessageSizeCheck(size)(a)).toBeUndefined();
    expect(maxMessageSizeCheck(size - 1)(a)?.reason).toBe('too-large');
  });
});

describe('NATS binding: round trips', () => {
  it('event → binary NATS message → the same event', () => {
    for (const event of SAMPLES) {
      const msg = toNatsMessage(event);
      const back = fromNatsMessage({ headers: msg.headers, data: msg.data });
      expect(back.ok, JSON.stringify(back)).toBe(true);
      if (back.ok) expect(eventsEqual(back.event, event)).toBe(true);
    }
  });

  it('reads headers case-insensitively and adopts plain W3C trace headers', () => {
    const result = fromNatsMessage({
      headers: {
        'CE-SpecVersion': '1.0',
        'Ce-Id': '1',
        'ce-source': '/s',
        'ce-type': 't',
        traceparent: 'tp',
      },
      data: new Uint8Array(),
    });
    expect(result.ok && result.event.extensions).toEqual({ traceparent: 'tp' });
  });

  it('reads structured mode with data, data_base64 and no data', () => {
    const structured = (body: unknown) =>
      fromNatsMessage({
        headers: { 'content-type': 'application/cloudevents+json' },
        data: enc.encode(JSON.stringify(body)),
      });
    const json = structured({
      specversion: '1.0',
      id: '1',
      source: '/s',
      type: 't',
      datacontenttype: 'application/json',
      data: { a: 1 },
      ext: 5,
      flag: true,
    });
    expect(json.ok && new TextDecoder().decode(json.event.data)).toBe('{"a":1}');
    expect(json.ok && json.event.extensions).toEqual({ ext: '5', flag: 'true' });
    const b64 = structured({
      specversion: '1.0',
      id: '1',
      source: '/s',
      type: 't',
      data_base64: 'AP8=',
    });
    expect(b64.ok && b64.event.data).toEqual(new Uint8Array([0, 255]));
    const none = structured({
      specversion: '1.0',
      id: '1',
      source: '/s',
      type: 't',
      subject: null,
    });
    expect(none.ok && none.event.data === undefined && none.event.subject === undefined).toBe(true);
  });
});

describe('NATS binding: malformed messages', () => {
  const binary = (headers: Record<string, string>) =>
    fromNatsMessage({ headers, data: new Uint8Array() });
  const required = { 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 't' };

  it('gives a reason and a field for each problem', () => {
    const cases: [ReturnType<typeof fromNatsMessage>, string, string][] = [
      [fromNatsMessage({ data: enc.encode('{"hello":1}') }), 'not-a-cloudevent', 'specversion'],
      [binary({ ...required, 'ce-id': '' }), 'invalid-attribute', 'id'],
      [
        binary({ 'ce-specversion': '1.0', 'ce-source': '/s', 'ce-type': 't' }),
        'missing-attribute',
        'id',
      ],
      [
        binary({ 'ce-specversion': '1.0', 'ce-id': '1', 'ce-type': 't' }),
        'missing-attribute',
        'source',
      ],
      [
        binary({ 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s' }),
        'missing-attribute',
        'type',
      ],
      [binary({ ...required, 'ce-specversion': '0.3' }), 'bad-specversion', 'specversion'],
      [binary({ ...required, 'ce-id': '50%' }), 'bad-encoding', 'id'],
      [binary({ ...required, 'ce-Bad_Name': 'x' }), 'invalid-attribute-name', 'bad_name'],
      [binary({ ...required, 'ce-time': 'noon' }), 'invalid-attribute', 'time'],
      [
        fromNatsMessage({
          headers: { 'content-type': 'application/cloudevents+json' },
          data: enc.encode('{nope'),
        }),
        'bad-json',
        'body',
      ],
      [
        fromNatsMessage({
          headers: { 'content-type': 'application/cloudevents+json' },
          data: enc.encode('[]'),
        }),
        'bad-json',
        'body',
      ],
      [
        fromNatsMessage({
          headers: { 'content-type': 'application/cloudevents+avro' },
          data: new Uint8Array(),
        }),
        'unsupported-media-type',
        'content-type',
      ],
    ];
    for (const [result, reason, field] of cases) {
      expect(result.ok).toBe(false);
      if (result.ok) continue;
      expect([result.error.reason, result.error.field]).toEqual([reason, field]);
      expect(result.error.permanent).toBe(true);
    }
  });
});
