import { describe, expect, it } from 'vitest';
import { KeyedScheduler } from './scheduler.ts';

interface Task {
  readonly key: string;
  readonly n: number;
  release: () => void;
}

function harness(limit: number) {
  const started: Task[] = [];
  const s = new KeyedScheduler<Task>(limit, (t) => {
    started.push(t);
    return new Promise<void>((resolve) => {
      t.release = resolve;
    });
  });
  const push = (key: string, n: number) => {
    s.push(key, { key, n, release: () => undefined });
  };
  const tick = () => new Promise((r) => setImmediate(r));
  return { s, started, push, tick };
}

describe('KeyedScheduler', () => {
  it('runs one task per key at a time, in push order, and different keys in parallel', async () => {
    const { s, started, push, tick } = harness(10);
    push('a', 1);
    push('a', 2);
    push('b', 3);
    push('a', 4);
    expect(started.map((t) => t.n)).toEqual([1, 3]);
    expect(s.running).toBe(2);
    expect(s.queued).toBe(2);
    started[0]?.release();
    await tick();
    expect(started.map((t) => t.n)).toEqual([1, 3, 2]);
    started[2]?.release();
    await tick();
    expect(started.map((t) => t.n)).toEqual([1, 3, 2, 4]);
  });

  it('never runs more than the limit', async () => {
    const { s, started, push, tick } = harness(2);
    for (let i = 0; i < 5; i += 1) push(`k${i}`, i);
    expect(started).toHaveLength(2);
    started[1]?.release();
    await tick();
    expect(started.map((t) => t.n)).toEqual([0, 1, 2]);
    expect(s.running).toBe(2);
  });

  it('keys take turns: a busy key goes to the back', async () => {
    const { started, push, tick } = harness(1);
    push('a', 1);
    push('a', 2);
    push('b', 3);
    started[0]?.release();
    await tick();
    expect(started.map((t) => t.n)).toEqual([1, 3]);
  });

  it('takeQueued returns what has not started; idle waits for the running ones', async () => {
    const { s, started, push, tick } = harness(1);
    push('a', 1);
    push('a', 2);
    push('b', 3);
    expect(s.takeQueued().map((t) => t.n)).toEqual([2, 3]);
    let idle = false;
    void s.idle().then(() => (idle = true));
    await tick();
    expect(idle).toBe(false);
    started[0]?.release();
    await tick();
    expect(idle).toBe(true);
    expect(started).toHaveLength(1);
  });

  it('a failing task does not stop its key', async () => {
    const order: number[] = [];
    const s = new KeyedScheduler<number>(1, (n) => {
      order.push(n);
      return n === 1 ? Promise.reject(new Error('boom')) : Promise.resolve();
    });
    s.push('a', 1);
    s.push('a', 2);
    await s.idle();
    expect(order).toEqual([1, 2]);
  });
});
