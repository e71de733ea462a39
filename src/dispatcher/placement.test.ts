import { describe, expect, it } from 'vitest';
import { ownerOf, type Member } from './placement.ts';

const subs = Array.from({ length: 3_000 }, (_, i) => `ns${String(i % 7)}/sub-${String(i)}`);
const members = (n: number): Member[] =>
  Array.from({ length: n }, (_, i) => ({ id: `d-${String(i)}` }));

function counts(ms: readonly Member[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of subs) {
    const o = ownerOf(s, ms) ?? 'none';
    out.set(o, (out.get(o) ?? 0) + 1);
  }
  return out;
}

describe('ownerOf', () => {
  it('spreads subscriptions evenly over the replicas', () => {
    for (const n of [2, 3, 5]) {
      const c = counts(members(n));
      expect(c.size).toBe(n);
      for (const v of c.values()) {
        expect(v).toBeGreaterThan((subs.length / n) * 0.85);
        expect(v).toBeLessThan((subs.length / n) * 1.15);
      }
    }
  });

  it('is the same whatever order the members are listed in', () => {
    const ms = members(4);
    const reversed = [...ms].reverse();
    for (const s of subs.slice(0, 200)) expect(ownerOf(s, reversed)).toBe(ownerOf(s, ms));
  });

  it('a replica joining takes about 1/N of the subscriptions and moves nothing else', () => {
    const before = members(3);
    const after = [...before, { id: 'd-new' }];
    let moved = 0;
    for (const s of subs) {
      const a = ownerOf(s, before);
      const b = ownerOf(s, after);
      if (a !== b) {
        moved += 1;
        expect(b).toBe('d-new');
      }
    }
    expect(moved).toBeGreaterThan(subs.length / 4 - subs.length * 0.05);
    expect(moved).toBeLessThan(subs.length / 4 + subs.length * 0.05);
  });

  it('a replica leaving moves only its own subscriptions', () => {
    const before = members(3);
    const after = before.filter((m) => m.id !== 'd-1');
    for (const s of subs) {
      const a = ownerOf(s, before);
      if (a !== 'd-1') expect(ownerOf(s, after)).toBe(a);
    }
  });

  it('only replicas serving the namespace are candidates', () => {
    const ms: Member[] = [{ id: 'all' }, { id: 'only-ns1', namespace: 'ns1' }];
    expect(ownerOf('ns2/a', ms)).toBe('all');
    expect(ownerOf('ns2/a', [{ id: 'only-ns1', namespace: 'ns1' }])).toBeUndefined();
    const owners = new Set(subs.filter((s) => s.startsWith('ns1/')).map((s) => ownerOf(s, ms)));
    expect(owners).toEqual(new Set(['all', 'only-ns1']));
  });
});
