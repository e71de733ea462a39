// Which dispatcher replicas are alive, for placement.ts: every replica publishes a heartbeat
// on a core NATS subject every second and listens to the others'; a replica not heard of for
// MEMBER_EXPIRY_MS is gone, and a replica that stops gracefully says so at once. Nothing is
// stored: a restarted replica is a new member. The subject lies under _INBOX., which the NATS
// permissions eventwire already needs cover (docs/security.md): no new permission. When the
// heartbeats cannot be exchanged, each replica sees only itself and serves every ordered
// subscription: still correct (the pin decides who delivers), only not spread.
//
// A replica says it is ready once it can serve (its informers synced and it had time to hear
// the others); only ready replicas are given subscriptions, so a replica joining takes its
// share from the others when it can start at once instead of leaving it unserved meanwhile.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import type { Logger } from '../observability/logger.ts';
import type { Member } from './placement.ts';

export const MEMBERSHIP_SUBJECT = '_INBOX.eventwire.dispatchers.v1';
export const HEARTBEAT_MS = 1_000;
/** A member not heard of for this long is gone. */
export const MEMBER_EXPIRY_MS = 3_500;

interface Heartbeat {
  readonly id: string;
  readonly namespace?: string | undefined;
  readonly ready?: boolean;
  /** a graceful stop: the member is gone now */
  readonly leaving?: boolean;
}

/** A replica heard of, and whether it is ready to be given subscriptions. */
export interface LiveMember extends Member {
  readonly ready: boolean;
}

/** The members heard of and when. Pure: the caller gives the time. */
export class MemberTable {
  #self: LiveMember;
  readonly #seen = new Map<string, { member: LiveMember; at: number }>();

  constructor(self: LiveMember) {
    this.#self = self;
  }

  /** This replica is ready to be given subscriptions. */
  setReady(): void {
    this.#self = { ...this.#self, ready: true };
  }

  /** A heartbeat; true when the member list (or who is ready) changed. */
  heard(member: LiveMember, now: number): boolean {
    if (member.id === this.#self.id) return false;
    const known = this.#seen.get(member.id);
    this.#seen.set(member.id, { member, at: now });
    return known?.member.ready !== member.ready;
  }

  /** A member said it stops; true when it was known. */
  left(id: string): boolean {
    return this.#seen.delete(id);
  }

  /** Forgets members not heard of since `now - expiryMs`; true when any was forgotten. */
  prune(now: number, expiryMs = MEMBER_EXPIRY_MS): boolean {
    let changed = false;
    for (const [id, s] of this.#seen) {
      if (now - s.at > expiryMs) {
        this.#seen.delete(id);
        changed = true;
      }
    }
    return changed;
  }

  /** Every live member, this one included, by id. */
  list(): LiveMember[] {
    return [this.#self, ...[...this.#seen.values()].map((s) => s.member)].sort((a, b) =>
      a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
    );
  }
}

export interface MembershipOptions {
  readonly nc: NatsConnection;
  /** the namespace this replica serves; undefined: all */
  readonly namespace?: string | undefined;
  readonly log: Logger;
  /** the member list changed */
  readonly onChange: () => void;
}

export class Membership {
  readonly self: Member;
  readonly #o: MembershipOptions;
  readonly #table: MemberTable;
  #ready = false;
  #sub: Subscription | undefined;
  #timer: NodeJS.Timeout | undefined;
  #publishFailed = false;

  constructor(o: MembershipOptions) {
    this.#o = o;
    this.self = {
      id: `${hostname()}-${randomUUID().slice(0, 8)}`,
      ...(o.namespace === undefined ? {} : { namespace: o.namespace }),
    };
    this.#table = new MemberTable({ ...this.self, ready: false });
  }

  /** The replicas subscriptions are placed on: the ready ones, this one once it is ready. */
  candidates(): Member[] {
    return this.#table.list().filter((m) => m.ready);
  }

  /** This replica can serve now: tells the others at once. */
  setReady(): void {
    this.#ready = true;
    this.#table.setReady();
    this.#beat();
  }

  start(): void {
    this.#sub = this.#o.nc.subscribe(MEMBERSHIP_SUBJECT, {
      callback: (err, msg) => {
        if (err !== null) {
          this.#o.log.error({ err }, 'listening to the other dispatcher replicas failed');
          return;
        }
        let hb: Heartbeat;
        try {
          hb = msg.json<Heartbeat>();
        } catch {
          return;
        }
        if (typeof hb.id !== 'string') return;
        const member: LiveMember = {
          id: hb.id,
          ready: hb.ready === true,
          ...(typeof hb.namespace === 'string' ? { namespace: hb.namespace } : {}),
        };
        const changed =
          hb.leaving === true ? this.#table.left(hb.id) : this.#table.heard(member, Date.now());
        if (changed) this.#changed(hb.leaving === true ? 'left' : 'joined', hb.id);
      },
    });
    this.#beat();
    this.#timer = setInterval(() => {
      this.#beat();
      if (this.#table.prune(Date.now())) this.#changed('expired', undefined);
    }, HEARTBEAT_MS);
    this.#timer.unref();
  }

  /** Says goodbye, so the others take over this replica's subscriptions at once. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#publish({ ...this.self, leaving: true });
    this.#sub?.unsubscribe();
  }

  #beat(): void {
    this.#publish({ ...this.self, ready: this.#ready });
  }

  #publish(hb: Heartbeat): void {
    try {
      this.#o.nc.publish(MEMBERSHIP_SUBJECT, JSON.stringify(hb));
      this.#publishFailed = false;
    } catch (err) {
      // closed or reconnecting connection: the next beat tries again
      if (!this.#publishFailed) this.#o.log.warn({ err }, 'dispatcher heartbeat not sent');
      this.#publishFailed = true;
    }
  }

  #changed(event: 'joined' | 'left' | 'expired', member: string | undefined): void {
    this.#o.log.info(
      {
        event,
        member,
        members: this.#table.list().map((m) => (m.ready ? m.id : `${m.id} (starting)`)),
      },
      'dispatcher replicas changed',
    );
    this.#o.onChange();
  }
}
