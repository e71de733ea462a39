// A list+watch cache in the manner of client-go's reflector and informer, made to survive
// real API servers: paginated lists, watches resumed from the last resourceVersion (bookmarks
// included), a re-list with a diff on 410 Gone, a restart of watches that go silent, and
// capped exponential backoff on any other failure.
import {
  HttpMethod,
  RequestContext,
  Watch,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { fetch } from 'undici';
import type { Logger } from '../observability/logger.ts';
import { KubeApiError, isGone } from './errors.ts';
import { systemClock, type Clock, type TimerHandle } from './work-queue.ts';

export type QueryParams = Record<string, string | number | boolean | undefined>;

export interface ListPage<T> {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items: T[];
}

export interface WatchHandle {
  abort(): void;
}

/**
 * How the informer talks to the API server. The default (`kubeTransport`) is the real one;
 * unit tests pass a scripted one to reach paths a live server will not produce on demand,
 * such as 410 Gone (etcd compaction cannot be forced through the API).
 */
export interface InformerTransport<T> {
  list(path: string, query: QueryParams, signal: AbortSignal): Promise<ListPage<T>>;
  /** `done` is called once: with nothing when the server ends the watch, else the error */
  watch(
    path: string,
    query: QueryParams,
    onEvent: (type: string, object: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<WatchHandle>;
}

export interface Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
}

export interface InformerOptions<T> {
  readonly kubeConfig: KubeConfig;
  /** collection path, e.g. `/api/v1/namespaces/x/configmaps` */
  readonly path: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** restart a watch when no event or bookmark arrives for this long; 60 000 ms by default */
  readonly silentWatchMs?: number;
  /** delay after a failed list or watch; { baseMs: 500, maxMs: 30 000 } by default */
  readonly relistBackoff?: Backoff;
  /** items per list page; 500 by default */
  readonly pageSize?: number;
  /** server-side watch timeout; random in 300..600 s by default, as client-go does */
  readonly watchTimeoutSeconds?: number;
  /** when set, every cached object is re-emitted to onUpdate this often */
  readonly resyncMs?: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly transport?: InformerTransport<T>;
}

type AddHandler<T> = (obj: T) => void;
type UpdateHandler<T> = (obj: T, old: T) => void;
type DeleteHandler<T> = (obj: T) => void;

interface WatchOutcome {
  readonly end: 'closed' | 'gone' | 'silent';
  readonly events: number;
  readonly durationMs: number;
}

/** A watch that ends sooner than this without any event counts as a failure (backoff). */
const MIN_HEALTHY_WATCH_MS = 1000;

/** `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns === undefined || ns === '' ? name : `${ns}/${name}`;
}

function resourceVersionOf(obj: unknown): string | undefined {
  return (obj as KubernetesObject | undefined)?.metadata?.resourceVersion;
}

function parseBody(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // not JSON: keep the text as the error body
  }
}

/** The real transport: raw REST lists through undici and client-node's Watch. */
export function kubeTransport<T>(
  kubeConfig: KubeConfig,
  silentWatchMs: number,
): InformerTransport<T> {
  return {
    async list(path, query, signal) {
      const cluster = kubeConfig.getCurrentCluster();
      if (cluster === null) throw new Error('no current cluster in the kubeconfig');
      const url = new URL(cluster.server + path);
      for (const [k, v] of Object.entries(query))
        if (v !== undefined) url.searchParams.set(k, `${v}`);
      const ctx = new RequestContext(url.toString(), HttpMethod.GET);
      ctx.setHeaderParam('Accept', 'application/json');
      await kubeConfig.applySecurityAuthentication(ctx);
      const dispatcher = ctx.getDispatcher();
      const res = await fetch(url, {
        headers: ctx.getHeaders(),
        signal,
        ...(dispatcher === undefined ? {} : { dispatcher }),
      });
      const text = await res.text();
      if (!res.ok) {
        throw new KubeApiError(`list ${path}: HTTP ${res.status}`, res.status, parseBody(text));
      }
      return JSON.parse(text) as ListPage<T>;
    },
    async watch(path, query, onEvent, done) {
      const watch = new Watch(kubeConfig);
      // client-node aborts a watch after 30 s without data; ours is silentWatchMs, so move
      // the library's own inactivity timeout out of the way (it is a plain field at runtime)
      Reflect.set(watch, 'requestTimeoutMs', silentWatchMs + 30_000);
      const controller = await watch.watch(path, query, onEvent, done);
      return {
        abort: () => {
          controller.abort();
        },
      };
    },
  };
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const onAbort = () => {
      clock.clearTimeout(timer);
      resolve();
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === 'TimeoutError';
}

export class Informer<T extends KubernetesObject> {
  readonly #path: string;
  readonly #labelSelector: string | undefined;
  readonly #fieldSelector: string | undefined;
  readonly #silentWatchMs: number;
  readonly #backoff: Backoff;
  readonly #pageSize: number;
  readonly #watchTimeoutSeconds: number | undefined;
  readonly #resyncMs: number | undefined;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #transport: InformerTransport<T>;
  readonly #adds = new Set<AddHandler<T>>();
  readonly #updates = new Set<UpdateHandler<T>>();
  readonly #deletes = new Set<DeleteHandler<T>>();
  #cache = new Map<string, T>();
  #resourceVersion: string | undefined;
  #synced = false;
  #stop: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #resyncTimer: TimerHandle | undefined;

  constructor(opts: InformerOptions<T>) {
    this.#path = opts.path;
    this.#labelSelector = opts.labelSelector;
    this.#fieldSelector = opts.fieldSelector;
    this.#silentWatchMs = opts.silentWatchMs ?? 60_000;
    this.#backoff = opts.relistBackoff ?? { baseMs: 500, maxMs: 30_000 };
    this.#pageSize = opts.pageSize ?? 500;
    this.#watchTimeoutSeconds = opts.watchTimeoutSeconds;
    this.#resyncMs = opts.resyncMs;
    this.#log = opts.logger.child({ path: opts.path });
    this.#clock = opts.clock ?? systemClock;
    this.#transport = opts.transport ?? kubeTransport<T>(opts.kubeConfig, this.#silentWatchMs);
  }

  /** Registers an add handler; returns a function that removes it. */
  onAdd(handler: AddHandler<T>): () => void {
    this.#adds.add(handler);
    return () => this.#adds.delete(handler);
  }

  onUpdate(handler: UpdateHandler<T>): () => void {
    this.#updates.add(handler);
    return () => this.#updates.delete(handler);
  }

  onDelete(handler: DeleteHandler<T>): () => void {
    this.#deletes.add(handler);
    return () => this.#deletes.delete(handler);
  }

  /** Starts listing and watching; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    if (this.#loop !== undefined) throw new Error(`informer for ${this.#path} already started`);
    const stop = new AbortController();
    this.#stop = stop;
    const synced = Promise.withResolvers<undefined>();
    this.#loop = this.#run(stop.signal, () => {
      synced.resolve(undefined);
    })
      .catch((err: unknown) => {
        this.#log.error({ err }, 'informer loop failed');
      })
      .finally(() => {
        synced.reject(new Error(`informer for ${this.#path} stopped before it synced`));
      });
    await synced.promise;
  }

  /** Stops watching and waits for the loop to end; the cache is kept. */
  async stop(): Promise<void> {
    this.#stop?.abort();
    this.#stopResync();
    await this.#loop;
    this.#loop = undefined;
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** The resourceVersion the next watch starts from. */
  lastResourceVersion(): string | undefined {
    return this.#resourceVersion;
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#cache.get(
      namespace === undefined || namespace === '' ? name : `${namespace}/${name}`,
    );
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  /** Re-emits every cached object to the update handlers (old and new are the same). */
  resync(): void {
    for (const obj of this.#cache.values()) this.#emitUpdate(obj, obj);
  }

  async #run(signal: AbortSignal, onSynced: () => void): Promise<void> {
    // a function, so the checks after each await are not narrowed away
    const stopped = () => signal.aborted;
    let needList = true;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.#relist(signal);
          needList = false;
          this.#synced = true;
          onSynced();
          this.#startResync();
        }
        const outcome = await this.#watchOnce(signal);
        if (outcome.end === 'gone') {
          this.#log.info({ resourceVersion: this.#resourceVersion }, 'watch expired; relisting');
          needList = true;
        }
        if (stopped()) break;
        const healthy =
          outcome.events > 0 ||
          outcome.end === 'silent' ||
          outcome.durationMs >= MIN_HEALTHY_WATCH_MS;
        failures = healthy ? 0 : failures + 1;
        // a first 410 relists at once; repeated quick endings back off
        const firstGone = outcome.end === 'gone' && failures === 1;
        if (!healthy && !firstGone) await this.#retryDelay(signal, failures, undefined, needList);
      } catch (err) {
        if (stopped()) break;
        if (isGone(err)) {
          // the watch's resourceVersion was compacted away (HTTP 410)
          this.#log.info({ resourceVersion: this.#resourceVersion }, 'watch expired; relisting');
          needList = true;
          continue;
        }
        failures++;
        await this.#retryDelay(signal, failures, err, needList);
      }
    }
  }

  async #retryDelay(signal: AbortSignal, failures: number, err: unknown, listing: boolean) {
    const retryInMs = Math.min(this.#backoff.maxMs, this.#backoff.baseMs * 2 ** (failures - 1));
    if (err === undefined) {
      this.#log.warn({ failures, retryInMs }, 'watch ended at once; restarting');
    } else {
      this.#log.warn({ err, failures, retryInMs }, listing ? 'list failed' : 'watch failed');
    }
    await sleep(this.#clock, retryInMs, signal);
  }

  async #listAll(signal: AbortSignal): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    let cont: string | undefined;
    for (;;) {
      let page: ListPage<T>;
      try {
        page = await this.#transport.list(
          this.#path,
          {
            labelSelector: this.#labelSelector,
            fieldSelector: this.#fieldSelector,
            limit: this.#pageSize,
            continue: cont,
          },
          signal,
        );
      } catch (err) {
        if (cont !== undefined && isGone(err)) {
          this.#log.info({ pages: items.length }, 'list continue token expired; listing again');
          items.length = 0;
          cont = undefined;
          continue;
        }
        throw new Error(`list ${this.#path} failed`, { cause: err });
      }
      const itemKind = page.kind?.replace(/List$/, '');
      for (const item of page.items) {
        // list items come without apiVersion and kind; watch events carry them
        items.push({ apiVersion: page.apiVersion, kind: itemKind, ...item });
      }
      cont = page.metadata?.continue;
      if (cont === undefined || cont === '') {
        const resourceVersion = page.metadata?.resourceVersion;
        if (resourceVersion === undefined) {
          throw new Error(`list ${this.#path} returned no resourceVersion`);
        }
        return { items, resourceVersion };
      }
    }
  }

  /** Lists everything, replaces the cache and emits the differences from the old one. */
  async #relist(signal: AbortSignal): Promise<void> {
    const { items, resourceVersion } = await this.#listAll(signal);
    const fresh = new Map<string, T>();
    for (const item of items) fresh.set(objectKey(item), item);
    const old = this.#cache;
    this.#cache = fresh;
    this.#resourceVersion = resourceVersion;
    this.#log.debug({ resourceVersion, objects: fresh.size }, 'listed');
    for (const [key, obj] of fresh) {
      const prev = old.get(key);
      if (prev === undefined) this.#emitAdd(obj);
      else if (resourceVersionOf(prev) !== resourceVersionOf(obj)) this.#emitUpdate(obj, prev);
    }
    for (const [key, prev] of old) if (!fresh.has(key)) this.#emitDelete(prev);
  }

  #watchQuery(): QueryParams {
    return {
      resourceVersion: this.#resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: this.#watchTimeoutSeconds ?? Math.floor(300 * (1 + Math.random())),
      labelSelector: this.#labelSelector,
      fieldSelector: this.#fieldSelector,
    };
  }

  /** One watch, until the server ends it, it expires (410), goes silent, fails or is stopped. */
  #watchOnce(signal: AbortSignal): Promise<WatchOutcome> {
    return new Promise<WatchOutcome>((resolve, reject) => {
      const startedAt = this.#clock.now();
      let events = 0;
      let settled = false;
      let handle: WatchHandle | undefined;
      let silentTimer: TimerHandle | undefined;
      const settle = (finish: () => void) => {
        if (settled) return;
        settled = true;
        if (silentTimer !== undefined) this.#clock.clearTimeout(silentTimer);
        signal.removeEventListener('abort', onAbort);
        handle?.abort();
        finish();
      };
      const end = (kind: WatchOutcome['end']) => {
        settle(() => {
          resolve({ end: kind, events, durationMs: this.#clock.now() - startedAt });
        });
      };
      const fail = (err: unknown) => {
        settle(() => {
          reject(new Error(`watch ${this.#path} failed`, { cause: err }));
        });
      };
      const armSilent = () => {
        if (silentTimer !== undefined) this.#clock.clearTimeout(silentTimer);
        silentTimer = this.#clock.setTimeout(() => {
          this.#log.info({ silentWatchMs: this.#silentWatchMs }, 'watch silent; restarting');
          end('silent');
        }, this.#silentWatchMs);
      };
      const onAbort = () => {
        end('closed');
      };
      signal.addEventListener('abort', onAbort, { once: true });
      armSilent();
      const onEvent = (type: string, object: unknown) => {
        if (settled) return;
        events++;
        armSilent();
        const error = this.#applyEvent(type, object);
        if (error === 'gone') end('gone');
        else if (error !== undefined) fail(error);
      };
      const done = (err: unknown) => {
        if (err === null || err === undefined) end('closed');
        else if (isGone(err)) end('gone');
        else if (isTimeout(err)) end('silent');
        else fail(err);
      };
      this.#transport.watch(this.#path, this.#watchQuery(), onEvent, done).then((h) => {
        if (settled) h.abort();
        else handle = h;
      }, fail);
    });
  }

  /** Applies one watch event; returns 'gone' or an error when the watch must end. */
  #applyEvent(type: string, object: unknown): 'gone' | Error | undefined {
    if (type === 'ERROR') {
      const status = object as { code?: number; message?: string; reason?: string };
      if (status.code === 410) return 'gone';
      return new KubeApiError(
        `watch error event: ${status.message ?? status.reason ?? 'unknown'}`,
        status.code ?? 500,
        object,
      );
    }
    const rv = resourceVersionOf(object);
    const obj = object as T;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
        this.#upsert(obj);
        break;
      case 'DELETED':
        this.#cache.delete(objectKey(obj));
        this.#emitDelete(obj);
        break;
      case 'BOOKMARK':
        break;
      default:
        this.#log.warn({ type }, 'unknown watch event type');
        return undefined;
    }
    if (rv !== undefined) this.#resourceVersion = rv;
    return undefined;
  }

  #upsert(obj: T): void {
    const key = objectKey(obj);
    const prev = this.#cache.get(key);
    this.#cache.set(key, obj);
    if (prev === undefined) this.#emitAdd(obj);
    else if (resourceVersionOf(prev) !== resourceVersionOf(obj)) this.#emitUpdate(obj, prev);
  }

  #emitAdd(obj: T): void {
    for (const h of this.#adds)
      this.#call(() => {
        h(obj);
      }, obj);
  }

  #emitUpdate(obj: T, old: T): void {
    for (const h of this.#updates)
      this.#call(() => {
        h(obj, old);
      }, obj);
  }

  #emitDelete(obj: T): void {
    for (const h of this.#deletes)
      this.#call(() => {
        h(obj);
      }, obj);
  }

  /** A failing handler is logged and does not stop the others or the informer. */
  #call(fn: () => void, obj: T): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err, key: objectKey(obj) }, 'informer handler failed');
    }
  }

  #startResync(): void {
    const every = this.#resyncMs;
    if (every === undefined || this.#resyncTimer !== undefined) return;
    const tick = () => {
      this.resync();
      this.#resyncTimer = this.#clock.setTimeout(tick, every);
    };
    this.#resyncTimer = this.#clock.setTimeout(tick, every);
  }

  #stopResync(): void {
    if (this.#resyncTimer !== undefined) this.#clock.clearTimeout(this.#resyncTimer);
    this.#resyncTimer = undefined;
  }
}

/**
 * Calls `cb` with every cached object every `everyMs`, for controllers that repair drift
 * without going through onUpdate. Returns a function that stops it.
 */
export function periodicResync<T extends KubernetesObject>(
  informer: Informer<T>,
  everyMs: number,
  cb: (obj: T) => void,
  clock: Clock = systemClock,
): () => void {
  let timer: TimerHandle | undefined;
  const tick = () => {
    for (const obj of informer.list()) cb(obj);
    timer = clock.setTimeout(tick, everyMs);
  };
  timer = clock.setTimeout(tick, everyMs);
  return () => {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
  };
}
