import { describe, expect, it } from 'vitest';
import {
  attributeValue,
  eventsEqual,
  isJsonMediaType,
  isTextMediaType,
  isValidAttributeName,
  makeEvent,
  validateEvent,
  type CloudEvent,
} from './event.ts';

const base = makeEvent({ id: '1', source: '/shop', type: 'com.example.order.created' });

function withField(field: string, value: unknown): CloudEvent {
  const event: Record<string, unknown> = { ...base, [field]: value };
  return event as unknown as CloudEvent;
}

describe('event validation', () => {
  it('accepts a minimal and a full event', () => {
    expect(validateEvent(base)).toBeUndefined();
    const full = makeEvent({
      id: 'x',
      source: 'urn:a',
      type: 't',
      subject: 's',
      time: '2024-05-01T12:00:00.123+02:00',
      datacontenttype: 'application/json; charset=utf-8',
      dataschema: 'https://example.com/schema',
      data: new Uint8Array([1]),
      extensions: {
        partitionkey: 'k',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
    });
    expect(validateEvent(full)).toBeUndefined();
  });

  it('names the missing or bad field', () => {
    const cases: [CloudEvent, string, string][] = [
      [withField('id', undefined), 'id', 'missing-attribute'],
      [withField('source', ''), 'source', 'invalid-attribute'],
      [withField('type', 3), 'type', 'invalid-attribute'],
      [withField('specversion', '0.3'), 'specversion', 'bad-specversion'],
      [withField('specversion', undefined), 'specversion', 'missing-attribute'],
      [withField('time', 'yesterday'), 'time', 'invalid-attribute'],
      [withField('subject', ''), 'subject', 'invalid-attribute'],
      [withField('datacontenttype', 'json'), 'datacontenttype', 'invalid-attribute'],
      [withField('id', 'a\uD800'), 'id', 'invalid-attribute'],
      [{ ...base, extensions: { 'Bad-Name': 'x' } }, 'Bad-Name', 'invalid-attribute-name'],
      [{ ...base, extensions: { data: 'x' } }, 'data', 'invalid-attribute-name'],
      [{ ...base, extensions: { type: 'x' } }, 'type', 'invalid-attribute-name'],
    ];
    for (const [event, field, reason] of cases) {
      const err = validateEvent(event);
      expect(err?.field, JSON.stringify(event)).toBe(field);
      expect(err?.reason).toBe(reason);
      expect(err?.fix).not.toBe('');
      expect(err?.httpStatus).toBe(400);
    }
    expect(validateEvent(withField('id', undefined))?.message).toBe(
      'required attribute id is missing',
    );
  });

  it('checks attribute names: a-z0-9 (MUST), at most 20 in strict mode (SHOULD)', () => {
    expect(isValidAttributeName('partitionkey')).toBe(true);
    expect(isValidAttributeName('abc123')).toBe(true);
    expect(isValidAttributeName('camelCase')).toBe(false);
    expect(isValidAttributeName('with_underscore')).toBe(false);
    expect(isValidAttributeName('')).toBe(false);
    expect(isValidAttributeName('a'.repeat(21))).toBe(true);
    expect(isValidAttributeName('a'.repeat(21), true)).toBe(false);
    expect(isValidAttributeName('a'.repeat(20), true)).toBe(true);
  });

  it('reads attributes and classifies media types', () => {
    const e = makeEvent({ id: '1', source: '/s', type: 't', extensions: { ext1: 'v' } });
    expect(attributeValue(e, 'specversion')).toBe('1.0');
    expect(attributeValue(e, 'ext1')).toBe('v');
    expect(attributeValue(e, 'subject')).toBeUndefined();
    expect(attributeValue(e, 'toString')).toBeUndefined();
    expect(isJsonMediaType('application/json; charset=utf-8')).toBe(true);
    expect(isJsonMediaType('application/vnd.api+json')).toBe(true);
    expect(isJsonMediaType('text/plain')).toBe(false);
    expect(isTextMediaType('text/plain')).toBe(true);
    expect(isTextMediaType('application/octet-stream')).toBe(false);
    expect(eventsEqual(e, { ...e, data: new Uint8Array() })).toBe(true);
    expect(eventsEqual(e, { ...e, subject: 'x' })).toBe(false);
  });
});
