// Hostile inputs and settings found by issue 10: every one of them must end in the outcome
// table (ack, retry with the configured backoff, dead letter, term) and never leave a message
// unsettled until JetStream gives up on it.
import { beforeAll, describe, expect, it } from 'vitest';
import { makeEvent } from '../../../src/cloudevents/index.ts';
import type { WorkerAlert } from '../../../src/dispatcher/subscription-worker.ts';
import { startSink } from '../../harness/sink.ts';
import {
  consumerState,
  event,
  makeStream,
  metricValue,
  publish,
  readStream,
  startWorker,
  watchTerminations,
  workerSpec,
  type Nats,
  workerFixture,
  untilWithin,
} from './helpers.ts';

const until = untilWithin(15_000);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HOUR = 3_600_000;

/** JSON nested `depth` levels deep: {"a":{"a":…{"a":1}…}} */
function deepJson(depth: number): Uint8Array {
  return new TextEncoder().encode(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
}

describe('dispatcher under hostile input', () => {
  const fx = workerFixture();
  const { workers, sinks } = fx;
  let n: Nats;
  beforeAll(() => {
    n = fx.nats();
  });

  const sink = async (...args: Parameters<typeof startSink>) => {
    const s = await startSink(...args);
    sinks.push(s);
    return s;
  };

  it('an event nested 5,000 levels deep in structured mode is delivered or dead-lettered, never left unsettled', async () => {
    const s = await makeStream(n, { maxDeliver: 10 });
    const target = await sink();
    const { worker } = startWorker(
      n,
      workerSpec(s, target.url, {
        format: 'structured',
        deadLetter: { kind: 'subject', subject: s.dlSubject },
      }),
    );
    workers.push(worker);
    const deep = makeEvent({
      id: 'deep-1',
      source: '/test/source',
      type: 'com.example.thing',
      datacontenttype: 'application/json',
      data: deepJson(5_000),
    });
    await publish(n, s.prefix, [deep]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    const dead = await readStream(n, s.dlStream);
    if (target.requests.some((r) => r.ok)) {
      // the encoder serialised it: delivered once, nothing dead-lettered
      expect(dead).toHaveLength(0);
    } else {
      // it cannot be encoded: dead-lettered at once, with the reason and the data intact
      expect(target.requests).toHaveLength(0);
      expect(dead).toHaveLength(1);
      expect(dead[0]?.event.extensions).toMatchObject({
        ewerrorreason: 'unencodable-event',
        ewattempts: '1',
      });
      expect(Buffer.from(dead[0]?.event.data ?? []).equals(Buffer.from(deepJson(5_000)))).toBe(
        true,
      );
    }
  });

  it('an unexpected failure inside the worker counts as a failed attempt and ends in the dead letter, never waiting for ack_wait', async () => {
    // ack_wait 60 s: a message the worker left unsettled would come back only after it
    const s = await makeStream(n, { ackWaitMs: 60_000 });
    const target = await sink(() => ({ status: 503 }));
    const { worker } = startWorker(
      n,
      workerSpec(s, target.url, {
        retry: 2,
        backoffDelayMs: 20,
        deadLetter: { kind: 'subject', subject: s.dlSubject },
      }),
      {
        // a broken random source: every backoff the outcome table computes throws
        random: () => {
          throw new Error('the random source failed');
        },
      },
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests).toHaveLength(3);
    const [dl] = await readStream(n, s.dlStream);
    expect(dl?.event.extensions).toMatchObject({
      ewerrorreason: 'retries-exhausted',
      ewerrorcode: '503',
      ewattempts: '3',
    });
  });

  it('a sink URI that is not a URL fails each attempt like a connection error, then dead-letters naming the URI', async () => {
    const s = await makeStream(n);
    const { worker } = startWorker(
      n,
      workerSpec(s, 'not a url', {
        retry: 2,
        backoffDelayMs: 20,
        deadLetter: { kind: 'subject', subject: s.dlSubject },
      }),
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    const [dl] = await readStream(n, s.dlStream);
    expect(dl?.event.extensions).toMatchObject({
      ewerrorreason: 'retries-exhausted',
      ewattempts: '3',
      ewerrordest: 'not a url',
    });
    expect(dl?.event.extensions.ewerrordata).toContain('"not a url" is not a URL');
  });

  it('a dead-letter subject no stream captures: the event is held, reported, and dead-lettered once a stream exists', async () => {
    // max_deliver 4: without holding the message, JetStream gives up after 4 deliveries
    const s = await makeStream(n, { maxDeliver: 4 });
    const target = await sink(() => ({ status: 400 }));
    const alerts: WorkerAlert[] = [];
    const dlSubject = `${s.prefix}lost.orders`;
    const { worker, metrics } = startWorker(
      n,
      workerSpec(s, target.url, {
        retry: 1,
        backoffDelayMs: 20,
        backoffMaxMs: 100,
        deadLetter: { kind: 'subject', subject: dlSubject },
      }),
      { onAlert: (a) => alerts.push(a) },
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until(
      'more dead-letter failures than max_deliver allows deliveries',
      async () =>
        (await metricValue(metrics, 'eventwire_dispatcher_dead_letter_failures_total', {
          reason: 'no-stream',
        })) >= 8,
    );
    expect(alerts.find((a) => a.reason === 'DeadLetterUnavailable')?.eventId).toBe('e-1');
    const held = await n.jsm.consumers.info(s.name, s.consumer);
    expect(held.num_ack_pending).toBe(1);
    expect(held.ack_floor.stream_seq).toBe(0);

    await n.jsm.streams.add({ name: `L${s.name.slice(1)}`, subjects: [`${s.prefix}lost.>`] });
    await until('acked once a stream captures the dead letter', async () => {
      return (await consumerState(n, s)).ackFloor === 1;
    });
    const [dl] = await readStream(n, `L${s.name.slice(1)}`);
    expect(dl?.event.id).toBe('e-1');
    expect(dl?.event.extensions.ewerrorreason).toBe('non-retryable-status');
    expect(alerts.some((a) => a.reason === 'EventLost')).toBe(false);
  });

  it('a reply larger than NATS max_payload is dead-lettered as reply-too-large and the event acked', async () => {
    const s = await makeStream(n);
    const target = await sink((req) => ({
      status: 200,
      headers: {
        'ce-specversion': '1.0',
        'ce-id': `big-${req.event?.id ?? ''}`,
        'ce-source': '/h',
        'ce-type': 'com.example.big',
        'content-type': 'application/octet-stream',
      },
      body: new Uint8Array(1_500_000),
    }));
    const dlSink = await sink(() => ({ status: 200 }));
    const { worker, metrics } = startWorker(
      n,
      workerSpec(
        s,
        target.url,
        { deadLetter: { kind: 'sink', uri: dlSink.url } },
        { reply: { subjectPrefix: s.prefix } },
      ),
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests).toHaveLength(1);
    expect(dlSink.requests).toHaveLength(1);
    expect(dlSink.requests[0]?.event?.id).toBe('big-e-1');
    expect(dlSink.requests[0]?.event?.extensions.ewerrorreason).toBe('reply-too-large');
    expect(dlSink.requests[0]?.event?.extensions.ewerrordata).toMatch(/max_payload/);
    expect(
      await metricValue(metrics, 'eventwire_dispatcher_replies_total', { outcome: 'deadletter' }),
    ).toBe(1);
  });

  it('a dead letter larger than NATS max_payload: the event is terminated and reported lost, not redelivered', async () => {
    const s = await makeStream(n);
    const terms = watchTerminations(n, s);
    // the sink's error body fills ewerrordata (1024 characters): the dead letter outgrows 1 MiB
    const target = await sink(() => ({ status: 400, body: 'x'.repeat(2_000) }));
    const alerts: WorkerAlert[] = [];
    const { worker, metrics } = startWorker(
      n,
      workerSpec(s, target.url, { deadLetter: { kind: 'subject', subject: s.dlSubject } }),
      { onAlert: (a) => alerts.push(a) },
    );
    workers.push(worker);
    const big = makeEvent({
      id: 'big-1',
      source: '/s',
      type: 'com.example.thing',
      data: new Uint8Array(1_048_576 - 1_000),
    });
    await publish(n, s.prefix, [big]);
    await until('term advisory', () => terms.seqs.length === 1);
    terms.stop();
    expect(terms.reasons[0]).toMatch(/dead letter refused/);
    expect(target.requests).toHaveLength(1);
    expect(
      await metricValue(metrics, 'eventwire_dispatcher_events_lost_total', {
        reason: 'dead-letter-rejected',
      }),
    ).toBe(1);
    expect(alerts.find((a) => a.reason === 'EventLost')?.eventId).toBe('big-1');
    expect((await consumerState(n, s)).ackPending).toBe(0);
  });

  it('a nak on the last delivery JetStream allows is reported as a lost event', async () => {
    // a consumer whose max_deliver is below retry + 1 (not as the controller makes it)
    const s = await makeStream(n, { maxDeliver: 2 });
    const target = await sink(() => ({ status: 503 }));
    const alerts: WorkerAlert[] = [];
    const { worker, metrics } = startWorker(
      n,
      workerSpec(s, target.url, { retry: 5, backoffDelayMs: 20 }),
      { onAlert: (a) => alerts.push(a) },
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until(
      'the loss reported',
      async () =>
        (await metricValue(metrics, 'eventwire_dispatcher_events_lost_total', {
          reason: 'max-deliver',
        })) === 1,
    );
    expect(target.requests).toHaveLength(2);
    expect(alerts.filter((a) => a.reason === 'EventLost').map((a) => a.eventId)).toEqual(['e-1']);
  });

  for (const forged of ['-20', '0', '+1', '007', 'x']) {
    it(`a forged ewhops ${JSON.stringify(forged)} counts as over the hop limit in a reply loop`, async () => {
      const s = await makeStream(n);
      // a handler answering every event with another event the same subscription receives
      const target = await sink((req) => ({
        status: 200,
        headers: {
          'ce-specversion': '1.0',
          'ce-id': `loop-${req.index}`,
          'ce-source': '/h',
          'ce-type': 'com.example.thing',
        },
      }));
      const spec = workerSpec(
        s,
        target.url,
        { deadLetter: { kind: 'subject', subject: s.dlSubject } },
        { reply: { subjectPrefix: s.prefix } },
      );
      workers.push(startWorker(n, spec).worker);
      await publish(n, s.prefix, [event(1, { ewhops: forged })]);
      await until(
        'the reply dead-lettered',
        async () => (await n.jsm.streams.info(s.dlStream)).state.messages >= 1,
      );
      await until('acked', async () => (await consumerState(n, s)).ackFloor >= 1);
      await pause(500); // a loop would go on delivering meanwhile
      expect(target.requests).toHaveLength(1);
      const [dl] = await readStream(n, s.dlStream);
      expect(dl?.event.id).toBe('loop-0');
      expect(dl?.event.extensions.ewerrorreason).toBe('reply-hop-limit');
      expect((await n.jsm.streams.info(s.name)).state.messages).toBe(1);
    });
  }

  it('delivery.timeout 600h: an attempt waits for a sink that answers after a second', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 200, delayMs: 1_000 }));
    const { worker } = startWorker(n, workerSpec(s, target.url, { timeoutMs: 600 * HOUR }));
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests).toHaveLength(1);
    expect(target.delivered().map((e) => e.id)).toEqual(['e-1']);
  });

  for (const ordering of ['none', 'key'] as const) {
    it(`Retry-After 99999999 with retryAfterMax 10000h waits (ordering ${ordering})`, async () => {
      const s = await makeStream(n);
      const target = await sink(() => ({ status: 503, headers: { 'retry-after': '99999999' } }));
      const { worker, metrics } = startWorker(
        n,
        workerSpec(s, target.url, {
          retryAfterMaxMs: 10_000 * HOUR,
          ordering,
          orderingKey: 'partitionkey',
        }),
      );
      workers.push(worker);
      await publish(n, s.prefix, [event(1)]);
      await until('first attempt', () => target.requests.length >= 1);
      await until(
        'the retry scheduled',
        async () => (await metricValue(metrics, 'eventwire_dispatcher_retries_total')) === 1,
      );
      await pause(3_000);
      expect(target.requests).toHaveLength(1);
      const state = await consumerState(n, s);
      expect(state.ackFloor).toBe(0);
      expect(state.ackPending).toBe(1);
    });
  }

  it('a nak delay too long for JetStream to read (nanoseconds past int64) is clamped, not dropped', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({
      status: 429,
      headers: { 'retry-after': '9'.repeat(20) },
    }));
    const { worker, metrics } = startWorker(
      n,
      workerSpec(s, target.url, { retryAfterMaxMs: Number.MAX_SAFE_INTEGER }),
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until(
      'the retry scheduled',
      async () => (await metricValue(metrics, 'eventwire_dispatcher_retries_total')) === 1,
    );
    await pause(3_000);
    expect(target.requests).toHaveLength(1);
    expect((await consumerState(n, s)).ackPending).toBe(1);
  });

  it('Retry-After an hour in the past: the configured backoff is used', async () => {
    const s = await makeStream(n);
    const past = new Date(Date.now() - HOUR).toUTCString();
    const target = await sink((req) =>
      req.index === 0 ? { status: 503, headers: { 'retry-after': past } } : { status: 200 },
    );
    workers.push(
      startWorker(
        n,
        workerSpec(s, target.url, {
          backoffDelayMs: 2_000,
          backoffMaxMs: 10_000,
          retryAfterMaxMs: HOUR,
        }),
      ).worker,
    );
    await publish(n, s.prefix, [event(1)]);
    await until('first attempt', () => target.requests.length >= 1);
    await pause(1_000);
    // backoff(1) is 2 s ± 20%: no retry yet
    expect(target.requests).toHaveLength(1);
    await until('acked after the backoff', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests).toHaveLength(2);
  });
});
