// The ingress's configuration, parsed and validated once at start.
import { parseCommonConfig, type CommonConfig } from '../config/common.ts';
import { bool, ConfigError, durationMs, int, optionalStr, str, type Env } from '../config/env.ts';
import type { StaticStream } from './streams.ts';

export interface IngressConfig extends CommonConfig {
  /** where producers POST events */
  readonly host: string;
  readonly port: number;
  /** largest request body (413 above it) */
  readonly maxBodyBytes: number;
  /** how long a request waits for its PubAcks before answering 503 */
  readonly publishTimeoutMs: number;
  /** the Retry-After (seconds) of a 503 */
  readonly retryAfterSeconds: number;
  /** ServiceAccount tokens (TokenReview) and SubjectAccessReview; off by default */
  readonly auth: boolean;
  /** token audiences accepted (TokenReview spec.audiences); at least one */
  readonly authAudiences: readonly string[];
  /** how long a TokenReview / SubjectAccessReview answer is reused */
  readonly authCacheMs: number;
  /**
   * Streams served without Kubernetes (no informer): for `eventwire dev`-like setups and the
   * benchmark. When set, EventStreams are not watched.
   */
  readonly staticStreams?: readonly StaticStream[];
}

const STATIC_ENTRY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)=([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_.-]+)$/;

/** `ns/name=STREAM:prefix,ns2/name2=STREAM2:prefix2` */
export function parseStaticStreams(value: string, variable: string): StaticStream[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const m = STATIC_ENTRY.exec(entry);
      if (!m?.[1] || !m[3] || !m[5] || !m[6]) {
        throw new ConfigError(
          variable,
          `"${entry}" is not namespace/name=STREAM:subjectPrefix, for example shop/orders=SHOP:shop`,
        );
      }
      return { namespace: m[1], name: m[3], streamName: m[5], subjectPrefix: m[6] };
    });
}

/** `a, b`: the accepted token audiences, at least one. */
function audiences(env: Env, variable: string): string[] {
  const list = str(env, variable, 'eventwire')
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  if (list.length === 0) {
    throw new ConfigError(
      variable,
      'name at least one token audience, for example eventwire (comma-separated)',
    );
  }
  return list;
}

export function parseIngressConfig(env: Env): IngressConfig {
  const staticValue = optionalStr(env, 'EVENTWIRE_INGRESS_STATIC_STREAMS');
  const staticStreams =
    staticValue === undefined
      ? undefined
      : parseStaticStreams(staticValue, 'EVENTWIRE_INGRESS_STATIC_STREAMS');
  const auth = bool(env, 'EVENTWIRE_INGRESS_AUTH', false);
  if (auth && staticStreams !== undefined) {
    throw new ConfigError(
      'EVENTWIRE_INGRESS_AUTH',
      'authentication needs Kubernetes; unset EVENTWIRE_INGRESS_STATIC_STREAMS or set EVENTWIRE_INGRESS_AUTH=false',
    );
  }
  return {
    ...parseCommonConfig(env, 'ingress', 8081),
    host: str(env, 'EVENTWIRE_INGRESS_HOST', '0.0.0.0'),
    port: int(env, 'EVENTWIRE_INGRESS_PORT', 8080, 0, 65535),
    maxBodyBytes: int(env, 'EVENTWIRE_INGRESS_MAX_BODY_BYTES', 1_048_576, 1, 64 * 1_048_576),
    publishTimeoutMs: durationMs(env, 'EVENTWIRE_INGRESS_PUBLISH_TIMEOUT', '5s'),
    retryAfterSeconds: int(env, 'EVENTWIRE_INGRESS_RETRY_AFTER_SECONDS', 1, 1, 3600),
    auth,
    authAudiences: audiences(env, 'EVENTWIRE_INGRESS_AUTH_AUDIENCES'),
    authCacheMs: durationMs(env, 'EVENTWIRE_INGRESS_AUTH_CACHE_TTL', '10s'),
    ...(staticStreams ? { staticStreams } : {}),
  };
}
