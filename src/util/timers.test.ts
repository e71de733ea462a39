import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_TIMER_MS, clampTimerMs, setLongTimeout, sleep } from './timers.ts';

const HOUR = 3_600_000;

describe('clampTimerMs', () => {
  it('keeps delays Node can time and clamps the rest to its limit', () => {
    expect(MAX_TIMER_MS).toBe(2 ** 31 - 1);
    expect(clampTimerMs(0)).toBe(0);
    expect(clampTimerMs(1_500)).toBe(1_500);
    expect(clampTimerMs(MAX_TIMER_MS)).toBe(MAX_TIMER_MS);
    expect(clampTimerMs(600 * HOUR)).toBe(MAX_TIMER_MS);
    expect(clampTimerMs(Number.POSITIVE_INFINITY)).toBe(MAX_TIMER_MS);
  });

  it('treats negative and NaN delays as 0', () => {
    expect(clampTimerMs(-5)).toBe(0);
    expect(clampTimerMs(Number.NaN)).toBe(0);
  });
});

describe('long timers', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('setLongTimeout fires once, after the whole delay past the limit', () => {
    const fired = vi.fn();
    setLongTimeout(fired, 600 * HOUR);
    vi.advanceTimersByTime(1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(MAX_TIMER_MS);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(600 * HOUR - MAX_TIMER_MS - 2);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1_000 * HOUR);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('setLongTimeout can be cleared in any of its chained parts', () => {
    const fired = vi.fn();
    const t = setLongTimeout(fired, 3 * MAX_TIMER_MS);
    vi.advanceTimersByTime(MAX_TIMER_MS + 5);
    t.clear();
    vi.advanceTimersByTime(10 * MAX_TIMER_MS);
    expect(fired).not.toHaveBeenCalled();
  });

  it('setLongTimeout with a short delay is a plain timer', () => {
    const fired = vi.fn();
    setLongTimeout(fired, 10);
    vi.advanceTimersByTime(9);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('sleep waits past the limit and resolves true', async () => {
    let done: boolean | undefined;
    void sleep(10_000 * HOUR).then((r) => (done = r));
    await vi.advanceTimersByTimeAsync(10_000 * HOUR - 1);
    expect(done).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
  });

  it('sleep resolves false at once when its signal aborts, and for an aborted signal', async () => {
    const ctl = new AbortController();
    let done: boolean | undefined;
    void sleep(600 * HOUR, ctl.signal).then((r) => (done = r));
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS + 10);
    expect(done).toBeUndefined();
    ctl.abort();
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    await expect(sleep(5, ctl.signal)).resolves.toBe(false);
  });
});
