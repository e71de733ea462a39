// `eventwire publish` against a real nats-server and ingress: through the ingress and
// straight to JetStream give the same stored encoding; every wrong argument is a usage error
// (exit 2) naming the option.
import { Writable } from 'node:stream';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { fromNatsMessage } from '../../../src/cloudevents/index.ts';
import { runPublish } from '../../../src/cli/publish.ts';
import { createStream, natsClient, startTestIngress, storedMessages, unique } from './helpers.ts';

function capture(): { out: Writable; text: () => string } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { out, text: () => text };
}

async function publish(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const { out, text } = capture();
  const code = await runPublish(argv, env, out);
  return { code, text: text() };
}

describe('eventwire publish', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;
  const viaHttp = { stream: unique('PUBHTTP'), prefix: unique('pubhttp') };
  const viaNats = { stream: unique('PUBNATS'), prefix: unique('pubnats') };

  beforeAll(async () => {
    ({ nc, jsm } = await natsClient(inject('natsUrl')));
    await createStream(jsm, { name: viaHttp.stream, prefix: viaHttp.prefix });
    await createStream(jsm, { name: viaNats.stream, prefix: viaNats.prefix });
    ingress = await startTestIngress({
      EVENTWIRE_NATS_URL: inject('natsUrl'),
      EVENTWIRE_INGRESS_STATIC_STREAMS: `cli/events=${viaHttp.stream}:${viaHttp.prefix}`,
    });
  });
  afterAll(async () => {
    await ingress.close();
    await jsm.streams.delete(viaHttp.stream);
    await jsm.streams.delete(viaNats.stream);
    await nc.close();
  });

  const eventArgs = [
    '--source',
    '/cli test',
    '--type',
    'com.example.cli sent',
    '--id',
    'cli-1',
    '--subject',
    'café',
    '--time',
    '2024-05-01T12:00:00Z',
    '--datacontenttype',
    'application/json',
    '--data',
    '{"a":1}',
    '--ext',
    'partitionkey=k 1',
  ];

  it('sends through the ingress and straight to JetStream with the same encoding', async () => {
    const http = await publish([...eventArgs, '--url', `${ingress.url}/cli/events`]);
    expect(http.code, http.text).toBe(0);
    expect(JSON.parse(http.text)).toMatchObject({ status: 202, id: 'cli-1' });
    const direct = await publish([
      ...eventArgs,
      '--nats',
      '--nats-url',
      inject('natsUrl'),
      '--subject-prefix',
      viaNats.prefix,
      '--stream',
      viaNats.stream,
    ]);
    expect(direct.code, direct.text).toBe(0);
    expect(JSON.parse(direct.text)).toMatchObject({ stream: viaNats.stream, duplicate: false });

    const [a] = await storedMessages(jsm, viaHttp.stream);
    const [b] = await storedMessages(jsm, viaNats.stream);
    if (a === undefined || b === undefined) throw new Error('an event was not stored');
    expect(a.subject.slice(viaHttp.prefix.length)).toBe(b.subject.slice(viaNats.prefix.length));
    // the same headers, except the stream each was published to (Nats-Expected-Stream)
    const headersOf = (h: typeof a.header) =>
      Object.fromEntries(
        h
          .keys()
          .filter((k) => k !== 'Nats-Expected-Stream')
          .map((k) => [k, h.get(k)]),
      );
    expect(headersOf(a.header)).toEqual(headersOf(b.header));
    expect(Buffer.from(a.data).toString()).toBe(Buffer.from(b.data).toString());
    const decoded = fromNatsMessage({ headers: b.header, data: b.data });
    expect(decoded.ok && decoded.event.extensions.partitionkey).toBe('k 1');
  });

  it('reports a duplicate sent straight to JetStream', async () => {
    const args = [
      '--source',
      '/cli',
      '--type',
      't',
      '--id',
      'dup',
      '--nats',
      '--nats-url',
      inject('natsUrl'),
      '--subject-prefix',
      viaNats.prefix,
    ];
    expect((await publish(args)).code).toBe(0);
    const again = await publish(args);
    expect(JSON.parse(again.text)).toMatchObject({ duplicate: true });
  });

  it('exits 1 with the problem when the ingress refuses the event', async () => {
    const refused = await publish([
      '--source',
      '/s',
      '--type',
      't',
      '--url',
      `${ingress.url}/cli/unknown`,
    ]);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.text)).toMatchObject({ status: 404, answer: { field: 'stream' } });
  });

  it('prints help', async () => {
    const help = await publish(['--help']);
    expect(help.code).toBe(0);
    expect(help.text).toContain('Usage: eventwire publish');
  });

  const url = 'http://127.0.0.1:1/ns/stream';
  const usage: [string, string[], string][] = [
    ['no destination', ['--source', '/s', '--type', 't'], '--url'],
    [
      'both destinations',
      ['--source', '/s', '--type', 't', '--url', url, '--nats', '--subject-prefix', 'p'],
      '--nats',
    ],
    [
      '--nats without --subject-prefix',
      ['--source', '/s', '--type', 't', '--nats'],
      '--subject-prefix',
    ],
    [
      'bad subject prefix',
      ['--source', '/s', '--type', 't', '--nats', '--subject-prefix', 'a b'],
      '--subject-prefix',
    ],
    [
      '--stream with --url',
      ['--source', '/s', '--type', 't', '--url', url, '--stream', 'S'],
      '--stream',
    ],
    [
      '--token-file with --nats',
      ['--source', '/s', '--type', 't', '--nats', '--subject-prefix', 'p', '--token-file', 'x'],
      '--token-file',
    ],
    ['unknown mode', ['--source', '/s', '--type', 't', '--url', url, '--mode', 'xml'], '--mode'],
    ['missing --source', ['--type', 't', '--url', url], '--source'],
    ['missing --type', ['--source', '/s', '--url', url], '--type'],
    ['bad --ext', ['--source', '/s', '--type', 't', '--url', url, '--ext', 'novalue'], '--ext'],
    [
      'bad extension name',
      ['--source', '/s', '--type', 't', '--url', url, '--ext', 'Bad=1'],
      'Bad',
    ],
    ['bad --time', ['--source', '/s', '--type', 't', '--url', url, '--time', 'yesterday'], 'time'],
    [
      'JSON data that is not JSON',
      [
        '--source',
        '/s',
        '--type',
        't',
        '--url',
        url,
        '--datacontenttype',
        'application/json',
        '--data',
        '{',
      ],
      'data',
    ],
    [
      '--data and --data-file',
      ['--source', '/s', '--type', 't', '--url', url, '--data', 'a', '--data-file', 'b'],
      '--data-file',
    ],
    [
      'missing --data-file',
      ['--source', '/s', '--type', 't', '--url', url, '--data-file', '/nonexistent/x'],
      '--data-file',
    ],
    [
      'bad --timeout',
      ['--source', '/s', '--type', 't', '--url', url, '--timeout', 'soon'],
      '--timeout',
    ],
    ['bad --url', ['--source', '/s', '--type', 't', '--url', 'ftp://x/y'], '--url'],
    ['unknown option', ['--source', '/s', '--type', 't', '--url', url, '--colour'], '--colour'],
    ['option without its value', ['--source'], '--source'],
    ['a positional argument', ['--source', '/s', '--type', 't', '--url', url, 'extra'], 'extra'],
  ];
  it.each(usage)('usage error: %s', async (_name, argv, mentions) => {
    const result = await publish(argv);
    expect(result.code, result.text).toBe(2);
    expect(result.text).toContain(mentions);
    expect(result.text).toContain('eventwire publish --help');
  });
});
