// A subscription's ack floor only counts in the stream it was recorded in. Against a real
// nats-server of its own (restarted here) and the real API server: a stream recreated under
// the same name (a memory stream after a restart, an EventStream deleted with
// deletionPolicy Delete and created again) starts its consumer at the new stream's first
// message, with a Warning Event and a condition reason; messages a stream discards before the
// subscription read them are counted in status, a Warning Event and a metric.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
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
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { harnessTools, startNats, waitFor, type NatsServer } from '../../harness/index.ts';

const scope = 'losses';
const ns = 'ctl-losses';

const stream = (name: string, spec: Partial<EventStream['spec']> = {}): EventStream =>
  eventStream(
    scope,
    { namespace: ns, name },
    { subjectPrefix: `loss.${name}`, storage: 'file', ...spec },
  );

const sub = (name: string, streamName: string): EventSubscription =>
  eventSubscription(
    scope,
    { namespace: ns, name },
    { stream: { name: streamName }, sink: { uri: 'http://127.0.0.1:9/events' } },
  );

describe('subscriptions across stream recreation and discards', () => {
  const kc = new KubeConfig();
  let nats: NatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let controller: ControllerHandle;
  let res: Resources;

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    res = new Resources(kc);
    nats = await startNats({ tool: (await harnessTools())['nats-server'] });
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    js = jetstream(nc);
    controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: nats.url,
      scope,
    });
  });
  afterAll(async () => {
    await controller.stop();
    await nc.close();
    await nats.dispose();
  });

  const ready = (name: string) =>
    waitForCondition(`EventSubscription ${name}`, () => res.getSub(ns, name), 'Ready', 'True');

  /** Publishes `n` events and acknowledges them as a dispatcher would. */
  async function deliver(s: EventSubscription, subject: string, n: number): Promise<void> {
    for (let i = 1; i <= n; i += 1) await js.publish(subject, String(i));
    const c = await js.consumers.get(s.status?.consumer?.stream ?? '', s.status?.consumer?.name);
    for (let i = 0; i < n; i += 1) {
      const m = await c.next({ expires: 5_000 });
      expect(await m?.ackAck()).toBe(true);
    }
  }

  /** The events a consumer holds now, read without acknowledging the rest. */
  async function pendingOf(s: EventSubscription): Promise<string[]> {
    const c = await js.consumers.get(s.status?.consumer?.stream ?? '', s.status?.consumer?.name);
    const got: string[] = [];
    for (;;) {
      const m = await c.next({ expires: 1_500 });
      if (!m) return got;
      got.push(m.string());
      m.ack();
    }
  }

  const floorIs = (name: string, floor: number) =>
    waitFor(
      `status.consumer.ackFloor of ${name} to be ${String(floor)}`,
      async () => (await res.getSub(ns, name)).status?.consumer?.ackFloor === floor,
      { timeoutMs: 20_000 },
    );

  async function warnings(name: string, reason: string): Promise<string[]> {
    const events = await kc.makeApiClient(CoreV1Api).listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.name=${name}`,
    });
    return events.items
      .filter((e) => e.type === 'Warning' && e.reason === reason)
      .map((e) => e.message ?? '');
  }

  it('starts at the first message of a memory stream that a nats-server restart emptied', async () => {
    await res.createStream(stream('mem', { storage: 'memory' }));
    await res.createSub(sub('mem-sub', 'mem'));
    const before = await ready('mem-sub');
    await deliver(before, 'loss.mem.t', 30);
    await floorIs('mem-sub', 30);
    const jsm = await jetstreamManager(nc);
    const streamName = before.status?.consumer?.stream ?? '';
    const consumerName = before.status?.consumer?.name ?? '';

    await nats.restart(); // the memory stream and its consumer are gone
    await waitFor(
      'the consumer to be recreated',
      async () => (await jsm.consumers.info(streamName, consumerName)).name === consumerName,
      { timeoutMs: 30_000 },
    );
    for (let i = 1; i <= 20; i += 1) await js.publish('loss.mem.t', `new-${String(i)}`);
    // every event published into the new stream reaches the subscription (none skipped as
    // "below the old ack floor 30")
    expect(await pendingOf(before)).toEqual(Array.from({ length: 20 }, (_, i) => `new-${i + 1}`));
    const now = await ready('mem-sub');
    expect(condition(now, 'ConsumerReady')).toMatchObject({
      status: 'True',
      reason: 'StreamRecreated',
    });
    await waitFor(
      'a Warning Event StreamRecreated',
      async () => (await warnings('mem-sub', 'StreamRecreated')).length > 0,
      { timeoutMs: 10_000 },
    );
  });

  it('starts at the first message of an EventStream deleted and created again', async () => {
    await res.createStream(stream('gone', { deletionPolicy: 'Delete' }));
    await res.createSub(sub('gone-sub', 'gone'));
    const before = await ready('gone-sub');
    await deliver(before, 'loss.gone.t', 5);
    await floorIs('gone-sub', 5);
    await res.deleteStream(ns, 'gone');
    await waitForCondition(
      'EventSubscription gone-sub',
      () => res.getSub(ns, 'gone-sub'),
      'StreamReady',
      'False',
      'StreamNotFound',
    );
    const jsm = await jetstreamManager(nc);
    await waitFor(
      'the JetStream stream to be deleted',
      async () =>
        !(await jsm.streams.names().next()).includes(before.status?.consumer?.stream ?? ''),
      { timeoutMs: 20_000 },
    );
    await res.createStream(stream('gone', { deletionPolicy: 'Delete' }));
    const again = await waitForCondition(
      'EventSubscription gone-sub',
      () => res.getSub(ns, 'gone-sub'),
      'ConsumerReady',
      'True',
      'StreamRecreated',
    );
    for (let i = 1; i <= 5; i += 1) await js.publish('loss.gone.t', `again-${String(i)}`);
    expect(await pendingOf(again)).toEqual(['again-1', 'again-2', 'again-3', 'again-4', 'again-5']);
  });

  it('counts messages the stream discarded before the subscription read them', async () => {
    await res.createStream(stream('small', { maxMsgs: 10, discard: 'old' }));
    await res.createSub(sub('small-sub', 'small'));
    const before = await ready('small-sub');
    await deliver(before, 'loss.small.t', 5);
    await floorIs('small-sub', 5);
    await waitFor(
      'the stream first sequence in status',
      async () => (await res.getSub(ns, 'small-sub')).status?.consumer?.streamFirstSeq === 1,
      { timeoutMs: 20_000 },
    );
    // 30 more while nobody reads: the stream keeps the newest 10 (sequences 26..35), so
    // sequences 6..25 were discarded unread
    for (let i = 6; i <= 35; i += 1) await js.publish('loss.small.t', String(i));
    await waitFor(
      'status.stats.discardedUnread',
      async () => (await res.getSub(ns, 'small-sub')).status?.stats?.discardedUnread !== undefined,
      { timeoutMs: 30_000 },
    );
    expect((await res.getSub(ns, 'small-sub')).status?.stats?.discardedUnread).toBe(20);
    await waitFor(
      'a Warning Event MessagesDiscardedUnread',
      async () =>
        (await warnings('small-sub', 'MessagesDiscardedUnread')).some((m) => m.includes('20')),
      { timeoutMs: 10_000 },
    );
    const metrics = await (await fetch(`http://127.0.0.1:${controller.opsPort}/metrics`)).text();
    expect(metrics).toContain(
      `eventwire_controller_discarded_unread_total{subscription="${ns}/small-sub"} 20`,
    );
    // the lag that is left, as a gauge beside status.stats.pending
    expect(metrics).toContain(
      `eventwire_controller_subscription_pending{subscription="${ns}/small-sub"} 10`,
    );
    // nothing more is counted while the subscription reads what is left
    expect(await pendingOf(before)).toHaveLength(10);
    await new Promise((r) => setTimeout(r, 4_000)); // two resync periods
    expect((await res.getSub(ns, 'small-sub')).status?.stats?.discardedUnread).toBe(20);
  });
});
