import { describe, expect, it } from 'vitest';
import {
  InvalidEventError,
  isValidAttributeName,
  makeEvent,
  natsMsgId,
  validateEvent,
} from '../cloudevents/index.ts';
import {
  EXT,
  MAX_ERROR_DATA,
  deadLetterEvent,
  deadLetterMsgId,
  invalidMessageEvent,
} from './dead-letter.ts';

const original = makeEvent({
  id: '1',
  source: '/s',
  type: 't',
  subject: 'sub',
  datacontenttype: 'application/json',
  data: new TextEncoder().encode('{"a":1}'),
  extensions: { partitionkey: 'k', ewerrorcode: '500' },
});

describe('dead-letter events', () => {
  it('keep every attribute and the data, and add valid error extensions', () => {
    const dl = deadLetterEvent(original, {
      reason: 'retries-exhausted',
      dest: 'http://sink/x',
      attempts: 11,
      subscription: 'ns/sub',
      detail: 'é'.repeat(5000),
    });
    expect(validateEvent(dl)).toBeUndefined();
    expect(dl).toMatchObject({ id: '1', source: '/s', type: 't', subject: 'sub' });
    expect(dl.data).toBe(original.data);
    expect(dl.extensions).toMatchObject({
      partitionkey: 'k',
      [EXT.reason]: 'retries-exhausted',
      [EXT.dest]: 'http://sink/x',
      [EXT.attempts]: '11',
      [EXT.subscription]: 'ns/sub',
    });
    // an older code is not kept when this failure has none
    expect(dl.extensions[EXT.code]).toBeUndefined();
    expect(dl.extensions[EXT.data]).toHaveLength(MAX_ERROR_DATA);
    for (const name of Object.values(EXT)) expect(isValidAttributeName(name, true)).toBe(true);
  });

  it('wrap a message that is not a CloudEvent', () => {
    const err = new InvalidEventError('not-a-cloudevent', 'no', { field: 'specversion', fix: 'x' });
    const raw = { stream: 'S', streamSequence: 9, subject: 'p.x', data: new Uint8Array([1, 2]) };
    const a = invalidMessageEvent({ ...raw, contentType: 'not a media type' }, err, {
      dest: 'd',
      attempts: 1,
      subscription: 'ns/s',
    });
    expect(validateEvent(a)).toBeUndefined();
    expect(a).toMatchObject({ id: 'S-9', datacontenttype: 'application/octet-stream' });
    expect(a.extensions).toMatchObject({ [EXT.natsSubject]: 'p.x', [EXT.reason]: 'invalid-event' });
    expect(a.extensions[EXT.data]).toContain('not-a-cloudevent');
  });

  it('use a message id distinct from the original', () => {
    expect(deadLetterMsgId(original, 'ns/s')).not.toBe(natsMsgId(original));
    expect(deadLetterMsgId(original, 'ns/s')).toBe(deadLetterMsgId(original, 'ns/s'));
  });
});
