// Optional authentication and authorization of producers: a bearer token checked with a
// TokenReview for the ingress's own audiences (a ServiceAccount token made for `eventwire`,
// not one for the API server, unless the API server's audience is configured too), then a
// SubjectAccessReview for `create` on `eventstreams/publish` (group eventwire.io) named after
// the stream, in the stream's namespace. Answers are cached for a short time so that a busy
// producer costs the API server two requests per TTL, not two per event.
import { createHash } from 'node:crypto';
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { API_GROUP, EVENTSTREAM_PLURAL } from '../api/types.ts';

/** Who sent a request, as the API server authenticated them. */
export interface Caller {
  readonly username: string;
  readonly uid?: string | undefined;
  readonly groups: readonly string[];
  readonly extra?: Readonly<Record<string, string[]>> | undefined;
  /** the ServiceAccount's namespace, for system:serviceaccount:<ns>:<name> users */
  readonly namespace?: string | undefined;
}

export interface Decision {
  readonly allowed: boolean;
  readonly reason?: string | undefined;
}

export interface Authorizer {
  /** The token audiences accepted (for the fix of a 401), when the authorizer checks them. */
  readonly audiences?: readonly string[] | undefined;
  /** The caller a token belongs to, or undefined when the token is not valid. */
  authenticate(token: string): Promise<Caller | undefined>;
  mayPublish(caller: Caller, namespace: string, stream: string): Promise<Decision>;
}

/** The API server could not be asked: transient, the producer retries (503). */
export class AuthUnavailableError extends Error {
  readonly transient = true;
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'AuthUnavailableError';
  }
}

const SA_PREFIX = 'system:serviceaccount:';

export function serviceAccountNamespace(username: string): string | undefined {
  if (!username.startsWith(SA_PREFIX)) return undefined;
  const [namespace, name] = username.slice(SA_PREFIX.length).split(':');
  return namespace && name ? namespace : undefined;
}

/** A small TTL cache with a size cap (cleared whole when full: simple and bounded). */
class TtlCache<V> {
  readonly #entries = new Map<string, { value: V; expires: number }>();
  readonly #ttlMs: number;
  readonly #max: number;

  constructor(ttlMs: number, max = 10_000) {
    this.#ttlMs = ttlMs;
    this.#max = max;
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: V): void {
    if (this.#ttlMs <= 0) return;
    if (this.#entries.size >= this.#max) this.#entries.clear();
    this.#entries.set(key, { value, expires: Date.now() + this.#ttlMs });
  }
}

/**
 * Whether a TokenReview's answer is for one of `audiences`. The API server answers the
 * intersection of the token's and the requested audiences; an authenticated answer without
 * audiences comes from a server that ignored them (the token is then only known to be valid
 * for the API server itself), so it is refused.
 */
export function forAudiences(
  answered: readonly string[] | undefined,
  audiences: readonly string[],
): boolean {
  return (answered ?? []).some((a) => audiences.includes(a));
}

/** TokenReview + SubjectAccessReview against the API server of `kubeConfig`. */
export class KubeAuthorizer implements Authorizer {
  readonly audiences: readonly string[];
  readonly #authn: AuthenticationV1Api;
  readonly #authz: AuthorizationV1Api;
  readonly #tokens: TtlCache<Caller | null>;
  readonly #decisions: TtlCache<Decision>;

  /** `audiences`: the token audiences accepted (TokenReview `spec.audiences`). */
  constructor(kubeConfig: KubeConfig, cacheTtlMs: number, audiences: readonly string[]) {
    this.audiences = audiences;
    this.#authn = kubeConfig.makeApiClient(AuthenticationV1Api);
    this.#authz = kubeConfig.makeApiClient(AuthorizationV1Api);
    this.#tokens = new TtlCache(cacheTtlMs);
    this.#decisions = new TtlCache(cacheTtlMs);
  }

  async authenticate(token: string): Promise<Caller | undefined> {
    const key = createHash('sha256').update(token).digest('hex');
    const cached = this.#tokens.get(key);
    if (cached !== undefined) return cached ?? undefined;
    let review;
    try {
      review = await this.#authn.createTokenReview({
        body: { spec: { token, audiences: [...this.audiences] } },
      });
    } catch (err) {
      throw new AuthUnavailableError('TokenReview failed', err);
    }
    const user = review.status?.user;
    const caller: Caller | null =
      review.status?.authenticated === true &&
      forAudiences(review.status.audiences, this.audiences) &&
      user?.username !== undefined
        ? {
            username: user.username,
            uid: user.uid,
            groups: user.groups ?? [],
            extra: user.extra,
            namespace: serviceAccountNamespace(user.username),
          }
        : null;
    this.#tokens.set(key, caller);
    return caller ?? undefined;
  }

  async mayPublish(caller: Caller, namespace: string, stream: string): Promise<Decision> {
    const key = JSON.stringify([caller.username, caller.uid, caller.groups, namespace, stream]);
    const cached = this.#decisions.get(key);
    if (cached !== undefined) return cached;
    let review;
    try {
      review = await this.#authz.createSubjectAccessReview({
        body: {
          spec: {
            user: caller.username,
            ...(caller.uid === undefined ? {} : { uid: caller.uid }),
            groups: [...caller.groups],
            ...(caller.extra === undefined ? {} : { extra: { ...caller.extra } }),
            resourceAttributes: {
              group: API_GROUP,
              resource: EVENTSTREAM_PLURAL,
              subresource: 'publish',
              verb: 'create',
              namespace,
              name: stream,
            },
          },
        },
      });
    } catch (err) {
      throw new AuthUnavailableError('SubjectAccessReview failed', err);
    }
    const decision: Decision = {
      allowed: review.status?.allowed === true && review.status.denied !== true,
      reason: review.status?.reason,
    };
    this.#decisions.set(key, decision);
    return decision;
  }
}
