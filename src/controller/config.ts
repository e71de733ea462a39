// The controller's configuration, parsed and validated once at start.
import { hostname } from 'node:os';
import {
  bool,
  durationMs,
  int,
  namespacedName,
  optionalStr,
  str,
  type Env,
} from '../config/env.ts';
import { parseCommonConfig, type CommonConfig } from '../config/common.ts';

export interface ControllerConfig extends CommonConfig {
  readonly workers: number;
  /** the stream of subscriptions that name none */
  readonly defaultStream?: { readonly namespace: string; readonly name: string };
  readonly allowExternalSinkUris: boolean;
  readonly clusterDomain: string;
  /**
   * a label selector: only EventStreams and EventSubscriptions that match are reconciled
   * (several controllers can split a cluster, e.g. by team or by test)
   */
  readonly resourceSelector?: string;
  /** every resource is reconciled this often: repairs drift, refreshes status.stats */
  readonly resyncMs: number;
  readonly leaderElection: {
    readonly enabled: boolean;
    readonly namespace: string;
    readonly leaseName: string;
    readonly identity: string;
    readonly leaseDurationMs: number;
    readonly renewDeadlineMs: number;
    readonly retryPeriodMs: number;
  };
}

export function parseControllerConfig(env: Env): ControllerConfig {
  const defaultStream = namespacedName(env, 'EVENTWIRE_DEFAULT_STREAM');
  const resourceSelector = optionalStr(env, 'EVENTWIRE_RESOURCE_SELECTOR');
  return {
    ...parseCommonConfig(env, 'controller', 8080),
    workers: int(env, 'EVENTWIRE_CONTROLLER_WORKERS', 8, 1, 64),
    ...(defaultStream ? { defaultStream } : {}),
    allowExternalSinkUris: bool(env, 'EVENTWIRE_ALLOW_EXTERNAL_SINK_URIS', true),
    clusterDomain: str(env, 'EVENTWIRE_CLUSTER_DOMAIN', 'cluster.local'),
    ...(resourceSelector ? { resourceSelector } : {}),
    resyncMs: durationMs(env, 'EVENTWIRE_RESYNC_PERIOD', '30s'),
    leaderElection: {
      enabled: bool(env, 'EVENTWIRE_LEADER_ELECT', true),
      namespace: str(env, 'EVENTWIRE_NAMESPACE', 'eventwire-system'),
      leaseName: str(env, 'EVENTWIRE_LEASE_NAME', 'eventwire-controller'),
      identity: str(env, 'POD_NAME', `${hostname()}-${process.pid}`),
      leaseDurationMs: durationMs(env, 'EVENTWIRE_LEASE_DURATION', '15s'),
      renewDeadlineMs: durationMs(env, 'EVENTWIRE_RENEW_DEADLINE', '10s'),
      retryPeriodMs: durationMs(env, 'EVENTWIRE_RETRY_PERIOD', '2s'),
    },
  };
}
