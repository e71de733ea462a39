// Shared pieces of the dispatcher tests: streams and consumers as the controller makes them,
// events, a worker spec with test-sized durations, readers for what JetStream recorded, and
// for tests without a controller, EventSubscriptions made Ready by hand as it would.
import { randomUUID } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';
import type { TestSink } from '../../harness/sink.ts';
import { msToNanos } from '../../../src/api/duration.ts';
import {
  API_GROUP,
  API_VERSION,
  type EventStreamStatus,
  type EventSubscription,
  type EventSubscriptionStatus,
} from '../../../src/api/types.ts';
import {
  fromNatsMessage,
  makeEvent,
  toNatsMessage,
  type CloudEvent,
} from '../../../src/cloudevents/index.ts';
import { subjectFor } from '../../../src/jetstream/subject.ts';
import { DispatcherMetrics } from '../../../src/dispatcher/metrics.ts';
import type { DeliverySettings, WorkerSpec } from '../../../src/dispatcher/settings.ts';
import {
  SubscriptionWorker,
  type WorkerOptions,
} from '../../../src/dispatcher/subscription-worker.ts';
import { silentLogger, type Logger } from '../../../src/observability/logger.ts';

export interface Nats {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

export async function natsAt(url: string): Promise<Nats> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
}

export interface TestStream {
  readonly name: string;
  readonly prefix: string;
  readonly consumer: string;
  /** a second stream capturing `<prefix>dl.>` for dead letters */
  readonly dlStream: string;
  readonly dlSubject: string;
}

/** A stream, a dead-letter stream and a durable pull consumer configured as the controller does. */
export async function makeStream(
  n: Nats,
  opts: { ackWaitMs?: number; maxInFlight?: number; maxDeliver?: number; storage?: 'file' } = {},
): Promise<TestStream> {
  const id = randomUUID().replaceAll('-', '').slice(0, 10);
  const name = `T${id}`;
  const prefix = `t${id}`;
  await n.jsm.streams.add({ name, subjects: [`${prefix}.>`] });
  const dlStream = `D${id}`;
  await n.jsm.streams.add({ name: dlStream, subjects: [`${prefix}dl.>`] });
  const consumer = 'sub';
  await n.jsm.consumers.add(name, {
    durable_name: consumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: msToNanos(opts.ackWaitMs ?? 10_000),
    max_deliver: opts.maxDeliver ?? 120,
    max_ack_pending: opts.maxInFlight ?? 32,
  });
  return { name, prefix, consumer, dlStream, dlSubject: `${prefix}dl.orders` };
}

export const DEFAULT_TEST_DELIVERY: DeliverySettings = {
  format: 'binary',
  timeoutMs: 2_000,
  retry: 3,
  backoffPolicy: 'exponential',
  backoffDelayMs: 50,
  backoffMaxMs: 1_000,
  retryAfterMaxMs: 1_000,
  maxInFlight: 32,
  ordering: 'none',
};

export function workerSpec(
  s: TestStream,
  sinkUri: string,
  delivery: Partial<DeliverySettings> = {},
  extra: Partial<WorkerSpec> = {},
): WorkerSpec {
  return {
    id: `test/${s.name.toLowerCase()}`,
    sinkUri,
    stream: s.name,
    consumer: s.consumer,
    filters: [],
    delivery: { ...DEFAULT_TEST_DELIVERY, ...delivery },
    ...extra,
  };
}

export function startWorker(
  n: Nats,
  spec: WorkerSpec,
  opts: {
    log?: Logger;
    metrics?: DispatcherMetrics;
    keepAliveMs?: number;
    onTerminal?: WorkerOptions['onTerminal'];
    onAlert?: WorkerOptions['onAlert'];
    random?: WorkerOptions['random'];
  } = {},
): { worker: SubscriptionWorker; metrics: DispatcherMetrics } {
  const metrics = opts.metrics ?? new DispatcherMetrics();
  const worker = new SubscriptionWorker({
    js: n.js,
    spec,
    metrics,
    log: opts.log ?? silentLogger(),
    ...(opts.keepAliveMs === undefined ? {} : { keepAliveMs: opts.keepAliveMs }),
    ...(opts.onTerminal === undefined ? {} : { onTerminal: opts.onTerminal }),
    ...(opts.onAlert === undefined ? {} : { onAlert: opts.onAlert }),
    ...(opts.random === undefined ? {} : { random: opts.random }),
  });
  worker.start();
  return { worker, metrics };
}

export function event(i: number, extensions: Record<string, string> = {}): CloudEvent {
  return makeEvent({
    id: `e-${i}`,
    source: '/test/source',
    type: 'com.example.thing',
    subject: `subject ${i} é`,
    time: '2025-01-02T03:04:05Z',
    datacontenttype: 'application/json',
    data: new TextEncoder().encode(JSON.stringify({ i, total: i * 10 })),
    extensions: { partitionkey: `k${i % 7}`, ...extensions },
  });
}

export async function publish(
  n: Nats,
  prefix: string,
  events: readonly CloudEvent[],
): Promise<void> {
  const acks: Promise<unknown>[] = [];
  for (const e of events) {
    const m = toNatsMessage(e);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
    acks.push(n.js.publish(subjectFor(prefix, e.type), m.data, { headers: h, msgID: m.msgId }));
    if (acks.length >= 256) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);
}

/** Every message stored in a stream, decoded, in sequence order. */
export async function readStream(
  n: Nats,
  stream: string,
): Promise<{ msg: JsMsg; event: CloudEvent }[]> {
  const info = await n.jsm.streams.info(stream);
  const total = info.state.messages;
  if (total === 0) return [];
  const name = `r${randomUUID().slice(0, 8)}`;
  await n.jsm.consumers.add(stream, {
    name,
    ack_policy: AckPolicy.None,
    inactive_threshold: msToNanos(30_000),
  });
  const c = await n.js.consumers.get(stream, name);
  const out: { msg: JsMsg; event: CloudEvent }[] = [];
  const iter = await c.fetch({ max_messages: total, expires: 5_000 });
  for await (const msg of iter) {
    const r = fromNatsMessage({ headers: msg.headers, data: msg.data });
    if (!r.ok)
      throw new Error(`stream ${stream} holds a message that is not a CloudEvent`, {
        cause: r.error,
      });
    out.push({ msg, event: r.event });
    if (out.length >= total) break;
  }
  await n.jsm.consumers.delete(stream, name);
  return out;
}

export async function consumerState(n: Nats, s: TestStream) {
  const info = await n.jsm.consumers.info(s.name, s.consumer);
  return {
    ackFloor: info.ack_floor.stream_seq,
    ackPending: info.num_ack_pending,
    pending: info.num_pending,
    redelivered: info.num_redelivered,
    delivered: info.delivered.stream_seq,
  };
}

/** Terminated-message advisories JetStream publishes for a consumer. */
export function watchTerminations(
  n: Nats,
  s: TestStream,
): { seqs: number[]; reasons: string[]; stop(): void } {
  const seqs: number[] = [];
  const reasons: string[] = [];
  const sub = n.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.${s.name}.${s.consumer}`, {
    callback: (_err, msg) => {
      const body = msg.json<{ stream_seq: number; reason?: string }>();
      seqs.push(body.stream_seq);
      reasons.push(body.reason ?? '');
    },
  });
  return {
    seqs,
    reasons,
    stop: () => {
      sub.unsubscribe();
    },
  };
}

/** A counter's or gauge's value (summed over the label sets that match `labels`). */
export async function metricValue(
  metrics: DispatcherMetrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  if (m === undefined) return 0;
  const data = await m.get();
  return data.values
    .filter((v) =>
      Object.entries(labels).every(
        ([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val,
      ),
    )
    .reduce((sum, v) => sum + v.value, 0);
}

/**
 * The usual fixture of a describe block: a connection to the shared nats-server, and the
 * workers and sinks a test starts, stopped after each test.
 */
export function workerFixture(): {
  nats: () => Nats;
  workers: SubscriptionWorker[];
  sinks: TestSink[];
} {
  let n: Nats | undefined;
  const workers: SubscriptionWorker[] = [];
  const sinks: TestSink[] = [];
  beforeAll(async () => {
    n = await natsAt(inject('natsUrl'));
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop(1_000)));
    await Promise.all(sinks.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await n?.nc.close();
  });
  return {
    nats: () => {
      if (!n) throw new Error('workerFixture: the nats connection is opened in beforeAll');
      return n;
    },
    workers,
    sinks,
  };
}

/**
 * The fixture of a suite that drives the dispatcher through the API server: the admin client
 * of the shared control plane, the CRDs and the suite's own `namespace` (both made before the
 * suite), and a connection to the shared nats-server, closed after the suite.
 */
export function apiFixture(namespace: string): {
  kc: KubeConfig;
  custom: CustomObjectsApi;
  nats: () => Nats;
} {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  let n: Nats | undefined;
  beforeAll(async () => {
    await installCrds(kc);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    n = await natsAt(inject('natsUrl'));
  });
  afterAll(async () => {
    await n?.nc.close();
  });
  return {
    kc,
    custom: kc.makeApiClient(CustomObjectsApi),
    nats: () => {
      if (!n) throw new Error('apiFixture: the nats connection is opened in beforeAll');
      return n;
    },
  };
}

/**
 * A wait for a condition (sync or async) with a suite's own patience: `untilWithin(15_000)`
 * gives `until(what, cond, timeoutMs = 15_000)`, polling every `intervalMs`.
 */
export function untilWithin(defaultMs: number, intervalMs = 50) {
  return (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = defaultMs) =>
    waitFor(what, async () => cond(), { timeoutMs, intervalMs });
}

/** Creates an EventSubscription as a user would (unlabelled: no test controller sees it). */
export async function createSubscription(
  custom: CustomObjectsApi,
  at: { namespace: string; name: string },
  spec: EventSubscription['spec'],
): Promise<EventSubscription> {
  return (await custom.createNamespacedCustomObject({
    group: API_GROUP,
    version: API_VERSION,
    namespace: at.namespace,
    plural: 'eventsubscriptions',
    body: {
      apiVersion: `${API_GROUP}/${API_VERSION}`,
      kind: 'EventSubscription',
      metadata: { ...at },
      spec,
    },
  })) as EventSubscription;
}

/**
 * Makes an EventStream or EventSubscription Ready by hand, as the controller would write
 * its status (for tests that run no controller): observedGeneration and a Ready condition of
 * the object's current generation, plus `fields` (sinkUri and consumer, or streamName).
 */
export async function writeReadyStatus(
  custom: CustomObjectsApi,
  at: { namespace: string; plural: 'eventstreams' | 'eventsubscriptions'; name: string },
  fields: Partial<EventSubscriptionStatus> | Partial<EventStreamStatus> = {},
  ready: { reason: string; message: string } = { reason: 'Ready', message: 'ready' },
): Promise<void> {
  const ref = { group: API_GROUP, version: API_VERSION, ...at };
  const current = (await custom.getNamespacedCustomObject(ref)) as KubernetesObject;
  const generation = current.metadata?.generation ?? 1;
  await custom.replaceNamespacedCustomObjectStatus({
    ...ref,
    body: {
      ...current,
      status: {
        observedGeneration: generation,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            ...ready,
            lastTransitionTime: new Date().toISOString(),
            observedGeneration: generation,
          },
        ],
        ...fields,
      },
    },
  });
}
