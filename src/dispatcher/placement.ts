// Which dispatcher replica serves an ordered subscription: rendezvous (highest random weight)
// hashing over the live replicas whose scope covers the subscription's namespace. Every
// replica computes the same owner from the same member list; a replica joining or leaving
// moves only the subscriptions it wins or held (about 1/N of them). Pure: no I/O.
import { createHash } from 'node:crypto';

export interface Member {
  /** unique per process */
  readonly id: string;
  /** the namespace it serves (EVENTWIRE_WATCH_NAMESPACE), undefined: every namespace */
  readonly namespace?: string | undefined;
}

function weight(memberId: string, subscription: string): bigint {
  const digest = createHash('sha256').update(`${memberId}\n${subscription}`).digest();
  return digest.readBigUInt64BE(0);
}

/** The member that serves `subscription` (namespace/name), or undefined when none can. */
export function ownerOf(subscription: string, members: readonly Member[]): string | undefined {
  const namespace = subscription.slice(0, subscription.indexOf('/'));
  let best: { id: string; w: bigint } | undefined;
  for (const m of members) {
    if (m.namespace !== undefined && m.namespace !== namespace) continue;
    const w = weight(m.id, subscription);
    // ties (never in practice) go to the smaller id, so every replica picks the same
    if (best === undefined || w > best.w || (w === best.w && m.id < best.id)) {
      best = { id: m.id, w };
    }
  }
  return best?.id;
}
