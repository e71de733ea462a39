// `eventwire publish`: sends one CloudEvent through the ingress (HTTP, binary or structured
// mode) or straight to JetStream with the same NATS encoding the ingress uses.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { parseDuration } from '../api/duration.ts';
import {
  makeEvent,
  toHttpRequest,
  validateEvent,
  type CloudEvent,
  type HttpFormat,
} from '../cloudevents/index.ts';
import { parseNatsConfig } from '../config/nats.ts';
import { PublishError, publishEvents } from '../ingress/publisher.ts';
import { checkData, checkSubject } from '../ingress/validate.ts';
import { connectNats } from '../jetstream/connection.ts';
import { isValidSubject } from '../jetstream/subject.ts';
import { silentLogger } from '../observability/logger.ts';

export const PUBLISH_USAGE = `Usage: eventwire publish --source SRC --type TYPE [event options] (--url URL | --nats ...)

Sends one CloudEvent and waits until it is stored. Exit code 0 when it was accepted
(202, or a JetStream PubAck), 1 when it was refused or could not be sent, 2 for usage errors.

Where to send (one of):
  --url URL               the ingress URL of a stream: http://<ingress>/<namespace>/<stream>
  --nats                  publish straight to JetStream; connection from EVENTWIRE_NATS_URL and
                          the EVENTWIRE_NATS_* credential variables, or --nats-url
    --nats-url URL        nats://host:4222 (overrides EVENTWIRE_NATS_URL)
    --subject-prefix P    the EventStream's subjectPrefix (required with --nats)
    --stream NAME         the JetStream stream name; when set, JetStream refuses the event
                          unless this stream stores it

Event:
  --source SRC            required
  --type TYPE             required
  --id ID                 default: a random UUID (send the same id again to test de-duplication)
  --subject S  --time RFC3339|now  --dataschema URI
  --datacontenttype CT    e.g. application/json
  --data TEXT | --data-file PATH
  --ext NAME=VALUE        an extension attribute; repeatable

HTTP options:
  --mode binary|structured   default binary
  --token-file PATH          sends Authorization: Bearer <contents> (ServiceAccount token)

  --timeout DURATION      default 10s
  -h, --help              show this help
`;

const OPTIONS = {
  url: { type: 'string' },
  nats: { type: 'boolean' },
  'nats-url': { type: 'string' },
  'subject-prefix': { type: 'string' },
  stream: { type: 'string' },
  source: { type: 'string' },
  type: { type: 'string' },
  id: { type: 'string' },
  subject: { type: 'string' },
  time: { type: 'string' },
  dataschema: { type: 'string' },
  datacontenttype: { type: 'string' },
  data: { type: 'string' },
  'data-file': { type: 'string' },
  ext: { type: 'string', multiple: true },
  mode: { type: 'string' },
  'token-file': { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; strict: true }>>['values'];

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

function parseExtensions(list: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0)
      throw new UsageError(`--ext ${item}: write NAME=VALUE, for example --ext partitionkey=7`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

async function readData(v: Values): Promise<Uint8Array | undefined> {
  if (v.data !== undefined && v['data-file'] !== undefined) {
    throw new UsageError('use one of --data and --data-file');
  }
  if (v.data !== undefined) return new TextEncoder().encode(v.data);
  if (v['data-file'] === undefined) return undefined;
  try {
    return new Uint8Array(await readFile(v['data-file']));
  } catch (err) {
    throw new UsageError(`--data-file ${v['data-file']}: ${(err as Error).message}`);
  }
}

async function buildEvent(v: Values): Promise<CloudEvent> {
  if (v.source === undefined) throw new UsageError('--source is required');
  if (v.type === undefined) throw new UsageError('--type is required');
  const event = makeEvent({
    id: v.id ?? randomUUID(),
    source: v.source,
    type: v.type,
    subject: v.subject,
    time: v.time === 'now' ? new Date().toISOString() : v.time,
    datacontenttype: v.datacontenttype,
    dataschema: v.dataschema,
    data: await readData(v),
    extensions: parseExtensions(v.ext),
  });
  const error = validateEvent(event) ?? checkData(event);
  if (error !== undefined) {
    throw new UsageError(`invalid event: ${error.message} (${error.field}): ${error.fix}`);
  }
  return event;
}

function timeoutOf(v: Values): number {
  try {
    return parseDuration(v.timeout ?? '10s', '--timeout');
  } catch {
    throw new UsageError(`--timeout ${v.timeout ?? ''}: write a duration such as 500ms or 10s`);
  }
}

function checkDestination(v: Values): void {
  if ((v.url === undefined) === (v.nats !== true)) {
    throw new UsageError(
      'give exactly one of --url (through the ingress) and --nats (straight to JetStream)',
    );
  }
  const natsOnly = ['nats-url', 'subject-prefix', 'stream'] as const;
  const httpOnly = ['mode', 'token-file'] as const;
  for (const name of v.nats === true ? httpOnly : natsOnly) {
    if (v[name] !== undefined)
      throw new UsageError(`--${name} only applies with ${v.nats === true ? '--url' : '--nats'}`);
  }
  if (v.nats === true && v['subject-prefix'] === undefined) {
    throw new UsageError(
      '--subject-prefix is required with --nats (the EventStream spec.subjectPrefix)',
    );
  }
  if (v['subject-prefix'] !== undefined && !isValidSubject(v['subject-prefix'])) {
    throw new UsageError(`--subject-prefix ${v['subject-prefix']} is not a NATS subject prefix`);
  }
  if (v.mode !== undefined && v.mode !== 'binary' && v.mode !== 'structured') {
    throw new UsageError(`--mode ${v.mode}: use binary or structured`);
  }
}

async function viaHttp(
  v: Values,
  event: CloudEvent,
  timeoutMs: number,
  out: NodeJS.WritableStream,
): Promise<number> {
  const url = v.url ?? '';
  if (!/^https?:\/\/[^/]+\/[^/]+\/[^/]+\/?$/.test(url)) {
    throw new UsageError(`--url ${url}: write http(s)://<ingress>/<namespace>/<stream>`);
  }
  const req = toHttpRequest(event, (v.mode ?? 'binary') as HttpFormat);
  const headers: Record<string, string> = { ...req.headers };
  if (v['token-file'] !== undefined) {
    let token: string;
    try {
      token = (await readFile(v['token-file'], 'utf8')).trim();
    } catch (err) {
      throw new UsageError(`--token-file ${v['token-file']}: ${(err as Error).message}`);
    }
    headers.authorization = `Bearer ${token}`;
  }
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers,
      body: req.body,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    out.write(`eventwire publish: cannot reach ${url}: ${(err as Error).message}\n`);
    return 1;
  }
  const body = await res.text();
  out.write(`${JSON.stringify({ status: res.status, id: event.id, answer: parseAnswer(body) })}\n`);
  return res.status === 202 ? 0 : 1;
}

function parseAnswer(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // not JSON: print as it came
  }
}

async function viaNats(
  v: Values,
  env: NodeJS.ProcessEnv,
  event: CloudEvent,
  timeoutMs: number,
  out: NodeJS.WritableStream,
): Promise<number> {
  const subjectPrefix = v['subject-prefix'] ?? '';
  const tooLong = checkSubject(subjectPrefix, event);
  if (tooLong !== undefined) throw new UsageError(`invalid event: ${tooLong.message}`);
  const cfg = parseNatsConfig(
    v['nats-url'] === undefined ? env : { ...env, EVENTWIRE_NATS_URL: v['nats-url'] },
    'eventwire-publish',
  );
  const nc = await connectNats(cfg, silentLogger());
  try {
    const result = await publishEvents(
      jetstream(nc),
      { subjectPrefix, streamName: v.stream },
      [event],
      timeoutMs,
    );
    const ack = result.acks[0];
    out.write(
      `${JSON.stringify({ stream: ack?.stream, seq: ack?.seq, duplicate: ack?.duplicate ?? false, id: event.id })}\n`,
    );
    return 0;
  } catch (err) {
    if (!(err instanceof PublishError)) throw err;
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    out.write(`eventwire publish: ${err.message}${cause}\n`);
    return 1;
  } finally {
    await nc.close();
  }
}

export async function runPublish(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: NodeJS.WritableStream,
): Promise<number> {
  try {
    let values: Values;
    try {
      values = parseArgs({
        args: [...argv],
        options: OPTIONS,
        strict: true,
        allowPositionals: false,
      }).values;
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    if (values.help === true) {
      out.write(PUBLISH_USAGE);
      return 0;
    }
    checkDestination(values);
    const timeoutMs = timeoutOf(values);
    const event = await buildEvent(values);
    return values.nats === true
      ? await viaNats(values, env, event, timeoutMs, out)
      : await viaHttp(values, event, timeoutMs, out);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.write(`eventwire publish: ${err.message}\nRun eventwire publish --help for the options.\n`);
    return 2;
  }
}
