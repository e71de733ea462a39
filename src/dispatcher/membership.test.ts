import { describe, expect, it } from 'vitest';
import { MEMBER_EXPIRY_MS, MemberTable } from './membership.ts';

describe('MemberTable', () => {
  it('lists itself and every replica heard of, by id', () => {
    const t = new MemberTable({ id: 'b', ready: true });
    expect(t.heard({ id: 'c', namespace: 'shop', ready: true }, 0)).toBe(true);
    expect(t.heard({ id: 'a', ready: true }, 0)).toBe(true);
    expect(t.heard({ id: 'a', ready: true }, 500)).toBe(false);
    expect(t.heard({ id: 'b', ready: true }, 500)).toBe(false);
    expect(t.list()).toEqual([
      { id: 'a', ready: true },
      { id: 'b', ready: true },
      { id: 'c', namespace: 'shop', ready: true },
    ]);
  });

  it('a replica becoming ready is a change (it is given subscriptions from then on)', () => {
    const t = new MemberTable({ id: 'self', ready: false });
    expect(t.heard({ id: 'new', ready: false }, 0)).toBe(true);
    expect(t.heard({ id: 'new', ready: false }, 1_000)).toBe(false);
    expect(t.heard({ id: 'new', ready: true }, 2_000)).toBe(true);
    t.setReady();
    expect(t.list().every((m) => m.ready)).toBe(true);
  });

  it('forgets a replica not heard of for the expiry, and one that said goodbye at once', () => {
    const t = new MemberTable({ id: 'self', ready: true });
    t.heard({ id: 'quiet', ready: true }, 0);
    t.heard({ id: 'leaving', ready: true }, 0);
    t.heard({ id: 'alive', ready: true }, 0);
    t.heard({ id: 'alive', ready: true }, MEMBER_EXPIRY_MS);
    expect(t.left('leaving')).toBe(true);
    expect(t.left('leaving')).toBe(false);
    expect(t.prune(MEMBER_EXPIRY_MS)).toBe(false);
    expect(t.prune(MEMBER_EXPIRY_MS + 1)).toBe(true);
    expect(t.list().map((m) => m.id)).toEqual(['alive', 'self']);
  });
});
