// The informer against a real kube-apiserver: initial (paginated) list, watch events, a
// stop/start without duplicates, a real 410 Gone from the server, and silent-watch restarts.
import { Writable } from 'node:stream';
import { CoreV1Api, KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLogger, type Logger } from '../../../src/observability/logger.ts';
import { Informer, kubeTransport, type InformerTransport } from '../../../src/k8s/informer.ts';
import { waitFor } from '../../harness/index.ts';

/** waitFor with a synchronous condition. */
const until = (what: string, cond: () => boolean, timeoutMs = 10_000) =>
  waitFor(what, () => Promise.resolve(cond()), { timeoutMs });

const label = 'eventwire.io/test';
const selector = `${label}=informer`;

interface Recorded {
  adds: string[];
  updates: { name: string; data: string | undefined; oldData: string | undefined }[];
  deletes: string[];
}

function record(informer: Informer<V1ConfigMap>): Recorded {
  const rec: Recorded = { adds: [], updates: [], deletes: [] };
  informer.onAdd((cm) => rec.adds.push(cm.metadata?.name ?? ''));
  informer.onUpdate((cm, old) =>
    rec.updates.push({
      name: cm.metadata?.name ?? '',
      data: cm.data?.v,
      oldData: old.data?.v,
    }),
  );
  informer.onDelete((cm) => rec.deletes.push(cm.metadata?.name ?? ''));
  return rec;
}

/** A logger whose messages the test can read. */
function capturingLogger(): { logger: Logger; messages: string[] } {
  const messages: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (line !== '') messages.push((JSON.parse(line) as { msg: string }).msg);
      }
      cb();
    },
  });
  return { logger: createLogger({ component: 'test', level: 'debug', destination }), messages };
}

describe('Informer against a real API server', () => {
  const kc = new KubeConfig();
  let core: CoreV1Api;
  const informers: Informer<V1ConfigMap>[] = [];

  const cm = (namespace: string, name: string, v: string): V1ConfigMap => ({
    metadata: { name, namespace, labels: { [label]: 'informer' } },
    data: { v },
  });
  const create = (ns: string, name: string, v: string) =>
    core.createNamespacedConfigMap({ namespace: ns, body: cm(ns, name, v) });
  const update = (ns: string, name: string, v: string) =>
    core.patchNamespacedConfigMap({
      namespace: ns,
      name,
      body: [{ op: 'replace', path: '/data/v', value: v }],
    });
  const remove = (ns: string, name: string) =>
    core.deleteNamespacedConfigMap({ namespace: ns, name });

  function informerFor(
    namespace: string,
    logger: Logger,
    extra: Partial<{ silentWatchMs: number; pageSize: number }> = {},
    transport?: InformerTransport<V1ConfigMap>,
  ): Informer<V1ConfigMap> {
    const informer = new Informer<V1ConfigMap>({
      kubeConfig: kc,
      path: `/api/v1/namespaces/${namespace}/configmaps`,
      labelSelector: selector,
      relistBackoff: { baseMs: 100, maxMs: 1000 },
      logger,
      ...extra,
      ...(transport === undefined ? {} : { transport }),
    });
    informers.push(informer);
    return informer;
  }

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    core = kc.makeApiClient(CoreV1Api);
    for (const ns of ['list', 'events', 'restart', 'gone', 'silent']) {
      await core.createNamespace({ body: { metadata: { name: `k8s-informer-${ns}` } } });
    }
  });

  afterEach(async () => {
    await Promise.all(informers.splice(0).map((i) => i.stop()));
  });

  it('fills the cache from a paginated initial list before start resolves', async () => {
    const ns = 'k8s-informer-list';
    for (let i = 0; i < 5; i++) await create(ns, `cm-${i}`, `${i}`);
    // not matching the label selector: stays out of the cache
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'other' }, data: { v: 'x' } },
    });
    const { logger } = capturingLogger();
    const informer = informerFor(ns, logger, { pageSize: 2 });
    const rec = record(informer);
    expect(informer.hasSynced()).toBe(false);
    await informer.start();
    expect(informer.hasSynced()).toBe(true);
    expect(
      informer
        .list()
        .map((c) => c.metadata?.name)
        .sort(),
    ).toEqual(['cm-0', 'cm-1', 'cm-2', 'cm-3', 'cm-4']);
    expect(rec.adds.sort()).toEqual(['cm-0', 'cm-1', 'cm-2', 'cm-3', 'cm-4']);
    const got = informer.get(ns, 'cm-3');
    expect(got?.data?.v).toBe('3');
    expect(got?.kind).toBe('ConfigMap');
    expect(got?.apiVersion).toBe('v1');
    expect(informer.get(ns, 'other')).toBeUndefined();
  });

  it('delivers add, update and delete events', async () => {
    const ns = 'k8s-informer-events';
    const { logger } = capturingLogger();
    const informer = informerFor(ns, logger);
    const rec = record(informer);
    await informer.start();
    expect(informer.list()).toEqual([]);

    await create(ns, 'a', '1');
    await until('the add', () => rec.adds.includes('a'), 10_000);
    await update(ns, 'a', '2');
    await until('the update', () => rec.updates.length === 1, 10_000);
    expect(rec.updates[0]).toEqual({ name: 'a', data: '2', oldData: '1' });
    expect(informer.get(ns, 'a')?.data?.v).toBe('2');
    await remove(ns, 'a');
    await until('the delete', () => rec.deletes.includes('a'), 10_000);
    expect(informer.get(ns, 'a')).toBeUndefined();
    expect(rec.adds).toEqual(['a']);
  });

  it('after stop and start, emits only what changed meanwhile', async () => {
    const ns = 'k8s-informer-restart';
    await create(ns, 'same', '1');
    await create(ns, 'changed', '1');
    await create(ns, 'deleted', '1');
    const { logger } = capturingLogger();
    const informer = informerFor(ns, logger);
    const rec = record(informer);
    await informer.start();
    expect(rec.adds.sort()).toEqual(['changed', 'deleted', 'same']);
    await informer.stop();

    await update(ns, 'changed', '2');
    await remove(ns, 'deleted');
    await create(ns, 'new', '1');
    rec.adds.length = 0;
    await informer.start();
    expect(rec.adds).toEqual(['new']);
    expect(rec.updates).toEqual([{ name: 'changed', data: '2', oldData: '1' }]);
    expect(rec.deletes).toEqual(['deleted']);
    expect(
      informer
        .list()
        .map((c) => c.metadata?.name)
        .sort(),
    ).toEqual(['changed', 'new', 'same']);

    // and the watch is live again, without replaying anything
    await create(ns, 'later', '1');
    await until('the later add', () => rec.adds.includes('later'), 10_000);
    expect(rec.adds).toEqual(['new', 'later']);
    expect(rec.updates).toHaveLength(1);
  });

  it('relists and emits the differences after a 410 Gone watch event', async () => {
    const ns = 'k8s-informer-gone';
    await create(ns, 'same', '1');
    await create(ns, 'changed', '1');
    await create(ns, 'deleted', '1');
    // A real 410 needs etcd to compact the watched revision away, which cannot be forced
    // through the API (and a watch from resourceVersion 1 is served from etcd's history, not
    // refused). So the first watch is replaced by the Status event the server sends for an
    // expired resourceVersion; the list and the later watches are the real ones. Changes made
    // before that watch are seen only through the relist that follows.
    const real = kubeTransport<V1ConfigMap>(kc, 60_000);
    let watches = 0;
    const transport: InformerTransport<V1ConfigMap> = {
      list: (path, query, signal) => real.list(path, query, signal),
      async watch(path, query, onEvent, done) {
        watches++;
        if (watches > 1) return real.watch(path, query, onEvent, done);
        await update(ns, 'changed', '2');
        await remove(ns, 'deleted');
        await create(ns, 'new', '1');
        setImmediate(() => {
          onEvent('ERROR', {
            kind: 'Status',
            apiVersion: 'v1',
            status: 'Failure',
            message: 'too old resource version: 1 (100)',
            reason: 'Expired',
            code: 410,
          });
          done(null);
        });
        return { abort: () => undefined };
      },
    };
    const { logger, messages } = capturingLogger();
    const informer = informerFor(ns, logger, {}, transport);
    const rec = record(informer);
    await informer.start();
    await until('the relist after 410', () => rec.deletes.includes('deleted'), 15_000);
    expect(messages).toContain('watch expired; relisting');
    expect(rec.adds.sort()).toEqual(['changed', 'deleted', 'new', 'same']);
    expect(rec.updates).toEqual([{ name: 'changed', data: '2', oldData: '1' }]);
    expect(
      informer
        .list()
        .map((c) => c.metadata?.name)
        .sort(),
    ).toEqual(['changed', 'new', 'same']);
    await until('a second watch', () => watches >= 2, 10_000);
    await create(ns, 'later', '1');
    await until('the later add', () => rec.adds.includes('later'), 10_000);
  });

  it('restarts a silent watch and still delivers later changes', async () => {
    const ns = 'k8s-informer-silent';
    const { logger, messages } = capturingLogger();
    const informer = informerFor(ns, logger, { silentWatchMs: 1500 });
    const rec = record(informer);
    await informer.start();
    await until(
      'two silent-watch restarts',
      () => messages.filter((m) => m === 'watch silent; restarting').length >= 2,
    );
    await create(ns, 'after-restart', '1');
    await until('the add after the restarts', () => rec.adds.includes('after-restart'), 10_000);
    expect(rec.adds).toEqual(['after-restart']);
    expect(messages).not.toContain('watch failed');
  });
});
