import { describe, expect, it } from 'vitest';
import { MAX_REPLY_HOPS, isValidHops, nextReplyHops } from './hops.ts';

describe('nextReplyHops', () => {
  it('an event without ewhops gives hop 1', () => {
    expect(nextReplyHops(undefined)).toBe(1);
  });

  it('each value the dispatcher writes adds one, up to the limit', () => {
    for (let hops = 1; hops <= MAX_REPLY_HOPS; hops += 1) {
      expect(nextReplyHops(String(hops))).toBe(hops + 1);
      expect(isValidHops(String(hops))).toBe(true);
    }
    expect(nextReplyHops('7')).toBe(8);
    expect(nextReplyHops('8')).toBeGreaterThan(MAX_REPLY_HOPS);
  });

  it.each([
    '-20',
    '-1',
    '0',
    '+1',
    '1e1',
    '007',
    '01',
    '1.0',
    ' 1',
    '1 ',
    '',
    'x',
    '9',
    '10',
    '99999',
  ])('a value the dispatcher never writes (%j) is over the limit', (forged) => {
    expect(nextReplyHops(forged)).toBeGreaterThan(MAX_REPLY_HOPS);
    expect(isValidHops(forged)).toBe(false);
  });
});
