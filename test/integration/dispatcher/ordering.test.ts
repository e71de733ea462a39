// Ordering (key and strict), concurrency up to maxInFlight, working() during slow attempts,
// and graceful shutdown.
import { beforeAll, describe, expect, it } from 'vitest';
import { startSink, type SinkRequest } from '../../harness/sink.ts';
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

const until = untilWithin(30_000);

const keyOf = (r: SinkRequest) => r.event?.extensions.partitionkey ?? '';
const seqOf = (r: SinkRequest) => Number(r.event?.extensions.seq ?? '-1');

describe('ordering and concurrency', () => {
  const fx = workerFixture();
  const { workers, sinks } = fx;
  let n: Nats;
  beforeAll(() => {
    n = fx.nats();
  });

  it('key: 10,000 events over 100 keys, maxInFlight 32, random latency: order kept per key, keys overlap', async () => {
    const s = await makeStream(n, { maxInFlight: 32 });
    const sink = await startSink(() => ({ status: 200, delayMs: Math.floor(Math.random() * 4) }));
    sinks.push(sink);
    const total = 10_000;
    const events = Array.from({ length: total }, (_, i) =>
      event(i, { partitionkey: `key${i % 100}`, seq: String(i) }),
    );
    await publish(n, s.prefix, events);
    workers.push(
      startWorker(
        n,
        workerSpec(s, sink.url, { ordering: 'key', orderingKey: 'partitionkey', maxInFlight: 32 }),
      ).worker,
    );
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === total, 90_000);

    expect(sink.requests).toHaveLength(total);
    const byKey = new Map<string, SinkRequest[]>();
    for (const r of sink.requests) byKey.set(keyOf(r), [...(byKey.get(keyOf(r)) ?? []), r]);
    expect(byKey.size).toBe(100);
    for (const [, reqs] of byKey) {
      const seqs = reqs.map(seqOf);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      // one at a time: each request of a key arrives after the previous one was answered
      for (let i = 1; i < reqs.length; i += 1) {
        expect(reqs[i]?.receivedAt).toBeGreaterThanOrEqual(reqs[i - 1]?.respondedAt ?? Infinity);
      }
    }
    expect(sink.maxConcurrent).toBeGreaterThan(1);
    expect(sink.maxConcurrent).toBeLessThanOrEqual(32);
  }, 120_000);

  it('key: a failing event holds back later events of its key only', async () => {
    const s = await makeStream(n);
    let failures = 0;
    const sink = await startSink((req) => {
      if (req.event?.id === 'e-0' && failures < 2) {
        failures += 1;
        return { status: 503 };
      }
      return { status: 200 };
    });
    sinks.push(sink);
    const events = [0, 1, 2, 3].map((i) => event(i, { partitionkey: i % 2 === 0 ? 'a' : 'b' }));
    await publish(n, s.prefix, events);
    workers.push(
      startWorker(
        n,
        workerSpec(s, sink.url, {
          ordering: 'key',
          orderingKey: 'partitionkey',
          backoffDelayMs: 150,
        }),
      ).worker,
    );
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 4);
    const ok = sink.delivered().map((e) => e.id);
    expect(ok.indexOf('e-0')).toBeLessThan(ok.indexOf('e-2'));
    expect(ok.indexOf('e-1')).toBeLessThan(ok.indexOf('e-0')); // key b was not held back
  });

  it.each(['key', 'strict'] as const)(
    '%s: an event whose processing and settling both fail unexpectedly is retried in place; later events of its key wait',
    async (ordering) => {
      // ack_wait 60 s: nothing the worker leaves unsettled can come back during the test
      const s = await makeStream(n, { ackWaitMs: 60_000 });
      let failed = false;
      const sink = await startSink((req) => {
        if (req.event?.id === 'e-0' && !failed) {
          failed = true;
          return { status: 503 };
        }
        return { status: 200 };
      });
      sinks.push(sink);
      // key a: e-0, e-2, e-4, e-6; key b: e-1, e-3, e-5, e-7 (strict: one sequence)
      const events = Array.from({ length: 8 }, (_, i) =>
        event(i, { partitionkey: i % 2 === 0 ? 'a' : 'b', seq: String(i) }),
      );
      await publish(n, s.prefix, events);
      // the 503 of e-0 is the first answer needing a backoff: its decision throws (processing
      // fails), and so does the decision of the recovery (settling fails); later calls work
      let calls = 0;
      const random = () => {
        calls += 1;
        if (calls <= 2) throw new Error('the random source failed');
        return 0.5;
      };
      workers.push(
        startWorker(
          n,
          workerSpec(s, sink.url, {
            ordering,
            ...(ordering === 'key' ? { orderingKey: 'partitionkey' } : {}),
            backoffDelayMs: 150,
          }),
          { random },
        ).worker,
      );
      await until('all acked', async () => (await consumerState(n, s)).ackFloor === 8);
      expect(calls).toBeGreaterThanOrEqual(2);
      const delivered = sink.delivered();
      // nothing lost, nothing twice
      expect(delivered.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort());
      const orderOf = (key: string) =>
        delivered
          .filter((e) => ordering === 'strict' || e.extensions.partitionkey === key)
          .map((e) => Number(e.extensions.seq));
      for (const key of ['a', 'b']) {
        const seqs = orderOf(key);
        expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      }
      // e-0 failed once and was tried again by this worker, not redelivered by JetStream
      expect(sink.requests.filter((r) => r.event?.id === 'e-0').map((r) => r.ok)).toEqual([
        false,
        true,
      ]);
      expect((await consumerState(n, s)).redelivered).toBe(0);
    },
  );

  it('strict: one at a time in stream order', async () => {
    const s = await makeStream(n);
    const sink = await startSink(() => ({ status: 200, delayMs: 2 }));
    sinks.push(sink);
    await publish(
      n,
      s.prefix,
      Array.from({ length: 200 }, (_, i) => event(i, { seq: String(i) })),
    );
    workers.push(startWorker(n, workerSpec(s, sink.url, { ordering: 'strict' })).worker);
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 200);
    expect(sink.requests.map(seqOf)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(sink.maxConcurrent).toBe(1);
  });

  it('none: up to maxInFlight attempts at once', async () => {
    const s = await makeStream(n, { maxInFlight: 8 });
    const sink = await startSink(() => ({ status: 200, delayMs: 30 }));
    sinks.push(sink);
    await publish(
      n,
      s.prefix,
      Array.from({ length: 100 }, (_, i) => event(i)),
    );
    workers.push(startWorker(n, workerSpec(s, sink.url, { maxInFlight: 8 })).worker);
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 100);
    expect(sink.maxConcurrent).toBe(8);
  });

  it('a sink slower than ack_wait causes no redelivery while its attempt is in flight', async () => {
    const s = await makeStream(n, { ackWaitMs: 1_000, maxInFlight: 4 });
    const sink = await startSink(() => ({ status: 200, delayMs: 3_500 }));
    sinks.push(sink);
    await publish(
      n,
      s.prefix,
      [1, 2, 3, 4].map((i) => event(i)),
    );
    workers.push(
      startWorker(n, workerSpec(s, sink.url, { timeoutMs: 10_000, maxInFlight: 4 })).worker,
    );
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 4);
    expect(sink.requests).toHaveLength(4);
    expect((await consumerState(n, s)).redelivered).toBe(0);
  });

  it('graceful shutdown: in-flight attempts finish within the grace period, the rest is nak-ed', async () => {
    const s = await makeStream(n, { ackWaitMs: 60_000, maxInFlight: 4 });
    const sink = await startSink(() => ({ status: 200, delayMs: 500 }));
    sinks.push(sink);
    await publish(
      n,
      s.prefix,
      Array.from({ length: 10 }, (_, i) => event(i)),
    );
    const { worker } = startWorker(n, workerSpec(s, sink.url, { maxInFlight: 4 }));
    await until('four in flight', () => sink.inProgress === 4);
    await worker.stop(5_000);
    expect(sink.requests).toHaveLength(4);
    expect(sink.delivered()).toHaveLength(4);
    // JetStream applies acks asynchronously: the floor reaches 4 shortly after stop() returns
    await until(
      'the four acks to be applied',
      async () => (await consumerState(n, s)).ackFloor === 4,
    );
    expect(sink.requests).toHaveLength(4);
    // the rest was nak-ed, not left to ack_wait (60 s): a new worker gets it at once
    sink.setScript(() => ({ status: 200 }));
    workers.push(startWorker(n, workerSpec(s, sink.url, { maxInFlight: 4 })).worker);
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 10, 20_000);
    expect(new Set(sink.delivered().map((e) => e.id)).size).toBe(10);
  });

  it('graceful shutdown: attempts still running after the grace period are aborted and nak-ed', async () => {
    const s = await makeStream(n, { ackWaitMs: 60_000, maxInFlight: 2 });
    const sink = await startSink(() => ({ hang: true }));
    sinks.push(sink);
    await publish(
      n,
      s.prefix,
      [1, 2].map((i) => event(i)),
    );
    const { worker } = startWorker(
      n,
      workerSpec(s, sink.url, { timeoutMs: 30_000, maxInFlight: 2 }),
    );
    await until('two in flight', () => sink.requests.length === 2);
    await worker.stop(200);
    sink.setScript(() => ({ status: 200 }));
    workers.push(startWorker(n, workerSpec(s, sink.url, { maxInFlight: 2 })).worker);
    await until('both acked', async () => (await consumerState(n, s)).ackFloor === 2, 20_000);
  });
});
