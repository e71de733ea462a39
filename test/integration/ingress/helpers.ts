// Shared helpers of the ingress integration tests: JetStream streams, an ingress started
// through its real configuration path, and reading back what was stored.
import { jetstreamManager, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { parseIngressConfig } from '../../../src/ingress/config.ts';
import {
  startIngress,
  type IngressOverrides,
  type IngressServer,
} from '../../../src/ingress/server.ts';
import { streamSubjects } from '../../../src/jetstream/subject.ts';
import { silentLogger } from '../../../src/observability/logger.ts';

export interface StreamSpec {
  readonly name: string;
  readonly prefix: string;
  readonly duplicateWindowMs?: number;
  readonly maxMsgSize?: number;
}

let counter = 0;
/** A name unique in this test run. */
export function unique(base: string): string {
  counter += 1;
  return `${base}${String(process.pid)}x${String(counter)}`;
}

export async function natsClient(
  url: string,
): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const nc = await connect({ servers: url });
  return { nc, jsm: await jetstreamManager(nc) };
}

export async function createStream(jsm: JetStreamManager, spec: StreamSpec): Promise<void> {
  await jsm.streams.add({
    name: spec.name,
    subjects: streamSubjects(spec.prefix),
    duplicate_window: (spec.duplicateWindowMs ?? 120_000) * 1_000_000,
    ...(spec.maxMsgSize === undefined ? {} : { max_msg_size: spec.maxMsgSize }),
  });
}

export async function messageCount(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages;
}

/** Every stored message of a stream, in order. */
export async function storedMessages(jsm: JetStreamManager, stream: string): Promise<StoredMsg[]> {
  const state = (await jsm.streams.info(stream)).state;
  const out: StoredMsg[] = [];
  if (state.messages === 0) return out;
  for (let seq = state.first_seq; seq <= state.last_seq; seq += 1) {
    const msg = await jsm.streams.getMessage(stream, { seq });
    if (msg !== null) out.push(msg);
  }
  return out;
}

/** An ingress on free ports with the given environment (NATS URL and streams included). */
export async function startTestIngress(
  env: Record<string, string>,
  overrides: IngressOverrides = {},
): Promise<IngressServer & { url: string; opsUrl: string }> {
  const cfg = parseIngressConfig({
    EVENTWIRE_INGRESS_HOST: '127.0.0.1',
    EVENTWIRE_INGRESS_PORT: '0',
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: '0',
    ...env,
  });
  const ingress = await startIngress(cfg, { log: silentLogger(), ...overrides });
  return {
    ...ingress,
    close: () => ingress.close(),
    url: `http://127.0.0.1:${String(ingress.port)}`,
    opsUrl: `http://127.0.0.1:${String(ingress.opsPort)}`,
  };
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

export async function post(
  url: string,
  headers: Record<string, string>,
  body: string | Uint8Array,
): Promise<Answer> {
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  if (text !== '') {
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { text }; // not JSON: kept for the assertion message
    }
  }
  return { status: res.status, headers: res.headers, body: parsed };
}
