// One delivery loop per subscription: pulls the durable consumer, decodes (CloudEvents NATS
// binding), filters, schedules (ordering), delivers over HTTP and settles each message per
// the outcome table (outcome.ts). Usable without Kubernetes: give it a WorkerSpec.
//
// Message lifecycle: every message received is "held" until it is settled (ack, nak, term).
// A timer calls working() on every held message every ack_wait/3, whether its attempt runs or
// it waits its turn behind an earlier message of the same key, so a slow sink never makes
// JetStream redeliver. The server's max_ack_pending (= maxInFlight) bounds what is held.
//
// Retries: with ordering none, a retry is nak(delay) and JetStream redelivers after the delay
// (delivery count = attempt number). With ordering key or strict, a nak would let later
// events of the same key overtake the failed one, so the worker retries in place: it sleeps
// the backoff (working() keeps the message) and tries again, counting attempts from the
// delivery count. See docs/delivery.md.
import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import {
  fromHttpResponse,
  fromNatsMessage,
  toHttpRequest,
  toNatsMessage,
  type CloudEvent,
  type EventResult,
  type InvalidEventError,
} from '../cloudevents/index.ts';
import { subjectFor } from '../jetstream/subject.ts';
import type { Logger } from '../observability/logger.ts';
import {
  EXT,
  deadLetterEvent,
  deadLetterMsgId,
  invalidMessageEvent,
  type FailureInfo,
} from './dead-letter.ts';
import { compileFilters, type CompiledFilter } from './filter.ts';
import { SinkClient, type PostResult } from './http-client.ts';
import type { DispatcherMetrics } from './metrics.ts';
import { backoff, decide, terminal, type Decision, type FailureReason } from './outcome.ts';
import { KeyedScheduler } from './scheduler.ts';
import type { WorkerSpec } from './settings.ts';

/** Replies past this many hops are dead-lettered instead of published. */
export const MAX_REPLY_HOPS = 8;
const DEFAULT_ACK_WAIT_MS = 30_000;

export interface TerminalInfo {
  readonly subscription: string;
  readonly eventId: string;
  readonly reason: FailureReason;
  readonly code?: number | undefined;
}

export interface WorkerOptions {
  readonly js: JetStreamClient;
  readonly spec: WorkerSpec;
  readonly metrics: DispatcherMetrics;
  readonly log: Logger;
  readonly random?: () => number;
  /** an event was terminated (no dead letter): the dispatcher records a Warning Event */
  readonly onTerminal?: (info: TerminalInfo) => void;
  /** working() interval; ack_wait/3 of the consumer by default */
  readonly keepAliveMs?: number;
}

/** The labelled metric children of one subscription (labels hashed once, not per event). */
interface WorkerMetrics {
  readonly inFlight: { inc(): void; dec(): void };
  readonly latency: { observe(seconds: number): void };
  readonly filtered: { inc(): void };
  readonly retries: { inc(): void };
  /** by `${outcome} ${code}` */
  readonly deliveries: Map<string, { inc(): void }>;
}

interface Held {
  readonly msg: JsMsg;
  readonly decoded: EventResult;
  settled: boolean;
}

class SettleError extends Error {
  override readonly name = 'SettleError';
}

function eventIdOf(h: Held): string | undefined {
  return h.decoded.ok ? h.decoded.event.id : undefined;
}

function toMsgHdrs(record: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of Object.entries(record)) h.set(name, value);
  return h;
}

function codeLabel(post: PostResult): string {
  return post.result.kind === 'response' ? String(post.result.status) : post.result.kind;
}

function detailOf(post: PostResult): string | undefined {
  const r = post.result;
  if (r.kind === 'response') return r.bodySnippet;
  return r.kind === 'timeout' ? `no response within ${r.timeoutMs} ms` : r.message;
}

export class SubscriptionWorker {
  readonly spec: WorkerSpec;
  readonly #js: JetStreamClient;
  readonly #metrics: DispatcherMetrics;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #onTerminal: ((info: TerminalInfo) => void) | undefined;
  readonly #filter: CompiledFilter;
  readonly #client: SinkClient;
  readonly #scheduler: KeyedScheduler<Held>;
  readonly #held = new Set<Held>();
  /** aborted when stop() begins: wakes backoff sleeps and the reconnect loop */
  readonly #stopping = new AbortController();
  /** aborted when the grace period ends: cancels attempts still in flight */
  readonly #abort = new AbortController();
  readonly #keepAliveOverride: number | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  #messages: { close(): Promise<unknown> } | undefined;
  #loop: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  #consuming = false;
  #seq = 0;
  readonly #m: WorkerMetrics;
  /** plain acks waiting for this turn's check phase (see #ackSoon) */
  #acks: JsMsg[] = [];

  constructor(opts: WorkerOptions) {
    this.spec = opts.spec;
    this.#js = opts.js;
    this.#metrics = opts.metrics;
    this.#log = opts.log.child({ subscription: opts.spec.id });
    this.#random = opts.random ?? Math.random;
    this.#onTerminal = opts.onTerminal;
    this.#keepAliveOverride = opts.keepAliveMs;
    const compiled = compileFilters([...opts.spec.filters], {
      onCelError: (path, error, event) => {
        this.#log.warn({ path, err: error, eventId: event.id }, 'cel filter failed for an event');
      },
    });
    if (!compiled.ok) {
      throw new Error(`${opts.spec.id}: filter ${compiled.path}: ${compiled.message}`);
    }
    this.#filter = compiled.filter;
    const d = opts.spec.delivery;
    this.#client = new SinkClient({ connections: d.maxInFlight });
    this.#scheduler = new KeyedScheduler(d.maxInFlight, (h) => this.#process(h));
    const labels = { subscription: opts.spec.id };
    this.#m = {
      inFlight: this.#metrics.inFlight.labels(labels),
      latency: this.#metrics.latency.labels(labels),
      filtered: this.#metrics.filtered.labels(labels),
      retries: this.#metrics.retries.labels(labels),
      deliveries: new Map(),
    };
  }

  /** True while the consumer is being pulled. */
  get consuming(): boolean {
    return this.#consuming;
  }

  /** Messages received and not yet settled. */
  get held(): number {
    return this.#held.size;
  }

  start(): void {
    if (this.#loop !== undefined) return;
    this.#loop = this.#run();
  }

  /**
   * Graceful stop: stop pulling, nak what has not started, let attempts in flight finish
   * within `graceMs`, then abort them and nak what is left.
   */
  stop(graceMs: number): Promise<void> {
    this.#stopped ??= this.#stop(graceMs);
    return this.#stopped;
  }

  // ---- pulling -----------------------------------------------------------------------

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#isStopping()) {
      try {
        await this.#consume();
        failures = 0;
      } catch (err) {
        failures += 1;
        this.#log.warn({ err, failures }, 'consumer unavailable; retrying');
      }
      this.#consuming = false;
      if (!this.#isStopping()) {
        await this.#sleep(Math.min(500 * 2 ** Math.min(failures, 5), 10_000));
      }
    }
  }

  async #consume(): Promise<void> {
    const { stream, consumer: name, delivery } = this.spec;
    const consumer = await this.#js.consumers.get(stream, name);
    const info = await consumer.info(true);
    const ackWaitNanos = info.config.ack_wait ?? 0;
    const ackWaitMs = ackWaitNanos > 0 ? ackWaitNanos / 1e6 : DEFAULT_ACK_WAIT_MS;
    this.#startKeepAlive(this.#keepAliveOverride ?? Math.max(100, Math.floor(ackWaitMs / 3)));
    const messages = await consumer.consume({ max_messages: delivery.maxInFlight });
    this.#messages = messages;
    if (this.#stopping.signal.aborted) await messages.close();
    this.#consuming = true;
    this.#log.info({ stream, consumer: name }, 'delivery loop started');
    for await (const msg of messages) this.#accept(msg);
  }

  #startKeepAlive(intervalMs: number): void {
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#keepAlive = setInterval(() => {
      for (const h of this.#held) if (!h.settled) h.msg.working();
    }, intervalMs);
    this.#keepAlive.unref();
  }

  #accept(msg: JsMsg): void {
    if (this.#stopping.signal.aborted) {
      msg.nak();
      return;
    }
    const held: Held = {
      msg,
      decoded: fromNatsMessage({ headers: msg.headers, data: msg.data }),
      settled: false,
    };
    this.#held.add(held);
    this.#scheduler.push(this.#keyOf(held), held);
  }

  #keyOf(h: Held): string {
    const { ordering, orderingKey } = this.spec.delivery;
    if (ordering === 'strict') return '';
    if (ordering === 'key' && h.decoded.ok && orderingKey !== undefined) {
      const key = h.decoded.event.extensions[orderingKey];
      if (key !== undefined) return `k:${key}`;
    }
    this.#seq += 1;
    return `u:${this.#seq}`;
  }

  #isStopping(): boolean {
    return this.#stopping.signal.aborted;
  }

  get #ordered(): boolean {
    return this.spec.delivery.ordering !== 'none';
  }

  // ---- one message -------------------------------------------------------------------

  async #process(h: Held): Promise<void> {
    try {
      if (this.#stopping.signal.aborted) {
        this.#nak(h, 0);
        return;
      }
      if (!h.decoded.ok) {
        await this.#deadLetterInvalid(h, h.decoded.error);
        return;
      }
      const event = h.decoded.event;
      if (!this.#filter.matches(event) || this.#isOwnDeadLetter(event)) {
        this.#m.filtered.inc();
        await this.#ack(h);
        return;
      }
      await this.#deliver(h, event);
    } catch (err) {
      // a bug or an unexpected client failure: JetStream redelivers the message
      this.#log.error({ err, eventId: eventIdOf(h) }, 'processing an event failed');
      if (!h.settled) this.#nak(h, backoff(1, this.spec.delivery, this.#random));
    }
  }

  /** An event this subscription dead-lettered itself (its dead letter in its own stream). */
  #isOwnDeadLetter(event: CloudEvent): boolean {
    return (
      event.extensions[EXT.subscription] === this.spec.id &&
      event.extensions[EXT.reason] !== undefined
    );
  }

  async #deliver(h: Held, event: CloudEvent): Promise<void> {
    let attempt = h.msg.info.deliveryCount;
    for (;;) {
      const post = await this.#attempt(event);
      if (post.aborted) {
        this.#nak(h, 0);
        return;
      }
      const decision = decide(post.result, attempt, this.spec.delivery, Date.now(), this.#random);
      this.#countDelivery(decision.action, codeLabel(post));
      if (decision.action !== 'retry') {
        await this.#settle(h, event, post, decision, attempt);
        return;
      }
      this.#m.retries.inc();
      this.#log.info(
        { eventId: event.id, attempt, code: codeLabel(post), delayMs: decision.delayMs },
        'delivery failed; retrying',
      );
      if (!this.#ordered) {
        this.#nak(h, decision.delayMs);
        return;
      }
      if (!(await this.#sleep(decision.delayMs))) {
        this.#nak(h, 0);
        return;
      }
      attempt += 1;
    }
  }

  #countDelivery(outcome: Decision['action'], code: string): void {
    const key = `${outcome} ${code}`;
    let child = this.#m.deliveries.get(key);
    if (child === undefined) {
      child = this.#metrics.deliveries.labels({ subscription: this.spec.id, outcome, code });
      this.#m.deliveries.set(key, child);
    }
    child.inc();
  }

  async #attempt(event: CloudEvent): Promise<PostResult> {
    const req = toHttpRequest(event, this.spec.delivery.format);
    // toHttpRequest builds a new record: add the transport header to it instead of copying it
    const headers = req.headers;
    headers.prefer = 'reply';
    this.#m.inFlight.inc();
    const started = performance.now();
    try {
      return await this.#client.post(this.spec.sinkUri, headers, req.body, {
        timeoutMs: this.spec.delivery.timeoutMs,
        signal: this.#abort.signal,
        wantReply: this.spec.reply !== undefined,
      });
    } finally {
      this.#m.inFlight.dec();
      this.#m.latency.observe((performance.now() - started) / 1000);
    }
  }

  async #settle(
    h: Held,
    event: CloudEvent,
    post: PostResult,
    decision: Exclude<Decision, { action: 'retry' }>,
    attempt: number,
  ): Promise<void> {
    if (decision.action === 'ack') {
      await this.#succeed(h, event, post, attempt);
      return;
    }
    const failure: FailureInfo = {
      reason: decision.reason,
      code: decision.code,
      dest: this.spec.sinkUri,
      detail: detailOf(post),
      attempts: attempt,
      subscription: this.spec.id,
    };
    if (decision.action === 'term') {
      this.#term(h, event.id, failure);
      return;
    }
    await this.#deadLetter(h, deadLetterEvent(event, failure), failure, attempt);
  }

  // ---- success and replies -----------------------------------------------------------

  async #succeed(h: Held, event: CloudEvent, post: PostResult, attempt: number): Promise<void> {
    const reply =
      this.spec.reply !== undefined && post.reply !== undefined
        ? fromHttpResponse({ status: 200, headers: post.reply.headers, body: post.reply.body })
        : undefined;
    if (reply === undefined) {
      if (this.#ordered) await this.#ack(h);
      else this.#ackSoon(h);
      if (this.#log.isLevelEnabled('debug')) {
        this.#log.debug({ eventId: event.id, attempt }, 'event delivered');
      }
      return;
    }
    const hops = Number(event.extensions[EXT.hops] ?? '0') + 1;
    const traceparent = event.extensions.traceparent;
    const out: CloudEvent = {
      ...reply,
      extensions: {
        ...(traceparent !== undefined ? { traceparent } : {}),
        ...reply.extensions,
        [EXT.hops]: String(Number.isFinite(hops) ? hops : MAX_REPLY_HOPS + 1),
      },
    };
    if (hops > MAX_REPLY_HOPS) {
      await this.#replyOverHopLimit(h, out, attempt);
      return;
    }
    await this.#settleAfter(h, attempt, 'reply', () => this.#publishReply(out));
    this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'published' });
  }

  async #publishReply(reply: CloudEvent): Promise<void> {
    const prefix = this.spec.reply?.subjectPrefix ?? '';
    const m = toNatsMessage(reply);
    await this.#js.publish(subjectFor(prefix, reply.type), m.data, {
      headers: toMsgHdrs(m.headers),
      msgID: m.msgId,
    });
  }

  async #replyOverHopLimit(h: Held, reply: CloudEvent, attempt: number): Promise<void> {
    const failure: FailureInfo = {
      reason: 'reply-hop-limit',
      dest: `reply:${this.spec.reply?.subjectPrefix ?? ''}`,
      detail: `the reply would be hop ${reply.extensions[EXT.hops] ?? '?'}, more than ${MAX_REPLY_HOPS}`,
      attempts: attempt,
      subscription: this.spec.id,
    };
    if (terminal(this.spec.delivery, 'reply-hop-limit').action === 'term') {
      // the event itself reached its sink: ack it, drop the reply with a warning
      this.#log.warn({ eventId: reply.id }, 'reply over the hop limit dropped');
      this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'dropped' });
      await this.#ack(h);
      return;
    }
    this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'deadletter' });
    await this.#deadLetter(h, deadLetterEvent(reply, failure), failure, attempt);
  }

  // ---- failures ----------------------------------------------------------------------

  async #deadLetterInvalid(h: Held, error: InvalidEventError): Promise<void> {
    const info = h.msg.info;
    const dest = this.spec.sinkUri;
    const failure: FailureInfo = {
      reason: 'invalid-event',
      dest,
      detail: `${error.reason} (${error.field}): ${error.message}`,
      attempts: info.deliveryCount,
      subscription: this.spec.id,
    };
    this.#log.warn(
      { stream: info.stream, streamSequence: info.streamSequence, reason: error.reason },
      'message is not a CloudEvent',
    );
    if (this.spec.delivery.deadLetter === undefined) {
      this.#term(h, `${info.stream}-${info.streamSequence}`, failure);
      return;
    }
    const wrapped = invalidMessageEvent(
      {
        stream: info.stream,
        streamSequence: info.streamSequence,
        subject: h.msg.subject,
        contentType: h.msg.headers?.get('content-type'),
        data: h.msg.data,
      },
      error,
      { dest, attempts: info.deliveryCount, subscription: this.spec.id },
    );
    await this.#deadLetter(h, wrapped, failure, info.deliveryCount);
  }

  async #deadLetter(h: Held, dl: CloudEvent, failure: FailureInfo, attempt: number): Promise<void> {
    this.#log.warn(
      { eventId: dl.id, reason: failure.reason, code: failure.code, attempts: failure.attempts },
      'event dead-lettered',
    );
    await this.#settleAfter(h, attempt, 'dead letter', () => this.#sendDeadLetter(dl));
    if (h.settled) {
      this.#metrics.deadLetters.inc({ subscription: this.spec.id, reason: failure.reason });
    }
  }

  async #sendDeadLetter(dl: CloudEvent): Promise<void> {
    const target = this.spec.delivery.deadLetter;
    if (target === undefined) throw new SettleError('no dead letter configured');
    if (target.kind === 'subject') {
      const m = toNatsMessage(dl);
      await this.#js.publish(target.subject, m.data, {
        headers: toMsgHdrs(m.headers),
        msgID: deadLetterMsgId(dl, this.spec.id),
      });
      return;
    }
    const req = toHttpRequest(dl, 'binary');
    const post = await this.#client.post(target.uri, req.headers, req.body, {
      timeoutMs: this.spec.delivery.timeoutMs,
      signal: this.#abort.signal,
      wantReply: false,
    });
    const r = post.result;
    if (r.kind !== 'response' || r.status < 200 || r.status > 299) {
      throw new SettleError(`the dead-letter sink ${target.uri} failed: ${codeLabel(post)}`);
    }
  }

  /**
   * Runs `action` (publish a reply or a dead letter) and acks after it succeeded. On failure
   * the message is never acked: nak with backoff (ordering none), or wait and try again in
   * place (ordered), so an event is acked only once it reached the sink or the dead letter.
   */
  async #settleAfter(
    h: Held,
    attempt: number,
    what: string,
    action: () => Promise<void>,
  ): Promise<void> {
    for (let n = attempt; ; n += 1) {
      try {
        await action();
        await this.#ack(h);
        return;
      } catch (err) {
        if (what === 'dead letter') {
          this.#metrics.deadLetterFailures.inc({ subscription: this.spec.id });
        }
        const delay = backoff(n, this.spec.delivery, this.#random);
        this.#log.warn({ err, eventId: eventIdOf(h), what, delayMs: delay }, 'settling failed');
        if (!this.#ordered || !(await this.#sleep(delay))) {
          this.#nak(h, this.#ordered ? 0 : delay);
          return;
        }
      }
    }
  }

  #term(h: Held, eventId: string, failure: FailureInfo): void {
    this.#settled(h);
    h.msg.term(`${failure.reason}${failure.code === undefined ? '' : ` ${failure.code}`}`);
    this.#metrics.terminated.inc({ subscription: this.spec.id, reason: failure.reason });
    this.#log.warn(
      { eventId, reason: failure.reason, code: failure.code, attempts: failure.attempts },
      'event terminated without a dead letter',
    );
    this.#onTerminal?.({
      subscription: this.spec.id,
      eventId,
      reason: failure.reason,
      code: failure.code,
    });
  }

  // ---- settling ----------------------------------------------------------------------

  #settled(h: Held): void {
    h.settled = true;
    this.#held.delete(h);
  }

  /**
   * The single ack of a plain delivery without ordering (a lost ack only means a redelivery).
   * It is sent in this event-loop turn's check phase together with the other acks of the
   * turn: nats.js writes to its socket once per microtask checkpoint, and each sink response
   * is its own checkpoint, so acking at once cost a socket write (and a read in nats-server)
   * per event.
   */
  #ackSoon(h: Held): void {
    this.#settled(h);
    if (this.#acks.length === 0) setImmediate(this.#flushAcks);
    this.#acks.push(h.msg);
  }

  readonly #flushAcks = (): void => {
    const acks = this.#acks;
    this.#acks = [];
    for (const msg of acks) msg.ack();
  };

  /** Acks and waits for JetStream's confirmation (ackAck). */
  async #ack(h: Held): Promise<void> {
    this.#settled(h);
    try {
      await h.msg.ackAck();
    } catch (err) {
      // JetStream redelivers it: at least once
      this.#log.warn({ err, eventId: eventIdOf(h) }, 'ack not confirmed');
    }
  }

  #nak(h: Held, delayMs: number): void {
    this.#settled(h);
    if (delayMs > 0) h.msg.nak(delayMs);
    else h.msg.nak();
  }

  /** Waits `ms`; false when stop() began meanwhile. */
  #sleep(ms: number): Promise<boolean> {
    const signal = this.#stopping.signal;
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- stopping ----------------------------------------------------------------------

  async #stop(graceMs: number): Promise<void> {
    this.#stopping.abort();
    await withTimeout(this.#messages?.close(), 5_000);
    for (const h of this.#scheduler.takeQueued()) this.#nak(h, 0);
    const drained = await withTimeout(this.#scheduler.idle(), graceMs);
    if (!drained) {
      this.#log.warn({ inFlight: this.#scheduler.running }, 'grace period over; aborting');
      this.#abort.abort();
      await withTimeout(this.#scheduler.idle(), 5_000);
    }
    for (const h of this.#held) this.#nak(h, 0);
    this.#flushAcks();
    await withTimeout(this.#loop, 5_000);
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    await this.#client.destroy();
    this.#log.info({}, 'delivery loop stopped');
  }
}

/** Waits for `p` at most `ms`; true when it settled in time. */
async function withTimeout(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (p === undefined) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => {
      resolve(false);
    }, ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
