// One test per row of the delivery-semantics table (docs/spec.md), against the shared
// nats-server and loopback sinks: what JetStream records (ack, redelivery after nak, term) and
// what reached the sink or the dead letter.
import { headers as natsHeaders } from '@nats-io/nats-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { eventsEqual, isValidAttributeName } from '../../../src/cloudevents/index.ts';
import { subjectFor } from '../../../src/jetstream/subject.ts';
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

describe('dispatcher outcome table', () => {
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

  it('2xx: acks once the sink answered, exactly one request per event', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 204 }));
    const { worker, metrics } = startWorker(n, workerSpec(s, `${target.url}/events`));
    workers.push(worker);
    const events = [1, 2, 3, 4, 5].map((i) =>
      event(i, { traceparent: `00-${'a'.repeat(31)}${i}-${'b'.repeat(16)}-01` }),
    );
    await publish(n, s.prefix, events);
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 5);
    const state = await consumerState(n, s);
    expect(state).toMatchObject({ ackPending: 0, redelivered: 0, pending: 0 });
    expect(target.requests).toHaveLength(5);
    const first = target.requests.find((r) => r.event?.id === 'e-1');
    expect(first?.path).toBe('/events');
    expect(first?.headers.prefer).toBe('reply');
    expect(first?.headers.traceparent).toBe(`00-${'a'.repeat(31)}1-${'b'.repeat(16)}-01`);
    expect(first?.headers['ce-subject']).toBe('subject%201%20%C3%A9');
    for (const e of events) {
      const got = target.delivered().find((d) => d.id === e.id);
      expect(got && eventsEqual(got, e)).toBe(true);
    }
    expect(
      await metricValue(metrics, 'eventwire_dispatcher_deliveries_total', {
        outcome: 'ack',
        code: '204',
      }),
    ).toBe(5);
  });

  it('2xx in structured mode: the sink receives application/cloudevents+json', async () => {
    const s = await makeStream(n);
    const target = await sink();
    workers.push(startWorker(n, workerSpec(s, target.url, { format: 'structured' })).worker);
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests[0]?.headers['content-type']).toMatch(/^application\/cloudevents\+json/);
    const got = target.delivered()[0];
    expect(got && eventsEqual(got, event(1))).toBe(true);
  });

  it('2xx with a CloudEvent body and reply set: the reply is published with a hop count, then the ack', async () => {
    const s = await makeStream(n);
    const target = await sink((req) => ({
      status: 200,
      headers: {
        'ce-specversion': '1.0',
        'ce-id': `reply-${req.event?.id ?? ''}`,
        'ce-source': '/handler',
        'ce-type': 'com.example.reply',
        'content-type': 'text/plain',
      },
      body: 'answer',
    }));
    const spec = workerSpec(s, target.url, {}, { reply: { subjectPrefix: s.prefix } });
    workers.push(startWorker(n, spec).worker);
    // an event that does not match the filter below is the reply itself (type com.example.reply)
    await publish(n, s.prefix, [event(1)]);
    await until(
      'reply stored',
      async () => (await n.jsm.streams.info(s.name)).state.messages >= 2,
      10_000,
    );
    const stored = await readStream(n, s.name);
    const reply = stored.find(
      (m) => m.event.type === 'com.example.reply' && m.event.id === 'reply-e-1',
    );
    expect(reply?.msg.subject).toBe(subjectFor(s.prefix, 'com.example.reply'));
    expect(reply?.event.extensions.ewhops).toBe('1');
    expect(new TextDecoder().decode(reply?.event.data)).toBe('answer');
    await until('original acked', async () => (await consumerState(n, s)).ackFloor >= 1);
  });

  it('2xx with a body that is not a CloudEvent: acked, nothing published', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({
      status: 200,
      body: '{"not":"an event"}',
      headers: { 'content-type': 'application/json' },
    }));
    workers.push(
      startWorker(n, workerSpec(s, target.url, {}, { reply: { subjectPrefix: s.prefix } })).worker,
    );
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect((await n.jsm.streams.info(s.name)).state.messages).toBe(1);
  });

  it('a reply past the hop limit is dead-lettered, the event acked', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({
      status: 200,
      headers: {
        'ce-specversion': '1.0',
        'ce-id': 'loop',
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
    await publish(n, s.prefix, [event(1, { ewhops: '8' })]);
    await until(
      'dead letter stored',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 1,
    );
    const [dl] = await readStream(n, s.dlStream);
    expect(dl?.event.id).toBe('loop');
    expect(dl?.event.extensions.ewerrorreason).toBe('reply-hop-limit');
    expect(dl?.event.extensions.ewhops).toBe('9');
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect((await n.jsm.streams.info(s.name)).state.messages).toBe(1);
  });

  for (const status of [404, 408, 409, 429, 500, 502, 503]) {
    it(`${status}: nak with backoff, redelivered by JetStream, acked after the retry succeeds`, async () => {
      const s = await makeStream(n);
      const target = await sink((req) => ({ status: req.index === 0 ? status : 200 }));
      const { worker, metrics } = startWorker(n, workerSpec(s, target.url));
      workers.push(worker);
      await publish(n, s.prefix, [event(1)]);
      await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
      expect(target.requests).toHaveLength(2);
      expect((await consumerState(n, s)).redelivered).toBe(0); // settled now; it was redelivered once
      expect(await metricValue(metrics, 'eventwire_dispatcher_retries_total')).toBe(1);
      expect(
        await metricValue(metrics, 'eventwire_dispatcher_deliveries_total', {
          outcome: 'retry',
          code: String(status),
        }),
      ).toBe(1);
      expect(target.requests[1]?.event?.id).toBe('e-1');
    });
  }

  it('connection error: retried, then dead-lettered when retries run out (no HTTP code)', async () => {
    const s = await makeStream(n);
    const closed = await startSink();
    const uri = `${closed.url}/gone`;
    await closed.close();
    const { worker } = startWorker(
      n,
      workerSpec(s, uri, { retry: 2, deadLetter: { kind: 'subject', subject: s.dlSubject } }),
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until(
      'dead letter stored',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 1,
    );
    const [dl] = await readStream(n, s.dlStream);
    expect(dl?.event.extensions).toMatchObject({
      ewerrorreason: 'retries-exhausted',
      ewattempts: '3',
      ewerrordest: uri,
    });
    expect(dl?.event.extensions.ewerrorcode).toBeUndefined();
    expect(dl?.event.extensions.ewerrordata).toMatch(/ECONNREFUSED|connect/i);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
  });

  it('timeout: the attempt is cut at delivery.timeout and retried', async () => {
    const s = await makeStream(n);
    const target = await sink((req) => (req.index === 0 ? { hang: true } : { status: 200 }));
    workers.push(startWorker(n, workerSpec(s, target.url, { timeoutMs: 300 })).worker);
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests).toHaveLength(2);
  });

  for (const status of [400, 403, 410, 413, 422]) {
    it(`${status}: dead-lettered at once with every attribute, the data and the error extensions`, async () => {
      const s = await makeStream(n);
      const target = await sink(() => ({ status, body: `rejected ${'x'.repeat(3000)}` }));
      const { worker, metrics } = startWorker(
        n,
        workerSpec(s, target.url, { deadLetter: { kind: 'subject', subject: s.dlSubject } }),
      );
      workers.push(worker);
      const original = event(1, {
        traceparent: `00-${'c'.repeat(32)}-${'d'.repeat(16)}-01`,
        custom: 'v a l',
      });
      await publish(n, s.prefix, [original]);
      await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
      expect(target.requests).toHaveLength(1);
      const [dl] = await readStream(n, s.dlStream);
      const got = dl?.event;
      expect(got?.extensions).toMatchObject({
        ewerrorcode: String(status),
        ewerrorreason: 'non-retryable-status',
        ewerrordest: target.url,
        ewattempts: '1',
        ewsubscription: `test/${s.name.toLowerCase()}`,
      });
      expect(got?.extensions.ewerrordata).toMatch(/^rejected x+$/);
      expect(got?.extensions.ewerrordata?.length).toBe(1024);
      for (const name of Object.keys(got?.extensions ?? {}))
        expect(isValidAttributeName(name, true)).toBe(true);
      // every original attribute and the data, unchanged
      const {
        ewerrorcode,
        ewerrorreason,
        ewerrordest,
        ewattempts,
        ewsubscription,
        ewerrordata,
        ...rest
      } = got?.extensions ?? {};
      expect(
        [ewerrorcode, ewerrorreason, ewerrordest, ewattempts, ewsubscription, ewerrordata].every(
          (v) => v !== undefined,
        ),
      ).toBe(true);
      expect(got && eventsEqual({ ...got, extensions: rest }, original)).toBe(true);
      expect(
        await metricValue(metrics, 'eventwire_dispatcher_dead_letters_total', {
          reason: 'non-retryable-status',
        }),
      ).toBe(1);
    });
  }

  it('retries exhausted: dead-lettered after retry + 1 attempts with the last code', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 503, body: 'busy' }));
    workers.push(
      startWorker(
        n,
        workerSpec(s, target.url, {
          retry: 2,
          deadLetter: { kind: 'subject', subject: s.dlSubject },
        }),
      ).worker,
    );
    const original = event(7);
    await publish(n, s.prefix, [original]);
    await until(
      'dead letter stored',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 1,
    );
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(target.requests).toHaveLength(3);
    const [dl] = await readStream(n, s.dlStream);
    expect(dl?.event.extensions).toMatchObject({
      ewerrorcode: '503',
      ewerrorreason: 'retries-exhausted',
      ewattempts: '3',
      ewerrordata: 'busy',
    });
    expect(dl && Buffer.from(dl.event.data ?? []).equals(Buffer.from(original.data ?? []))).toBe(
      true,
    );
    expect(dl?.event.subject).toBe(original.subject);
  });

  it('dead letter to a sink: POSTed there with the error extensions', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 400 }));
    const dlSink = await sink(() => ({ status: 202 }));
    workers.push(
      startWorker(
        n,
        workerSpec(s, target.url, { deadLetter: { kind: 'sink', uri: `${dlSink.url}/dlq` } }),
      ).worker,
    );
    await publish(n, s.prefix, [event(1)]);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    expect(dlSink.requests[0]?.path).toBe('/dlq');
    expect(dlSink.requests[0]?.event?.extensions).toMatchObject({
      ewerrorcode: '400',
      ewerrorreason: 'non-retryable-status',
    });
  });

  it('dead letter unavailable: never acked, nak and retried until the dead letter works', async () => {
    const s = await makeStream(n);
    const target = await sink(() => ({ status: 400 }));
    const dlSink = await sink(() => ({ status: 503 }));
    const { worker, metrics } = startWorker(
      n,
      workerSpec(s, target.url, { deadLetter: { kind: 'sink', uri: dlSink.url } }),
    );
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until('three dead-letter attempts', () => dlSink.requests.length >= 3);
    const state = await consumerState(n, s);
    expect(state.ackFloor).toBe(0);
    expect(
      await metricValue(metrics, 'eventwire_dispatcher_dead_letter_failures_total'),
    ).toBeGreaterThanOrEqual(3);
    dlSink.setScript(() => ({ status: 200 }));
    await until(
      'acked once the dead letter works',
      async () => (await consumerState(n, s)).ackFloor === 1,
    );
    expect(dlSink.delivered().map((e) => e.id)).toEqual(['e-1']);
  });

  it('no dead letter and a terminal failure: term, as JetStream records it', async () => {
    const s = await makeStream(n);
    const terms = watchTerminations(n, s);
    const target = await sink(() => ({ status: 422 }));
    const { worker, metrics } = startWorker(n, workerSpec(s, target.url));
    workers.push(worker);
    await publish(n, s.prefix, [event(1)]);
    await until('term advisory', () => terms.seqs.length === 1);
    terms.stop();
    expect(terms.seqs).toEqual([1]);
    expect(terms.reasons[0]).toContain('non-retryable-status 422');
    expect((await consumerState(n, s)).ackPending).toBe(0);
    expect(target.requests).toHaveLength(1);
    expect(
      await metricValue(metrics, 'eventwire_dispatcher_terminated_total', {
        reason: 'non-retryable-status',
      }),
    ).toBe(1);
  });

  it('a message that is not a CloudEvent is dead-lettered with a reason, never acked silently', async () => {
    const s = await makeStream(n);
    const target = await sink();
    workers.push(
      startWorker(
        n,
        workerSpec(s, target.url, { deadLetter: { kind: 'subject', subject: s.dlSubject } }),
      ).worker,
    );
    const h = natsHeaders();
    h.set('content-type', 'text/plain');
    await n.js.publish(`${s.prefix}.raw`, 'just text', { headers: h });
    await until(
      'dead letter stored',
      async () => (await n.jsm.streams.info(s.dlStream)).state.messages === 1,
    );
    const [dl] = await readStream(n, s.dlStream);
    expect(dl?.event).toMatchObject({
      type: 'io.eventwire.dispatcher.invalidmessage',
      id: `${s.name}-1`,
      datacontenttype: 'text/plain',
    });
    expect(dl?.event.extensions).toMatchObject({
      ewerrorreason: 'invalid-event',
      ewnatssubject: `${s.prefix}.raw`,
    });
    expect(dl?.event.extensions.ewerrordata).toContain('not-a-cloudevent');
    expect(new TextDecoder().decode(dl?.event.data)).toBe('just text');
    expect(target.requests).toHaveLength(0);
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
  });

  it('filters: filtered-out events are acked and counted, matching ones delivered', async () => {
    const s = await makeStream(n);
    const target = await sink();
    const spec = workerSpec(
      s,
      target.url,
      {},
      {
        filters: [{ cel: 'event.data.total >= 30' }, { not: { suffix: { id: '-5' } } }],
      },
    );
    const { worker, metrics } = startWorker(n, spec);
    workers.push(worker);
    await publish(
      n,
      s.prefix,
      [1, 2, 3, 4, 5, 6].map((i) => event(i)),
    );
    await until('all acked', async () => (await consumerState(n, s)).ackFloor === 6);
    expect(
      target
        .delivered()
        .map((e) => e.id)
        .sort(),
    ).toEqual(['e-3', 'e-4', 'e-6']);
    expect(await metricValue(metrics, 'eventwire_dispatcher_filtered_total')).toBe(3);
  });

  it('reads structured-mode messages from NATS', async () => {
    const s = await makeStream(n);
    const target = await sink();
    workers.push(startWorker(n, workerSpec(s, target.url)).worker);
    const h = natsHeaders();
    h.set('content-type', 'application/cloudevents+json');
    const body = JSON.stringify({
      specversion: '1.0',
      id: 's-1',
      source: '/s',
      type: 'com.example.s',
      data: { a: 1 },
    });
    await n.js.publish(`${s.prefix}.com.example.s`, body, { headers: h });
    await until('acked', async () => (await consumerState(n, s)).ackFloor === 1);
    const got = target.delivered()[0];
    expect(got).toMatchObject({ id: 's-1', source: '/s', type: 'com.example.s' });
    expect(JSON.parse(new TextDecoder().decode(got?.data))).toEqual({ a: 1 });
  });
});
