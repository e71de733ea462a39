// Pulls the consumer of an ordered subscription: a pinned-client priority group (NATS 2.11+,
// consumer-plan.ts), which hands messages to one puller at a time. Every dispatcher replica
// that serves the subscription pulls; the pinned one receives, the others' pulls wait and one
// of them is pinned when the pin times out (priority_timeout) or is released (unpin).
//
// Why not nats.js's consume({ group }) (ADR 0011, test/integration/dispatcher/
// pinned-client.test.ts): it pulls again only when its buffer runs low or a request expires
// (30 s), so a replica that holds max_ack_pending messages, or one that is idle, stops
// refreshing its pin and loses it while alive and holding messages. This loop keeps one pull
// request open at a time and sends the next as soon as it ends; a pinned request expires after
// a third of priority_timeout, so the pin is refreshed at least that often whatever the
// replica holds. It reports the pin each message came with, so the worker can tell when its
// pin began (subscription-worker.ts gates the first messages of a pin, pin-gate.ts).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { JsMsg } from '@nats-io/jetstream';
import { JetStreamStatus } from '@nats-io/jetstream/internal';
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import type { Logger } from '../observability/logger.ts';
import { setLongTimeout } from '../util/timers.ts';

/** The header JetStream sets on every message of a pinned-client consumer. */
export const PIN_ID_HEADER = 'Nats-Pin-Id';
/** How long a pull that waits for the pin stays open (re-sent when it expires). */
const WAITING_EXPIRES_MS = 10_000;
/** A pinned pull stays open at most a third of priority_timeout, and at least this long. */
const MIN_PINNED_EXPIRES_MS = 500;
/** A request that neither ended nor answered this long after it expired is presumed lost. */
const LOST_AFTER_MS = 3_000;
/** ackAck's wait for JetStream's confirmation, as nats.js's default API timeout. */
const ACK_TIMEOUT_MS = 5_000;

// nats.js builds its JsMsg (ack, nak, working, term, info) with toJsMsg, which its package
// does not export; it is loaded from the pinned version's own file, so a pulled message
// behaves exactly as one from consume().
type ToJsMsg = (m: Msg, ackTimeout?: number) => JsMsg;
const toJsMsg: ToJsMsg = (() => {
  const require = createRequire(import.meta.url);
  const lib = dirname(require.resolve('@nats-io/jetstream'));
  const mod = require(join(lib, 'jsmsg.js')) as { toJsMsg?: unknown };
  if (typeof mod.toJsMsg !== 'function') {
    throw new Error(`@nats-io/jetstream at ${lib} has no toJsMsg in jsmsg.js`);
  }
  return mod.toJsMsg as ToJsMsg;
})();

/** A pull status that ends the loop: the consumer is gone, or the request is refused. */
export class PullError extends Error {
  override readonly name = 'PullError';
  readonly code: number;
  constructor(code: number, description: string) {
    super(`pull refused: ${String(code)} ${description}`);
    this.code = code;
  }
}

export interface PinnedPullerOptions {
  readonly nc: NatsConnection;
  /** $JS.API unless JetStream is reached through another prefix */
  readonly apiPrefix: string;
  readonly stream: string;
  readonly consumer: string;
  readonly group: string;
  /** messages per pull request; the consumer's max_ack_pending bounds what is held */
  readonly batch: number;
  /** the consumer's priority_timeout */
  readonly pinTimeoutMs: number;
  /** every message received, with the pin it was delivered under */
  readonly onMessage: (msg: JsMsg, pinId: string | undefined) => void;
  readonly log: Logger;
}

type Ending =
  | { readonly kind: 'done' }
  | { readonly kind: 'unpinned' }
  | { readonly kind: 'retry'; readonly description: string }
  | { readonly kind: 'fatal'; readonly error: PullError };

interface Request {
  readonly reply: string;
  readonly batch: number;
  received: number;
  end(e: Ending): void;
}

export class PinnedPuller {
  readonly #o: PinnedPullerOptions;
  readonly #inbox: string;
  readonly #sub: Subscription;
  #serial = 0;
  #current: Request | undefined;
  #pinId: string | undefined;
  #pulling = true;
  #wake: (() => void) | undefined;

  constructor(o: PinnedPullerOptions) {
    this.#o = o;
    this.#inbox = createInbox();
    this.#sub = o.nc.subscribe(`${this.#inbox}.*`, {
      callback: (err, msg) => {
        if (err === null) this.#receive(msg);
      },
    });
  }

  /** The pin this puller holds, as far as it knows (the last one a message came with). */
  get pinId(): string | undefined {
    return this.#pinId;
  }

  /**
   * Pulls until stop(): resolves then; rejects with a PullError when JetStream refuses the
   * pull (consumer deleted, not a pinned consumer) so the caller can look the consumer up
   * again.
   */
  async run(): Promise<void> {
    let quiet = 0;
    while (this.#pulling) {
      const ending = await this.#pull();
      if (ending.kind === 'fatal') throw ending.error;
      if (ending.kind === 'unpinned' && this.#pinId !== undefined) {
        this.#o.log.info({ pinId: this.#pinId }, 'pin lost');
        this.#pinId = undefined;
      }
      if (ending.kind === 'retry') {
        // leadership change, too many waiting pulls: JetStream asks to come back later
        quiet = Math.min(quiet + 1, 5);
        this.#o.log.debug({ reason: ending.description }, 'pull ended early');
        await this.#pause(100 * 2 ** quiet);
      } else {
        quiet = 0;
      }
    }
  }

  /** Sends no further pull; messages of a request still open are still received. */
  stop(): void {
    this.#pulling = false;
    this.#current?.end({ kind: 'done' });
    this.#wake?.();
  }

  /** Stops receiving: JetStream no longer delivers to this puller. */
  close(): void {
    this.stop();
    this.#sub.unsubscribe();
  }

  #pull(): Promise<Ending> {
    const pinned = this.#pinId !== undefined;
    const expiresMs = pinned
      ? Math.max(MIN_PINNED_EXPIRES_MS, Math.floor(this.#o.pinTimeoutMs / 3))
      : WAITING_EXPIRES_MS;
    this.#serial += 1;
    const reply = `${this.#inbox}.${String(this.#serial)}`;
    const body = {
      batch: this.#o.batch,
      expires: expiresMs * 1e6,
      group: this.#o.group,
      ...(this.#pinId === undefined ? {} : { id: this.#pinId }),
    };
    return new Promise<Ending>((resolve) => {
      const lost = setLongTimeout(() => {
        req.end({ kind: 'retry', description: 'no answer' });
      }, expiresMs + LOST_AFTER_MS);
      const req: Request = {
        reply,
        batch: this.#o.batch,
        received: 0,
        end: (e) => {
          if (this.#current !== req) return;
          this.#current = undefined;
          lost.clear();
          resolve(e);
        },
      };
      this.#current = req;
      if (!this.#pulling) {
        req.end({ kind: 'done' });
        return;
      }
      const subject = `${this.#o.apiPrefix}.CONSUMER.MSG.NEXT.${this.#o.stream}.${this.#o.consumer}`;
      try {
        this.#o.nc.publish(subject, JSON.stringify(body), { reply });
      } catch (err) {
        // the connection is closed or draining: the caller stops, or the next pull tells
        this.#o.log.warn({ err }, 'pull request not sent');
        req.end({ kind: 'retry', description: 'not sent' });
      }
    });
  }

  #receive(msg: Msg): void {
    const status = msg.subject.startsWith(`${this.#inbox}.`)
      ? JetStreamStatus.maybeParseStatus(msg)
      : null;
    if (status !== null) {
      this.#status(msg.subject, status);
      return;
    }
    const header = msg.headers?.get(PIN_ID_HEADER);
    const pinId = header === undefined || header === '' ? undefined : header;
    const req = this.#current;
    if (req !== undefined) req.received += 1;
    if (pinId !== undefined && pinId !== this.#pinId) {
      this.#pinId = pinId;
      // pinned on a request sent without the pin (a long one, waiting for it): pull again at
      // once with the pin, which JetStream counts as the pinned client being alive; the first
      // request stays open on the server and its messages still arrive here
      req?.end({ kind: 'done' });
    } else if (req !== undefined && req.received >= req.batch) {
      req.end({ kind: 'done' });
    }
    this.#o.onMessage(toJsMsg(msg, ACK_TIMEOUT_MS), pinId);
  }

  #status(subject: string, status: JetStreamStatus): void {
    const req = this.#current;
    // a status of an earlier request (ended on our side): nothing waits for it
    if (req?.reply !== subject) return;
    const code = status.code;
    if (code === 100) return; // idle heartbeat
    if (code === 404 || code === 408) {
      req.end({ kind: 'done' });
      return;
    }
    if (code === 423) {
      // another puller holds the pin (ours timed out or was released)
      req.end({ kind: 'unpinned' });
      return;
    }
    if (code === 409 && !status.isConsumerDeleted()) {
      req.end({ kind: 'retry', description: status.description });
      return;
    }
    req.end({ kind: 'fatal', error: new PullError(code, status.description) });
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setLongTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        t.clear();
        this.#wake = undefined;
        resolve();
      };
    });
  }
}
