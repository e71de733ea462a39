// Runs tasks with a concurrency limit and per-key ordering: tasks with the same key run one at
// a time in the order they were pushed; tasks with different keys run in parallel up to the
// limit. Keys take turns (a key that finishes a task with more queued goes to the back), so
// one busy key cannot starve the others. `none` ordering gives every task its own key,
// `strict` gives all of them one key.

interface KeyQueue<T> {
  readonly items: T[];
  running: boolean;
}

export class KeyedScheduler<T> {
  readonly #limit: number;
  readonly #run: (item: T) => Promise<void>;
  readonly #queues = new Map<string, KeyQueue<T>>();
  /** keys with queued items and nothing running, in turn order */
  readonly #ready: string[] = [];
  #running = 0;
  #queued = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(limit: number, run: (item: T) => Promise<void>) {
    this.#limit = Math.max(1, limit);
    this.#run = run;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queued;
  }

  push(key: string, item: T): void {
    let q = this.#queues.get(key);
    if (q === undefined) {
      q = { items: [], running: false };
      this.#queues.set(key, q);
    }
    q.items.push(item);
    this.#queued += 1;
    if (!q.running && q.items.length === 1) this.#ready.push(key);
    this.#pump();
  }

  /** Removes and returns every queued task that has not started. */
  takeQueued(): T[] {
    const out: T[] = [];
    for (const [key, q] of this.#queues) {
      out.push(...q.items.splice(0));
      if (!q.running) this.#queues.delete(key);
    }
    this.#ready.length = 0;
    this.#queued = 0;
    this.#notifyIdle();
    return out;
  }

  /** Resolves when nothing runs and nothing is queued. */
  idle(): Promise<void> {
    if (this.#running === 0 && this.#queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (this.#running < this.#limit && this.#ready.length > 0) {
      const key = this.#ready.shift() ?? '';
      const q = this.#queues.get(key);
      const item = q?.items.shift();
      if (q === undefined || item === undefined) continue;
      q.running = true;
      this.#queued -= 1;
      this.#running += 1;
      void this.#run(item)
        .catch(() => undefined) // run() reports its own failures; the queue must go on
        .finally(() => {
          this.#finish(key, q);
        });
    }
  }

  #finish(key: string, q: KeyQueue<T>): void {
    q.running = false;
    this.#running -= 1;
    if (q.items.length > 0) this.#ready.push(key);
    else this.#queues.delete(key);
    this.#pump();
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (this.#running !== 0 || this.#queued !== 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
