// The last resort of a failed event, pure: its processing failed unexpectedly (an exception
// inside the worker) and settling it by the outcome table failed too, so the message is still
// held and unsettled. It must not be left to ack_wait. Without ordering it is nak'ed and
// JetStream delivers it again after the backoff. With key or strict ordering a nak would let
// later events of its key overtake it (they are delivered while it waits for its redelivery),
// so it stays at the head of its key and is processed again in place after the backoff, as
// an ordinary retry is (ADR 0006). docs/ordering.md.
import { backoff, type BackoffSettings } from './outcome.ts';
import type { DeliverySettings } from './settings.ts';

export type LastResort =
  /** nak with this delay: JetStream delivers it again */
  | { readonly action: 'nak'; readonly delayMs: number }
  /** keep it (working() keeps it alive), wait the delay, then process it again */
  | { readonly action: 'in-place'; readonly delayMs: number };

/** Without jitter: the random source may be what failed. */
const NO_JITTER = (): number => 0.5;

/**
 * What becomes of an event whose processing and settling both failed, after `attempt`
 * attempts (JetStream's delivery count plus the retries made in place).
 */
export function lastResort(
  attempt: number,
  s: BackoffSettings & Pick<DeliverySettings, 'ordering'>,
): LastResort {
  const delayMs = backoff(attempt, s, NO_JITTER);
  return s.ordering === 'none' ? { action: 'nak', delayMs } : { action: 'in-place', delayMs };
}
