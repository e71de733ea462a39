// The delivery semantics table (docs/spec.md "Delivery semantics"), as a pure function of
// one attempt's result: ack, retry after a delay, dead-letter, or term. No I/O, no clock
// reads (the caller passes `now` and the random source), so every row is unit-tested.
import type { DeliverySettings } from './settings.ts';

/** What one HTTP attempt came to. */
export type AttemptResult =
  | {
      readonly kind: 'response';
      readonly status: number;
      /** the Retry-After header, when present */
      readonly retryAfter?: string | undefined;
      /** the start of the response body, for dead-letter extensions */
      readonly bodySnippet?: string | undefined;
    }
  | { readonly kind: 'connection-error'; readonly message: string }
  | { readonly kind: 'timeout'; readonly timeoutMs: number }
  /** the event cannot be encoded for the sink (in its delivery format): permanent */
  | { readonly kind: 'unencodable'; readonly message: string }
  /** an unexpected failure inside the dispatcher: retried like a connection error */
  | { readonly kind: 'internal-error'; readonly message: string };

/** Machine-readable reasons a message leaves without reaching the sink. */
export type FailureReason =
  | 'non-retryable-status'
  | 'retries-exhausted'
  | 'invalid-event'
  | 'unencodable-event'
  | 'reply-hop-limit'
  | 'reply-too-large';

export type Decision =
  | { readonly action: 'ack' }
  | { readonly action: 'retry'; readonly delayMs: number; readonly retryAfterUsed: boolean }
  | { readonly action: 'deadLetter'; readonly reason: FailureReason; readonly code?: number }
  | { readonly action: 'term'; readonly reason: FailureReason; readonly code?: number };

export type BackoffSettings = Pick<
  DeliverySettings,
  'backoffPolicy' | 'backoffDelayMs' | 'backoffMaxMs'
>;
export type OutcomeSettings = BackoffSettings &
  Pick<DeliverySettings, 'retry' | 'retryAfterMaxMs' | 'deadLetter'>;

/** Statuses that are retried besides every 5xx. */
const RETRYABLE_4XX: ReadonlySet<number> = new Set([404, 408, 409, 429]);
/** Statuses whose Retry-After is honoured (as the CRD documents). */
const RETRY_AFTER_STATUSES: ReadonlySet<number> = new Set([429, 503]);
/** Jitter: the delay is multiplied by a factor in [1 - JITTER, 1 + JITTER). */
export const JITTER = 0.2;

export function isRetryableStatus(status: number): boolean {
  return status >= 500 || RETRYABLE_4XX.has(status);
}

/**
 * The delay before retry number `retry` (1 for the first retry): exponential doubles
 * backoffDelay each retry, linear multiplies it by the retry number; jitter of ±20% is
 * applied and the result is capped by backoffMax.
 */
export function backoff(retry: number, s: BackoffSettings, random: () => number): number {
  const n = Math.max(1, retry);
  const raw =
    s.backoffPolicy === 'linear'
      ? s.backoffDelayMs * n
      : s.backoffDelayMs * 2 ** Math.min(n - 1, 52);
  const capped = Math.min(raw, s.backoffMaxMs);
  const jittered = capped * (1 + JITTER * (2 * random() - 1));
  return Math.max(0, Math.round(Math.min(jittered, s.backoffMaxMs)));
}

/**
 * Milliseconds a Retry-After header asks for (delta-seconds or an HTTP date, relative to
 * `now`), or undefined when it asks for no wait at all: absent, malformed, zero, or a date
 * that is not in the future. Undefined means "use the backoff".
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else if (/[a-z]/i.test(v)) ms = Date.parse(v) - now;
  else return undefined;
  return ms > 0 ? ms : undefined; // NaN (an unparsable date) is not > 0 either
}

function failure(s: OutcomeSettings, reason: FailureReason, code: number | undefined): Decision {
  const withCode = code === undefined ? {} : { code };
  return s.deadLetter === undefined
    ? { action: 'term', reason, ...withCode }
    : { action: 'deadLetter', reason, ...withCode };
}

/** A terminal failure: dead-letter when a dead letter is configured, else term. */
export function terminal(s: OutcomeSettings, reason: FailureReason, code?: number): Decision {
  return failure(s, reason, code);
}

/**
 * The action for an attempt. `attempt` is the 1-based number of the attempt just made
 * (JetStream's delivery count, plus retries made in place); retries are exhausted when
 * `attempt > retry`.
 */
export function decide(
  result: AttemptResult,
  attempt: number,
  s: OutcomeSettings,
  now: number,
  random: () => number,
): Decision {
  if (result.kind === 'unencodable') return failure(s, 'unencodable-event', undefined);
  const status = result.kind === 'response' ? result.status : undefined;
  if (status !== undefined && status >= 200 && status <= 299) return { action: 'ack' };
  if (status !== undefined && !isRetryableStatus(status)) {
    return failure(s, 'non-retryable-status', status);
  }
  if (attempt > s.retry) return failure(s, 'retries-exhausted', status);
  const delay = backoff(attempt, s, random);
  if (
    result.kind === 'response' &&
    s.retryAfterMaxMs > 0 &&
    RETRY_AFTER_STATUSES.has(result.status)
  ) {
    const asked = parseRetryAfter(result.retryAfter, now);
    if (asked !== undefined) {
      return { action: 'retry', delayMs: Math.min(asked, s.retryAfterMaxMs), retryAfterUsed: true };
    }
  }
  return { action: 'retry', delayMs: delay, retryAfterUsed: false };
}
