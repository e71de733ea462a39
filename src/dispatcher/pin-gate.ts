// The first messages a replica receives under a new pin may have predecessors of the same key
// that are still held elsewhere: by the replica that held the pin before (dying, draining, or
// alive but too slow to refresh its pin), or not yet redelivered (a SIGKILLed replica's
// messages come back only after ack_wait). The gate holds such messages back until their
// predecessors are settled. Pure: the worker feeds it and pushes what it releases to its
// per-key scheduler.
//
// When a pin begins, the worker reads the consumer's ack floor F and the last stream sequence
// it delivered L. Everything delivered before the pin moved here has a sequence <= L, and
// every unsettled one a sequence > F: the window (F, L]. With the window's keys (read from the
// stream) a message of key k and sequence s is released once every window message of key k
// below s is settled: at or below the current ack floor, or acknowledged here. Without them
// (a window too large to read, or a read that failed) the key of each window message is
// unknown, and a message is released once the ack floor reached min(s - 1, L): every message
// before it is settled. Messages past L are delivered only to this pin, in stream order, so
// for them the key scheduler's FIFO keeps the order once the window is settled. Unordered
// messages (ordering key missing, ordering none) are never held. See docs/ordering.md.

export interface PinWindow {
  /** the consumer's ack floor (stream sequence) when the pin began */
  readonly floor: number;
  /** the last stream sequence the consumer had delivered when the pin began */
  readonly last: number;
  /** the scheduler key of each window message by key, sequences ascending; unknown: undefined */
  readonly keys?: ReadonlyMap<string, readonly number[]> | undefined;
}

interface Waiting<T> {
  readonly item: T;
  readonly seq: number;
  readonly key: string;
}

/** A scheduler key whose messages are never ordered (see SubscriptionWorker#keyOf). */
export function isUnorderedKey(key: string): boolean {
  return key.startsWith('u:');
}

export class PinGate<T> {
  #pin: string | undefined;
  /** loading: the window is being read; everything ordered waits */
  #state: 'open' | 'loading' | 'gated' = 'open';
  #window: PinWindow | undefined;
  #floor = 0;
  /** window sequences acknowledged here since the pin began */
  readonly #acked = new Set<number>();
  /** held back, sequence ascending */
  #waiting: Waiting<T>[] = [];

  /** The pin the current window belongs to. */
  get pin(): string | undefined {
    return this.#pin;
  }

  get state(): 'open' | 'loading' | 'gated' {
    return this.#state;
  }

  /** Nothing is held back: messages go straight to the scheduler. */
  isOpen(): boolean {
    return this.#state === 'open';
  }

  /** Messages held back. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** A message came with another pin than the current one: its window must be read. */
  isNewPin(pin: string | undefined): boolean {
    return pin !== undefined && pin !== this.#pin;
  }

  /** A new pin: hold every ordered message until load() gives its window. */
  begin(pin: string): void {
    this.#pin = pin;
    this.#state = 'loading';
    this.#window = undefined;
    this.#acked.clear();
  }

  /** The window of the current pin (ignored if another pin began meanwhile); releases. */
  load(pin: string, window: PinWindow): T[] {
    if (pin !== this.#pin || this.#state !== 'loading') return [];
    this.#window = window;
    this.#floor = Math.max(this.#floor, window.floor);
    this.#state = 'gated';
    return this.#release();
  }

  /** A message received; returns what may go to the scheduler now (in order). */
  admit(item: T, seq: number, key: string): T[] {
    if (this.#state === 'open' || isUnorderedKey(key)) return [item];
    const w: Waiting<T> = { item, seq, key };
    const i = this.#waiting.findIndex((x) => x.seq > seq);
    if (i === -1) this.#waiting.push(w);
    else this.#waiting.splice(i, 0, w);
    return this.#state === 'gated' ? this.#release() : [];
  }

  /** A window message was acknowledged here (JetStream confirmed it); releases. */
  acked(seq: number): T[] {
    if (this.#state !== 'gated') return [];
    const w = this.#window;
    if (w === undefined || seq <= this.#floor || seq > w.last) return [];
    this.#acked.add(seq);
    return this.#release();
  }

  /** The consumer's current ack floor; releases. */
  floor(floor: number): T[] {
    if (floor <= this.#floor) return [];
    this.#floor = floor;
    for (const s of this.#acked) if (s <= floor) this.#acked.delete(s);
    return this.#state === 'gated' ? this.#release() : [];
  }

  /** Removes and returns every message held back, in sequence order. */
  takeWaiting(): T[] {
    const out = this.#waiting.map((w) => w.item);
    this.#waiting = [];
    return out;
  }

  #settled(seq: number): boolean {
    return seq <= this.#floor || this.#acked.has(seq);
  }

  #releasable(w: Waiting<T>, window: PinWindow): boolean {
    if (window.keys === undefined) return this.#floor >= Math.min(w.seq - 1, window.last);
    for (const s of window.keys.get(w.key) ?? []) {
      if (s >= w.seq) break;
      if (!this.#settled(s)) return false;
    }
    return true;
  }

  /** Every window message settled: nothing delivered before this pin can still overtake. */
  #windowSettled(window: PinWindow): boolean {
    if (this.#floor >= window.last) return true;
    if (window.keys === undefined) return false;
    for (const seqs of window.keys.values()) {
      for (const s of seqs) if (!this.#settled(s)) return false;
    }
    return true;
  }

  #release(): T[] {
    const window = this.#window;
    if (window === undefined) return [];
    if (this.#windowSettled(window)) {
      this.#state = 'open';
      this.#acked.clear();
      return this.takeWaiting();
    }
    const out: T[] = [];
    const blocked = new Set<string>();
    this.#waiting = this.#waiting.filter((w) => {
      // a later message of a blocked key stays behind it
      if (blocked.has(w.key) || !this.#releasable(w, window)) {
        blocked.add(w.key);
        return true;
      }
      out.push(w.item);
      return false;
    });
    return out;
  }
}
