// Leader election on a coordination.k8s.io/v1 Lease, in the manner of client-go's
// leaderelection: take the lease when it is free or expired (optimistic concurrency on
// resourceVersion; a 409 means another candidate won), renew it every retry period, and stop
// leading when renewals keep failing past the renew deadline.
import {
  CoordinationV1Api,
  V1MicroTime,
  type KubeConfig,
  type V1Lease,
  type V1LeaseSpec,
} from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.ts';
import { isConflict, isNotFound } from './errors.ts';
import { systemClock, type Clock } from './work-queue.ts';

export interface LeaderElectorOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly name: string;
  /** this candidate's identity, unique among candidates (e.g. the pod name) */
  readonly identity: string;
  /** how long a lease holds without renewal; 15 000 ms by default */
  readonly leaseDurationMs?: number;
  /** how long the leader keeps trying to renew before it gives up; 10 000 ms by default */
  readonly renewDeadlineMs?: number;
  /** how often candidates try to acquire and the leader renews; 2000 ms by default */
  readonly retryPeriodMs?: number;
  readonly logger: Logger;
  /** called on becoming leader; `signal` aborts when leadership ends */
  readonly onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  readonly onStoppedLeading: () => void;
  /** called when the observed holder changes (this candidate included) */
  readonly onNewLeader?: (identity: string) => void;
  readonly clock?: Clock;
}

type Attempt = 'leading' | 'held';

/** client-go waits retryPeriod * (1 + rand * 1.2) between acquisition attempts. */
const JITTER = 1.2;

function timeOf(t: Date | string | undefined): number | undefined {
  if (t === undefined) return undefined;
  // the generated deserializer leaves V1MicroTime fields as strings
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** A copy of the lease (metadata, hence resourceVersion, included) with spec fields changed. */
function withSpec(lease: V1Lease, changes: V1LeaseSpec): V1Lease {
  // Object.assign, not spread: the generated models are class instances
  return Object.assign({}, lease, { spec: Object.assign({}, lease.spec, changes) });
}

export class LeaderElector {
  readonly #api: CoordinationV1Api;
  readonly #namespace: string;
  readonly #name: string;
  readonly #identity: string;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #opts: LeaderElectorOptions;
  #observedHolder: string | undefined;
  #leading: AbortController | undefined;
  #stop: AbortController | undefined;
  #loop: Promise<void> | undefined;

  constructor(opts: LeaderElectorOptions) {
    this.#opts = opts;
    this.#api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
    this.#namespace = opts.namespace;
    this.#name = opts.name;
    this.#identity = opts.identity;
    this.#leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = opts.retryPeriodMs ?? 2000;
    if (this.#renewDeadlineMs >= this.#leaseDurationMs) {
      throw new Error('renewDeadlineMs must be shorter than leaseDurationMs');
    }
    this.#log = opts.logger.child({
      lease: `${opts.namespace}/${opts.name}`,
      identity: opts.identity,
    });
    this.#clock = opts.clock ?? systemClock;
  }

  /** Starts campaigning in the background. */
  start(): void {
    if (this.#loop !== undefined) throw new Error('leader elector already started');
    const stop = new AbortController();
    this.#stop = stop;
    this.#loop = this.#run(stop.signal).catch((err: unknown) => {
      this.#log.error({ err }, 'leader election loop failed');
      this.#stopLeading();
    });
  }

  /**
   * Stops campaigning and renewing; leadership ends first (signal aborted,
   * onStoppedLeading called). With `release`, the lease is then handed back so another
   * candidate takes over at once instead of waiting for it to expire.
   */
  async stop(opts: { readonly release?: boolean } = {}): Promise<void> {
    this.#stop?.abort();
    await this.#loop;
    this.#loop = undefined;
    this.#stopLeading();
    if (opts.release === true) await this.#release();
  }

  isLeader(): boolean {
    return this.#leading !== undefined;
  }

  /** The holder last seen on the lease. */
  observedLeader(): string | undefined {
    return this.#observedHolder;
  }

  async #run(signal: AbortSignal): Promise<void> {
    const stopped = () => signal.aborted;
    while (!stopped()) {
      let attempt: Attempt = 'held';
      try {
        attempt = await this.#tryAcquireOrRenew();
      } catch (err) {
        this.#log.warn({ err }, 'failed to acquire lease');
      }
      if (stopped()) return;
      if (attempt === 'leading') {
        this.#startLeading();
        await this.#renewUntilLost(signal);
        this.#stopLeading();
      } else {
        const wait = this.#retryPeriodMs * (1 + Math.random() * JITTER);
        await this.#sleep(wait, signal);
      }
    }
  }

  /** Renews every retry period; returns when stopped or when leadership is lost. */
  async #renewUntilLost(signal: AbortSignal): Promise<void> {
    const stopped = () => signal.aborted;
    let lastRenew = this.#clock.now();
    while (!stopped()) {
      await this.#sleep(this.#retryPeriodMs, signal);
      if (stopped()) return;
      const left = this.#renewDeadlineMs - (this.#clock.now() - lastRenew);
      let attempt: Attempt | 'failed' = 'failed';
      try {
        attempt = await this.#withTimeout(this.#tryAcquireOrRenew(), Math.max(left, 1));
      } catch (err) {
        this.#log.warn({ err }, 'failed to renew lease');
      }
      if (stopped()) return;
      if (attempt === 'leading') {
        lastRenew = this.#clock.now();
      } else if (attempt === 'held') {
        this.#log.warn({ holder: this.#observedHolder }, 'lease taken by another candidate');
        return;
      } else if (this.#clock.now() - lastRenew >= this.#renewDeadlineMs) {
        this.#log.error({ renewDeadlineMs: this.#renewDeadlineMs }, 'renew deadline passed');
        return;
      }
    }
  }

  async #tryAcquireOrRenew(): Promise<Attempt> {
    const now = this.#clock.now();
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name: this.#name, namespace: this.#namespace });
    } catch (err) {
      if (!isNotFound(err)) throw new Error('read lease failed', { cause: err });
      return this.#create(now);
    }
    const spec: V1LeaseSpec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    this.#observe(holder);
    if (holder !== this.#identity && holder !== '' && !this.#expired(spec, now)) return 'held';
    const mine = holder === this.#identity;
    const transitions = spec.leaseTransitions ?? 0;
    const body = withSpec(lease, {
      holderIdentity: this.#identity,
      leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
      renewTime: new V1MicroTime(now),
      acquireTime: mine && spec.acquireTime !== undefined ? spec.acquireTime : new V1MicroTime(now),
      leaseTransitions: mine ? transitions : transitions + 1,
    });
    try {
      // carries metadata.resourceVersion: a concurrent change makes this a 409
      await this.#api.replaceNamespacedLease({
        name: this.#name,
        namespace: this.#namespace,
        body,
      });
    } catch (err) {
      if (isConflict(err)) return 'held';
      throw new Error('update lease failed', { cause: err });
    }
    if (!mine) this.#log.info({ previous: holder }, 'acquired lease');
    this.#observe(this.#identity);
    return 'leading';
  }

  async #create(now: number): Promise<Attempt> {
    try {
      await this.#api.createNamespacedLease({
        namespace: this.#namespace,
        body: {
          metadata: { name: this.#name, namespace: this.#namespace },
          spec: {
            holderIdentity: this.#identity,
            leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
            acquireTime: new V1MicroTime(now),
            renewTime: new V1MicroTime(now),
            leaseTransitions: 0,
          },
        },
      });
    } catch (err) {
      if (isConflict(err)) return 'held'; // another candidate created it first
      throw new Error('create lease failed', { cause: err });
    }
    this.#log.info('created and acquired lease');
    this.#observe(this.#identity);
    return 'leading';
  }

  #expired(spec: V1LeaseSpec, now: number): boolean {
    const renewed = timeOf(spec.renewTime);
    if (renewed === undefined) return true;
    const durationMs = (spec.leaseDurationSeconds ?? 0) * 1000;
    return renewed + durationMs < now;
  }

  #observe(holder: string): void {
    if (holder === this.#observedHolder) return;
    this.#observedHolder = holder;
    if (holder === '') return;
    this.#log.info({ leader: holder }, 'new leader observed');
    try {
      this.#opts.onNewLeader?.(holder);
    } catch (err) {
      this.#log.error({ err }, 'onNewLeader failed');
    }
  }

  #startLeading(): void {
    const leading = new AbortController();
    this.#leading = leading;
    this.#log.info('started leading');
    Promise.resolve()
      .then(() => this.#opts.onStartedLeading(leading.signal))
      .catch((err: unknown) => {
        this.#log.error({ err }, 'onStartedLeading failed');
      });
  }

  #stopLeading(): void {
    const leading = this.#leading;
    if (leading === undefined) return;
    this.#leading = undefined;
    leading.abort(new Error('leadership lost'));
    this.#log.info('stopped leading');
    try {
      this.#opts.onStoppedLeading();
    } catch (err) {
      this.#log.error({ err }, 'onStoppedLeading failed');
    }
  }

  /** Hands the lease back if this candidate holds it. */
  async #release(): Promise<void> {
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name: this.#name, namespace: this.#namespace });
    } catch (err) {
      if (isNotFound(err)) return;
      throw new Error('release lease failed', { cause: err });
    }
    if (lease.spec?.holderIdentity !== this.#identity) return;
    const now = new V1MicroTime(this.#clock.now());
    const body = withSpec(lease, { leaseDurationSeconds: 1, renewTime: now });
    delete body.spec?.holderIdentity; // released: free for any candidate
    try {
      await this.#api.replaceNamespacedLease({
        name: this.#name,
        namespace: this.#namespace,
        body,
      });
    } catch (err) {
      if (isConflict(err)) return; // changed meanwhile: no longer ours to release
      throw new Error('release lease failed', { cause: err });
    }
    this.#log.info('released lease');
  }

  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      const onAbort = () => {
        this.#clock.clearTimeout(timer);
        resolve();
      };
      const timer = this.#clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  #withTimeout<R>(promise: Promise<R>, ms: number): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        reject(new Error(`lease request timed out after ${ms} ms`));
      }, ms);
      promise.then(
        (value) => {
          this.#clock.clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          this.#clock.clearTimeout(timer);
          reject(err instanceof Error ? err : new Error('lease request failed', { cause: err }));
        },
      );
    });
  }
}
