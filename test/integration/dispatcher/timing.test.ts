// Retry timing follows the configured schedule (within a tolerance: the only timing
// assertions of the suite), and Retry-After is honoured and capped by retryAfterMax.
import { beforeAll, describe, expect, it } from 'vitest';
import { JITTER } from '../../../src/dispatcher/outcome.ts';
import { startSink, type TestSink } from '../../harness/sink.ts';
import {
  consumerState,
  event,
  makeStream,
  publish,
  startWorker,
  workerSpec,
  type Nats,
  workerFixture,
  untilWithin,
} from './helpers.ts';

const until = untilWithin(20_000, 25);

/** Gaps between consecutive requests, in ms. */
const gaps = (sink: TestSink) =>
  sink.requests.slice(1).map((r, i) => r.receivedAt - (sink.requests[i]?.receivedAt ?? 0));

/** Scheduling slack on top of the jittered delay: the nak round trip and the pull. */
const SLACK_MS = 250;

describe('retry timing', () => {
  const fx = workerFixture();
  const { workers, sinks } = fx;
  let n: Nats;
  beforeAll(() => {
    n = fx.nats();
  });

  for (const ordering of ['none', 'key'] as const) {
    it(`follows the exponential schedule, capped by backoffMax (ordering ${ordering})`, async () => {
      const s = await makeStream(n);
      const sink = await startSink((req) => ({ status: req.index < 4 ? 503 : 200 }));
      sinks.push(sink);
      const delivery = {
        retry: 5,
        backoffDelayMs: 200,
        backoffMaxMs: 700,
        retryAfterMaxMs: 0,
        ordering,
        orderingKey: 'partitionkey',
      };
      workers.push(startWorker(n, workerSpec(s, sink.url, delivery)).worker);
      await publish(n, s.prefix, [event(1)]);
      await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
      const expected = [200, 400, 700, 700];
      const got = gaps(sink);
      expect(got).toHaveLength(expected.length);
      got.forEach((gap, i) => {
        const want = expected[i] ?? 0;
        expect(gap).toBeGreaterThanOrEqual(want * (1 - JITTER) - 5);
        expect(gap).toBeLessThanOrEqual(Math.min(want * (1 + JITTER), 700) + SLACK_MS);
      });
    });
  }

  it('follows the linear schedule', async () => {
    const s = await makeStream(n);
    const sink = await startSink((req) => ({ status: req.index < 3 ? 500 : 200 }));
    sinks.push(sink);
    workers.push(
      startWorker(
        n,
        workerSpec(s, sink.url, {
          retry: 5,
          backoffPolicy: 'linear',
          backoffDelayMs: 150,
          backoffMaxMs: 10_000,
        }),
      ).worker,
    );
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    const got = gaps(sink);
    [150, 300, 450].forEach((want, i) => {
      expect(got[i]).toBeGreaterThanOrEqual(want * (1 - JITTER) - 5);
      expect(got[i]).toBeLessThanOrEqual(want * (1 + JITTER) + SLACK_MS);
    });
  });

  it('honours Retry-After on 429 and 503', async () => {
    const s = await makeStream(n);
    const sink = await startSink((req) =>
      req.index === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 },
    );
    sinks.push(sink);
    workers.push(
      startWorker(n, workerSpec(s, sink.url, { backoffDelayMs: 20, retryAfterMaxMs: 5_000 }))
        .worker,
    );
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    const [gap] = gaps(sink);
    expect(gap).toBeGreaterThanOrEqual(990);
    expect(gap).toBeLessThanOrEqual(1_000 + SLACK_MS);
  });

  it('caps Retry-After at retryAfterMax', async () => {
    const s = await makeStream(n);
    const sink = await startSink((req) =>
      req.index === 0 ? { status: 503, headers: { 'retry-after': '120' } } : { status: 200 },
    );
    sinks.push(sink);
    workers.push(
      startWorker(n, workerSpec(s, sink.url, { backoffDelayMs: 20, retryAfterMaxMs: 600 })).worker,
    );
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    const [gap] = gaps(sink);
    expect(gap).toBeGreaterThanOrEqual(590);
    expect(gap).toBeLessThanOrEqual(600 + SLACK_MS);
  });
});
