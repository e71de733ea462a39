// The reply hop counter (extension ewhops), pure. The dispatcher writes it on every reply it
// publishes: "1" on a reply to an event without it, the event's value plus one otherwise.
// Only the values it writes below the limit ("1" to "8", plain decimal) count as a hop
// number; anything else — negative, signed, exponent, leading zeros, "0", empty, not a
// number — was forged or damaged on the way and counts as over the limit, so a producer
// cannot switch the loop protection off.

/** Replies past this many hops are dead-lettered (or dropped) instead of published. */
export const MAX_REPLY_HOPS = 8;

const VALID_HOPS = /^[1-9][0-9]*$/;

/** True for a value the dispatcher writes below the limit: "1" to "8", plain decimal. */
export function isValidHops(value: string): boolean {
  if (!VALID_HOPS.test(value)) return false;
  const hops = Number(value);
  return hops >= 1 && hops <= MAX_REPLY_HOPS;
}

/**
 * The hop number of a reply to an event whose ewhops is `value`: 1 without it, the value
 * plus one for a value the dispatcher wrote, and MAX_REPLY_HOPS + 1 (over the limit) for
 * any other value.
 */
export function nextReplyHops(value: string | undefined): number {
  if (value === undefined) return 1;
  return isValidHops(value) ? Number(value) + 1 : MAX_REPLY_HOPS + 1;
}
