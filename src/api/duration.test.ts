import { describe, expect, it } from 'vitest';
import { DurationError, formatDuration, msToNanos, parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it('reads Go duration strings', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('168h')).toBe(604_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5s')).toBe(1_500);
    expect(parseDuration('250us')).toBe(0.25);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('0s')).toBe(0);
  });

  it('rejects malformed strings, naming the field and the fix', () => {
    for (const bad of ['', '5', '1d', 'ms', '-1s', '1 s', '1s ', 'abc']) {
      expect(() => parseDuration(bad, 'spec.delivery.timeout')).toThrow(DurationError);
    }
    expect(() => parseDuration('1d', 'spec.delivery.timeout')).toThrow(
      'spec.delivery.timeout: "1d" is not a duration; write a number with a unit, such as 500ms, 30s, 5m or 168h',
    );
  });
});

describe('formatDuration / msToNanos', () => {
  it('round-trips whole milliseconds', () => {
    for (const ms of [0, 1, 999, 1_000, 61_001, 3_600_000, 90_061_001]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(formatDuration(90_000)).toBe('1m30s');
  });

  it('converts to nanoseconds', () => {
    expect(msToNanos(30_000)).toBe(30_000_000_000);
  });
});
