/* eslint-disable max-lines-per-function -- a describe block holds many small tests */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../observability/logger.ts';
import { WorkQueue, type WorkResult } from './work-queue.ts';

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets queued promise callbacks run without moving fake time. */
const flush = () => vi.advanceTimersByTimeAsync(0);

describe('WorkQueue', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('queues a key at most once', async () => {
    const q = new WorkQueue({ logger: silentLogger() });
    q.add('a');
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    const seen: string[] = [];
    q.start((key) => {
      seen.push(key);
    });
    await flush();
    expect(seen).toEqual(['a', 'b']);
    expect(q.len()).toBe(0);
  });

  it('never hands the same key to two workers at once, and re-runs it when re-added', async () => {
    const q = new WorkQueue({ workers: 4, logger: silentLogger() });
    const gates: Deferred[] = [];
    let running = 0;
    let maxRunning = 0;
    q.start(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      const gate = deferred();
      gates.push(gate);
      await gate.promise;
      running--;
    });
    q.add('a');
    await flush();
    expect(gates).toHaveLength(1);
    q.add('a'); // added while being handled: waits, not run in parallel
    q.add('a');
    await flush();
    expect(gates).toHaveLength(1);
    expect(q.len()).toBe(0);
    gates[0]?.resolve();
    await flush();
    expect(gates).toHaveLength(2); // handled once more, not twice more
    gates[1]?.resolve();
    await flush();
    expect(gates).toHaveLength(2);
    expect(maxRunning).toBe(1);
  });

  it('handles different keys concurrently, up to the worker count', async () => {
    const q = new WorkQueue({ workers: 2, logger: silentLogger() });
    const gates = new Map<string, Deferred>();
    q.start(async (key) => {
      const gate = deferred();
      gates.set(key, gate);
      await gate.promise;
    });
    q.add('a');
    q.add('b');
    q.add('c');
    await flush();
    expect([...gates.keys()]).toEqual(['a', 'b']);
    expect(q.len()).toBe(1);
    gates.get('a')?.resolve();
    await flush();
    expect([...gates.keys()]).toEqual(['a', 'b', 'c']);
  });

  it('retries a failing key with exponential backoff, capped', async () => {
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 50, logger: silentLogger() });
    const times: number[] = [];
    const start = Date.now();
    q.start(() => {
      times.push(Date.now() - start);
      throw new Error('boom');
    });
    q.add('a');
    await vi.advanceTimersByTimeAsync(10 + 20 + 40 + 50 + 50);
    // attempts at 0, then +10, +20, +40, then capped at +50
    expect(times).toEqual([0, 10, 30, 70, 120, 170]);
    expect(q.failures('a')).toBe(6);
  });

  it('forgets the failure count after a success', async () => {
    const q = new WorkQueue({ baseDelayMs: 10, logger: silentLogger() });
    let calls = 0;
    const failOn = new Set([1, 2, 4]);
    const times: number[] = [];
    const start = Date.now();
    q.start(() => {
      calls++;
      times.push(Date.now() - start);
      if (failOn.has(calls)) throw new Error(`fail ${calls}`);
    });
    q.add('a');
    await vi.advanceTimersByTimeAsync(30); // fail, +10 fail, +20 succeed
    expect(calls).toBe(3);
    expect(q.failures('a')).toBe(0);
    q.add('a');
    await vi.advanceTimersByTimeAsync(10); // fails again: the delay starts over at 10
    expect(times).toEqual([0, 10, 30, 30, 40]);
    expect(calls).toBe(5);
    expect(q.failures('a')).toBe(0);
  });

  it('requeues after the delay a handler asks for', async () => {
    const q = new WorkQueue({ logger: silentLogger() });
    let calls = 0;
    q.start((): WorkResult => {
      calls++;
      return calls === 1 ? { requeueAfterMs: 1000 } : undefined;
    });
    q.add('a');
    await flush();
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(2);
  });

  it('keeps the earliest of several delayed adds', async () => {
    const q = new WorkQueue({ logger: silentLogger() });
    let calls = 0;
    q.start(() => {
      calls++;
    });
    q.addAfter('a', 500);
    q.addAfter('a', 100);
    q.addAfter('a', 300);
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toBe(1);
  });

  it('shutdown waits for running handlers, drops waiting keys and refuses new ones', async () => {
    const q = new WorkQueue({ workers: 2, logger: silentLogger() });
    const gate = deferred();
    const seen: string[] = [];
    q.start(async (key) => {
      seen.push(key);
      await gate.promise;
    });
    q.add('a');
    q.add('b');
    q.add('c');
    q.addAfter('d', 10);
    await flush();
    let done = false;
    const stopping = q.shutdown().then(() => {
      done = true;
    });
    await flush();
    expect(done).toBe(false);
    q.add('e');
    expect(q.len()).toBe(0);
    gate.resolve();
    await stopping;
    expect(done).toBe(true);
    await vi.advanceTimersByTimeAsync(100);
    expect(seen).toEqual(['a', 'b']);
  });

  it('shutdown of an idle queue resolves at once', async () => {
    const q = new WorkQueue({ logger: silentLogger() });
    q.start(() => undefined);
    await expect(q.shutdown()).resolves.toBeUndefined();
  });
});
