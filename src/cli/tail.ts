// `eventwire tail <namespace>/<stream>`: a live, decoded view of an EventStream. Finds the
// JetStream stream through the API (status.streamName), reads it with an ephemeral ordered
// consumer (nothing durable is left behind) and prints one line per CloudEvent.
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { DeliverPolicy, jetstream, type JsMsg } from '@nats-io/jetstream';
import type { EventStream } from '../api/types.ts';
import { API_GROUP, API_VERSION, EVENTSTREAM_PLURAL } from '../api/types.ts';
import { fromNatsMessage, type CloudEvent } from '../cloudevents/index.ts';
import { parseNatsConfig } from '../config/nats.ts';
import { connectNats } from '../jetstream/connection.ts';
import { silentLogger } from '../observability/logger.ts';
import { UsageError, apiStatus, loadKubeConfig } from './kube.ts';

export const TAIL_USAGE = `Usage: eventwire tail <namespace>/<stream> [options]

Prints the CloudEvents of an EventStream as they are stored, one line each:
time, type, source, id, subject (NATS) and the start of the data. Runs until Ctrl-C.
The stream is found through the API (KUBECONFIG); events are read straight from JetStream
(EVENTWIRE_NATS_URL and the EVENTWIRE_NATS_* credential variables) with an ephemeral
consumer, so tailing never affects delivery.

Options:
  --from-start        start with the first stored event (default: only new events)
  --count N           stop after N events
  --json              one JSON object per event: attributes, extensions, data, NATS subject
                      and stream sequence
  --nats-url URL      nats://host:4222 (overrides EVENTWIRE_NATS_URL)
  --kubeconfig PATH   (overrides KUBECONFIG)
  -h, --help          show this help
`;

const OPTIONS = {
  'from-start': { type: 'boolean' },
  count: { type: 'string' },
  json: { type: 'boolean' },
  'nats-url': { type: 'string' },
  kubeconfig: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface TailArgs {
  readonly namespace: string;
  readonly name: string;
  readonly fromStart: boolean;
  readonly count: number | undefined;
  readonly json: boolean;
  readonly natsUrl: string | undefined;
  readonly kubeconfig: string | undefined;
}

function parseTailArgs(argv: readonly string[]): TailArgs | 'help' {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) return 'help';
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? 'name the EventStream: eventwire tail <namespace>/<stream>'
        : `one EventStream only, got ${positionals.join(' ')}`,
    );
  }
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(
    positionals[0] ?? '',
  );
  if (m?.[1] === undefined || m[3] === undefined) {
    throw new UsageError(
      `${positionals[0] ?? ''}: write <namespace>/<stream>, for example default/default`,
    );
  }
  let count: number | undefined;
  if (values.count !== undefined) {
    count = Number(values.count);
    if (!Number.isInteger(count) || count < 1) {
      throw new UsageError(`--count ${values.count}: give a whole number of events, 1 or more`);
    }
  }
  return {
    namespace: m[1],
    name: m[3],
    fromStart: values['from-start'] === true,
    count,
    json: values.json === true,
    natsUrl: values['nats-url'],
    kubeconfig: values.kubeconfig,
  };
}

class TailError extends Error {}

async function findStream(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<{ streamName: string; subjectPrefix: string }> {
  let es: EventStream;
  try {
    es = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: API_GROUP,
      version: API_VERSION,
      plural: EVENTSTREAM_PLURAL,
      namespace,
      name,
    })) as EventStream;
  } catch (err) {
    if (apiStatus(err) === 404) {
      throw new TailError(`EventStream ${namespace}/${name} not found`);
    }
    throw new Error(`cannot read EventStream ${namespace}/${name}`, { cause: err });
  }
  const streamName = es.status?.streamName;
  if (streamName === undefined) {
    const ready = es.status?.conditions?.find((c) => c.type === 'Ready');
    const why = ready === undefined ? 'it has no status yet' : `${ready.reason}: ${ready.message}`;
    throw new TailError(`EventStream ${namespace}/${name} has no JetStream stream (${why})`);
  }
  return { streamName, subjectPrefix: es.spec.subjectPrefix };
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function dataPreview(data: Uint8Array | undefined, max = 120): string {
  if (data === undefined || data.length === 0) return '';
  let text: string;
  try {
    text = decoder.decode(data);
  } catch {
    return `<${data.length} bytes>`; // not UTF-8: say how much there is
  }
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

function dataJson(event: CloudEvent): unknown {
  const text = dataPreview(event.data, Number.MAX_SAFE_INTEGER);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // not JSON: the text (or the byte count) as a string
  }
}

function format(msg: JsMsg, json: boolean): string {
  const decoded = fromNatsMessage({ headers: msg.headers, data: msg.data });
  const stored = new Date(Math.floor(msg.info.timestampNanos / 1e6)).toISOString();
  if (!decoded.ok) {
    const problem = `${decoded.error.reason}: ${decoded.error.message}`;
    return json
      ? JSON.stringify({ invalid: problem, natsSubject: msg.subject, seq: msg.seq, stored })
      : `${stored}  !! not a CloudEvent (${problem})  ${msg.subject}  seq=${msg.seq}`;
  }
  const e = decoded.event;
  if (json) {
    return JSON.stringify({
      specversion: e.specversion,
      id: e.id,
      source: e.source,
      type: e.type,
      subject: e.subject,
      time: e.time,
      datacontenttype: e.datacontenttype,
      dataschema: e.dataschema,
      extensions: e.extensions,
      data: dataJson(e),
      natsSubject: msg.subject,
      seq: msg.seq,
      stored,
    });
  }
  const ext = Object.entries(e.extensions)
    .filter(([k]) => k !== 'traceparent' && k !== 'tracestate')
    .map(([k, v]) => ` ${k}=${v}`)
    .join('');
  return `${e.time ?? stored}  ${e.type}  ${e.source}  ${e.id}  ${msg.subject}${ext}  ${dataPreview(e.data)}`;
}

async function tail(
  a: TailArgs,
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
): Promise<number> {
  const kc = loadKubeConfig(a.kubeconfig, env);
  const { streamName, subjectPrefix } = await findStream(kc, a.namespace, a.name);
  const cfg = parseNatsConfig(
    a.natsUrl === undefined ? env : { ...env, EVENTWIRE_NATS_URL: a.natsUrl },
    'eventwire-tail',
  );
  const nc = await connectNats(cfg, silentLogger());
  try {
    const consumer = await jetstream(nc).consumers.get(streamName, {
      deliver_policy: a.fromStart ? DeliverPolicy.All : DeliverPolicy.New,
    });
    const messages = await consumer.consume();
    const stop = (): void => {
      void messages.close();
    };
    process.once('SIGINT', stop).once('SIGTERM', stop);
    err.write(
      `tailing EventStream ${a.namespace}/${a.name} (stream ${streamName}, subjects ${subjectPrefix}.>)${a.fromStart ? ' from the start' : ''}; Ctrl-C to stop\n`,
    );
    let seen = 0;
    try {
      for await (const msg of messages) {
        out.write(`${format(msg, a.json)}\n`);
        seen += 1;
        if (a.count !== undefined && seen >= a.count) break;
      }
    } finally {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      await messages.close();
    }
    return 0;
  } finally {
    await nc.close();
  }
}

export async function runTail(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
): Promise<number> {
  try {
    const a = parseTailArgs(argv);
    if (a === 'help') {
      out.write(TAIL_USAGE);
      return 0;
    }
    return await tail(a, env, out, err);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`eventwire tail: ${e.message}\nRun eventwire tail --help for the options.\n`);
      return 2;
    }
    if (e instanceof TailError) {
      err.write(`eventwire tail: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
