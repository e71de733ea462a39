// A table of malformed requests against a real nats-server: each gets the documented status
// and a problem body naming the bad field, and nothing reaches the stream.
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { StaticStreamDirectory, type StreamDirectory } from '../../../src/ingress/streams.ts';
import {
  createStream,
  messageCount,
  natsClient,
  post,
  startTestIngress,
  unique,
} from './helpers.ts';

const MAX_BODY = 65_536;
const MAX_MSG = 4_096;

interface Row {
  readonly name: string;
  readonly path?: string;
  readonly headers: Record<string, string>;
  readonly body: string | Uint8Array;
  readonly status: number;
  readonly field: string;
  readonly index?: number;
}

const ok = { 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 't' };
const structured = { 'content-type': 'application/cloudevents+json' };
const batch = { 'content-type': 'application/cloudevents-batch+json' };
const good = { specversion: '1.0', id: '1', source: '/s', type: 't' };

function without(key: string): Record<string, string> {
  return Object.fromEntries(Object.entries(ok).filter(([k]) => k !== key));
}

function json(value: unknown): string {
  return JSON.stringify(value);
}

const rows: Row[] = [
  // binary mode
  { name: 'binary: missing ce-id', headers: without('ce-id'), body: '', status: 400, field: 'id' },
  {
    name: 'binary: missing ce-source',
    headers: without('ce-source'),
    body: '',
    status: 400,
    field: 'source',
  },
  {
    name: 'binary: missing ce-type',
    headers: without('ce-type'),
    body: '',
    status: 400,
    field: 'type',
  },
  {
    name: 'binary: no ce-specversion, not a CloudEvent',
    headers: { ...without('ce-specversion'), 'content-type': 'application/json' },
    body: '{}',
    status: 400,
    field: 'specversion',
  },
  {
    name: 'binary: specversion 0.3',
    headers: { ...ok, 'ce-specversion': '0.3' },
    body: '',
    status: 400,
    field: 'specversion',
  },
  {
    name: 'binary: specversion 2.0',
    headers: { ...ok, 'ce-specversion': '2.0' },
    body: '',
    status: 400,
    field: 'specversion',
  },
  {
    name: 'binary: empty ce-id',
    headers: { ...ok, 'ce-id': '' },
    body: '',
    status: 400,
    field: 'id',
  },
  {
    name: 'binary: bad percent-encoding',
    headers: { ...ok, 'ce-id': 'a%zz' },
    body: '',
    status: 400,
    field: 'id',
  },
  {
    name: 'binary: percent-encoded bytes not UTF-8',
    headers: { ...ok, 'ce-source': '/%FF' },
    body: '',
    status: 400,
    field: 'source',
  },
  {
    name: 'binary: time not RFC 3339',
    headers: { ...ok, 'ce-time': 'yesterday' },
    body: '',
    status: 400,
    field: 'time',
  },
  {
    name: 'binary: content-type not a media type',
    headers: { ...ok, 'content-type': 'json' },
    body: '{}',
    status: 400,
    field: 'datacontenttype',
  },
  {
    name: 'binary: extension name with underscore',
    headers: { ...ok, 'ce-bad_ext': 'x' },
    body: '',
    status: 400,
    field: 'bad_ext',
  },
  {
    name: 'binary: extension name with dash',
    headers: { ...ok, 'ce-my-ext': 'x' },
    body: '',
    status: 400,
    field: 'my-ext',
  },
  {
    name: 'binary: extension named data (reserved)',
    headers: { ...ok, 'ce-data': 'x' },
    body: '',
    status: 400,
    field: 'data',
  },
  {
    name: 'binary: JSON content type, data not JSON',
    headers: { ...ok, 'content-type': 'application/json' },
    body: '{"a":',
    status: 400,
    field: 'data',
  },
  {
    name: 'binary: UTF-8 text content type, data not UTF-8',
    headers: { ...ok, 'content-type': 'text/plain; charset=utf-8' },
    body: new Uint8Array([0x68, 0xff, 0xfe]),
    status: 400,
    field: 'data',
  },
  {
    name: 'binary: empty ce-type',
    headers: { ...ok, 'ce-type': '' },
    body: '',
    status: 400,
    field: 'type',
  },
  {
    name: 'binary: type too long for a NATS subject',
    headers: { ...ok, 'ce-type': 'x'.repeat(3100) },
    body: '',
    status: 400,
    field: 'type',
  },
  {
    name: 'binary: type not UTF-8 (lone surrogate bytes)',
    headers: { ...ok, 'ce-type': '%ED%A0%80' },
    body: '',
    status: 400,
    field: 'type',
  },
  // structured mode
  {
    name: 'structured: bad JSON',
    headers: structured,
    body: '{"specversion":',
    status: 400,
    field: 'body',
  },
  {
    name: 'structured: a JSON array',
    headers: structured,
    body: json([good]),
    status: 400,
    field: 'body',
  },
  {
    name: 'structured: body not UTF-8',
    headers: structured,
    body: new Uint8Array([0x7b, 0xff, 0x7d]),
    status: 400,
    field: 'body',
  },
  {
    name: 'structured: missing id',
    headers: structured,
    body: json({ ...good, id: undefined }),
    status: 400,
    field: 'id',
  },
  {
    name: 'structured: missing source',
    headers: structured,
    body: json({ ...good, source: undefined }),
    status: 400,
    field: 'source',
  },
  {
    name: 'structured: missing type',
    headers: structured,
    body: json({ ...good, type: undefined }),
    status: 400,
    field: 'type',
  },
  {
    name: 'structured: missing specversion',
    headers: structured,
    body: json({ ...good, specversion: undefined }),
    status: 400,
    field: 'specversion',
  },
  {
    name: 'structured: specversion 0.3',
    headers: structured,
    body: json({ ...good, specversion: '0.3' }),
    status: 400,
    field: 'specversion',
  },
  {
    name: 'structured: id is a number',
    headers: structured,
    body: json({ ...good, id: 5 }),
    status: 400,
    field: 'id',
  },
  {
    name: 'structured: data and data_base64',
    headers: structured,
    body: json({ ...good, data: 1, data_base64: 'AA==' }),
    status: 400,
    field: 'data',
  },
  {
    name: 'structured: data_base64 not base64',
    headers: structured,
    body: json({ ...good, data_base64: '***' }),
    status: 400,
    field: 'data_base64',
  },
  {
    name: 'structured: upper-case extension name',
    headers: structured,
    body: json({ ...good, myExt: 'x' }),
    status: 400,
    field: 'myExt',
  },
  {
    name: 'structured: extension value an object',
    headers: structured,
    body: json({ ...good, ext: { a: 1 } }),
    status: 400,
    field: 'ext',
  },
  {
    name: 'structured: type is a lone surrogate',
    headers: structured,
    body: '{"specversion":"1.0","id":"1","source":"/s","type":"\\ud800"}',
    status: 400,
    field: 'type',
  },
  {
    name: 'structured: JSON datacontenttype, data_base64 not JSON',
    headers: structured,
    body: json({
      ...good,
      datacontenttype: 'application/json',
      data_base64: Buffer.from('nope{').toString('base64'),
    }),
    status: 400,
    field: 'data',
  },
  {
    name: 'structured: time not RFC 3339',
    headers: structured,
    body: json({ ...good, time: '2024-13' }),
    status: 400,
    field: 'time',
  },
  // batch
  {
    name: 'batch: one bad event (missing source) at index 1',
    headers: batch,
    body: json([good, { ...good, id: '2', source: undefined }]),
    status: 400,
    field: 'source',
    index: 1,
  },
  {
    name: 'batch: one event with a bad extension name at index 2',
    headers: batch,
    body: json([good, { ...good, id: '2' }, { ...good, id: '3', 'a-b': 'x' }]),
    status: 400,
    field: 'a-b',
    index: 2,
  },
  { name: 'batch: not an array', headers: batch, body: json(good), status: 400, field: 'body' },
  { name: 'batch: bad JSON', headers: batch, body: '[{', status: 400, field: 'body' },
  {
    name: 'batch: one event too large for the stream',
    headers: batch,
    body: json([good, { ...good, id: '2', data: 'x'.repeat(MAX_MSG) }]),
    status: 413,
    field: 'data',
    index: 1,
  },
  // content types and sizes
  {
    name: 'content type application/cloudevents+xml',
    headers: { 'content-type': 'application/cloudevents+xml' },
    body: '<e/>',
    status: 415,
    field: 'content-type',
  },
  {
    name: 'content type application/cloudevents+protobuf',
    headers: { 'content-type': 'application/cloudevents+protobuf' },
    body: 'x',
    status: 415,
    field: 'content-type',
  },
  {
    name: 'plain text, not a CloudEvent',
    headers: { 'content-type': 'text/plain' },
    body: 'hello',
    status: 400,
    field: 'specversion',
  },
  {
    name: 'unsupported content-encoding',
    headers: { ...ok, 'content-encoding': 'compress' },
    body: 'x',
    status: 415,
    field: 'content-encoding',
  },
  {
    name: 'body larger than the limit',
    headers: ok,
    body: new Uint8Array(MAX_BODY + 1),
    status: 413,
    field: 'body',
  },
  {
    name: 'event larger than the stream allows',
    headers: { ...ok, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(MAX_MSG),
    status: 413,
    field: 'data',
  },
  // streams and namespaces
  { name: 'unknown stream', path: '/it/nope', headers: ok, body: '', status: 404, field: 'stream' },
  {
    name: 'invalid namespace in the path',
    path: '/Not_A_Namespace/events',
    headers: ok,
    body: '',
    status: 404,
    field: 'stream',
  },
  {
    name: 'stream that does not allow producers of unknown namespaces',
    path: '/it/restricted',
    headers: ok,
    body: '',
    status: 403,
    field: 'namespace',
  },
];

describe('ingress rejects malformed requests and publishes nothing', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;
  const stream = unique('BAD');
  const prefix = unique('bad');

  beforeAll(async () => {
    ({ nc, jsm } = await natsClient(inject('natsUrl')));
    await createStream(jsm, { name: stream, prefix, maxMsgSize: MAX_MSG });
    const directory: StreamDirectory = new StaticStreamDirectory([
      {
        namespace: 'it',
        name: 'events',
        streamName: stream,
        subjectPrefix: prefix,
        maxMsgSize: MAX_MSG,
      },
      {
        namespace: 'it',
        name: 'restricted',
        streamName: stream,
        subjectPrefix: prefix,
        allowedNamespaces: ['billing'],
      },
    ]);
    ingress = await startTestIngress(
      { EVENTWIRE_NATS_URL: inject('natsUrl'), EVENTWIRE_INGRESS_MAX_BODY_BYTES: String(MAX_BODY) },
      { streams: directory },
    );
  });
  afterAll(async () => {
    await ingress.close();
    await jsm.streams.delete(stream);
    await nc.close();
  });

  it('has at least 30 rows', () => {
    expect(rows.length).toBeGreaterThanOrEqual(30);
  });

  it.each(rows)('$name → $status ($field)', async (row) => {
    const before = await messageCount(jsm, stream);
    const answer = await post(ingress.url + (row.path ?? '/it/events'), row.headers, row.body);
    expect(answer.status, JSON.stringify(answer.body)).toBe(row.status);
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(answer.body).toMatchObject({ status: row.status, field: row.field });
    expect(typeof answer.body.detail).toBe('string');
    expect(typeof answer.body.fix).toBe('string');
    expect(typeof answer.body.title).toBe('string');
    expect(answer.body.type).toMatch(/^https:\/\/eventwire\.io\/problems\//);
    if (row.index !== undefined) expect(answer.body.index).toBe(row.index);
    expect(await messageCount(jsm, stream)).toBe(before);
  });

  it('still accepts a valid event afterwards (the table did not break the stream)', async () => {
    const before = await messageCount(jsm, stream);
    const answer = await post(`${ingress.url}/it/events`, ok, '');
    expect(answer.status).toBe(202);
    expect(await messageCount(jsm, stream)).toBe(before + 1);
  });
});
