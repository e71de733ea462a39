import { describe, expect, it } from 'vitest';
import {
  JITTER,
  backoff,
  decide,
  isRetryableStatus,
  parseRetryAfter,
  type AttemptResult,
  type OutcomeSettings,
} from './outcome.ts';

const settings: OutcomeSettings = {
  retry: 3,
  backoffPolicy: 'exponential',
  backoffDelayMs: 1_000,
  backoffMaxMs: 60_000,
  retryAfterMaxMs: 30_000,
  deadLetter: { kind: 'subject', subject: 'x.dlq' },
};
const noDeadLetter: OutcomeSettings = { ...settings, deadLetter: undefined };
const mid = () => 0.5; // no jitter
const now = Date.parse('2025-01-01T00:00:00Z');
const status = (s: number, retryAfter?: string): AttemptResult => ({
  kind: 'response',
  status: s,
  retryAfter,
});

describe('decide: the delivery semantics table', () => {
  it.each([200, 201, 202, 204, 299])('%i acks', (s) => {
    expect(decide(status(s), 1, settings, now, mid)).toEqual({ action: 'ack' });
  });

  it('a 2xx acks even on the last allowed attempt and after retries ran out', () => {
    expect(decide(status(200), 99, settings, now, mid)).toEqual({ action: 'ack' });
  });

  it.each([404, 408, 409, 429, 500, 502, 503, 504, 599])('%i is retried with backoff', (s) => {
    expect(decide(status(s), 1, settings, now, mid)).toEqual({
      action: 'retry',
      delayMs: 1_000,
      retryAfterUsed: false,
    });
  });

  it('connection errors and timeouts are retried', () => {
    const conn: AttemptResult = { kind: 'connection-error', message: 'ECONNREFUSED' };
    const timeout: AttemptResult = { kind: 'timeout', timeoutMs: 30_000 };
    expect(decide(conn, 2, settings, now, mid)).toMatchObject({ action: 'retry', delayMs: 2_000 });
    expect(decide(timeout, 3, settings, now, mid)).toMatchObject({
      action: 'retry',
      delayMs: 4_000,
    });
  });

  it.each([400, 401, 403, 405, 410, 413, 415, 422, 451])(
    '%i is dead-lettered at once, whatever the attempt',
    (s) => {
      expect(decide(status(s), 1, settings, now, mid)).toEqual({
        action: 'deadLetter',
        reason: 'non-retryable-status',
        code: s,
      });
    },
  );

  it('statuses outside 2xx, 4xx and 5xx (a redirect) are not retried', () => {
    expect(decide(status(302), 1, settings, now, mid)).toMatchObject({ action: 'deadLetter' });
  });

  it('retries are exhausted once the attempt number exceeds retry', () => {
    expect(decide(status(503), 3, settings, now, mid)).toMatchObject({ action: 'retry' });
    expect(decide(status(503), 4, settings, now, mid)).toEqual({
      action: 'deadLetter',
      reason: 'retries-exhausted',
      code: 503,
    });
    const conn: AttemptResult = { kind: 'connection-error', message: 'reset' };
    expect(decide(conn, 4, settings, now, mid)).toEqual({
      action: 'deadLetter',
      reason: 'retries-exhausted',
    });
  });

  it('retry 0: the first failure is final', () => {
    expect(decide(status(500), 1, { ...settings, retry: 0 }, now, mid)).toMatchObject({
      action: 'deadLetter',
      reason: 'retries-exhausted',
    });
  });

  it('without a dead letter a terminal failure is term', () => {
    expect(decide(status(400), 1, noDeadLetter, now, mid)).toEqual({
      action: 'term',
      reason: 'non-retryable-status',
      code: 400,
    });
    expect(decide(status(500), 4, noDeadLetter, now, mid)).toEqual({
      action: 'term',
      reason: 'retries-exhausted',
      code: 500,
    });
  });
});

describe('decide: failures inside the dispatcher', () => {
  const unencodable: AttemptResult = {
    kind: 'unencodable',
    message: 'RangeError: Maximum call stack size exceeded',
  };
  const internal: AttemptResult = { kind: 'internal-error', message: 'TypeError: boom' };

  it('an event that cannot be encoded for the sink is dead-lettered at once', () => {
    expect(decide(unencodable, 1, settings, now, mid)).toEqual({
      action: 'deadLetter',
      reason: 'unencodable-event',
    });
    expect(decide(unencodable, 1, noDeadLetter, now, mid)).toEqual({
      action: 'term',
      reason: 'unencodable-event',
    });
  });

  it('an unexpected failure is retried with the backoff of its attempt, then dead-lettered', () => {
    expect(decide(internal, 1, settings, now, mid)).toEqual({
      action: 'retry',
      delayMs: 1_000,
      retryAfterUsed: false,
    });
    expect(decide(internal, 3, settings, now, mid)).toMatchObject({
      action: 'retry',
      delayMs: 4_000,
    });
    expect(decide(internal, 4, settings, now, mid)).toEqual({
      action: 'deadLetter',
      reason: 'retries-exhausted',
    });
    expect(decide(internal, 4, noDeadLetter, now, mid)).toEqual({
      action: 'term',
      reason: 'retries-exhausted',
    });
  });
});

describe('decide: Retry-After', () => {
  it('Retry-After on 429 and 503 replaces the backoff, capped by retryAfterMax', () => {
    expect(decide(status(429, '5'), 1, settings, now, mid)).toEqual({
      action: 'retry',
      delayMs: 5_000,
      retryAfterUsed: true,
    });
    expect(decide(status(503, '3600'), 1, settings, now, mid)).toMatchObject({
      delayMs: 30_000,
      retryAfterUsed: true,
    });
    const date = new Date(now + 7_000).toUTCString();
    expect(decide(status(503, date), 1, settings, now, mid)).toMatchObject({ delayMs: 7_000 });
  });

  it('Retry-After is ignored on other statuses, when malformed, and with retryAfterMax 0s', () => {
    expect(decide(status(500, '5'), 1, settings, now, mid)).toMatchObject({
      delayMs: 1_000,
      retryAfterUsed: false,
    });
    expect(decide(status(429, 'soon'), 1, settings, now, mid)).toMatchObject({ delayMs: 1_000 });
    expect(
      decide(status(429, '5'), 1, { ...settings, retryAfterMaxMs: 0 }, now, mid),
    ).toMatchObject({ delayMs: 1_000, retryAfterUsed: false });
  });

  it('a Retry-After in the past, of zero or unparsable uses the backoff', () => {
    const hourAgo = new Date(now - 3_600_000).toUTCString();
    for (const value of [hourAgo, '0', 'soon', '', '-5']) {
      expect(decide(status(503, value), 2, settings, now, mid)).toEqual({
        action: 'retry',
        delayMs: 2_000,
        retryAfterUsed: false,
      });
    }
  });

  it('a huge Retry-After is capped by retryAfterMax, whatever its size', () => {
    const max = { ...settings, retryAfterMaxMs: 10_000 * 3_600_000 };
    expect(decide(status(503, '99999999'), 1, max, now, mid)).toEqual({
      action: 'retry',
      delayMs: 10_000 * 3_600_000,
      retryAfterUsed: true,
    });
    expect(decide(status(429, '9'.repeat(400)), 1, max, now, mid)).toMatchObject({
      delayMs: 10_000 * 3_600_000,
    });
  });

  it('Retry-After does not extend retries past the limit', () => {
    expect(decide(status(429, '1'), 4, settings, now, mid)).toMatchObject({
      action: 'deadLetter',
      reason: 'retries-exhausted',
      code: 429,
    });
  });
});

describe('backoff', () => {
  it('exponential doubles from backoffDelay and is capped by backoffMax', () => {
    const s = {
      backoffPolicy: 'exponential',
      backoffDelayMs: 1_000,
      backoffMaxMs: 10_000,
    } as const;
    expect([1, 2, 3, 4, 5, 6, 100].map((n) => backoff(n, s, mid))).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000,
    ]);
  });

  it('linear grows by backoffDelay each retry', () => {
    const s = { backoffPolicy: 'linear', backoffDelayMs: 500, backoffMaxMs: 1_800 } as const;
    expect([1, 2, 3, 4, 5].map((n) => backoff(n, s, mid))).toEqual([
      500, 1_000, 1_500, 1_800, 1_800,
    ]);
  });

  it('jitter stays within ±20% and never exceeds backoffMax', () => {
    const s = { backoffPolicy: 'exponential', backoffDelayMs: 1_000, backoffMaxMs: 4_000 } as const;
    expect(backoff(1, s, () => 0)).toBe(1_000 * (1 - JITTER));
    expect(backoff(1, s, () => 0.999999)).toBeCloseTo(1_000 * (1 + JITTER), -1);
    expect(backoff(3, s, () => 0.999999)).toBe(4_000);
    expect(backoff(3, s, () => 0)).toBe(3_200);
  });

  it('a zero delay stays zero', () => {
    const s = { backoffPolicy: 'exponential', backoffDelayMs: 0, backoffMaxMs: 1_000 } as const;
    expect(backoff(5, s, Math.random)).toBe(0);
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates', () => {
    expect(parseRetryAfter('1', now)).toBe(1_000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
  });

  it('a past date, a zero delay, absent or malformed is undefined (use the backoff)', () => {
    expect(parseRetryAfter('Tue, 31 Dec 2024 00:00:00 GMT', now)).toBeUndefined();
    expect(parseRetryAfter(new Date(now).toUTCString(), now)).toBeUndefined();
    expect(parseRetryAfter('0', now)).toBeUndefined();
    expect(parseRetryAfter('000', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('-1', now)).toBeUndefined();
    expect(parseRetryAfter('1.5', now)).toBeUndefined();
    expect(parseRetryAfter('later', now)).toBeUndefined();
  });
});

describe('isRetryableStatus', () => {
  it('is 404, 408, 409, 429 and every 5xx', () => {
    const retryable = [400, 401, 404, 408, 409, 410, 429, 500, 501, 503].filter(isRetryableStatus);
    expect(retryable).toEqual([404, 408, 409, 429, 500, 501, 503]);
  });
});
