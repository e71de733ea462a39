// Hostile input against the ingress and a real nats-server (issue 10): JSON nested thousands of
// levels deep, forged eventwire extensions, attribute values that cannot be NATS headers,
// events at the max_payload boundary, bodies that never end, raw non-UTF-8 header bytes and
// unusual paths. Each gets a 4xx problem naming the field (never a 500 or a retryable 503),
// and nothing reaches the stream.
import { once } from 'node:events';
import { request } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/nats-core';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  binaryHeaders,
  makeEvent,
  natsMsgId,
  toHttpRequest,
  type CloudEvent,
} from '../../../src/cloudevents/index.ts';
import { PublishError, publishEncoded } from '../../../src/ingress/publisher.ts';
import {
  createStream,
  messageCount,
  natsClient,
  post,
  startTestIngress,
  storedMessages,
  unique,
  type Answer,
} from './helpers.ts';

/** The documented limit of JSON nesting in event data (docs/ingress.md). */
const JSON_DEPTH_LIMIT = 64;
const SMALL_BODY = 65_536;

const ok = { 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 't' };
const structured = { 'content-type': 'application/cloudevents+json' };
const batch = { 'content-type': 'application/cloudevents-batch+json' };
const good = { specversion: '1.0', id: '1', source: '/s', type: 't' };

function nested(levels: number): string {
  return '['.repeat(levels) + ']'.repeat(levels);
}

/** The structured text of an event with `data` spliced in as it is. */
function withData(data: string, extra: Record<string, unknown> = {}): string {
  return `${JSON.stringify({ ...good, ...extra }).slice(0, -1)},"data":${data}}`;
}

describe('ingress refuses hostile input', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;
  let small: Awaited<ReturnType<typeof startTestIngress>>;
  const stream = unique('HOSTILE');
  const prefix = unique('hostile');
  const url = () => `${ingress.url}/it/events`;

  beforeAll(async () => {
    ({ nc, jsm } = await natsClient(inject('natsUrl')));
    await createStream(jsm, { name: stream, prefix });
    const env = {
      EVENTWIRE_NATS_URL: inject('natsUrl'),
      EVENTWIRE_INGRESS_STATIC_STREAMS: `it/events=${stream}:${prefix}`,
    };
    ingress = await startTestIngress(env);
    small = await startTestIngress({
      ...env,
      EVENTWIRE_INGRESS_MAX_BODY_BYTES: String(SMALL_BODY),
    });
  });
  afterAll(async () => {
    await small.close();
    await ingress.close();
    await jsm.streams.delete(stream);
    await nc.close();
  });

  /** Posts, and checks a problem answer naming `field` with nothing published. */
  async function refused(
    target: string,
    headers: Record<string, string>,
    body: string | Uint8Array,
  ): Promise<Answer> {
    const before = await messageCount(jsm, stream);
    const answer = await post(target, headers, body);
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(typeof answer.body.fix).toBe('string');
    expect(await messageCount(jsm, stream)).toBe(before);
    return answer;
  }

  describe('JSON nested deeply (items 2 and 9)', () => {
    it('refuses binary JSON data nested 5,000 deep with 400 naming data', async () => {
      const answer = await refused(
        url(),
        { ...ok, 'content-type': 'application/json' },
        nested(5000),
      );
      expect([answer.status, answer.body.field]).toEqual([400, 'data']);
    });

    it('refuses structured and batch data nested 5,000 deep with 400 naming data, not 500', async () => {
      const one = await refused(url(), structured, withData(nested(5000)));
      expect([one.status, one.body.field]).toEqual([400, 'data']);
      const many = await refused(
        url(),
        batch,
        `[${JSON.stringify(good)},${withData(nested(5000))}]`,
      );
      expect([many.status, many.body.field, many.body.index]).toEqual([400, 'data', 1]);
    });

    it(`accepts data nested ${String(JSON_DEPTH_LIMIT)} deep and refuses one level more, in every mode`, async () => {
      const json = { ...ok, 'content-type': 'application/json' };
      expect((await post(url(), json, nested(JSON_DEPTH_LIMIT))).status).toBe(202);
      const deeper = nested(JSON_DEPTH_LIMIT + 1);
      expect((await refused(url(), json, deeper)).status).toBe(400);
      expect((await post(url(), structured, withData(nested(JSON_DEPTH_LIMIT)))).status).toBe(202);
      expect((await refused(url(), structured, withData(deeper))).body.field).toBe('data');
      const list = `[${withData(nested(JSON_DEPTH_LIMIT))},${withData(deeper, { id: '2' })}]`;
      const answer = await refused(url(), batch, list);
      expect([answer.status, answer.body.field, answer.body.index]).toEqual([400, 'data', 1]);
      // other media types are not JSON: their bytes are not scanned
      const octets = { ...ok, 'content-type': 'application/octet-stream' };
      expect((await post(url(), octets, nested(5000))).status).toBe(202);
    });
  });

  describe('forged eventwire extensions (item 5)', () => {
    it('refuses producer events carrying reserved ew* extensions with 400 naming the attribute', async () => {
      const hops = await refused(url(), { ...ok, 'ce-ewhops': '-20' }, '');
      expect([hops.status, hops.body.field]).toEqual([400, 'ewhops']);
      for (const name of [
        'ewerrorcode',
        'ewerrordest',
        'ewerrorreason',
        'ewerrordata',
        'ewattempts',
        'ewsubscription',
        'ewnatssubject',
      ]) {
        const answer = await refused(url(), structured, JSON.stringify({ ...good, [name]: 'x' }));
        expect([answer.status, answer.body.field], name).toEqual([400, name]);
      }
      const list = JSON.stringify([good, { ...good, id: '2', ewhops: 3 }]);
      const answer = await refused(url(), batch, list);
      expect([answer.status, answer.body.field, answer.body.index]).toEqual([400, 'ewhops', 1]);
      // names that merely start with "ew" are the producer's own
      expect((await post(url(), { ...ok, 'ce-ewallet': 'x' }, '')).status).toBe(202);
    });
  });

  describe('values that cannot be NATS headers (item 9)', () => {
    it('refuses a datacontenttype with CR/LF with 400 naming it (structured and batch)', async () => {
      const body = { ...good, datacontenttype: 'application/json\r\n', data: { a: 1 } };
      const one = await refused(url(), structured, JSON.stringify(body));
      expect([one.status, one.body.field]).toEqual([400, 'datacontenttype']);
      const many = await refused(url(), batch, JSON.stringify([good, body]));
      expect([many.status, many.body.field, many.body.index]).toEqual([400, 'datacontenttype', 1]);
      const tab = await refused(
        url(),
        structured,
        JSON.stringify({ ...body, datacontenttype: 'a/b;\u0001' }),
      );
      expect([tab.status, tab.body.field]).toEqual([400, 'datacontenttype']);
    });

    it('stores CR/LF and other control characters in other attributes percent-encoded', async () => {
      const id = unique('crlf');
      const event = { ...good, id, subject: 'a\r\nb', ext: 'x\ny', traceparent: 'c\rd' };
      expect((await post(url(), structured, JSON.stringify(event))).status).toBe(202);
      const stored = (await storedMessages(jsm, stream)).find((m) => m.header.get('ce-id') === id);
      expect(stored?.header.get('ce-subject')).toBe('a%0D%0Ab');
      expect(stored?.header.get('ce-ext')).toBe('x%0Ay');
    });
  });

  describe('the max_payload boundary (item 10)', () => {
    /** The size NATS compares with max_payload: payload and the whole header block as sent. */
    function sizeOnTheWire(event: CloudEvent, streamName: string): number {
      let block = 'NATS/1.0';
      const all = {
        ...binaryHeaders(event),
        'Nats-Msg-Id': natsMsgId(event),
        'Nats-Expected-Stream': streamName,
      };
      for (const [name, value] of Object.entries(all)) block += `\r\n${name}: ${value}`;
      return Buffer.byteLength(`${block}\r\n\r\n`) + (event.data?.length ?? 0);
    }

    it('answers 413, not 503, to an event a few bytes over max_payload with its headers', async () => {
      const max = nc.info?.max_payload ?? 0;
      expect(max).toBeGreaterThan(0);
      const base = makeEvent({
        id: 'big',
        source: '/s',
        type: 't',
        datacontenttype: 'application/octet-stream',
      });
      // every size from one byte over the limit to just over the stream-expectation header
      for (const over of [1, 20, 2 + 'Nats-Expected-Stream: '.length + stream.length]) {
        const empty = { ...base, id: `big-${String(over)}` };
        const length = max + over - sizeOnTheWire(empty, stream);
        const event = { ...empty, data: new Uint8Array(length) };
        expect(sizeOnTheWire(event, stream)).toBe(max + over);
        const req = toHttpRequest(event, 'binary');
        const answer = await refused(url(), req.headers, req.body);
        expect([answer.status, answer.body.field, answer.headers.get('retry-after')]).toEqual([
          413,
          'data',
          null,
        ]);
      }
    });

    it('answers 413 naming the attribute when the NATS headers exceed the 64 KiB header limit of JetStream, not 503', async () => {
      for (const member of ['source', 'subject', 'myext']) {
        const event = { ...good, id: unique('hdr'), [member]: 'x'.repeat(70_000) };
        const one = await refused(url(), structured, JSON.stringify(event));
        expect([one.status, one.body.field, one.headers.get('retry-after')], member).toEqual([
          413,
          member,
          null,
        ]);
      }
      // many attributes, none large alone: the largest is named
      const spread = Object.fromEntries(
        Array.from({ length: 10 }, (_, i) => [`ext${String(i)}`, 'y'.repeat(7_000 + i)]),
      );
      const many = await refused(url(), batch, JSON.stringify([good, { ...good, ...spread }]));
      expect([many.status, many.body.field, many.body.index]).toEqual([413, 'ext9', 1]);
    });

    it('classifies the header-size error of JetStream for a publish as too-large (permanent)', async () => {
      const h = natsHeaders();
      h.append('ce-source', 'x'.repeat(70_000));
      const message = {
        subject: `${prefix}.t`,
        data: new Uint8Array(1),
        headers: h,
        msgID: 'hdr',
        size: 1,
        headerSize: 1, // a wrong computation
      };
      const failure = await publishEncoded(jetstream(nc), stream, [message], 5000).catch(
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(PublishError);
      expect([(failure as PublishError).kind, (failure as PublishError).transient]).toEqual([
        'too-large',
        false,
      ]);
    });

    it('classifies the client max_payload error of a publish as too-large (permanent), whatever the computed size', async () => {
      const max = nc.info?.max_payload ?? 0;
      const h = natsHeaders();
      h.append('ce-specversion', '1.0');
      const message = {
        subject: `${prefix}.t`,
        data: new Uint8Array(max),
        headers: h,
        msgID: 'too-large-anyway',
        size: 1, // a wrong computation
        headerSize: 1,
      };
      const failure = await publishEncoded(jetstream(nc), stream, [message], 5000).catch(
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(PublishError);
      expect([(failure as PublishError).kind, (failure as PublishError).transient]).toEqual([
        'too-large',
        false,
      ]);
    });
  });

  describe('bodies that never end (item 11)', () => {
    interface Flood {
      readonly response: string;
      readonly written: number;
      readonly closed: boolean;
    }

    /**
     * Sends `head` then writes the body in 64 KiB pieces (chunk-framed when `chunked`) until
     * the server closes the connection or `cap` bytes were written.
     */
    async function flood(
      port: number,
      head: string,
      chunked: boolean,
      cap: number,
    ): Promise<Flood> {
      const socket = connectTcp(port, '127.0.0.1');
      await once(socket, 'connect');
      let response = '';
      const state = { closed: false };
      socket.on('data', (c: Buffer) => (response += c.toString('latin1')));
      socket.on('error', () => undefined); // EPIPE / ECONNRESET: the server closed, as wanted
      // not events.once: it rejects on the socket's 'error' (EPIPE), which is expected here
      const gone = new Promise<void>((resolve) => {
        socket.once('close', () => {
          state.closed = true;
          resolve();
        });
      });
      socket.write(head);
      const piece = Buffer.alloc(65_536, 0x61);
      const frame = chunked
        ? Buffer.concat([
            Buffer.from(`${piece.length.toString(16)}\r\n`),
            piece,
            Buffer.from('\r\n'),
          ])
        : piece;
      let written = 0;
      while (!state.closed && written < cap) {
        const more = socket.write(frame);
        written += frame.length;
        if (!more) {
          const stall = new Promise((resolve) => setTimeout(resolve, 10_000));
          const drained = new Promise((resolve) => socket.once('drain', resolve));
          await Promise.race([drained, gone, stall]);
        }
      }
      const closedByServer = state.closed && written < cap;
      socket.destroy();
      await gone;
      return { response, written, closed: closedByServer };
    }

    const CAP = 512 * 1_048_576;

    const ce = 'ce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\n';
    it.each([
      {
        what: '413 to a chunked body, and stops reading it',
        server: () => small,
        head: `POST /it/events HTTP/1.1\r\nhost: x\r\n${ce}transfer-encoding: chunked\r\n\r\n`,
        chunked: true,
        status: 413,
      },
      {
        what: '413 to a declared 2 GiB body, without reading it',
        server: () => ingress,
        head: `POST /it/events HTTP/1.1\r\nhost: x\r\n${ce}content-length: ${String(2 ** 31)}\r\n\r\n`,
        chunked: false,
        status: 413,
      },
      {
        what: 'an answer given before the body was read (404)',
        server: () => ingress,
        head: `POST /it/nope HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\ncontent-length: ${String(2 ** 31)}\r\n\r\n`,
        chunked: false,
        status: 404,
      },
    ])('closes the connection after $what', async ({ server, head, chunked, status }) => {
      const result = await flood(server().port, head, chunked, CAP);
      expect(result.response).toMatch(new RegExp(`^HTTP/1\\.1 ${String(status)} `));
      expect(result.response.toLowerCase()).toContain('connection: close');
      expect(result.closed, `${String(result.written)} bytes written`).toBe(true);
      expect(result.written).toBeLessThan(64 * 1_048_576);
    });
  });

  describe('raw header bytes and paths (item 12)', () => {
    /** node:http sends header values as latin1: one byte per character. */
    function rawPost(path: string, headers: Record<string, string>): Promise<Answer> {
      return new Promise((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: ingress.port, path, method: 'POST', headers },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => {
              resolve({
                status: res.statusCode ?? 0,
                headers: new Headers(res.headers as Record<string, string>),
                body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
              });
            });
          },
        );
        req.on('error', reject);
        req.end();
      });
    }

    it('refuses raw bytes 0xFF 0xFE in ce-source with 400 naming source', async () => {
      const before = await messageCount(jsm, stream);
      const answer = await rawPost('/it/events', { ...ok, 'ce-source': '/\u00ff\u00fe' });
      expect([answer.status, answer.body.field, answer.body.reason]).toEqual([
        400,
        'source',
        'bad-encoding',
      ]);
      expect(await messageCount(jsm, stream)).toBe(before);
    });

    it('reads raw UTF-8 bytes in a header as UTF-8 (stored percent-encoded)', async () => {
      const id = unique('utf8');
      const source = Buffer.from('/café', 'utf8').toString('latin1');
      const answer = await rawPost('/it/events', { ...ok, 'ce-id': id, 'ce-source': source });
      expect(answer.status).toBe(202);
      const stored = (await storedMessages(jsm, stream)).find((m) => m.header.get('ce-id') === id);
      expect(stored?.header.get('ce-source')).toBe('/caf%C3%A9');
    });

    it('refuses a trailing slash and percent-encoded paths with 404, ignores a query string', async () => {
      for (const path of [
        '/it/events/',
        '/it/ev%65nts',
        '/%69t/events',
        '/it/%zz',
        '/it/events/x',
      ]) {
        const answer = await refused(`${ingress.url}${path}`, ok, '');
        expect([answer.status, answer.body.field], path).toEqual([404, 'path']);
      }
      expect((await post(`${url()}?x=1`, ok, '')).status).toBe(202);
      // Express used to decode such a segment for its route and fail with a 500
      expect((await fetch(`${ingress.url}/it/%zz`)).status).toBe(404);
      expect((await fetch(`${ingress.url}/it/events`)).status).toBe(405);
    });

    it('stores the JSON data of structured and batch events as sent: big integers stay exact', async () => {
      const id = unique('bigint');
      const data = '{"order": 12345678901234567890, "total": 1e400}';
      const one = withData(data, { id, datacontenttype: 'application/json' });
      expect((await post(url(), structured, one)).status).toBe(202);
      const list = `[${withData('98765432109876543210', { id: `${id}-b` })}]`;
      expect((await post(url(), batch, list)).status).toBe(202);
      const stored = await storedMessages(jsm, stream);
      const byId = (want: string) => stored.find((m) => m.header.get('ce-id') === want);
      expect(new TextDecoder().decode(byId(id)?.data)).toBe(data);
      expect(new TextDecoder().decode(byId(`${id}-b`)?.data)).toBe('98765432109876543210');
    });

    it('refuses an extension named __proto__ instead of dropping it', async () => {
      const answer = await refused(
        url(),
        structured,
        '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":"x"}',
      );
      expect([answer.status, answer.body.field]).toEqual([400, '__proto__']);
    });
  });
});
