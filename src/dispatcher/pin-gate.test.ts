import { describe, expect, it } from 'vitest';
import { PinGate } from './pin-gate.ts';

/** A gate whose items are their sequence numbers. */
function gate(): PinGate<number> {
  return new PinGate<number>();
}

const keys = (entries: Record<string, number[]>) => new Map(Object.entries(entries));

describe('PinGate', () => {
  it('lets everything through until a pin begins', () => {
    const g = gate();
    expect(g.admit(1, 1, 'k:a')).toEqual([1]);
    expect(g.isOpen()).toBe(true);
  });

  it('holds ordered messages while the window of a new pin is read, never unordered ones', () => {
    const g = gate();
    expect(g.isNewPin('p1')).toBe(true);
    g.begin('p1');
    expect(g.isNewPin('p1')).toBe(false);
    expect(g.admit(11, 11, 'k:a')).toEqual([]);
    expect(g.admit(12, 12, 'u:1')).toEqual([12]);
    expect(g.waiting).toBe(1);
    // the window: nothing delivered before the pin is unsettled
    expect(g.load('p1', { floor: 10, last: 10, keys: new Map() })).toEqual([11]);
    expect(g.isOpen()).toBe(true);
  });

  it('known keys: a key with nothing unsettled in the window goes at once, the others wait for theirs', () => {
    const g = gate();
    g.begin('p1');
    // (10, 14]: a at 11 and 13 held by the previous replica, b at 12, c at 14
    const window = {
      floor: 10,
      last: 14,
      keys: keys({ 'k:a': [11, 13], 'k:b': [12], 'k:c': [14] }),
    };
    expect(g.load('p1', window)).toEqual([]);
    // new messages past the window
    expect(g.admit(15, 15, 'k:a')).toEqual([]);
    expect(g.admit(16, 16, 'k:d')).toEqual([16]);
    expect(g.admit(17, 17, 'k:b')).toEqual([]);
    // 12 (b) comes back here (redelivered): nothing of b before it, so it goes
    expect(g.admit(12, 12, 'k:b')).toEqual([12]);
    // 17 waits for 12 to be acknowledged here
    expect(g.acked(12)).toEqual([17]);
    // a: 11 and 13 settled elsewhere (the ack floor passes them), then 15 goes
    expect(g.floor(12)).toEqual([]);
    expect(g.floor(13)).toEqual([15]);
    expect(g.isOpen()).toBe(false); // 14 (c) is still unsettled
    expect(g.floor(14)).toEqual([]);
    expect(g.isOpen()).toBe(true);
  });

  it('redelivered window messages of one key go one at a time in stream order', () => {
    const g = gate();
    g.begin('p1');
    g.load('p1', { floor: 0, last: 3, keys: keys({ 'k:a': [1, 2, 3] }) });
    // they come back out of order (ack_wait expired in two passes)
    expect(g.admit(2, 2, 'k:a')).toEqual([]);
    expect(g.admit(3, 3, 'k:a')).toEqual([]);
    expect(g.admit(1, 1, 'k:a')).toEqual([1]);
    expect(g.acked(1)).toEqual([2]);
    expect(g.acked(2)).toEqual([3]);
    expect(g.acked(3)).toEqual([]);
    expect(g.isOpen()).toBe(true);
  });

  it('strict (one key): nothing overtakes an unsettled window message', () => {
    const g = gate();
    g.begin('p1');
    g.load('p1', { floor: 4, last: 6, keys: keys({ '': [5, 6] }) });
    expect(g.admit(7, 7, '')).toEqual([]);
    expect(g.admit(6, 6, '')).toEqual([]);
    expect(g.floor(5)).toEqual([6]);
    expect(g.acked(6)).toEqual([7]);
  });
});

describe('PinGate without window keys, and across pins', () => {
  it('unknown keys: a message goes once every message before it is settled', () => {
    const g = gate();
    g.begin('p1');
    expect(g.load('p1', { floor: 100, last: 103 })).toEqual([]);
    expect(g.admit(104, 104, 'k:x')).toEqual([]);
    expect(g.admit(102, 102, 'k:y')).toEqual([]);
    // acknowledging here does not tell which keys are free: the floor does
    expect(g.acked(101)).toEqual([]);
    expect(g.floor(101)).toEqual([102]);
    expect(g.floor(102)).toEqual([]);
    expect(g.floor(103)).toEqual([104]);
    expect(g.isOpen()).toBe(true);
  });

  it('a later message of a held-back key never goes before an earlier one', () => {
    const g = gate();
    g.begin('p1');
    g.load('p1', { floor: 0, last: 2, keys: keys({ 'k:a': [1], 'k:b': [2] }) });
    expect(g.admit(3, 3, 'k:a')).toEqual([]);
    expect(g.admit(4, 4, 'k:a')).toEqual([]);
    // the floor passes 1: both go, in order (the scheduler runs them one after the other)
    expect(g.floor(1)).toEqual([3, 4]);
  });

  it('a window of an older pin is ignored; a new pin starts over with what is still held', () => {
    const g = gate();
    g.begin('p1');
    g.admit(8, 8, 'k:a');
    g.begin('p2');
    expect(g.load('p1', { floor: 0, last: 0, keys: new Map() })).toEqual([]);
    expect(g.load('p2', { floor: 5, last: 8, keys: keys({ 'k:a': [6, 8] }) })).toEqual([]);
    expect(g.floor(6)).toEqual([8]);
  });

  it('takeWaiting hands back what is held, in stream order (a stopping worker naks it)', () => {
    const g = gate();
    g.begin('p1');
    g.admit(9, 9, 'k:a');
    g.admit(7, 7, 'k:b');
    expect(g.takeWaiting()).toEqual([7, 9]);
    expect(g.waiting).toBe(0);
  });
});
