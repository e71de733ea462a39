// Publishing events to JetStream in the CloudEvents NATS binding (binary mode, `ce-*`
// headers, Nats-Msg-Id from source and id) on `<prefix>.enc(type)`, waiting for every PubAck.
// Shared by the ingress and `eventwire publish --nats`.
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import {
  headers as natsHeaders,
  InvalidArgumentError,
  type MsgHdrs,
  type NatsConnection,
} from '@nats-io/nats-core';
import { toNatsMessage, type CloudEvent } from '../cloudevents/index.ts';
import { subjectFor } from '../jetstream/subject.ts';
import type { Logger } from '../observability/logger.ts';

export interface EncodedEvent {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
  readonly msgID: string;
  /** the size JetStream's max_msg_size is compared with (as natsMessageSize computes it) */
  readonly size: number;
  /** the header block's size, which JetStream limits to 64 KiB */
  readonly headerSize: number;
}

const HEADER_BLOCK = 'NATS/1.0\r\n\r\n'.length + 'Nats-Msg-Id: \r\n'.length;
/** The header JetStream's `expect.streamName` adds (`Nats-Expected-Stream: <name>\r\n`). */
const EXPECTED_STREAM_HEADER = 'Nats-Expected-Stream: \r\n'.length;

export interface PublishTarget {
  /** when set, JetStream refuses the event unless this stream captures its subject */
  readonly streamName?: string | undefined;
  readonly subjectPrefix: string;
}

/**
 * The subject, payload, headers and message id an event is published with to `target`, and
 * the size NATS compares with max_payload and JetStream with max_msg_size: payload and every
 * header the publish sends, the stream expectation included. `subject`, when given, is
 * `subjectFor(target.subjectPrefix, event.type)` computed by the caller.
 */
export function encodeForNats(
  target: PublishTarget,
  event: CloudEvent,
  subject?: string,
): EncodedEvent {
  const msg = toNatsMessage(event);
  const headers = natsHeaders();
  let headerBytes = HEADER_BLOCK + msg.msgId.length;
  if (target.streamName !== undefined) {
    headerBytes += EXPECTED_STREAM_HEADER + Buffer.byteLength(target.streamName);
  }
  for (const [name, value] of Object.entries(msg.headers)) {
    // the names are unique: append is set without set's search for an earlier value
    headers.append(name, value);
    headerBytes += name.length + Buffer.byteLength(value) + 4;
  }
  return {
    subject: subject ?? subjectFor(target.subjectPrefix, event.type),
    data: msg.data,
    headers,
    msgID: msg.msgId,
    size: headerBytes + msg.data.length,
    headerSize: headerBytes,
  };
}

export interface PublishResult {
  readonly acks: readonly PubAck[];
  /** events JetStream already had (same source and id inside the duplicate window) */
  readonly duplicates: number;
}

/** Why a publish failed, for the HTTP answer. */
export type PublishFailureKind = 'unavailable' | 'too-large' | 'wrong-stream';

export class PublishError extends Error {
  readonly kind: PublishFailureKind;
  readonly transient: boolean;
  constructor(kind: PublishFailureKind, message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'PublishError';
    this.kind = kind;
    this.transient = kind === 'unavailable';
  }
}

const MAX_PAYLOAD_EXCEEDED = 10054;
const HEADER_TOO_LARGE = 10097;
const STREAM_NOT_MATCH = 10060;

/** The error and its causes, outermost first (nats.js wraps a client error in RequestError). */
function* causes(err: unknown): Generator {
  for (let e = err, depth = 0; e !== undefined && depth < 8; depth += 1) {
    yield e;
    e = e instanceof Error ? e.cause : undefined;
  }
}

/** nats.js refused the message before sending it: payload and headers exceed max_payload. */
function overMaxPayload(err: unknown): boolean {
  for (const e of causes(err)) {
    if (e instanceof InvalidArgumentError && e.message.includes('max_payload')) return true;
  }
  return false;
}

function classify(err: unknown): PublishError {
  if (overMaxPayload(err)) {
    return new PublishError(
      'too-large',
      "the event is larger than the NATS server's max_payload",
      err,
    );
  }
  if (err instanceof JetStreamApiError) {
    if (err.code === MAX_PAYLOAD_EXCEEDED) {
      return new PublishError('too-large', 'JetStream refused the message as too large', err);
    }
    if (err.code === HEADER_TOO_LARGE) {
      return new PublishError(
        'too-large',
        "JetStream refused the message's headers (the event's attributes) as larger than 64 KiB",
        err,
      );
    }
    if (err.code === STREAM_NOT_MATCH) {
      return new PublishError(
        'wrong-stream',
        "the event's subject is captured by another JetStream stream",
        err,
      );
    }
  }
  return new PublishError('unavailable', 'JetStream did not acknowledge the event', err);
}

/**
 * Publishes all events concurrently and resolves once JetStream acknowledged every one;
 * rejects with a classified PublishError when any was not (some may have been stored: a
 * retry is de-duplicated by Nats-Msg-Id).
 */
export function publishEvents(
  js: JetStreamClient,
  target: PublishTarget,
  events: readonly CloudEvent[],
  timeoutMs: number,
): Promise<PublishResult> {
  const encoded = events.map((event) => encodeForNats(target, event));
  return publishEncoded(js, target.streamName, encoded, timeoutMs);
}

/** Calls `listener` each time the connection, lost, is back; returns the way to stop. */
export type OnReconnect = (listener: () => void) => () => void;

/**
 * publishEvents for events already encoded with encodeForNats. With `onReconnect` (as
 * ConnectionWatch.onReconnect), an event still unacknowledged when the connection comes back
 * is published again within the same timeout: its PUB or its PubAck may have died with the old
 * server, and JetStream drops the copy it already stored (Nats-Msg-Id). Without it, such an
 * event fails at the timeout.
 */
export async function publishEncoded(
  js: JetStreamClient,
  streamName: string | undefined,
  encoded: readonly EncodedEvent[],
  timeoutMs: number,
  onReconnect?: OnReconnect,
): Promise<PublishResult> {
  const expect = streamName === undefined ? {} : { expect: { streamName } };
  const deadline = Date.now() + timeoutMs;
  const send = (m: EncodedEvent) =>
    js.publish(m.subject, m.data, {
      msgID: m.msgID,
      headers: m.headers,
      ...expect,
      timeout: Math.max(1, deadline - Date.now()),
      retries: 1,
    });
  if (onReconnect === undefined) {
    const settled = await Promise.allSettled(encoded.map(send));
    const acks: PubAck[] = [];
    for (const s of settled) {
      if (s.status === 'rejected') throw classify(s.reason);
      acks.push(s.value);
    }
    return resultOf(acks);
  }
  const acks: (PubAck | undefined)[] = encoded.map(() => undefined);
  let todo = encoded.map((m, i) => ({ m, i }));
  for (;;) {
    let stop: () => void = () => undefined;
    const back = new Promise<'reconnected'>((resolve) => {
      stop = onReconnect(() => {
        resolve('reconnected');
      });
    });
    const attempts = Promise.allSettled(
      todo.map(async ({ m, i }) => {
        const ack = await send(m);
        // an earlier attempt's PubAck that arrives after all tells the truth about duplicates
        if (acks[i]?.duplicate !== false) acks[i] = ack;
      }),
    );
    const first = await Promise.race([attempts, back]);
    stop();
    todo = todo.filter(({ i }) => acks[i] === undefined);
    if (first !== 'reconnected') {
      for (const s of first) if (s.status === 'rejected') throw classify(s.reason);
      break;
    }
    if (todo.length === 0) break;
    if (Date.now() >= deadline) {
      throw classify(new Error('the NATS connection was lost and no PubAck came in time'));
    }
  }
  return resultOf(acks.filter((a) => a !== undefined));
}

function resultOf(acks: PubAck[]): PublishResult {
  return { acks, duplicates: acks.filter((a) => a.duplicate).length };
}

/**
 * How long after losing its connection a request waits for the client to reconnect: a client
 * of a NATS cluster is on another server within milliseconds (up to its 2 s handshake timeout
 * when the first server it tries hangs). A connection down for longer means NATS is down:
 * requests are answered at once.
 */
export const FAILOVER_WAIT_MS = 2_500;

/** Whether the NATS connection is up, following its status events. */
export class ConnectionWatch {
  #connected = true;
  /** when the connection was last lost */
  #lostAt = 0;
  readonly #listeners = new Set<() => void>();
  readonly #nc: NatsConnection;

  constructor(nc: NatsConnection, log: Logger) {
    this.#nc = nc;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          this.#connected = false;
          this.#lostAt = Date.now();
        } else if (s.type === 'reconnect') {
          this.#connected = true;
          for (const listener of [...this.#listeners]) listener();
        }
      }
    })().catch((err: unknown) => {
      log.error({ err }, 'nats status watch failed');
    });
  }

  connected(): boolean {
    return this.#connected && !this.#nc.isClosed();
  }

  /** Calls `listener` each time the connection, lost, is back, until the returned stop. */
  readonly onReconnect: OnReconnect = (listener) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /**
   * True once connected. While the connection has been lost for less than FAILOVER_WAIT_MS
   * this waits for the reconnection, until `deadline` at the latest; after that it answers at
   * once.
   */
  async whenConnected(deadline: number): Promise<boolean> {
    if (this.connected()) return true;
    const waitMs = Math.min(deadline, this.#lostAt + FAILOVER_WAIT_MS) - Date.now();
    if (waitMs <= 0 || this.#nc.isClosed()) return false;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stop();
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      const stop = this.onReconnect(done);
    });
    return this.connected();
  }
}
