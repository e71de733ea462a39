// The dispatcher's configuration, parsed and validated once at start.
import { parseCommonConfig, type CommonConfig } from '../config/common.ts';
import { ConfigError, durationMs, optionalStr, type Env } from '../config/env.ts';

export interface DispatcherConfig extends CommonConfig {
  /** how long shutdown waits for deliveries in flight before aborting them */
  readonly gracePeriodMs: number;
  /** only subscriptions in this namespace; all namespaces when unset */
  readonly namespace?: string;
  /**
   * how long after a subscription's first unwritten dead letter its count is added to
   * status.stats.deadLettered: at most one status write per subscription and interval
   */
  readonly statsFlushIntervalMs: number;
}

export function parseDispatcherConfig(env: Env): DispatcherConfig {
  const namespace = optionalStr(env, 'EVENTWIRE_WATCH_NAMESPACE');
  const statsFlushIntervalMs = durationMs(env, 'EVENTWIRE_STATS_FLUSH_INTERVAL', '2s');
  if (statsFlushIntervalMs < 10) {
    throw new ConfigError(
      'EVENTWIRE_STATS_FLUSH_INTERVAL',
      `${String(statsFlushIntervalMs)}ms is too short; write at least 10ms (2s is the default)`,
    );
  }
  return {
    ...parseCommonConfig(env, 'dispatcher', 8080),
    gracePeriodMs: durationMs(env, 'EVENTWIRE_SHUTDOWN_GRACE_PERIOD', '25s'),
    ...(namespace ? { namespace } : {}),
    statsFlushIntervalMs,
  };
}
