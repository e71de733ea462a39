import { describe, expect, it } from 'vitest';
import { lastResort } from './recovery.ts';

const backoff = {
  backoffPolicy: 'exponential',
  backoffDelayMs: 100,
  backoffMaxMs: 1_000,
} as const;

describe('lastResort: an event whose processing and settling both failed', () => {
  it('without ordering, is nak-ed so JetStream delivers it again after the backoff', () => {
    expect(lastResort(1, { ...backoff, ordering: 'none' })).toEqual({
      action: 'nak',
      delayMs: 100,
    });
  });

  it.each(['key', 'strict'] as const)(
    'with %s ordering, stays at the head of its key and is processed again in place after the backoff',
    (ordering) => {
      expect(lastResort(1, { ...backoff, ordering })).toEqual({
        action: 'in-place',
        delayMs: 100,
      });
      expect(lastResort(3, { ...backoff, ordering })).toEqual({
        action: 'in-place',
        delayMs: 400,
      });
    },
  );

  it('waits the backoff of its attempt without jitter, capped by backoffMax', () => {
    const delays = [1, 2, 3, 4, 5, 60].map((a) => lastResort(a, { ...backoff, ordering: 'key' }));
    expect(delays.map((d) => d.delayMs)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(
      lastResort(4, {
        backoffPolicy: 'linear',
        backoffDelayMs: 100,
        backoffMaxMs: 1_000,
        ordering: 'none',
      }),
    ).toEqual({ action: 'nak', delayMs: 400 });
  });
});
