import { describe, expect, it } from 'vitest';
import { isTrue, mergeConditions, readyFrom, transitions } from './conditions.ts';

const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T00:01:00Z');

describe('conditions', () => {
  it('keeps lastTransitionTime while the status holds and moves it on a change', () => {
    const first = mergeConditions(
      undefined,
      [{ type: 'A', status: 'True', reason: 'Ok', message: 'ok' }],
      1,
      t0,
    );
    const same = mergeConditions(
      first,
      [{ type: 'A', status: 'True', reason: 'Ok', message: 'still' }],
      2,
      t1,
    );
    expect(same[0]).toMatchObject({
      lastTransitionTime: t0.toISOString(),
      observedGeneration: 2,
      message: 'still',
    });
    const flipped = mergeConditions(
      same,
      [{ type: 'A', status: 'False', reason: 'Bad', message: 'no' }],
      2,
      t1,
    );
    expect(flipped[0]?.lastTransitionTime).toBe(t1.toISOString());
    expect(transitions(same, flipped).map((c) => c.reason)).toEqual(['Bad']);
    expect(transitions(first, same)).toEqual([]);
  });

  it('is Ready only when every condition is True, else carries the first problem', () => {
    expect(readyFrom([{ type: 'A', status: 'True', reason: 'Ok', message: '' }]).status).toBe(
      'True',
    );
    const r = readyFrom([
      { type: 'A', status: 'True', reason: 'Ok', message: '' },
      { type: 'B', status: 'False', reason: 'SinkNotFound', message: 'create it' },
    ]);
    expect(r).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'SinkNotFound',
      message: 'create it',
    });
    expect(isTrue([{ ...r, lastTransitionTime: '' }], 'Ready')).toBe(false);
  });
});
