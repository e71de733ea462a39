/* eslint-disable max-lines-per-function -- a describe block holds many small tests */
// Informer paths a live API server will not produce on demand (410 Gone needs etcd
// compaction; failures and silences need a misbehaving server), driven through a scripted
// transport. The same informer runs against a real kube-apiserver in
// test/integration/k8s/informer.test.ts.
import { KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../observability/logger.ts';
import { KubeApiError } from './errors.ts';
import {
  Informer,
  periodicResync,
  type InformerTransport,
  type ListPage,
  type QueryParams,
} from './informer.ts';

const cm = (name: string, rv: string): V1ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'ns', resourceVersion: rv },
});

interface OpenWatch {
  query: QueryParams;
  emit: (type: string, obj: unknown) => void;
  done: (err: unknown) => void;
  aborted: boolean;
}

/** A transport whose list answers and watches the test controls. */
class ScriptedTransport implements InformerTransport<V1ConfigMap> {
  lists: (ListPage<V1ConfigMap> | Error)[] = [];
  listQueries: QueryParams[] = [];
  watches: OpenWatch[] = [];
  watchFailures: Error[] = [];

  list(_path: string, query: QueryParams): Promise<ListPage<V1ConfigMap>> {
    this.listQueries.push(query);
    const next = this.lists.shift();
    if (next === undefined) return Promise.reject(new Error('no list scripted'));
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }

  watch(
    _path: string,
    query: QueryParams,
    emit: (type: string, obj: unknown) => void,
    done: (err: unknown) => void,
  ) {
    const failure = this.watchFailures.shift();
    if (failure !== undefined) {
      this.watches.push({ query, emit, done, aborted: true });
      return Promise.reject(failure);
    }
    const w: OpenWatch = { query, emit, done, aborted: false };
    this.watches.push(w);
    return Promise.resolve({
      abort: () => {
        w.aborted = true;
      },
    });
  }

  last(): OpenWatch {
    const w = this.watches.at(-1);
    if (w === undefined) throw new Error('no watch');
    return w;
  }
}

const page = (items: V1ConfigMap[], rv: string, cont?: string): ListPage<V1ConfigMap> => ({
  apiVersion: 'v1',
  kind: 'ConfigMapList',
  metadata: cont === undefined ? { resourceVersion: rv } : { resourceVersion: rv, continue: cont },
  // list items carry no apiVersion or kind
  items: items.map((item): V1ConfigMap =>
    item.metadata === undefined ? {} : { metadata: item.metadata },
  ),
});

const flush = () => vi.advanceTimersByTimeAsync(0);

describe('Informer (scripted transport)', () => {
  let transport: ScriptedTransport;
  let informer: Informer<V1ConfigMap>;
  let events: string[];

  function make(opts: { silentWatchMs?: number; resyncMs?: number } = {}) {
    informer = new Informer<V1ConfigMap>({
      kubeConfig: new KubeConfig(),
      path: '/api/v1/namespaces/ns/configmaps',
      relistBackoff: { baseMs: 100, maxMs: 400 },
      pageSize: 2,
      watchTimeoutSeconds: 300,
      logger: silentLogger(),
      transport,
      ...opts,
    });
    events = [];
    informer.onAdd((o) => events.push(`add ${o.metadata?.name ?? ''}`));
    informer.onUpdate((o, old) =>
      events.push(
        `update ${o.metadata?.name ?? ''} ${old.metadata?.resourceVersion ?? ''}->${o.metadata?.resourceVersion ?? ''}`,
      ),
    );
    informer.onDelete((o) => events.push(`delete ${o.metadata?.name ?? ''}`));
    return informer;
  }

  beforeEach(() => {
    vi.useFakeTimers();
    transport = new ScriptedTransport();
  });
  afterEach(async () => {
    await informer.stop();
    vi.useRealTimers();
  });

  it('lists page by page, then watches from the list resourceVersion with bookmarks', async () => {
    transport.lists.push(
      page([cm('a', '1'), cm('b', '2')], '10', 'tok'),
      page([cm('c', '3')], '10'),
    );
    await make().start();
    expect(transport.listQueries.map((q) => [q.limit, q.continue])).toEqual([
      [2, undefined],
      [2, 'tok'],
    ]);
    expect(events).toEqual(['add a', 'add b', 'add c']);
    expect(informer.get('ns', 'c')?.kind).toBe('ConfigMap');
    await flush();
    expect(transport.last().query).toMatchObject({
      resourceVersion: '10',
      allowWatchBookmarks: true,
      timeoutSeconds: 300,
    });
  });

  it('applies events, tracks resourceVersions from bookmarks, resumes from them', async () => {
    transport.lists.push(page([cm('a', '1')], '10'));
    await make().start();
    await flush();
    const w = transport.last();
    w.emit('ADDED', cm('a', '1')); // already known at that version: no event
    w.emit('ADDED', cm('b', '11'));
    w.emit('MODIFIED', cm('a', '12'));
    w.emit('DELETED', cm('b', '13'));
    w.emit('BOOKMARK', { kind: 'ConfigMap', metadata: { resourceVersion: '20' } });
    expect(events).toEqual(['add a', 'add b', 'update a 1->12', 'delete b']);
    expect(informer.lastResourceVersion()).toBe('20');
    w.done(null); // server closed the watch (timeoutSeconds)
    await flush();
    expect(transport.watches).toHaveLength(2);
    expect(transport.last().query.resourceVersion).toBe('20');
    expect(transport.listQueries).toHaveLength(1);
  });

  it('on a 410 ERROR event relists and emits adds, updates and deletes', async () => {
    transport.lists.push(page([cm('same', '1'), cm('changed', '2'), cm('gone', '3')], '10'));
    await make().start();
    await flush();
    transport.lists.push(page([cm('same', '1'), cm('changed', '15'), cm('new', '16')], '17'));
    transport.last().emit('ERROR', { kind: 'Status', code: 410, reason: 'Expired' });
    await flush();
    expect(transport.watches[0]?.aborted).toBe(true);
    expect(events.slice(3)).toEqual(['update changed 2->15', 'add new', 'delete gone']);
    expect(transport.last().query.resourceVersion).toBe('17');
  });

  it('on an HTTP 410 from the watch request relists', async () => {
    transport.lists.push(page([cm('a', '1')], '10'), page([cm('a', '1')], '30'));
    await make().start();
    await flush();
    transport.last().done(Object.assign(new Error('Gone'), { statusCode: 410 }));
    await flush();
    expect(transport.listQueries).toHaveLength(2);
    expect(events).toEqual(['add a']);
    expect(transport.last().query.resourceVersion).toBe('30');
  });

  it('restarts the list when a continue token has expired', async () => {
    transport.lists.push(
      page([cm('a', '1'), cm('b', '2')], '10', 'old'),
      new KubeApiError('continue expired', 410, {}),
      page([cm('a', '1'), cm('b', '2')], '12', 'tok'),
      page([cm('c', '3')], '12'),
    );
    await make().start();
    expect(transport.listQueries.map((q) => q.continue)).toEqual([
      undefined,
      'old',
      undefined,
      'tok',
    ]);
    expect(events).toEqual(['add a', 'add b', 'add c']);
  });

  it('backs off exponentially, capped, on other errors, and resumes the watch', async () => {
    transport.lists.push(page([cm('a', '1')], '10'));
    transport.watchFailures.push(
      new KubeApiError('boom', 500, {}),
      new KubeApiError('boom', 500, {}),
      new KubeApiError('boom', 500, {}),
      new KubeApiError('boom', 500, {}),
    );
    await make().start();
    await flush();
    expect(transport.watches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(transport.watches).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(transport.watches).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(transport.watches).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(400); // 400 = cap
    expect(transport.watches).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(400);
    expect(transport.watches).toHaveLength(5);
    expect(transport.last().aborted).toBe(false);
    expect(transport.last().query.resourceVersion).toBe('10');
    expect(transport.listQueries).toHaveLength(1); // no relist for a non-410 failure
  });

  it('retries a failing initial list until it succeeds', async () => {
    transport.lists.push(new KubeApiError('unavailable', 503, {}), page([cm('a', '1')], '10'));
    const started = make().start();
    await vi.advanceTimersByTimeAsync(100);
    await started;
    expect(informer.hasSynced()).toBe(true);
    expect(events).toEqual(['add a']);
  });

  it('aborts and restarts a watch that stays silent', async () => {
    transport.lists.push(page([], '10'));
    await make({ silentWatchMs: 1000 }).start();
    await flush();
    await vi.advanceTimersByTimeAsync(900);
    transport.last().emit('BOOKMARK', { metadata: { resourceVersion: '11' } });
    await vi.advanceTimersByTimeAsync(900); // the bookmark reset the timer
    expect(transport.watches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(transport.watches).toHaveLength(2);
    expect(transport.watches[0]?.aborted).toBe(true);
    expect(transport.last().query.resourceVersion).toBe('11');
  });

  it('re-emits cached objects to onUpdate with resyncMs, and periodicResync calls back', async () => {
    transport.lists.push(page([cm('a', '1')], '10'));
    await make({ resyncMs: 1000 }).start();
    const seen: string[] = [];
    const stop = periodicResync(informer, 500, (o) => seen.push(o.metadata?.name ?? ''));
    await vi.advanceTimersByTimeAsync(1000);
    expect(events).toEqual(['add a', 'update a 1->1']);
    expect(seen).toEqual(['a', 'a']);
    stop();
  });

  it('start rejects when stopped before the first list succeeds', async () => {
    transport.lists.push(new KubeApiError('unavailable', 503, {}));
    const started = make().start();
    const outcome = expect(started).rejects.toThrow(/stopped before it synced/);
    await flush();
    await informer.stop();
    await outcome;
  });
});
