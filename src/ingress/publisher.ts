// Publishing events to JetStream in the CloudEvents NATS binding (binary mode, `ce-*`
// headers, Nats-Msg-Id from source and id) on `<prefix>.enc(type)`, waiting for every PubAck.
// Shared by the ingress and `eventwire publish --nats`.
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
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
}

const HEADER_BLOCK = 'NATS/1.0\r\n\r\n'.length + 'Nats-Msg-Id: \r\n'.length;

/**
 * The subject, payload, headers and message id an event is published with. `subject`, when
 * given, is `subjectFor(subjectPrefix, event.type)` computed by the caller.
 */
export function encodeForNats(
  subjectPrefix: string,
  event: CloudEvent,
  subject?: string,
): EncodedEvent {
  const msg = toNatsMessage(event);
  const headers = natsHeaders();
  let headerBytes = HEADER_BLOCK + msg.msgId.length;
  for (const [name, value] of Object.entries(msg.headers)) {
    // the names are unique: append is set without set's search for an earlier value
    headers.append(name, value);
    headerBytes += name.length + Buffer.byteLength(value) + 4;
  }
  return {
    subject: subject ?? subjectFor(subjectPrefix, event.type),
    data: msg.data,
    headers,
    msgID: msg.msgId,
    size: headerBytes + msg.data.length,
  };
}

export interface PublishTarget {
  /** when set, JetStream refuses the event unless this stream captures its subject */
  readonly streamName?: string | undefined;
  readonly subjectPrefix: string;
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
const STREAM_NOT_MATCH = 10060;

function classify(err: unknown): PublishError {
  if (err instanceof JetStreamApiError) {
    if (err.code === MAX_PAYLOAD_EXCEEDED) {
      return new PublishError('too-large', 'JetStream refused the message as too large', err);
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
  const encoded = events.map((event) => encodeForNats(target.subjectPrefix, event));
  return publishEncoded(js, target.streamName, encoded, timeoutMs);
}

/** publishEvents for events already encoded with encodeForNats. */
export async function publishEncoded(
  js: JetStreamClient,
  streamName: string | undefined,
  encoded: readonly EncodedEvent[],
  timeoutMs: number,
): Promise<PublishResult> {
  const expect = streamName === undefined ? {} : { expect: { streamName } };
  const settled = await Promise.allSettled(
    encoded.map((m) =>
      js.publish(m.subject, m.data, {
        msgID: m.msgID,
        headers: m.headers,
        ...expect,
        timeout: timeoutMs,
        retries: 1,
      }),
    ),
  );
  const acks: PubAck[] = [];
  for (const s of settled) {
    if (s.status === 'rejected') throw classify(s.reason);
    acks.push(s.value);
  }
  return { acks, duplicates: acks.filter((a) => a.duplicate).length };
}

/** Whether the NATS connection is up, following its status events. */
export class ConnectionWatch {
  #connected = true;
  readonly #nc: NatsConnection;

  constructor(nc: NatsConnection, log: Logger) {
    this.#nc = nc;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.#connected = false;
        else if (s.type === 'reconnect') this.#connected = true;
      }
    })().catch((err: unknown) => {
      log.error({ err }, 'nats status watch failed');
    });
  }

  connected(): boolean {
    return this.#connected && !this.#nc.isClosed();
  }
}
