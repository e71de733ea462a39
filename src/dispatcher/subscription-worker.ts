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
//
// Ordered subscriptions with several replicas: their consumer has a pinned-client priority
// group (consumer-plan.ts). The worker pulls it with PinnedPuller (puller.ts), which keeps the
// pin while this replica lives; the first messages of a new pin pass the PinGate (pin-gate.ts)
// so they cannot overtake what the previous pin holder still holds or has not settled; a
// graceful stop releases the pin (unpin) after it stopped pulling. docs/ordering.md, ADR 0011.
//
// Every failure ends in the outcome table: an event that cannot be encoded for the sink is a
// permanent failure (dead letter at once); any other unexpected failure counts as a failed
// attempt (retried with the backoff, dead-lettered after the retries). A dead letter or reply
// that cannot be published is retried; once the delivery count nears the consumer's
// max_deliver the message is held and retried in place, so JetStream never gives up on it.
// Should settling a failed event fail as well, it is nak'ed, or with ordering processed again
// in place, so it is never overtaken by a later event of its key (recovery.ts).
import {
  DeliverPolicy,
  type Consumer,
  type ConsumerInfo,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import {
  fromHttpResponse,
  fromNatsMessage,
  toHttpRequest,
  toNatsMessage,
  type CloudEvent,
  type EventResult,
  InvalidEventError,
} from '../cloudevents/index.ts';
import { clampTimerMs, setLongTimeout, sleep } from '../util/timers.ts';
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
import { MAX_REPLY_HOPS, isValidHops, nextReplyHops } from './hops.ts';
import { backoff, decide, terminal, type Decision, type FailureReason } from './outcome.ts';
import { lastResort } from './recovery.ts';
import { KeyedScheduler } from './scheduler.ts';
import { PinGate, type PinWindow } from './pin-gate.ts';
import { PinnedPuller } from './puller.ts';
import type { WorkerSpec } from './settings.ts';

export { MAX_REPLY_HOPS } from './hops.ts';
/** How long one pull of a shared (`ordering: none`) consumer waits for messages. */
const PULL_EXPIRES_MS = 5_000;
const DEFAULT_ACK_WAIT_MS = 30_000;
/**
 * A message whose dead letter (or reply) fails is nak'ed with backoff until at most this many
 * deliveries are left before max_deliver (at most half of them); then it is held and retried
 * in place, and the deliveries left cover restarts of the dispatcher.
 */
const MAX_DELIVER_RESERVE = 10;
/**
 * The longest nak delay JetStream can read (about 285 years): it is sent in nanoseconds and
 * the server reads an int64; a larger value is not understood and the message comes back at
 * once.
 */
const MAX_NAK_DELAY_MS = 9_000_000_000_000;
/** At most one Warning Event per worker and kind of failure that repeats, per interval. */
const ALERT_INTERVAL_MS = 60_000;
/**
 * The most window sequences (ack floor to last delivered) read to learn their keys when a pin
 * begins; a larger window is gated on the ack floor alone (pin-gate.ts).
 */
const WINDOW_READ_LIMIT = 10_000;
/** How often the ack floor is read while the first messages of a pin are held back. */
const FLOOR_POLL_MS = 200;

export interface TerminalInfo {
  readonly subscription: string;
  readonly eventId: string;
  readonly reason: FailureReason;
  readonly code?: number | undefined;
}

/** Something an operator must see: the dispatcher records it as a Warning Kubernetes Event. */
export interface WorkerAlert {
  readonly subscription: string;
  readonly eventId: string;
  /** the Kubernetes Event reason */
  readonly reason: 'DeadLetterUnavailable' | 'ReplyUnavailable' | 'EventLost';
  readonly message: string;
}

export interface WorkerOptions {
  readonly js: JetStreamClient;
  /** the connection of `js`; taken from `js` when not given (pinned consumers pull with it) */
  readonly nc?: NatsConnection;
  readonly spec: WorkerSpec;
  readonly metrics: DispatcherMetrics;
  readonly log: Logger;
  readonly random?: () => number;
  /** an event was terminated (no dead letter): the dispatcher records a Warning Event */
  readonly onTerminal?: (info: TerminalInfo) => void;
  /** a dead letter or reply keeps failing, or an event was lost: a Warning Event */
  readonly onAlert?: (alert: WorkerAlert) => void;
  /** the dead-letter sink or stream accepted a dead letter: status.stats.deadLettered */
  readonly onDeadLettered?: () => void;
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
  /** the scheduler key (ordering) */
  readonly key: string;
  /** the attempt number: JetStream's delivery count plus the retries made in place */
  attempt: number;
  settled: boolean;
  /** an error was logged because it is held for its dead letter or reply */
  heldReported: boolean;
}

/** A dead-letter sink that did not answer 2xx. */
class SettleError extends Error {
  override readonly name = 'SettleError';
}

/** Why publishing a dead letter or a reply failed; only `too-large` is permanent. */
type PublishFailure = 'no-stream' | 'too-large' | 'sink-failed' | 'error';

type SettleOutcome =
  | { readonly outcome: 'ok' }
  /** nak'ed (to come back later) or stopping */
  | { readonly outcome: 'released' }
  /** can never succeed: the message is still held */
  | { readonly outcome: 'rejected'; readonly error: string };

function publishFailureOf(err: unknown): PublishFailure {
  if (err instanceof SettleError) return 'sink-failed';
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < 8; depth += 1) {
    // nats.js: a subject no stream captures answers 503 "no responders"
    if (e.name === 'NoResponders' || /no responders/i.test(e.message)) return 'no-stream';
    if (/max_payload/i.test(e.message)) return 'too-large';
    e = e.cause;
  }
  return 'error';
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * The CloudEvent of a message. The decoder reports what it refuses as a result; should it
 * throw, the message is treated as not a CloudEvent (dead letter), never left to break the
 * pull loop and come back after every ack_wait.
 */
function decode(msg: JsMsg): EventResult {
  try {
    return fromNatsMessage({ headers: msg.headers, data: msg.data });
  } catch (err) {
    const error = new InvalidEventError(
      'bad-encoding',
      `the message could not be decoded: ${describe(err)}`,
      { field: 'message', fix: 'publish a CloudEvent in binary or structured mode', cause: err },
    );
    return { ok: false, error };
  }
}

function eventIdOf(h: Held): string | undefined {
  return h.decoded.ok ? h.decoded.event.id : undefined;
}

/** The event id, or `<stream>-<seq>` for a message that is not a CloudEvent. */
function idOf(h: Held): string {
  return eventIdOf(h) ?? `${h.msg.info.stream}-${h.msg.info.streamSequence}`;
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
  readonly #onAlert: ((alert: WorkerAlert) => void) | undefined;
  readonly #onDeadLettered: (() => void) | undefined;
  /** when each kind of alert was last raised */
  readonly #alerted = new Map<string, number>();
  /** the consumer's max_deliver; 0 or less is unlimited */
  #maxDeliver = 0;
  readonly #filter: CompiledFilter;
  readonly #client: SinkClient;
  readonly #scheduler: KeyedScheduler<Held>;
  readonly #held = new Set<Held>();
  /** aborted when stop() begins: wakes backoff sleeps and the reconnect loop */
  readonly #stopping = new AbortController();
  /** aborted when the grace period ends: cancels attempts still in flight */
  readonly #abort = new AbortController();
  readonly #keepAliveOverride: number | undefined;
  readonly #ncOption: NatsConnection | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  #messages: { close(): Promise<unknown> } | undefined;
  /** pinned consumers: the pull loop, and the gate of the first messages of each pin */
  #puller: PinnedPuller | undefined;
  #gate: PinGate<Held> | undefined;
  #consumer: Consumer | undefined;
  #pinGroup: string | undefined;
  /** when the current pin began (performance.now()), until its window settled */
  #pinStarted: number | undefined;
  #floorPoll: NodeJS.Timeout | undefined;
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
    this.#onAlert = opts.onAlert;
    this.#onDeadLettered = opts.onDeadLettered;
    this.#keepAliveOverride = opts.keepAliveMs;
    this.#ncOption = opts.nc;
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
    this.#maxDeliver = info.config.max_deliver ?? 0;
    this.#startKeepAlive(this.#keepAliveOverride ?? Math.max(100, Math.floor(ackWaitMs / 3)));
    const group = info.config.priority_groups?.[0];
    if (info.config.priority_policy === 'pinned_client' && group !== undefined) {
      await this.#pullPinned(consumer, info, group);
      return;
    }
    const messages = await consumer.consume({
      max_messages: delivery.maxInFlight,
      // short pulls: when the consumer's leader moves to another server (a NATS cluster's
      // leader election, a rolling restart) the open pull is lost, and nats.js pulls again
      // only after two missed heartbeats (expires / 2 each); the default 30 s stalled
      // delivery for 30-52 s after each move (test/integration/nats-cluster)
      expires: PULL_EXPIRES_MS,
    });
    this.#messages = messages;
    if (this.#stopping.signal.aborted) await messages.close();
    this.#consuming = true;
    this.#log.info({ stream, consumer: name }, 'delivery loop started');
    for await (const msg of messages) this.#accept(msg, undefined);
  }

  /** A pinned-client consumer (ordered subscription): one replica at a time receives. */
  async #pullPinned(consumer: Consumer, info: ConsumerInfo, group: string): Promise<void> {
    const { stream, consumer: name, delivery } = this.spec;
    const timeoutNanos = info.config.priority_timeout ?? 0;
    const puller = new PinnedPuller({
      nc: this.#nc(),
      apiPrefix: this.#js.apiPrefix,
      stream,
      consumer: name,
      group,
      batch: Math.max(1, delivery.maxInFlight),
      // JetStream's default when the consumer does not say
      pinTimeoutMs: timeoutNanos > 0 ? timeoutNanos / 1e6 : 120_000,
      onMessage: (msg, pinId) => {
        this.#accept(msg, pinId);
      },
      log: this.#log,
    });
    this.#consumer = consumer;
    this.#pinGroup = group;
    this.#gate ??= new PinGate<Held>();
    this.#puller = puller;
    this.#messages = {
      close: () => {
        puller.close();
        return Promise.resolve();
      },
    };
    if (this.#stopping.signal.aborted) puller.close();
    this.#consuming = true;
    this.#log.info({ stream, consumer: name, group }, 'delivery loop started (pinned)');
    try {
      await puller.run();
    } finally {
      puller.close();
    }
  }

  #nc(): NatsConnection {
    if (this.#ncOption !== undefined) return this.#ncOption;
    // nats.js's JetStream client keeps its connection as `nc`
    const nc = (this.#js as unknown as { nc?: NatsConnection }).nc;
    if (nc === undefined) throw new Error('the JetStream client has no NATS connection');
    return nc;
  }

  /** Releases the pin this replica holds, if any (a failure only delays the next pin). */
  async #unpin(): Promise<void> {
    const group = this.#pinGroup;
    if (this.#puller?.pinId === undefined || group === undefined) return;
    try {
      const jsm = await this.#js.jetstreamManager(false);
      await jsm.consumers.unpin(this.spec.stream, this.spec.consumer, group);
      this.#log.info({ pinId: this.#puller.pinId }, 'pin released');
    } catch (err) {
      this.#log.warn({ err }, 'releasing the pin failed; it times out instead');
    }
  }

  // ---- the first messages of a pin (pin-gate.ts) ---------------------------------------

  /** A new pin: read its window, then release what the gate held back meanwhile. */
  #beginPin(pin: string): void {
    const gate = this.#gate;
    if (gate === undefined) return;
    gate.begin(pin);
    this.#pinStarted = performance.now();
    this.#metrics.pins.inc({ subscription: this.spec.id });
    void this.#loadPin(gate, pin);
  }

  async #loadPin(gate: PinGate<Held>, pin: string): Promise<void> {
    for (;;) {
      try {
        const window = await this.#loadWindow(pin);
        this.#log.info(
          {
            pinId: pin,
            floor: window.floor,
            last: window.last,
            windowKeys: window.keys === undefined ? 'unknown' : window.keys.size,
          },
          'pinned',
        );
        this.#release(gate.load(pin, window));
        this.#pollFloor();
        return;
      } catch (err) {
        // nothing of this pin is released until its window is known
        this.#log.warn({ err, pinId: pin }, 'reading the window of a new pin failed; retrying');
      }
      if (!(await this.#sleep(1_000))) return;
      if (gate.pin !== pin || gate.state !== 'loading') return;
    }
  }

  /**
   * The window of a new pin: the ack floor, the last delivered sequence and, when the window
   * is small enough, the ordering key of every message in it (read from the stream).
   */
  async #loadWindow(pin: string): Promise<PinWindow> {
    const consumer = this.#consumer;
    if (consumer === undefined) throw new Error('no consumer');
    const info = await consumer.info(false);
    const floor = info.ack_floor.stream_seq;
    const last = info.delivered.stream_seq;
    if (last <= floor) return { floor, last, keys: new Map() };
    if (last - floor > WINDOW_READ_LIMIT) return { floor, last };
    try {
      return { floor, last, keys: await this.#windowKeys(info, floor, last) };
    } catch (err) {
      this.#log.warn({ err, pinId: pin, floor, last }, 'reading the keys of a pin window failed');
      return { floor, last };
    }
  }

  /** The ordering key of each message in (floor, last] the consumer's filters select. */
  async #windowKeys(
    info: ConsumerInfo,
    floor: number,
    last: number,
  ): Promise<Map<string, number[]>> {
    const filters = info.config.filter_subjects ?? [];
    const single = info.config.filter_subject;
    const subjects = filters.length > 0 ? filters : single ? [single] : [];
    const reader = await this.#js.consumers.get(this.spec.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: floor + 1,
      ...(subjects.length > 0 ? { filter_subjects: subjects } : {}),
    });
    const keys = new Map<string, number[]>();
    const messages = await reader.fetch({ max_messages: last - floor, expires: 5_000 });
    for await (const msg of messages) {
      const seq = msg.seq;
      if (seq > last) break;
      const key = this.#orderingKeyOf(decode(msg));
      if (key !== undefined) {
        const seqs = keys.get(key);
        if (seqs === undefined) keys.set(key, [seq]);
        else seqs.push(seq);
      }
      if (seq >= last || msg.info.pending === 0) break;
    }
    await messages.close();
    return keys;
  }

  /** While the gate holds messages back, the ack floor tells what was settled elsewhere. */
  #pollFloor(): void {
    if (this.#floorPoll !== undefined) return;
    const tick = async () => {
      const gate = this.#gate;
      const consumer = this.#consumer;
      if (gate !== undefined && consumer !== undefined && !gate.isOpen()) {
        try {
          const info = await consumer.info(false);
          this.#release(gate.floor(info.ack_floor.stream_seq));
        } catch (err) {
          this.#log.debug({ err }, 'reading the ack floor failed');
        }
      }
      if (gate === undefined || gate.isOpen() || this.#isStopping()) {
        this.#floorPoll = undefined;
        return;
      }
      this.#floorPoll = setTimeout(() => void tick(), FLOOR_POLL_MS);
    };
    this.#floorPoll = setTimeout(() => void tick(), FLOOR_POLL_MS);
  }

  #gateOpened(): void {
    if (this.#pinStarted === undefined) return;
    const seconds = (performance.now() - this.#pinStarted) / 1000;
    this.#pinStarted = undefined;
    this.#metrics.pinGateSeconds.observe({ subscription: this.spec.id }, seconds);
    this.#log.info({ pinId: this.#gate?.pin, seconds }, 'pin window settled');
  }

  /** Pushes what the gate released to the scheduler, in order. */
  #release(items: readonly Held[]): void {
    for (const h of items) this.#scheduler.push(h.key, h);
    if (this.#gate?.state === 'open') this.#gateOpened();
  }

  #startKeepAlive(intervalMs: number): void {
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    // an interval past Node's timer limit would fire every 1 ms
    this.#keepAlive = setInterval(
      () => {
        for (const h of this.#held) if (!h.settled) h.msg.working();
      },
      Math.max(1, clampTimerMs(intervalMs)),
    );
    this.#keepAlive.unref();
  }

  #accept(msg: JsMsg, pinId: string | undefined): void {
    if (this.#stopping.signal.aborted) {
      msg.nak();
      return;
    }
    const decoded = decode(msg);
    const held: Held = {
      msg,
      decoded,
      key: this.#keyOf(decoded),
      attempt: msg.info.deliveryCount,
      settled: false,
      heldReported: false,
    };
    this.#held.add(held);
    const gate = this.#gate;
    if (gate === undefined) {
      this.#scheduler.push(held.key, held);
      return;
    }
    if (pinId !== undefined && gate.isNewPin(pinId)) this.#beginPin(pinId);
    this.#release(gate.admit(held, msg.info.streamSequence, held.key));
  }

  /** The scheduler key of an event: its ordering key, '' (strict), or unordered. */
  #keyOf(decoded: EventResult): string {
    const key = this.#orderingKeyOf(decoded);
    if (key !== undefined) return key;
    this.#seq += 1;
    return `u:${this.#seq}`;
  }

  /** The key that orders an event, or undefined when it is not ordered. */
  #orderingKeyOf(decoded: EventResult): string | undefined {
    const { ordering, orderingKey } = this.spec.delivery;
    if (ordering === 'strict') return '';
    if (ordering === 'key' && decoded.ok && orderingKey !== undefined) {
      const key = decoded.event.extensions[orderingKey];
      if (key !== undefined) return `k:${key}`;
    }
    return undefined;
  }

  #isStopping(): boolean {
    return this.#stopping.signal.aborted;
  }

  get #ordered(): boolean {
    return this.spec.delivery.ordering !== 'none';
  }

  // ---- one message -------------------------------------------------------------------

  async #process(h: Held): Promise<void> {
    for (;;) {
      try {
        await this.#handle(h);
        return;
      } catch (err) {
        if (!(await this.#recover(h, err))) return;
      }
    }
  }

  async #handle(h: Held): Promise<void> {
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
  }

  /**
   * An unexpected failure while processing (a bug, or a client failure nobody classified):
   * the outcome table's internal-error row, retried with the backoff of its attempt and
   * dead-lettered once the retries run out. True: try again now (in place, ordered).
   */
  async #recover(h: Held, err: unknown): Promise<boolean> {
    this.#log.error({ err, eventId: idOf(h), attempt: h.attempt }, 'processing an event failed');
    if (h.settled) return false;
    const post: PostResult = {
      result: { kind: 'internal-error', message: describe(err) },
      aborted: false,
    };
    try {
      const decision = decide(post.result, h.attempt, this.spec.delivery, Date.now(), this.#random);
      this.#countDelivery(decision.action, 'internal-error');
      if (decision.action === 'retry') return await this.#retry(h, decision.delayMs);
      if (decision.action !== 'ack') await this.#giveUp(h, post, decision);
    } catch (again) {
      this.#log.error({ err: again, eventId: idOf(h) }, 'settling a failed event failed');
    }
    if (!this.#held.has(h)) return false;
    // never left unsettled (recovery.ts): nak'ed (none), or kept at the head of its key and
    // processed again after the backoff (ordered: a nak would let its successors overtake it)
    const next = lastResort(h.attempt, this.spec.delivery);
    if (next.action === 'nak') {
      this.#nak(h, next.delayMs);
      return false;
    }
    this.#log.warn(
      { eventId: idOf(h), attempt: h.attempt, delayMs: next.delayMs },
      'failed event kept at the head of its key',
    );
    if (!(await this.#sleep(next.delayMs))) {
      this.#nak(h, 0);
      return false;
    }
    h.attempt += 1;
    return true;
  }

  /** Retries later: nak with the delay, or wait in place (ordered); true: try again now. */
  async #retry(h: Held, delayMs: number): Promise<boolean> {
    this.#m.retries.inc();
    if (!this.#ordered) {
      this.#nak(h, delayMs);
      return false;
    }
    if (!(await this.#sleep(delayMs))) {
      this.#nak(h, 0);
      return false;
    }
    h.attempt += 1;
    return true;
  }

  /** A terminal decision for a message whose processing failed unexpectedly. */
  async #giveUp(
    h: Held,
    post: PostResult,
    decision: Extract<Decision, { action: 'deadLetter' | 'term' }>,
  ): Promise<void> {
    if (h.decoded.ok) {
      await this.#settle(h, h.decoded.event, post, decision, h.attempt);
      return;
    }
    this.#term(h, idOf(h), {
      reason: decision.reason,
      dest: this.spec.sinkUri,
      detail: detailOf(post),
      attempts: h.attempt,
      subscription: this.spec.id,
    });
  }

  /** An event this subscription dead-lettered itself (its dead letter in its own stream). */
  #isOwnDeadLetter(event: CloudEvent): boolean {
    return (
      event.extensions[EXT.subscription] === this.spec.id &&
      event.extensions[EXT.reason] !== undefined
    );
  }

  async #deliver(h: Held, event: CloudEvent): Promise<void> {
    for (;;) {
      const post = await this.#attempt(event);
      if (post.aborted) {
        this.#nak(h, 0);
        return;
      }
      const decision = decide(post.result, h.attempt, this.spec.delivery, Date.now(), this.#random);
      this.#countDelivery(decision.action, codeLabel(post));
      if (decision.action !== 'retry') {
        await this.#settle(h, event, post, decision, h.attempt);
        return;
      }
      this.#log.info(
        { eventId: event.id, attempt: h.attempt, code: codeLabel(post), delayMs: decision.delayMs },
        'delivery failed; retrying',
      );
      if (!(await this.#retry(h, decision.delayMs))) return;
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
    let req: ReturnType<typeof toHttpRequest>;
    try {
      req = toHttpRequest(event, this.spec.delivery.format);
    } catch (err) {
      // a pure function of the event and the format: it fails the same way every time
      return { result: { kind: 'unencodable', message: describe(err) }, aborted: false };
    }
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
    await this.#deadLetter(h, deadLetterEvent(event, failure), failure, attempt, false);
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
    // a value the dispatcher did not write counts as over the limit (hops.ts)
    const hops = nextReplyHops(event.extensions[EXT.hops]);
    const traceparent = event.extensions.traceparent;
    const out: CloudEvent = {
      ...reply,
      extensions: {
        ...(traceparent !== undefined ? { traceparent } : {}),
        ...reply.extensions,
        [EXT.hops]: String(hops),
      },
    };
    if (hops > MAX_REPLY_HOPS) {
      const incoming = event.extensions[EXT.hops];
      const detail =
        incoming === undefined || isValidHops(incoming)
          ? `the reply would be hop ${String(hops)}, more than ${String(MAX_REPLY_HOPS)}`
          : `the event's ewhops ${JSON.stringify(incoming)} is not a hop count the dispatcher writes (1 to ${String(MAX_REPLY_HOPS)})`;
      await this.#replyUndeliverable(h, out, attempt, 'reply-hop-limit', detail);
      return;
    }
    const r = await this.#settleAfter(h, attempt, 'reply', () => this.#publishReply(out));
    if (r.outcome === 'ok') {
      this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'published' });
    } else if (r.outcome === 'rejected') {
      await this.#replyUndeliverable(h, out, attempt, 'reply-too-large', r.error);
    }
  }

  async #publishReply(reply: CloudEvent): Promise<void> {
    const prefix = this.spec.reply?.subjectPrefix ?? '';
    const m = toNatsMessage(reply);
    await this.#js.publish(subjectFor(prefix, reply.type), m.data, {
      headers: toMsgHdrs(m.headers),
      msgID: m.msgId,
    });
  }

  /** A reply that cannot be published (over the hop limit, too large): dead letter or drop. */
  async #replyUndeliverable(
    h: Held,
    reply: CloudEvent,
    attempt: number,
    reason: 'reply-hop-limit' | 'reply-too-large',
    detail: string,
  ): Promise<void> {
    const failure: FailureInfo = {
      reason,
      dest: `reply:${this.spec.reply?.subjectPrefix ?? ''}`,
      detail,
      attempts: attempt,
      subscription: this.spec.id,
    };
    if (terminal(this.spec.delivery, reason).action === 'term') {
      // the event itself reached its sink: ack it, drop the reply with a warning
      this.#log.warn({ eventId: reply.id, reason, detail }, 'reply dropped');
      this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'dropped' });
      await this.#ack(h);
      return;
    }
    this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'deadletter' });
    await this.#deadLetter(h, deadLetterEvent(reply, failure), failure, attempt, true);
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
    await this.#deadLetter(h, wrapped, failure, info.deliveryCount, false);
  }

  /**
   * Sends `dl` to the dead letter and acks. `delivered`: `dl` is a reply, the event itself
   * reached its sink (a dead letter that refuses it drops only the reply).
   */
  async #deadLetter(
    h: Held,
    dl: CloudEvent,
    failure: FailureInfo,
    attempt: number,
    delivered: boolean,
  ): Promise<void> {
    this.#log.warn(
      { eventId: dl.id, reason: failure.reason, code: failure.code, attempts: failure.attempts },
      'event dead-lettered',
    );
    const r = await this.#settleAfter(h, attempt, 'dead letter', () => this.#sendDeadLetter(dl));
    if (r.outcome === 'ok') {
      this.#metrics.deadLetters.inc({ subscription: this.spec.id, reason: failure.reason });
      this.#onDeadLettered?.();
      return;
    }
    if (r.outcome !== 'rejected') return;
    if (delivered) {
      this.#log.error(
        { eventId: dl.id, error: r.error },
        'the dead letter refused a reply; dropped',
      );
      this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'dropped' });
      await this.#ack(h);
      return;
    }
    // it can never be stored: term it rather than let JetStream redeliver it forever
    this.#settled(h);
    h.msg.term(`dead letter refused: ${r.error}`);
    this.#lose(h, 'dead-letter-rejected', `the dead letter refused it: ${r.error}`);
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
   * place (ordered, or when few deliveries are left before max_deliver), so an event is acked
   * only once it reached the sink or the dead letter. A failure that can never succeed (too
   * large for NATS) is `rejected` and the message left to the caller.
   */
  async #settleAfter(
    h: Held,
    attempt: number,
    what: 'reply' | 'dead letter',
    action: () => Promise<void>,
  ): Promise<SettleOutcome> {
    for (let n = attempt; ; n += 1) {
      try {
        await action();
        await this.#ack(h);
        return { outcome: 'ok' };
      } catch (err) {
        const failure = publishFailureOf(err);
        if (what === 'dead letter') {
          this.#metrics.deadLetterFailures.inc({ subscription: this.spec.id, reason: failure });
        } else {
          this.#metrics.replies.inc({ subscription: this.spec.id, outcome: 'failed' });
        }
        if (failure === 'too-large') {
          this.#log.error({ err, eventId: idOf(h), what }, 'settling failed for good');
          return { outcome: 'rejected', error: describe(err) };
        }
        const delayMs = backoff(n, this.spec.delivery, this.#random);
        const inPlace = this.#ordered || this.#nearMaxDeliver(h);
        this.#log.warn({ err, eventId: idOf(h), what, failure, delayMs }, 'settling failed');
        if (!inPlace) {
          this.#nak(h, delayMs);
          return { outcome: 'released' };
        }
        this.#reportHeld(h, what, failure, err);
        if (!(await this.#sleep(delayMs))) {
          this.#nak(h, 0);
          return { outcome: 'released' };
        }
      }
    }
  }

  /** Few deliveries left before JetStream gives up on the message: keep it instead of nak. */
  #nearMaxDeliver(h: Held): boolean {
    const max = this.#maxDeliver;
    if (max <= 0) return false;
    const reserve = Math.min(MAX_DELIVER_RESERVE, Math.floor(max / 2));
    return max - h.msg.info.deliveryCount <= reserve;
  }

  /** An error log per held event, and a Warning Event at most once per ALERT_INTERVAL_MS. */
  #reportHeld(h: Held, what: 'reply' | 'dead letter', failure: PublishFailure, err: unknown) {
    const eventId = idOf(h);
    if (!h.heldReported) {
      h.heldReported = true;
      this.#log.error(
        { eventId, what, failure, err, deliveries: h.msg.info.deliveryCount },
        'event held until its dead letter or reply can be published',
      );
    }
    const reason = what === 'dead letter' ? 'DeadLetterUnavailable' : 'ReplyUnavailable';
    const now = Date.now();
    if (now - (this.#alerted.get(reason) ?? -Infinity) < ALERT_INTERVAL_MS) return;
    this.#alerted.set(reason, now);
    const dl = this.spec.delivery.deadLetter;
    const hint =
      failure === 'no-stream'
        ? `: no stream captures the subject${dl?.kind === 'subject' && what === 'dead letter' ? ` ${dl.subject}` : ''}; add an EventStream that captures it`
        : `: ${describe(err)}`;
    this.#onAlert?.({
      subscription: this.spec.id,
      eventId,
      reason,
      message: `the ${what} of event ${eventId} cannot be published${hint}. The event is held and retried with backoff until it can.`,
    });
  }

  /** An event JetStream will not deliver again and that reached neither sink nor dead letter. */
  #lose(h: Held, reason: 'max-deliver' | 'dead-letter-rejected', detail: string): void {
    const eventId = idOf(h);
    this.#metrics.eventsLost.inc({ subscription: this.spec.id, reason });
    this.#log.error({ eventId, reason, detail }, 'event lost');
    this.#onAlert?.({
      subscription: this.spec.id,
      eventId,
      reason: 'EventLost',
      message: `event ${eventId} reached neither its sink nor its dead letter and will not be delivered again: ${detail}`,
    });
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
      return;
    }
    // confirmed: later messages of its key held back by a new pin may go
    if (this.#gate !== undefined) this.#release(this.#gate.acked(h.msg.info.streamSequence));
  }

  #nak(h: Held, delayMs: number): void {
    this.#settled(h);
    if (delayMs > 0) h.msg.nak(Math.min(Math.round(delayMs), MAX_NAK_DELAY_MS));
    else h.msg.nak();
    const count = h.msg.info.deliveryCount;
    if (this.#maxDeliver > 0 && count >= this.#maxDeliver) {
      this.#lose(
        h,
        'max-deliver',
        `nak'ed on delivery ${String(count)} of max_deliver ${String(this.#maxDeliver)}`,
      );
    }
  }

  /** Waits `ms` (any duration); false when stop() began meanwhile. */
  #sleep(ms: number): Promise<boolean> {
    return sleep(ms, this.#stopping.signal);
  }

  // ---- stopping ----------------------------------------------------------------------

  async #stop(graceMs: number): Promise<void> {
    this.#stopping.abort();
    await withTimeout(this.#messages?.close(), 5_000);
    // hand the pin over at once instead of after priority_timeout: the next replica's gate
    // holds back what this one still holds (pin-gate.ts)
    await withTimeout(this.#unpin(), 2_000);
    for (const h of this.#gate?.takeWaiting() ?? []) this.#nak(h, 0);
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
    if (this.#floorPoll !== undefined) clearTimeout(this.#floorPoll);
    await this.#client.destroy();
    this.#log.info({}, 'delivery loop stopped');
  }
}

/** Waits for `p` at most `ms`; true when it settled in time. */
async function withTimeout(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (p === undefined) return true;
  let timer: { clear(): void } | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setLongTimeout(() => {
      resolve(false);
    }, ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    timer?.clear();
  }
}
