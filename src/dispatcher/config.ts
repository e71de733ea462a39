// The dispatcher's configuration, parsed and validated once at start.
import { parseCommonConfig, type CommonConfig } from '../config/common.ts';
import { durationMs, optionalStr, type Env } from '../config/env.ts';

export interface DispatcherConfig extends CommonConfig {
  /** how long shutdown waits for deliveries in flight before aborting them */
  readonly gracePeriodMs: number;
  /** only subscriptions in this namespace; all namespaces when unset */
  readonly namespace?: string;
}

export function parseDispatcherConfig(env: Env): DispatcherConfig {
  const namespace = optionalStr(env, 'EVENTWIRE_WATCH_NAMESPACE');
  return {
    ...parseCommonConfig(env, 'dispatcher', 8080),
    gracePeriodMs: durationMs(env, 'EVENTWIRE_SHUTDOWN_GRACE_PERIOD', '25s'),
    ...(namespace ? { namespace } : {}),
  };
}
