import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config/env.ts';
import { parseDispatcherConfig } from './config.ts';
import { MAX_RETRY_MS, retryDelayMs } from './stats-flush.ts';

describe('status.stats.deadLettered writes', () => {
  it('are made every 2s by default, or as EVENTWIRE_STATS_FLUSH_INTERVAL says', () => {
    expect(parseDispatcherConfig({}).statsFlushIntervalMs).toBe(2_000);
    const cfg = parseDispatcherConfig({ EVENTWIRE_STATS_FLUSH_INTERVAL: '500ms' });
    expect(cfg.statsFlushIntervalMs).toBe(500);
  });

  it.each([
    ['2', /such as 500ms/],
    ['0s', /at least 10ms/],
    ['5ms', /at least 10ms/],
  ])('refuse the interval %j, naming the variable and the fix', (value, fix) => {
    let err: unknown;
    try {
      parseDispatcherConfig({ EVENTWIRE_STATS_FLUSH_INTERVAL: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe('EVENTWIRE_STATS_FLUSH_INTERVAL');
    expect((err as Error).message).toMatch(fix);
  });

  it('that fail are tried again after the interval, doubling up to a minute', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(2_000, n))).toEqual([2_000, 4_000, 8_000, 16_000]);
    expect(retryDelayMs(2_000, 6)).toBe(MAX_RETRY_MS);
    expect(retryDelayMs(2_000, 10_000)).toBe(MAX_RETRY_MS);
    // an interval longer than the cap is never shortened
    expect(retryDelayMs(3_600_000, 3)).toBe(3_600_000);
  });
});
