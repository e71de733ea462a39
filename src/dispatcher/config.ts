// The dispatcher's configuration, parsed and validated once at start.
import { durationMs, int, optionalStr, str, type Env } from '../config/env.ts';
import { parseNatsConfig, type NatsConfig } from '../config/nats.ts';

export interface DispatcherConfig {
  readonly nats: NatsConfig;
  /** kubeconfig file; in-cluster configuration when unset */
  readonly kubeconfig?: string;
  readonly logLevel: string;
  readonly opsHost: string;
  readonly opsPort: number;
  /** how long shutdown waits for deliveries in flight before aborting them */
  readonly gracePeriodMs: number;
  /** for dead-letter sink refs: <svc>.<ns>.svc.<clusterDomain> */
  readonly clusterDomain: string;
  /** only subscriptions in this namespace; all namespaces when unset */
  readonly namespace?: string;
}

export function parseDispatcherConfig(env: Env): DispatcherConfig {
  const kubeconfig = optionalStr(env, 'KUBECONFIG');
  const namespace = optionalStr(env, 'EVENTWIRE_WATCH_NAMESPACE');
  return {
    nats: parseNatsConfig(env, 'eventwire-dispatcher'),
    ...(kubeconfig ? { kubeconfig } : {}),
    logLevel: str(env, 'EVENTWIRE_LOG_LEVEL', 'info'),
    opsHost: str(env, 'EVENTWIRE_OPS_HOST', '0.0.0.0'),
    opsPort: int(env, 'EVENTWIRE_OPS_PORT', 8080, 0, 65535),
    gracePeriodMs: durationMs(env, 'EVENTWIRE_SHUTDOWN_GRACE_PERIOD', '25s'),
    clusterDomain: str(env, 'EVENTWIRE_CLUSTER_DOMAIN', 'cluster.local'),
    ...(namespace ? { namespace } : {}),
  };
}
