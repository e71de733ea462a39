// status.stats.deadLettered: the dispatcher owns it, since only the dispatcher knows when a
// dead letter was accepted. Each dead letter the dead-letter sink or stream accepted adds one
// to its subscription's unwritten delta; the delta is added to the status subresource one
// interval after the first unwritten dead letter (so at most one write per subscription and
// interval), and once more when the dispatcher stops.
//
// A write reads the status subresource, adds the delta to stats.deadLettered (absent = 0) and
// writes it back (a replace of the status subresource, as the controller writes it) with the
// resourceVersion it read: when another dispatcher replica or the controller wrote in
// between, the API server answers 409 Conflict and the write reads again and retries, so any
// number of replicas add up exactly. A failed
// write keeps the delta for the next try (logged, counted); a subscription that is gone (404,
// or another object under the same name) drops its delta. A dispatcher killed without its
// stop loses the deltas it had not written yet: the count is a statistic, never a delivery
// guarantee (docs/dead-letters.md).
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  API_GROUP,
  API_VERSION,
  EVENTSUBSCRIPTION_PLURAL,
  type EventSubscription,
} from '../api/types.ts';
import { isConflict, isNotFound } from '../k8s/errors.ts';
import type { Logger } from '../observability/logger.ts';
import { setLongTimeout, sleep, type LongTimeout } from '../util/timers.ts';

/** The two requests a flush makes: the edge to the API server. */
export interface SubscriptionStatusApi {
  /** GET the status subresource (the whole object, with its resourceVersion). */
  read(namespace: string, name: string): Promise<EventSubscription>;
  /** PUT the status subresource: 409 when the object is no longer at its resourceVersion. */
  write(sub: EventSubscription): Promise<void>;
}

/** The status subresource of EventSubscriptions: get and update. */
export function kubeSubscriptionStatusApi(kc: KubeConfig): SubscriptionStatusApi {
  const api = kc.makeApiClient(CustomObjectsApi);
  const ref = { group: API_GROUP, version: API_VERSION, plural: EVENTSUBSCRIPTION_PLURAL };
  return {
    read: async (namespace, name) =>
      (await api.getNamespacedCustomObjectStatus({ ...ref, namespace, name })) as EventSubscription,
    write: async (sub) => {
      await api.replaceNamespacedCustomObjectStatus({
        ...ref,
        namespace: sub.metadata?.namespace ?? '',
        name: sub.metadata?.name ?? '',
        body: sub,
      });
    },
  };
}

/** Conflicts in a row one write retries (re-reading each time) before it counts as failed. */
export const MAX_CONFLICTS = 10;
/** The longest wait between the tries of a subscription whose writes keep failing. */
export const MAX_RETRY_MS = 60_000;

/** When to try again after `failures` failed writes in a row: the interval, doubling. */
export function retryDelayMs(intervalMs: number, failures: number): number {
  const doubled = intervalMs * 2 ** Math.min(Math.max(failures - 1, 0), 20);
  return Math.min(doubled, Math.max(intervalMs, MAX_RETRY_MS));
}

export interface DeadLetterStatsOptions {
  readonly api: SubscriptionStatusApi;
  readonly intervalMs: number;
  readonly log: Logger;
  /** a write failed (its delta is kept) */
  readonly onFailure?: (subscription: string) => void;
  readonly random?: () => number;
}

/** The dead letters of one subscription object not yet in its status. */
interface Pending {
  /** namespace/name */
  readonly subscription: string;
  /** the object the dead letters belong to; unknown when it had left the cache */
  readonly uid: string | undefined;
  delta: number;
  failures: number;
  timer: LongTimeout | undefined;
  flushing: Promise<void> | undefined;
}

type WriteResult = 'written' | 'gone';

export class DeadLetterStats {
  readonly #api: SubscriptionStatusApi;
  readonly #intervalMs: number;
  readonly #log: Logger;
  readonly #onFailure: ((subscription: string) => void) | undefined;
  readonly #random: () => number;
  /** by namespace/name and uid: a subscription created again under its name starts at zero */
  readonly #pending = new Map<string, Pending>();
  #stopping = false;

  constructor(opts: DeadLetterStatsOptions) {
    this.#api = opts.api;
    this.#intervalMs = opts.intervalMs;
    this.#log = opts.log;
    this.#onFailure = opts.onFailure;
    this.#random = opts.random ?? Math.random;
  }

  /** Dead letters not written to any status yet, over all subscriptions. */
  get unwritten(): number {
    let sum = 0;
    for (const p of this.#pending.values()) sum += p.delta;
    return sum;
  }

  /** One dead letter of `subscription` (namespace/name, object `uid`) was accepted. */
  add(subscription: string, uid: string | undefined): void {
    const key = `${subscription}\u0000${uid ?? ''}`;
    let p = this.#pending.get(key);
    if (p === undefined) {
      p = { subscription, uid, delta: 0, failures: 0, timer: undefined, flushing: undefined };
      this.#pending.set(key, p);
    }
    p.delta += 1;
    if (this.#stopping) return; // the stop writes it
    this.#schedule(key, p, this.#intervalMs);
  }

  /**
   * Writes every delta once more and stops scheduling: the dispatcher's last stop step, after
   * its workers stopped. The caller bounds it (the API server may be gone).
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const p of this.#pending.values()) {
      p.timer?.clear();
      p.timer = undefined;
    }
    await Promise.all([...this.#pending.values()].flatMap((p) => p.flushing ?? []));
    const left = [...this.#pending.entries()].filter(([, p]) => p.delta > 0);
    await Promise.all(left.map(([key, p]) => this.#flush(key, p)));
    const lost = this.unwritten;
    if (lost > 0) {
      this.#log.warn({ deadLettered: lost }, 'dead-letter counts not written to status at stop');
    }
  }

  #schedule(key: string, p: Pending, delayMs: number): void {
    if (p.timer !== undefined || p.flushing !== undefined || this.#stopping) return;
    p.timer = setLongTimeout(
      () => {
        p.timer = undefined;
        void this.#flush(key, p);
      },
      delayMs,
      { unref: true },
    );
  }

  /** Writes the delta as it is now; what arrives meanwhile waits for the next interval. */
  #flush(key: string, p: Pending): Promise<void> {
    p.flushing ??= this.#flushOnce(p).finally(() => {
      p.flushing = undefined;
      if (p.delta === 0) {
        this.#pending.delete(key);
        return;
      }
      const delay = p.failures > 0 ? retryDelayMs(this.#intervalMs, p.failures) : this.#intervalMs;
      this.#schedule(key, p, delay);
    });
    return p.flushing;
  }

  async #flushOnce(p: Pending): Promise<void> {
    const delta = p.delta;
    if (delta === 0) return;
    try {
      const result = await this.#write(p, delta);
      p.delta -= delta;
      p.failures = 0;
      if (result === 'gone') {
        this.#log.debug(
          { subscription: p.subscription, deadLettered: delta },
          'subscription gone; its dead-letter count dropped',
        );
      }
    } catch (err) {
      p.failures += 1;
      this.#onFailure?.(p.subscription);
      this.#log.warn(
        { err, subscription: p.subscription, deadLettered: p.delta, failures: p.failures },
        'writing status.stats.deadLettered failed; kept for the next try',
      );
    }
  }

  /** Read, add, write with the resourceVersion read; on a conflict read again. */
  async #write(p: Pending, delta: number): Promise<WriteResult> {
    for (let attempt = 1; ; attempt += 1) {
      const sub = await this.#read(p);
      if (sub === undefined) return 'gone';
      const result = await this.#replace(p, sub, delta, attempt < MAX_CONFLICTS);
      if (result !== 'conflict') return result;
      // replicas that collided retry at different times
      await sleep(this.#random() * 20 * attempt);
    }
  }

  /** The subscription these dead letters belong to; undefined when it is gone. */
  async #read(p: Pending): Promise<EventSubscription | undefined> {
    const [namespace = '', name = ''] = p.subscription.split('/');
    let sub: EventSubscription;
    try {
      sub = await this.#api.read(namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw new Error(`reading the status of ${p.subscription} failed`, { cause: err });
    }
    // another object under the same name: the one these dead letters belong to is gone
    if (p.uid !== undefined && sub.metadata?.uid !== p.uid) return undefined;
    // without it the write would not be conditional, and replicas could overwrite each other
    if (sub.metadata?.resourceVersion === undefined || sub.metadata.resourceVersion === '') {
      throw new Error(`the status of ${p.subscription} came without a resourceVersion`);
    }
    return sub;
  }

  /** Writes `sub` with `delta` added; 'conflict' when it changed since (and `retry`). */
  async #replace(
    p: Pending,
    sub: EventSubscription,
    delta: number,
    retry: boolean,
  ): Promise<WriteResult | 'conflict'> {
    const status = sub.status ?? {};
    const deadLettered = (status.stats?.deadLettered ?? 0) + delta;
    try {
      await this.#api.write({
        ...sub,
        status: { ...status, stats: { ...status.stats, deadLettered } },
      });
      return 'written';
    } catch (err) {
      if (isNotFound(err)) return 'gone';
      if (isConflict(err) && retry) return 'conflict';
      throw new Error(`writing the status of ${p.subscription} failed`, { cause: err });
    }
  }
}
