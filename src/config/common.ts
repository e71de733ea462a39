// What every component's configuration shares: NATS, Kubernetes, logging and the ops address.
import { int, optionalStr, str, type Env } from './env.ts';
import { parseNatsConfig, type NatsConfig } from './nats.ts';

export interface CommonConfig {
  readonly nats: NatsConfig;
  /** kubeconfig file; in-cluster configuration when unset */
  readonly kubeconfig?: string;
  readonly logLevel: string;
  /** /metrics, /healthz, /readyz */
  readonly opsHost: string;
  readonly opsPort: number;
}

export function parseCommonConfig(
  env: Env,
  component: string,
  defaultOpsPort: number,
): CommonConfig {
  const kubeconfig = optionalStr(env, 'KUBECONFIG');
  return {
    nats: parseNatsConfig(env, `eventwire-${component}`),
    ...(kubeconfig ? { kubeconfig } : {}),
    logLevel: str(env, 'EVENTWIRE_LOG_LEVEL', 'info'),
    opsHost: str(env, 'EVENTWIRE_OPS_HOST', '0.0.0.0'),
    opsPort: int(env, 'EVENTWIRE_OPS_PORT', defaultOpsPort, 0, 65535),
  };
}
