// status.stats.deadLettered, written by the dispatcher (only it knows the count): each dead
// letter the dead-letter sink or stream accepted is added to its subscription's status within
// the flush interval (EVENTWIRE_STATS_FLUSH_INTERVAL, 2s by default) and when the dispatcher
// stops; replicas sharing a subscription add up exactly; the controller reconciling meanwhile
// never loses the count; a write the API server refuses is kept until it is allowed; a
// subscription created again under the same name starts from zero.
// Real kube-apiserver, nats-server and controller. See docs/dead-letters.md.
import { randomUUID } from 'node:crypto';
import { RbacAuthorizationV1Api, type V1PolicyRule } from '@kubernetes/client-node';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { API_GROUP, API_VERSION, type EventSubscription } from '../../../src/api/types.ts';
import { parseDispatcherConfig } from '../../../src/dispatcher/config.ts';
import { startDispatcher, type Dispatcher } from '../../../src/dispatcher/dispatcher.ts';
import { DispatcherMetrics } from '../../../src/dispatcher/metrics.ts';
import { Informer } from '../../../src/k8s/informer.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import {
  Resources,
  eventStream,
  eventSubscription,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { impersonating } from '../../harness/kube.ts';
import { startSink, type TestSink } from '../../harness/sink.ts';
import {
  apiFixture,
  createSubscription,
  event,
  makeStream,
  metricValue,
  publish,
  untilWithin,
  writeReadyStatus,
  type Nats,
  type TestStream,
} from './helpers.ts';

const until = untilWithin(20_000, 50);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Everything in status but the count the dispatcher owns. */
function withoutCount(sub: EventSubscription): unknown {
  const status = sub.status ?? {};
  const stats = { ...status.stats };
  delete stats.deadLettered;
  return { ...status, stats };
}

describe('status.stats.deadLettered', () => {
  const id = randomUUID().slice(0, 8);
  const namespace = `dlstats-${id}`;
  const ref = { group: API_GROUP, version: API_VERSION, namespace };
  const fx = apiFixture(namespace);
  const { kc, custom } = fx;
  let n: Nats;
  const dispatchers: Dispatcher[] = [];
  const sinks: TestSink[] = [];

  beforeAll(() => {
    n = fx.nats();
  });
  afterEach(async () => {
    await Promise.all(dispatchers.splice(0).map((d) => d.stop(1_000)));
    await Promise.all(sinks.splice(0).map((s) => s.close()));
  });

  const sink = async (script?: Parameters<typeof startSink>[0]) => {
    const s = await startSink(script);
    sinks.push(s);
    return s;
  };

  /** A dispatcher serving this test's namespace, with its own metrics. */
  const startNamespaceDispatcher = async (env: Record<string, string> = {}, as = kc) => {
    const metrics = new DispatcherMetrics();
    const d = await startDispatcher(
      parseDispatcherConfig({
        EVENTWIRE_NATS_URL: inject('natsUrl'),
        EVENTWIRE_WATCH_NAMESPACE: namespace,
        ...env,
      }),
      { kubeConfig: as, log: silentLogger(), metrics, opsServer: false },
    );
    dispatchers.push(d);
    return { dispatcher: d, metrics };
  };

  const getSub = async (name: string) =>
    (await custom.getNamespacedCustomObject({
      ...ref,
      plural: 'eventsubscriptions',
      name,
    })) as EventSubscription;

  const deadLettered = async (name: string) => (await getSub(name)).status?.stats?.deadLettered;

  /** A subscription made Ready by hand (no controller), as the controller would write it. */
  const readySub = async (
    name: string,
    s: TestStream,
    sinkUri: string,
    delivery: NonNullable<EventSubscription['spec']['delivery']>,
    extra: Partial<NonNullable<EventSubscription['status']>> = {},
  ) => {
    const created = await createSubscription(
      custom,
      { namespace, name },
      { stream: { name: 'shop' }, sink: { uri: sinkUri }, delivery },
    );
    await writeReadyStatus(
      custom,
      { namespace, plural: 'eventsubscriptions', name },
      { sinkUri, consumer: { stream: s.name, name: s.consumer }, ...extra },
    );
    return created;
  };

  /** Every version of a subscription's status the API server shows, as a watch sees it. */
  const watchSub = async (name: string) => {
    const versions: EventSubscription[] = [];
    const inf = new Informer<EventSubscription>({
      kubeConfig: kc,
      path: `/apis/${API_GROUP}/${API_VERSION}/namespaces/${namespace}/eventsubscriptions`,
      fieldSelector: `metadata.name=${name}`,
      logger: silentLogger(),
    });
    inf.onAdd((o) => versions.push(o));
    inf.onUpdate((o) => versions.push(o));
    await inf.start();
    return {
      versions,
      /** the distinct counts seen, in order */
      counts: () =>
        versions
          .map((v) => v.status?.stats?.deadLettered)
          .filter((c, i, all) => c !== undefined && c !== all[i - 1]),
      stop: () => inf.stop(),
    };
  };

  it('counts each dead letter the dead-letter sink accepted, a few seconds after it', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 400 })); // dead-letters at once
    let refusals = 2; // the dead-letter sink refuses twice: those attempts do not count
    const dl = await sink(() => (refusals-- > 0 ? { status: 503 } : { status: 200 }));
    await readySub(
      'orders',
      s,
      target.url,
      {
        retry: 0,
        backoffDelay: '20ms',
        backoffMax: '100ms',
        deadLetter: { sink: { uri: `${dl.url}/dl` } },
      },
      { deadLetterSinkUri: `${dl.url}/dl` },
    );
    const watch = await watchSub('orders');
    try {
      await startNamespaceDispatcher(); // the default interval, 2s
      await publish(n, s.prefix, [event(1)]);
      await until('the dead letter accepted', () => dl.delivered().length === 1);
      await until('deadLettered is 1', async () => (await deadLettered('orders')) === 1, 6_000);
      expect(dl.requests.map((r) => r.ok)).toEqual([false, false, true]);

      await publish(
        n,
        s.prefix,
        [2, 3, 4, 5, 6].map((i) => event(i)),
      );
      await until('six dead letters accepted', () => dl.delivered().length === 6);
      await until('deadLettered is 6', async () => (await deadLettered('orders')) === 6, 6_000);
      // the five dead letters of one burst are written together (one write per flush interval,
      // normally one; a loaded machine may spread the burst over two), never going down
      const counts = watch.counts();
      expect(counts[0]).toBe(1);
      expect(counts.at(-1)).toBe(6);
      expect(counts).toEqual([...counts].sort((a, b) => (a ?? 0) - (b ?? 0)));
      expect(counts.length).toBeLessThanOrEqual(3);
    } finally {
      await watch.stop();
    }
  });

  it('two dispatchers sharing a subscription add up to the exact total', async () => {
    const s = await makeStream(n, { maxInFlight: 8 });
    const target = await sink(() => ({ status: 400 }));
    await readySub('shared', s, target.url, {
      retry: 0,
      maxInFlight: 8,
      deadLetter: { subject: s.dlSubject },
    });
    // a short interval: the two replicas write as often as possible, so they collide
    const env = { EVENTWIRE_STATS_FLUSH_INTERVAL: '100ms' };
    const [a, b] = await Promise.all([
      startNamespaceDispatcher(env),
      startNamespaceDispatcher(env),
    ]);
    await until('both deliver', () =>
      [a, b].every((x) => x.dispatcher.subscriptions().includes(`${namespace}/shared`)),
    );
    const total = 80;
    for (let batch = 0; batch < 4; batch += 1) {
      await publish(
        n,
        s.prefix,
        Array.from({ length: total / 4 }, (_, i) => event(batch * 100 + i)),
      );
      await sleep(150);
    }
    await until(
      'every event in the dead-letter stream',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === total,
    );
    await until('deadLettered is the total', async () => (await deadLettered('shared')) === total);
    const byReplica = await Promise.all(
      [a, b].map((x) => metricValue(x.metrics, 'eventwire_dispatcher_dead_letters_total')),
    );
    expect(byReplica.every((v) => v > 0)).toBe(true); // both shared the work
    expect(byReplica.reduce((x, y) => x + y, 0)).toBe(total);
    await sleep(500); // several intervals later, nothing counted twice
    expect(await deadLettered('shared')).toBe(total);
  });

  it('the controller reconciling meanwhile never loses the count', async () => {
    const scope = `dlstats-${id}`;
    const controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope, // resync every 2s
    });
    const res = new Resources(kc);
    const target = await sink(() => ({ status: 400 }));
    const dl = await sink();
    const prefix = `dlstats${id}`;
    let watch: Awaited<ReturnType<typeof watchSub>> | undefined;
    try {
      await res.createStream(
        eventStream(
          scope,
          { namespace, name: 'live' },
          { subjectPrefix: prefix, storage: 'memory', deletionPolicy: 'Delete' },
        ),
      );
      await waitForCondition(
        'EventStream',
        () => res.getStream(namespace, 'live'),
        'Ready',
        'True',
      );
      await res.createSub(
        eventSubscription(
          scope,
          { namespace, name: 'controlled' },
          {
            stream: { name: 'live' },
            sink: { uri: target.url },
            delivery: { retry: 0, deadLetter: { sink: { uri: `${dl.url}/dl` } } },
          },
        ),
      );
      await waitForCondition('sub', () => res.getSub(namespace, 'controlled'), 'Ready', 'True');
      watch = await watchSub('controlled');
      await startNamespaceDispatcher({ EVENTWIRE_STATS_FLUSH_INTERVAL: '100ms' });
      // batches over more than a resync: the controller writes the lag (pending, ack floor,
      // last delivery) while the dispatcher writes the count
      const total = 50;
      for (let batch = 0; batch < 10; batch += 1) {
        const events = Array.from({ length: total / 10 }, (_, i) => event(batch * 100 + i));
        await publish(n, prefix, events);
        await sleep(300);
      }
      await until('every dead letter accepted', () => dl.delivered().length === total);
      await until('deadLettered is the total', async () => {
        return (await deadLettered('controlled')) === total;
      });
      await sleep(2_500); // another resync
      expect(await deadLettered('controlled')).toBe(total);
      // the controller wrote status while the count was there, and kept it every time
      const pairs = watch.versions.slice(1).map((v, i) => [watch?.versions[i], v] as const);
      const controllerWrites = pairs.filter(
        ([before, after]) =>
          (after.status?.stats?.deadLettered ?? 0) > 0 &&
          before !== undefined &&
          JSON.stringify(withoutCount(after)) !== JSON.stringify(withoutCount(before)),
      );
      expect(controllerWrites.length).toBeGreaterThan(0);
      const count = (v: EventSubscription | undefined) => v?.status?.stats?.deadLettered ?? 0;
      const decreases = pairs.filter(([before, after]) => count(after) < count(before));
      expect(decreases).toEqual([]);
    } finally {
      await watch?.stop();
      await res.deleteSub(namespace, 'controlled');
      await until('the subscription is gone', () => res.subGone(namespace, 'controlled'));
      await res.deleteStream(namespace, 'live');
      await controller.stop();
    }
  });

  it('a dispatcher that stops writes what it counted since the last flush', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 400 }));
    await readySub('stopping', s, target.url, {
      retry: 0,
      deadLetter: { subject: s.dlSubject },
    });
    // an interval longer than the test: only the stop writes
    const { dispatcher } = await startNamespaceDispatcher({ EVENTWIRE_STATS_FLUSH_INTERVAL: '1h' });
    await publish(n, s.prefix, [event(1), event(2), event(3)]);
    await until(
      'three dead letters stored',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 3,
    );
    expect(await deadLettered('stopping')).toBeUndefined();
    dispatchers.splice(dispatchers.indexOf(dispatcher), 1);
    await dispatcher.stop(1_000);
    expect(await deadLettered('stopping')).toBe(3);
  });

  it('a write the API server refuses is kept, and written once it is allowed', async () => {
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const user = `dlstats-${id}`;
    const grant = async (name: string, rules: V1PolicyRule[]) => {
      await rbac.createClusterRole({ body: { metadata: { name }, rules } });
      await rbac.createClusterRoleBinding({
        body: {
          metadata: { name },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
        },
      });
    };
    const roles = [`${user}-deliver`, `${user}-write-status`];
    try {
      // everything the dispatcher needs but writing status
      await grant(roles[0] ?? '', [
        {
          apiGroups: [API_GROUP],
          resources: ['eventsubscriptions', 'eventstreams'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: [API_GROUP], resources: ['eventsubscriptions/status'], verbs: ['get'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      ]);
      const s = await makeStream(n);
      const target = await sink(() => ({ status: 400 }));
      await readySub('refused', s, target.url, {
        retry: 0,
        deadLetter: { subject: s.dlSubject },
      });
      const { metrics } = await startNamespaceDispatcher(
        { EVENTWIRE_STATS_FLUSH_INTERVAL: '100ms' },
        impersonating(kc, user),
      );
      await publish(n, s.prefix, [event(1), event(2)]);
      await until(
        'two dead letters stored',
        async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 2,
      );
      const failures = () =>
        metricValue(metrics, 'eventwire_dispatcher_stats_flush_failures_total', {
          subscription: `${namespace}/refused`,
        });
      await until('a write refused', async () => (await failures()) >= 2);
      expect(await deadLettered('refused')).toBeUndefined();

      await grant(roles[1] ?? '', [
        { apiGroups: [API_GROUP], resources: ['eventsubscriptions/status'], verbs: ['update'] },
      ]);
      await until('the kept count written', async () => (await deadLettered('refused')) === 2);
    } finally {
      for (const name of roles) {
        await rbac.deleteClusterRoleBinding({ name }).catch(() => undefined);
        await rbac.deleteClusterRole({ name }).catch(() => undefined);
      }
    }
  });

  it('a subscription created again under the same name starts from zero', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 400 }));
    const delivery = { retry: 0, deadLetter: { subject: s.dlSubject } };
    const first = await readySub('again', s, target.url, delivery);
    await startNamespaceDispatcher(); // 2s: the subscription is replaced before the flush
    await publish(n, s.prefix, [event(1)]);
    await until(
      'the first dead letter stored',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 1,
    );
    await custom.deleteNamespacedCustomObject({
      ...ref,
      plural: 'eventsubscriptions',
      name: 'again',
    });
    const second = await readySub('again', s, target.url, delivery);
    expect(second.metadata?.uid).not.toBe(first.metadata?.uid);
    await sleep(3_000); // past the flush of the first subscription's count
    expect(await deadLettered('again')).toBeUndefined();
    await publish(n, s.prefix, [event(2)]);
    await until('the new one counts its own', async () => (await deadLettered('again')) === 1);
  });
});
