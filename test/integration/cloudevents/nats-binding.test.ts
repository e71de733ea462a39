// The CloudEvents NATS binding against a real nats-server with JetStream: what
// toNatsMessage writes is stored and read back as the same event, subjects from the subject
// encoding are accepted, and Nats-Msg-Id de-duplicates a re-published event.
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { eventsEqual, makeEvent, type CloudEvent } from '../../../src/cloudevents/event.ts';
import { fromNatsMessage, toNatsMessage } from '../../../src/cloudevents/nats.ts';
import { SAMPLE_EVENTS } from '../../../src/cloudevents/samples.ts';
import { compileFilters } from '../../../src/dispatcher/filter.ts';
import { pushdownSubjects, streamSubjects, subjectFor } from '../../../src/jetstream/subject.ts';

const STREAM = 'CE_BINDING';
const PREFIX = 'cebinding';

function toHeaders(record: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of Object.entries(record)) h.set(name, value);
  return h;
}

async function publish(js: JetStreamClient, event: CloudEvent) {
  const msg = toNatsMessage(event);
  return js.publish(subjectFor(PREFIX, event.type), msg.data, {
    headers: toHeaders(msg.headers),
    msgID: msg.msgId,
  });
}

/** Reads every message of the stream on `subjects` with an ephemeral ordered consumer. */
async function readAll(js: JetStreamClient, jsm: JetStreamManager, filterSubjects: string[]) {
  const name = `reader${String(Date.now())}${String(Math.floor(Math.random() * 1e6))}`;
  await jsm.consumers.add(STREAM, {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subjects: filterSubjects,
    inactive_threshold: 60_000_000_000,
  });
  const consumer = await js.consumers.get(STREAM, name);
  const pending = (await consumer.info()).num_pending;
  const out: { subject: string; headers: MsgHdrs | undefined; data: Uint8Array }[] = [];
  if (pending > 0) {
    const batch = await consumer.fetch({ max_messages: pending, expires: 5_000 });
    for await (const m of batch) {
      out.push({ subject: m.subject, headers: m.headers, data: m.data });
      m.ack();
    }
  }
  await jsm.consumers.delete(STREAM, name);
  return out;
}

describe('CloudEvents NATS binding on JetStream', () => {
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    nc = await connect({ servers: inject('natsUrl') });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: STREAM,
      subjects: streamSubjects(PREFIX),
      duplicate_window: 120_000_000_000,
    });
    js = jetstream(nc);
  });
  afterAll(async () => {
    await jsm.streams.delete(STREAM);
    await nc.close();
  });

  it('stores binary-mode events and reads them back equal', async () => {
    const tricky = makeEvent({
      id: 'tricky',
      source: '/s',
      type: 'weird type.*.>..%',
      extensions: { hop: '1' },
    });
    const events = [...SAMPLE_EVENTS, tricky];
    for (const event of events) {
      const ack = await publish(js, event);
      expect(ack.duplicate).toBe(false);
    }
    const got = await readAll(js, jsm, streamSubjects(PREFIX));
    expect(got).toHaveLength(events.length);
    for (const [i, m] of got.entries()) {
      const event = events[i];
      if (event === undefined) throw new Error('unexpected message');
      expect(m.subject).toBe(subjectFor(PREFIX, event.type));
      expect(m.headers?.get('Nats-Msg-Id')).toBe(toNatsMessage(event).msgId);
      const back = fromNatsMessage({ headers: m.headers, data: m.data });
      expect(back.ok, JSON.stringify(back)).toBe(true);
      if (back.ok) expect(eventsEqual(back.event, event)).toBe(true);
    }
  });

  it('stores the same event published twice once (Nats-Msg-Id from source + id)', async () => {
    const event = makeEvent({ id: 'dup-1', source: '/dedupe', type: 'com.example.dedupe' });
    expect((await publish(js, event)).duplicate).toBe(false);
    // a retry by the producer: same source and id, even with other attributes
    expect((await publish(js, { ...event, subject: 'retry' })).duplicate).toBe(true);
    expect((await publish(js, { ...event, id: 'dup-2' })).duplicate).toBe(false);
    const got = await readAll(js, jsm, [subjectFor(PREFIX, 'com.example.dedupe')]);
    expect(got).toHaveLength(2);
  });

  it('pushed-down filter subjects are accepted by JetStream and select a superset', async () => {
    for (const type of [
      'pd.push.a',
      'pd.push.b',
      'pd.pull.c',
      'pd.other.e',
      'pd2.other.d',
      'pd2.x',
    ]) {
      await publish(js, makeEvent({ id: type, source: '/push', type }));
    }
    const filters = [{ any: [{ prefix: { type: 'pd.pu' } }, { exact: { type: 'pd2.other.d' } }] }];
    const subjects = pushdownSubjects(PREFIX, filters);
    expect(subjects).toEqual(['cebinding.pd.>', 'cebinding.pd2.other.d']);
    const got = await readAll(js, jsm, subjects);
    const events = got.flatMap((m) => {
      const r = fromNatsMessage({ headers: m.headers, data: m.data });
      return r.ok ? [r.event] : [];
    });
    expect(events.map((e) => e.type).sort()).toEqual([
      'pd.other.e',
      'pd.pull.c',
      'pd.push.a',
      'pd.push.b',
      'pd2.other.d',
    ]);
    const compiled = compileFilters(filters);
    if (!compiled.ok) throw new Error(compiled.message);
    const passed = events.filter((e) => compiled.filter.matches(e)).map((e) => e.type);
    expect(passed.sort()).toEqual(['pd.pull.c', 'pd.push.a', 'pd.push.b', 'pd2.other.d']);
  });

  it('reads structured-mode messages published by other clients, and flags non-CloudEvents', async () => {
    const body = JSON.stringify({
      specversion: '1.0',
      id: 's1',
      source: '/other',
      type: 'com.example.structured',
      data: { a: 1 },
    });
    const h = natsHeaders();
    h.set('Content-Type', 'application/cloudevents+json');
    await js.publish(subjectFor(PREFIX, 'com.example.structured'), body, { headers: h });
    await js.publish(subjectFor(PREFIX, 'com.example.raw'), '{"not":"an event"}');
    const got = await readAll(js, jsm, [
      `${PREFIX}.com.example.structured`,
      `${PREFIX}.com.example.raw`,
    ]);
    const results = got.map((m) => fromNatsMessage({ headers: m.headers, data: m.data }));
    expect(results[0]?.ok && results[0].event.id).toBe('s1');
    expect(results[1]?.ok === false && results[1].error.reason).toBe('not-a-cloudevent');
  });
});
