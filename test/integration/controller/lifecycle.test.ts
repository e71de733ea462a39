// The controller against a real kube-apiserver and nats-server: spec changes, immutable
// changes without loss, sink resolution as targets come and go, invalid filters, deletion,
// drift repair and access rules.
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventStream, EventSubscription } from '../../../src/api/types.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import {
  Resources,
  condition,
  ensureNamespace,
  eventStream,
  eventSubscription,
  scoped,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';

const scope = 'lifecycle';
const ns = 'ctl-life';
const other = 'ctl-life-other';

const stream = (name: string, spec: Partial<EventStream['spec']> = {}): EventStream =>
  eventStream(
    scope,
    { namespace: ns, name },
    { subjectPrefix: `life.${name}`, storage: 'memory', ...spec },
  );

const sub = (
  name: string,
  spec: Partial<EventSubscription['spec']> = {},
  namespace = ns,
): EventSubscription =>
  eventSubscription(
    scope,
    { namespace, name },
    {
      stream: { name: 'main', namespace: ns },
      sink: { uri: 'http://127.0.0.1:9/events' },
      ...spec,
    },
  );

describe('controller lifecycle', () => {
  const kc = new KubeConfig();
  let controller: ControllerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let res: Resources;
  const ready = (name: string, namespace = ns) =>
    waitForCondition(
      `EventSubscription ${name}`,
      () => res.getSub(namespace, name),
      'Ready',
      'True',
    );

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    await ensureNamespace(kc, other);
    res = new Resources(kc);
    nc = await connect({ servers: inject('natsUrl') });
    jsm = await jetstreamManager(nc);
    controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope,
    });
    await res.createStream(stream('main', { storage: 'file', allowedNamespaces: [ns] }));
    await waitForCondition('EventStream main', () => res.getStream(ns, 'main'), 'Ready', 'True');
  });
  afterAll(async () => {
    await controller.stop();
    await nc.close();
  });

  it('applies a spec change to the consumer in place and advances observedGeneration', async () => {
    await res.createSub(sub('change', { filters: [{ exact: { type: 'a.b' } }] }));
    const before = await ready('change');
    const name = before.status?.consumer?.name ?? '';
    await res.updateSub(ns, 'change', (s) => {
      s.spec.filters = [{ prefix: { type: 'orders.' } }];
      s.spec.delivery = { ...s.spec.delivery, maxInFlight: 5, retry: 2 };
    });
    await waitFor(
      'the consumer to follow the spec',
      async () => {
        const s = await res.getSub(ns, 'change');
        const ci = await jsm.consumers.info(before.status?.consumer?.stream ?? '', name);
        return (
          s.status?.observedGeneration === s.metadata?.generation &&
          ci.config.max_ack_pending === 5 &&
          ci.config.max_deliver === 103 &&
          JSON.stringify(ci.config.filter_subjects) === JSON.stringify(['life.main.orders.>'])
        );
      },
      { timeoutMs: 20_000 },
    );
    const after = await res.getSub(ns, 'change');
    expect(after.metadata?.generation).toBeGreaterThan(before.metadata?.generation ?? 0);
    expect(after.status?.consumer?.name).toBe(name);
    expect(condition(after, 'Ready')?.observedGeneration).toBe(after.metadata?.generation);
  });

  it('moves an immutable change to a new consumer without losing an event', async () => {
    const js = jetstream(nc);
    await res.createSub(sub('immutable', { startFrom: 'new' }));
    const first = await ready('immutable');
    const oldName = first.status?.consumer?.name ?? '';
    // 10 events; a "dispatcher" acknowledges the first 5 on the old consumer
    for (let i = 1; i <= 10; i += 1) await js.publish('life.main.t', String(i));
    const oldConsumer = await js.consumers.get(first.status?.consumer?.stream ?? '', oldName);
    for (let i = 0; i < 5; i += 1) {
      const m = await oldConsumer.next({ expires: 5_000 });
      expect(await m?.ackAck()).toBe(true);
    }
    // change what JetStream cannot update in place, publishing while the change happens
    await res.updateSub(ns, 'immutable', (s) => {
      s.spec.startFrom = 'all';
    });
    for (let i = 11; i <= 20; i += 1) await js.publish('life.main.t', String(i));
    await waitFor(
      'a new consumer in status',
      async () => (await res.getSub(ns, 'immutable')).status?.consumer?.name !== oldName,
      { timeoutMs: 20_000 },
    );
    const moved = await ready('immutable');
    const streamName = moved.status?.consumer?.stream ?? '';
    const newConsumer = await js.consumers.get(streamName, moved.status?.consumer?.name ?? '');
    const got: number[] = [];
    for (;;) {
      const m = await newConsumer.next({ expires: 1_500 });
      if (!m) break;
      got.push(Number(m.string()));
      m.ack();
    }
    // everything after the old consumer's ack floor, in order: nothing skipped, nothing lost
    expect(got).toEqual(Array.from({ length: 15 }, (_, i) => i + 6));
    await waitFor(
      'the old consumer to be deleted',
      async () => !(await jsm.consumers.list(streamName).next()).some((c) => c.name === oldName),
      { timeoutMs: 10_000 },
    );
  });

  it('reports a missing Service and becomes Ready when it appears', async () => {
    await res.createSub(
      sub('needs-service', {
        sink: {
          ref: { apiVersion: 'v1', kind: 'Service', name: 'handler', port: 'http' },
          uri: '/ce',
        },
      }),
    );
    const waiting = await waitForCondition(
      'EventSubscription needs-service',
      () => res.getSub(ns, 'needs-service'),
      'SinkResolved',
      'False',
      'SinkNotFound',
    );
    expect(condition(waiting, 'Ready')).toMatchObject({ status: 'False', reason: 'SinkNotFound' });
    expect(waiting.status?.consumer?.name).toBeTruthy();
    // the transition is also a Kubernetes Event, as kubectl describe shows it
    const core = kc.makeApiClient(CoreV1Api);
    await waitFor(
      'a Warning Event SinkNotFound on the subscription',
      async () =>
        (
          await core.listNamespacedEvent({
            namespace: ns,
            fieldSelector: 'involvedObject.name=needs-service',
          })
        ).items.some((e) => e.type === 'Warning' && e.reason === 'SinkNotFound'),
      { timeoutMs: 10_000 },
    );
    await core.createNamespacedService({
      namespace: ns,
      body: {
        metadata: { name: 'handler' },
        spec: { selector: { app: 'handler' }, ports: [{ name: 'http', port: 8081 }] },
      },
    });
    const done = await ready('needs-service');
    expect(done.status?.sinkUri).toBe(`http://handler.${ns}.svc.cluster.local:8081/ce`);
    await waitFor(
      'a Normal Event Ready on the subscription',
      async () =>
        (
          await core.listNamespacedEvent({
            namespace: ns,
            fieldSelector: 'involvedObject.name=needs-service',
          })
        ).items.some((e) => e.type === 'Normal' && e.reason === 'Ready'),
      { timeoutMs: 10_000 },
    );
  });

  it('manages a Service for a Deployment sink and re-resolves when the Deployment goes', async () => {
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'worker' },
        spec: {
          selector: { matchLabels: { app: 'worker' } },
          template: {
            metadata: { labels: { app: 'worker' } },
            spec: {
              containers: [
                {
                  name: 'w',
                  image: 'example/worker',
                  ports: [{ name: 'web', containerPort: 7070 }],
                },
              ],
            },
          },
        },
      },
    });
    const created = await res.createSub(
      sub('to-deploy', {
        sink: { ref: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'worker', port: 'web' } },
      }),
    );
    const r = await ready('to-deploy');
    expect(r.status?.sinkUri).toBe(`http://worker.${ns}.svc.cluster.local:7070`);
    const svc = await kc
      .makeApiClient(CoreV1Api)
      .readNamespacedService({ namespace: ns, name: 'worker' });
    expect(svc.spec?.selector).toEqual({ app: 'worker' });
    expect(svc.spec?.ports?.[0]).toMatchObject({ port: 7070, targetPort: 'web' });
    expect(svc.metadata?.ownerReferences?.map((o) => o.uid)).toEqual([created.metadata?.uid]);
    await apps.deleteNamespacedDeployment({ namespace: ns, name: 'worker' });
    await waitForCondition(
      'EventSubscription to-deploy',
      () => res.getSub(ns, 'to-deploy'),
      'SinkResolved',
      'False',
      'SinkNotFound',
    );
  });

  it('rejects an invalid CEL filter with InvalidFilter and the compiler message', async () => {
    await res.createSub(
      sub('bad-cel', { filters: [{ exact: { type: 'x' } }, { cel: 'event.type ==' }] }),
    );
    const s = await waitForCondition(
      'EventSubscription bad-cel',
      () => res.getSub(ns, 'bad-cel'),
      'Ready',
      'False',
      'InvalidFilter',
    );
    const msg = condition(s, 'Ready') as { message?: string } | undefined;
    expect(msg?.message).toMatch(/^spec\.filters\[1\]\.cel: /);
    expect(msg?.message?.length).toBeGreaterThan('spec.filters[1].cel: '.length + 5);
    expect(s.status?.consumer).toBeUndefined();
  });

  it('deletes the consumer and the finalizer with the subscription', async () => {
    await res.createSub(sub('doomed'));
    const s = await ready('doomed');
    const c = s.status?.consumer;
    expect(await jsm.consumers.info(c?.stream ?? '', c?.name ?? '')).toBeTruthy();
    await res.deleteSub(ns, 'doomed');
    await waitFor('the subscription to be gone', () => res.subGone(ns, 'doomed'), {
      timeoutMs: 20_000,
    });
    await expect(jsm.consumers.info(c?.stream ?? '', c?.name ?? '')).rejects.toThrow(
      /consumer not found/,
    );
  });

  it('restores a consumer deleted out of band, after its last acknowledged event', async () => {
    const js = jetstream(nc);
    await res.createSub(sub('drift'));
    const s = await ready('drift');
    const c = s.status?.consumer;
    const consumer = await js.consumers.get(c?.stream ?? '', c?.name ?? '');
    const firstAck = await js.publish('life.main.drift', 'first');
    const m = await consumer.next({ expires: 5_000 });
    expect(m?.string()).toBe('first');
    await m?.ackAck();
    // let a resync record the ack floor, then delete the consumer behind the controller's back
    await waitFor(
      'the ack floor in status',
      async () => ((await res.getSub(ns, 'drift')).status?.consumer?.ackFloor ?? 0) >= firstAck.seq,
      { timeoutMs: 10_000 },
    );
    await jsm.consumers.delete(c?.stream ?? '', c?.name ?? '');
    await js.publish('life.main.drift', 'while-gone');
    await waitFor(
      'the consumer to come back',
      async () => {
        try {
          return (
            (await jsm.consumers.info(c?.stream ?? '', c?.name ?? '')).config.durable_name ===
            c?.name
          );
        } catch {
          return false;
        }
      },
      { timeoutMs: 15_000 },
    );
    const back = await js.consumers.get(c?.stream ?? '', c?.name ?? '');
    const seen: string[] = [];
    for (;;) {
      const n = await back.next({ expires: 1_500 });
      if (!n) break;
      seen.push(n.string());
      n.ack();
    }
    // events published on the stream after 'first' (other tests' included) come back; 'first' does not
    expect(seen).toContain('while-gone');
    expect(seen).not.toContain('first');
  });

  it('restores a consumer changed out of band', async () => {
    await res.createSub(sub('tampered', { delivery: { maxInFlight: 7 } }));
    const s = await ready('tampered');
    const stream = s.status?.consumer?.stream ?? '';
    const name = s.status?.consumer?.name ?? '';
    const ci = await jsm.consumers.info(stream, name);
    await jsm.consumers.update(stream, name, {
      max_ack_pending: 1000,
      filter_subjects: ['life.>'],
    });
    await waitFor(
      'the resync to restore the consumer',
      async () => {
        const now = await jsm.consumers.info(stream, name);
        return (
          now.config.max_ack_pending === 7 &&
          JSON.stringify(now.config.filter_subjects) === JSON.stringify(ci.config.filter_subjects)
        );
      },
      { timeoutMs: 15_000 },
    );
  });

  it('refuses namespaces the stream does not allow', async () => {
    await res.createSub(sub('outsider', {}, other));
    const s = await waitForCondition(
      'EventSubscription outsider',
      () => res.getSub(other, 'outsider'),
      'Ready',
      'False',
      'NamespaceNotAllowed',
    );
    expect(condition(s, 'StreamReady')?.status).toBe('False');
    expect(s.status?.consumer).toBeUndefined();
  });

  it('reports an immutable stream change as a condition and keeps the stream', async () => {
    await res.createStream(stream('fixed', { storage: 'file' }));
    const es = await waitForCondition(
      'EventStream fixed',
      () => res.getStream(ns, 'fixed'),
      'Ready',
      'True',
    );
    const js = jetstream(nc);
    await js.publish('life.fixed.keep', 'data');
    await res.updateStream(ns, 'fixed', (s) => {
      s.spec.storage = 'memory';
    });
    const changed = await waitForCondition(
      'EventStream fixed',
      () => res.getStream(ns, 'fixed'),
      'Ready',
      'False',
      'ImmutableFieldChanged',
    );
    expect((condition(changed, 'Ready') as { message?: string } | undefined)?.message).toContain(
      'storage',
    );
    const info = await jsm.streams.info(es.status?.streamName ?? '');
    expect(info.config.storage).toBe('file');
    expect(info.state.messages).toBe(1);
  });

  it('follows deletionPolicy: Retain keeps the stream, Delete removes it', async () => {
    await res.createStream(stream('kept', { deletionPolicy: 'Retain' }));
    await res.createStream(stream('dropped', { deletionPolicy: 'Delete' }));
    const kept = await waitForCondition(
      'EventStream kept',
      () => res.getStream(ns, 'kept'),
      'Ready',
      'True',
    );
    const dropped = await waitForCondition(
      'EventStream dropped',
      () => res.getStream(ns, 'dropped'),
      'Ready',
      'True',
    );
    await res.deleteStream(ns, 'kept');
    await res.deleteStream(ns, 'dropped');
    await waitFor(
      'both EventStreams to be gone',
      async () => (await res.streamGone(ns, 'kept')) && (await res.streamGone(ns, 'dropped')),
      { timeoutMs: 20_000 },
    );
    expect((await jsm.streams.info(kept.status?.streamName ?? '')).config.name).toBe(
      kept.status?.streamName,
    );
    await expect(jsm.streams.info(dropped.status?.streamName ?? '')).rejects.toThrow(
      /stream not found/,
    );
  });

  it('refreshes status.stats from the consumer', async () => {
    const js = jetstream(nc);
    await res.createSub(sub('stats', { filters: [{ exact: { type: 'stats.only' } }] }));
    await ready('stats');
    for (let i = 0; i < 3; i += 1) await js.publish('life.main.stats.only', String(i));
    await waitFor(
      'pending 3 in status.stats',
      async () => (await res.getSub(ns, 'stats')).status?.stats?.pending === 3,
      {
        timeoutMs: 15_000,
      },
    );
  });
});

describe('controller settings', () => {
  it('forbids external sink URIs when configured to', async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, 'ctl-noext');
    const res = new Resources(kc);
    const controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope: 'noext',
      env: { EVENTWIRE_ALLOW_EXTERNAL_SINK_URIS: 'false' },
    });
    try {
      await res.createStream(
        scoped(
          {
            apiVersion: 'eventwire.io/v1alpha1',
            kind: 'EventStream',
            metadata: { name: 's', namespace: 'ctl-noext' },
            spec: { subjectPrefix: 'noext', storage: 'memory' },
          },
          'noext',
        ),
      );
      await res.createSub(
        scoped(
          {
            apiVersion: 'eventwire.io/v1alpha1',
            kind: 'EventSubscription',
            metadata: { name: 'ext', namespace: 'ctl-noext' },
            spec: { stream: { name: 's' }, sink: { uri: 'https://hooks.example.com/x' } },
          },
          'noext',
        ),
      );
      const s = await waitForCondition(
        'EventSubscription ext',
        () => res.getSub('ctl-noext', 'ext'),
        'SinkResolved',
        'False',
        'ExternalSinkForbidden',
      );
      expect(condition(s, 'Ready')?.status).toBe('False');
    } finally {
      await controller.stop();
    }
  });
});
