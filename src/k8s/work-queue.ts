// A keyed, de-duplicating, rate-limited work queue in the manner of client-go's workqueue:
// a key waits in the queue at most once, is never handled by two workers at once, and a key
// added while it is being handled is handled again once the current run ends.
import type { Logger } from '../observability/logger.ts';

export type TimerHandle = ReturnType<typeof setTimeout>;

/** Time and timers, injectable so tests can drive them. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock; reads the globals at call time so fake timers in tests apply. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle);
  },
};

// eslint-disable-next-line @typescript-eslint/no-invalid-void-type -- a handler may return nothing
export type WorkResult = void | { readonly requeueAfterMs?: number };
export type WorkHandler = (key: string) => WorkResult | Promise<WorkResult>;

export interface WorkQueueOptions {
  /** how many keys are handled concurrently; 1 by default */
  readonly workers?: number;
  /** first retry delay after a failure; 5 ms by default */
  readonly baseDelayMs?: number;
  /** longest retry delay; 300 000 ms by default */
  readonly maxDelayMs?: number;
  readonly logger: Logger;
  readonly clock?: Clock;
}

interface Delayed {
  readonly due: number;
  readonly timer: TimerHandle;
}

export class WorkQueue {
  readonly #workers: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  /** keys waiting to be handled, in order */
  readonly #queue: string[] = [];
  /** keys that need handling: queued, or re-added while being handled */
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #delayed = new Map<string, Delayed>();
  #handler: WorkHandler | undefined;
  #shuttingDown = false;
  #drained: (() => void) | undefined;

  constructor(opts: WorkQueueOptions) {
    this.#workers = Math.max(1, opts.workers ?? 1);
    this.#baseDelayMs = opts.baseDelayMs ?? 5;
    this.#maxDelayMs = opts.maxDelayMs ?? 300_000;
    this.#log = opts.logger;
    this.#clock = opts.clock ?? systemClock;
  }

  /** Queues a key unless it is already waiting. */
  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return; // queued again when the current run ends
    this.#queue.push(key);
    this.#pump();
  }

  /** Queues a key after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const due = this.#clock.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending !== undefined) {
      if (pending.due <= due) return;
      this.#clock.clearTimeout(pending.timer);
    }
    const timer = this.#clock.setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { due, timer });
  }

  /** Starts the workers. */
  start(handler: WorkHandler): void {
    if (this.#handler !== undefined) throw new Error('work queue already started');
    if (this.#shuttingDown) throw new Error('work queue is shut down');
    this.#handler = handler;
    this.#pump();
  }

  /** Stops taking work, drops waiting and delayed keys, and waits for running handlers. */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    for (const { timer } of this.#delayed.values()) this.#clock.clearTimeout(timer);
    this.#delayed.clear();
    this.#queue.length = 0;
    this.#dirty.clear();
    if (this.#processing.size === 0) return;
    await new Promise<void>((resolve) => {
      this.#drained = resolve;
    });
  }

  /** Keys waiting to be handled (not counting running or delayed ones). */
  len(): number {
    return this.#queue.length;
  }

  /** How many times in a row the key has failed. */
  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Resets the key's failure count. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** The delay before the key's next retry, counting this failure. */
  #backoff(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    return Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** failures);
  }

  #pump(): void {
    const handler = this.#handler;
    if (handler === undefined) return;
    while (!this.#shuttingDown && this.#processing.size < this.#workers) {
      const key = this.#queue.shift();
      if (key === undefined) return;
      this.#dirty.delete(key);
      this.#processing.add(key);
      void this.#process(key, handler);
    }
  }

  async #process(key: string, handler: WorkHandler): Promise<void> {
    try {
      const result = await handler(key);
      this.forget(key);
      const after = result?.requeueAfterMs;
      if (after !== undefined) this.addAfter(key, after);
    } catch (err) {
      const retryInMs = this.#backoff(key);
      this.#log.warn(
        { err, key, failures: this.failures(key), retryInMs },
        'work item failed; requeueing',
      );
      this.addAfter(key, retryInMs);
    } finally {
      this.#processing.delete(key);
      if (this.#dirty.has(key)) this.#queue.push(key);
      if (this.#shuttingDown && this.#processing.size === 0) this.#drained?.();
      this.#pump();
    }
  }
}
