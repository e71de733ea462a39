// The Kubernetes-driven path: the dispatcher watches EventSubscriptions (status written
// directly through the status subresource, no controller), starts delivering when one is
// Ready with a sink and a consumer, follows a change, and stops when it is deleted.
import { randomUUID } from 'node:crypto';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { API_GROUP, API_VERSION, type EventSubscription } from '../../../src/api/types.ts';
import { parseDispatcherConfig } from '../../../src/dispatcher/config.ts';
import { startDispatcher, type Dispatcher } from '../../../src/dispatcher/dispatcher.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import { startSink, type TestSink } from '../../harness/sink.ts';
import {
  apiFixture,
  consumerState,
  createSubscription,
  event,
  makeStream,
  publish,
  type Nats,
  untilWithin,
  writeReadyStatus,
} from './helpers.ts';

const until = untilWithin(30_000, 100);

describe('dispatcher driven by EventSubscriptions', () => {
  const namespace = `disp-${randomUUID().slice(0, 8)}`;
  const fx = apiFixture(namespace);
  const { kc, custom } = fx;
  let n: Nats;
  let dispatcher: Dispatcher | undefined;
  const sinks: TestSink[] = [];

  beforeAll(() => {
    n = fx.nats();
  });
  afterAll(async () => {
    await dispatcher?.stop(1_000);
    await Promise.all(sinks.map((s) => s.close()));
  });

  const ref = { group: API_GROUP, version: API_VERSION, namespace };

  const createSub = (name: string, spec: EventSubscription['spec']) =>
    createSubscription(custom, { namespace, name }, spec);

  /** A dispatcher serving this test's namespace, ops on a free loopback port. */
  const startNamespaceDispatcher = () =>
    startDispatcher(
      parseDispatcherConfig({
        EVENTWIRE_NATS_URL: inject('natsUrl'),
        EVENTWIRE_OPS_PORT: '0',
        EVENTWIRE_OPS_HOST: '127.0.0.1',
        EVENTWIRE_WATCH_NAMESPACE: namespace,
      }),
      { kubeConfig: kc, log: silentLogger() },
    );

  /** Ready, with a sink and a consumer in status, as the controller would write it. */
  const readyWith = (
    name: string,
    sinkUri: string,
    s: { name: string; consumer: string },
    extra: Partial<NonNullable<EventSubscription['status']>> = {},
  ) =>
    writeReadyStatus(
      custom,
      { namespace, plural: 'eventsubscriptions', name },
      { sinkUri, consumer: { stream: s.name, name: s.consumer }, ...extra },
    );

  it('starts, reconfigures and stops delivery as the subscription changes', async () => {
    const s = await makeStream(n);
    const first = await startSink();
    const second = await startSink();
    sinks.push(first, second);
    await custom.createNamespacedCustomObject({
      ...ref,
      plural: 'eventstreams',
      body: {
        apiVersion: `${API_GROUP}/${API_VERSION}`,
        kind: 'EventStream',
        metadata: { name: 'shop', namespace },
        spec: { subjectPrefix: s.prefix },
      },
    });
    await createSub('orders', {
      stream: { name: 'shop' },
      sink: { uri: `${first.url}/events` },
      delivery: { backoffDelay: '50ms' },
    });
    const writeStatus = (sinkUri: string) => readyWith('orders', sinkUri, s);

    dispatcher = await startNamespaceDispatcher();
    const ops = `http://127.0.0.1:${dispatcher.opsPort ?? 0}`;
    expect((await fetch(`${ops}/healthz`)).status).toBe(200);
    expect((await fetch(`${ops}/readyz`)).status).toBe(200);
    expect(dispatcher.subscriptions()).toEqual([]); // not Ready yet: no status

    await writeStatus(`${first.url}/events`);
    await until(
      'delivering',
      () => dispatcher?.subscriptions().includes(`${namespace}/orders`) === true,
    );
    await publish(n, s.prefix, [event(1), event(2)]);
    await until('delivered to the first sink', () => first.delivered().length === 2);
    expect(first.requests[0]?.path).toBe('/events');

    // a new sink in status: the worker is replaced without a restart
    await writeStatus(`${second.url}/v2`);
    await until('delivering to the second sink', async () => {
      await publish(n, s.prefix, [event(3)]);
      return second.delivered().some((e) => e.id === 'e-3');
    });
    expect(second.requests[0]?.path).toBe('/v2');
    const metrics = await (await fetch(`${ops}/metrics`)).text();
    expect(metrics).toMatch(/eventwire_dispatcher_deliveries_total\{[^}]*outcome="ack"/);

    await custom.deleteNamespacedCustomObject({
      ...ref,
      plural: 'eventsubscriptions',
      name: 'orders',
    });
    await until('stopped', () => dispatcher?.subscriptions().length === 0);
    const before = second.requests.length;
    await publish(n, s.prefix, [event(4)]);
    await until('the event is stored', async () => (await consumerState(n, s)).pending >= 1);
    expect(second.requests.length).toBe(before);
  });

  it('a dead letter no stream captures: a Warning Event DeadLetterUnavailable on the subscription', async () => {
    const s = await makeStream(n, { maxDeliver: 4 });
    const target = await startSink(() => ({ status: 400 }));
    sinks.push(target);
    await createSub('held', {
      stream: { name: 'shop' },
      sink: { uri: target.url },
      delivery: {
        retry: 1,
        backoffDelay: '20ms',
        backoffMax: '100ms',
        deadLetter: { subject: `${s.prefix}lost.orders` },
      },
    });
    await readyWith('held', target.url, s);
    dispatcher ??= await startNamespaceDispatcher();
    await publish(n, s.prefix, [event(1)]);
    const core = kc.makeApiClient(CoreV1Api);
    await until('a Warning Event DeadLetterUnavailable', async () => {
      const events = await core.listNamespacedEvent({
        namespace,
        fieldSelector: 'involvedObject.name=held,reason=DeadLetterUnavailable',
      });
      return events.items.length > 0;
    });
    const [warning] = (
      await core.listNamespacedEvent({
        namespace,
        fieldSelector: 'involvedObject.name=held,reason=DeadLetterUnavailable',
      })
    ).items;
    expect(warning?.type).toBe('Warning');
    expect(warning?.message).toContain('e-1');
    expect(warning?.message).toContain(`${s.prefix}lost.orders`);
    // still held after more dead-letter attempts than max_deliver allows deliveries
    const failures = async () => {
      const text = await (
        await fetch(`http://127.0.0.1:${String(dispatcher?.opsPort ?? 0)}/metrics`)
      ).text();
      const line = text
        .split('\n')
        .find(
          (l) =>
            l.startsWith('eventwire_dispatcher_dead_letter_failures_total{') &&
            l.includes(`subscription="${namespace}/held"`) &&
            l.includes('reason="no-stream"'),
        );
      return Number(line?.split(' ').at(-1) ?? 0);
    };
    await until('eight dead-letter failures', async () => (await failures()) >= 8);
    const info = await n.jsm.consumers.info(s.name, s.consumer);
    expect(info.num_ack_pending).toBe(1);
    expect(info.ack_floor.stream_seq).toBe(0);
  });

  it('calls a dead-letter sink only at the URI the controller resolved, and serves a new spec only once checked', async () => {
    const s = await makeStream(n);
    const target = await startSink(() => ({ status: 400 })); // dead-letters at once
    const vetted = await startSink();
    const unvetted = await startSink();
    sinks.push(target, vetted, unvetted);
    const created = await createSub('vetted', {
      stream: { name: 'shop' },
      sink: { uri: target.url },
      // what the spec says is not what the dispatcher calls: status names the resolved URI
      delivery: { deadLetter: { sink: { uri: `${unvetted.url}/spec` } } },
    });
    const generation = created.metadata?.generation ?? 1;
    await readyWith('vetted', target.url, s, {
      deadLetterSinkUri: `${vetted.url}/resolved`,
    });
    dispatcher ??= await startNamespaceDispatcher();
    await publish(n, s.prefix, [event(1)]);
    await until('dead-lettered at the resolved URI', () => vetted.delivered().length === 1);
    expect(vetted.requests[0]?.path).toBe('/resolved');

    // a new dead letter in the spec, not yet checked by the controller (no status for it):
    // the dispatcher goes on with the spec the controller checked
    await custom.patchNamespacedCustomObject({
      ...ref,
      plural: 'eventsubscriptions',
      name: 'vetted',
      body: [
        {
          op: 'replace',
          path: '/spec/delivery/deadLetter/sink/uri',
          value: `${unvetted.url}/changed`,
        },
      ],
    });
    await until('the new generation is seen', async () => {
      const o = (await custom.getNamespacedCustomObject({
        ...ref,
        plural: 'eventsubscriptions',
        name: 'vetted',
      })) as EventSubscription;
      return (o.metadata?.generation ?? 0) > generation;
    });
    await new Promise((r) => setTimeout(r, 500)); // the dispatcher's watch sees it too
    await publish(n, s.prefix, [event(2)]);
    await until('the second event dead-lettered', () => vetted.delivered().length === 2);
    expect(unvetted.requests).toHaveLength(0);
    expect(dispatcher.subscriptions()).toContain(`${namespace}/vetted`);
  });
});
