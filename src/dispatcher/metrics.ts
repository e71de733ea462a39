// The dispatcher's Prometheus metrics, labelled by subscription (namespace/name).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class DispatcherMetrics {
  readonly registry: Registry;
  /** outcome: ack | retry | deadletter | term | nak (shutdown, dead letter unavailable); code: HTTP status or "none" */
  readonly deliveries: Counter<'subscription' | 'outcome' | 'code'>;
  readonly latency: Histogram<'subscription'>;
  readonly inFlight: Gauge<'subscription'>;
  readonly retries: Counter<'subscription'>;
  readonly deadLetters: Counter<'subscription' | 'reason'>;
  /** reason: no-stream | too-large | sink-failed | error */
  readonly deadLetterFailures: Counter<'subscription' | 'reason'>;
  /** reason: max-deliver | dead-letter-rejected */
  readonly eventsLost: Counter<'subscription' | 'reason'>;
  readonly terminated: Counter<'subscription' | 'reason'>;
  readonly filtered: Counter<'subscription'>;
  readonly replies: Counter<'subscription' | 'outcome'>;
  readonly workers: Gauge;
  /** ordered subscriptions: pins this replica received (it became the one delivering) */
  readonly pins: Counter<'subscription'>;
  /** ordered subscriptions: from a pin to the moment nothing delivered before it is unsettled */
  readonly pinGateSeconds: Histogram<'subscription'>;
  /** writes of status.stats.deadLettered that failed (the count is kept for the next try) */
  readonly statsFlushFailures: Counter<'subscription'>;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.deliveries = new Counter({
      name: 'eventwire_dispatcher_deliveries_total',
      help: 'Delivery attempts by outcome and HTTP status code',
      labelNames: ['subscription', 'outcome', 'code'],
      registers,
    });
    this.latency = new Histogram({
      name: 'eventwire_dispatcher_delivery_duration_seconds',
      help: 'Duration of one HTTP delivery attempt',
      labelNames: ['subscription'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'eventwire_dispatcher_in_flight',
      help: 'Deliveries in flight',
      labelNames: ['subscription'],
      registers,
    });
    this.retries = new Counter({
      name: 'eventwire_dispatcher_retries_total',
      help: 'Retries scheduled',
      labelNames: ['subscription'],
      registers,
    });
    this.deadLetters = new Counter({
      name: 'eventwire_dispatcher_dead_letters_total',
      help: 'Events that reached the dead letter, by reason',
      labelNames: ['subscription', 'reason'],
      registers,
    });
    this.deadLetterFailures = new Counter({
      name: 'eventwire_dispatcher_dead_letter_failures_total',
      help: 'Dead-letter sends that failed, by reason (the event is retried later, except too-large)',
      labelNames: ['subscription', 'reason'],
      registers,
    });
    this.eventsLost = new Counter({
      name: 'eventwire_dispatcher_events_lost_total',
      help: 'Events that reached neither their sink nor their dead letter and will not be delivered again, by reason',
      labelNames: ['subscription', 'reason'],
      registers,
    });
    this.terminated = new Counter({
      name: 'eventwire_dispatcher_terminated_total',
      help: 'Events terminated without a dead letter configured, by reason',
      labelNames: ['subscription', 'reason'],
      registers,
    });
    this.filtered = new Counter({
      name: 'eventwire_dispatcher_filtered_total',
      help: 'Events acknowledged without delivery because the filters did not match',
      labelNames: ['subscription'],
      registers,
    });
    this.replies = new Counter({
      name: 'eventwire_dispatcher_replies_total',
      help: 'Reply events by outcome (published, deadletter, dropped, failed)',
      labelNames: ['subscription', 'outcome'],
      registers,
    });
    this.workers = new Gauge({
      name: 'eventwire_dispatcher_subscriptions',
      help: 'Subscriptions this dispatcher is delivering',
      registers,
    });
    ({ pins: this.pins, pinGateSeconds: this.pinGateSeconds } = pinMetrics(registers));
    this.statsFlushFailures = new Counter({
      name: 'eventwire_dispatcher_stats_flush_failures_total',
      help: 'Writes of status.stats.deadLettered that failed; the count is kept and written on the next try',
      labelNames: ['subscription'],
      registers,
    });
  }
}

/** The metrics of ordered subscriptions' pins. */
function pinMetrics(registers: Registry[]): {
  pins: Counter<'subscription'>;
  pinGateSeconds: Histogram<'subscription'>;
} {
  const pins = new Counter({
    name: 'eventwire_dispatcher_pins_total',
    help: 'Ordered subscriptions: times this replica was pinned to the consumer (became the one delivering)',
    labelNames: ['subscription'],
    registers,
  });
  const pinGateSeconds = new Histogram({
    name: 'eventwire_dispatcher_pin_gate_seconds',
    help: 'Ordered subscriptions: time from a pin until every event delivered before it was settled (events of its keys wait meanwhile)',
    labelNames: ['subscription'],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers,
  });
  return { pins, pinGateSeconds };
}
