// The ingress against a real nats-server: events sent in binary, structured and batch mode
// arrive in JetStream on <prefix>.enc(type) in the NATS binary binding with Nats-Msg-Id, and
// the dispatcher's decoder (fromNatsMessage) reads them back equal. Also: 405/404 answers,
// /healthz, /readyz and the request metrics.
import type { JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  eventsEqual,
  fromNatsMessage,
  makeEvent,
  natsMsgId,
  toHttpBatchRequest,
  toHttpRequest,
  type CloudEvent,
} from '../../../src/cloudevents/index.ts';
import { SAMPLE_EVENTS } from '../../../src/cloudevents/samples.ts';
import { subjectFor } from '../../../src/jetstream/subject.ts';
import {
  createStream,
  natsClient,
  post,
  startTestIngress,
  storedMessages,
  unique,
} from './helpers.ts';

const NS = 'modes';
const NAME = 'events';

/** Samples made unique to one test, so stored messages can be told apart. */
function uniqueEvents(tag: string): CloudEvent[] {
  return SAMPLE_EVENTS.map((e) => ({ ...e, id: `${e.id}-${tag}` }));
}

describe('ingress publishing modes', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;
  const stream = unique('MODES');
  const prefix = unique('modes');
  const url = `/${NS}/${NAME}`;

  beforeAll(async () => {
    ({ nc, jsm } = await natsClient(inject('natsUrl')));
    await createStream(jsm, { name: stream, prefix });
    ingress = await startTestIngress({
      EVENTWIRE_NATS_URL: inject('natsUrl'),
      EVENTWIRE_INGRESS_STATIC_STREAMS: `${NS}/${NAME}=${stream}:${prefix}`,
    });
  });
  afterAll(async () => {
    await ingress.close();
    await jsm.streams.delete(stream);
    await nc.close();
  });

  async function storedFor(events: readonly CloudEvent[]): Promise<Map<string, StoredMsg>> {
    const wanted = new Set(events.map(natsMsgId));
    const out = new Map<string, StoredMsg>();
    for (const m of await storedMessages(jsm, stream)) {
      const id = m.header.get('Nats-Msg-Id');
      if (wanted.has(id)) out.set(id, m);
    }
    return out;
  }

  function expectStoredAsSent(events: readonly CloudEvent[], stored: Map<string, StoredMsg>) {
    expect(stored.size).toBe(events.length);
    for (const event of events) {
      const msg = stored.get(natsMsgId(event));
      if (msg === undefined) throw new Error(`event ${event.id} was not stored`);
      expect(msg.subject).toBe(subjectFor(prefix, event.type));
      expect(msg.header.get('ce-specversion')).toBe('1.0');
      expect(msg.header.get('ce-type')).not.toBe('');
      if (event.datacontenttype !== undefined) {
        expect(msg.header.get('content-type')).toBe(event.datacontenttype);
      }
      const decoded = fromNatsMessage({ headers: msg.header, data: msg.data });
      if (!decoded.ok) throw decoded.error;
      expect(eventsEqual(decoded.event, event), `event ${event.id} read back equal`).toBe(true);
    }
  }

  it('accepts binary mode and stores each event in the NATS binary binding', async () => {
    const events = uniqueEvents('binary');
    for (const event of events) {
      const req = toHttpRequest(event, 'binary');
      const answer = await post(ingress.url + url, req.headers, req.body);
      expect(answer.status, JSON.stringify(answer.body)).toBe(202);
      expect(answer.body).toEqual({ events: 1, duplicates: 0 });
    }
    expectStoredAsSent(events, await storedFor(events));
  });

  it('accepts structured mode', async () => {
    const events = uniqueEvents('structured');
    for (const event of events) {
      const req = toHttpRequest(event, 'structured');
      const answer = await post(ingress.url + url, req.headers, req.body);
      expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    }
    expectStoredAsSent(events, await storedFor(events));
  });

  it('accepts a batch and stores every event of it', async () => {
    const events = uniqueEvents('batch');
    const req = toHttpBatchRequest(events);
    const answer = await post(ingress.url + url, req.headers, req.body);
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    expect(answer.body).toEqual({ events: events.length, duplicates: 0 });
    expectStoredAsSent(events, await storedFor(events));
  });

  it('accepts an empty batch and publishes nothing', async () => {
    const before = (await jsm.streams.info(stream)).state.messages;
    const answer = await post(
      ingress.url + url,
      { 'content-type': 'application/cloudevents-batch+json' },
      '[]',
    );
    expect(answer.status).toBe(202);
    expect((await jsm.streams.info(stream)).state.messages).toBe(before);
  });

  it('encodes types with characters NATS subjects forbid, and keeps the type in ce-type', async () => {
    const events = ['a b.*.>', '..x', 'caf\u00e9 100%', 'tab\there', '$SYS.x'].map((type, i) =>
      makeEvent({ id: `forbidden-${String(i)}`, source: '/modes', type }),
    );
    for (const event of events) {
      const req = toHttpRequest(event, 'binary');
      const answer = await post(ingress.url + url, req.headers, req.body);
      expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    }
    const stored = await storedFor(events);
    expectStoredAsSent(events, stored);
    for (const msg of stored.values()) expect(msg.subject).not.toMatch(/[\s*>]|\.\./);
  });

  it('answers 405 to other methods and 404 with a problem body to other paths', async () => {
    const get = await fetch(`${ingress.url}${url}`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const other = await post(`${ingress.url}/only-one-segment`, {}, '');
    expect(other.status).toBe(404);
    expect(other.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(other.body.field).toBe('path');
    const unknown = await post(`${ingress.url}/${NS}/nope`, { 'ce-specversion': '1.0' }, '');
    expect(unknown.status).toBe(404);
    expect(unknown.body.field).toBe('stream');
  });

  it('serves /healthz, /readyz and metrics by status code with a latency histogram', async () => {
    expect((await fetch(`${ingress.opsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${ingress.opsUrl}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${ingress.opsUrl}/metrics`)).text();
    expect(metrics).toMatch(/eventwire_ingress_requests_total\{code="202"\} [1-9]/);
    expect(metrics).toMatch(/eventwire_ingress_requests_total\{code="404"\} [1-9]/);
    expect(metrics).toMatch(
      /eventwire_ingress_request_duration_seconds_bucket\{le="\+Inf",code="202"\} [1-9]/,
    );
    expect(metrics).toMatch(/eventwire_ingress_events_total\{outcome="stored"\} [1-9]/);
  });
});
