import { afterEach, describe, expect, it } from 'vitest';
import { StopSignals, exitCodeFor, type StopEvent } from './signals.ts';

function setup(deadlineMs = 60_000) {
  const events: StopEvent[] = [];
  const exits: number[] = [];
  const order: string[] = [];
  const signals = new StopSignals({
    deadlineMs,
    report: (e) => events.push(e),
    pending: () => ['the ingress'],
    emergency: () => order.push('emergency'),
    exit: (code) => {
      order.push('exit');
      exits.push(code);
    },
  });
  return { signals, events, exits, order };
}

describe('StopSignals', () => {
  let current: StopSignals | undefined;
  afterEach(() => {
    current?.dispose();
  });

  it('resolves on the first signal and keeps listening', async () => {
    const s = setup();
    current = s.signals;
    process.emit('SIGTERM');
    expect(await s.signals.received).toBe('SIGTERM');
    expect(s.events).toEqual([{ kind: 'stopping', reason: 'SIGTERM', deadlineMs: 60_000 }]);
    expect(process.listenerCount('SIGINT')).toBeGreaterThan(0);
    expect(s.exits).toEqual([]);
  });

  it('exits at once on a second signal, after the emergency clean-up', () => {
    const s = setup();
    current = s.signals;
    process.emit('SIGINT');
    process.emit('SIGINT');
    expect(s.order).toEqual(['emergency', 'exit']);
    expect(s.exits).toEqual([130]);
    expect(s.events[1]).toEqual({
      kind: 'second-signal',
      signal: 'SIGINT',
      pending: ['the ingress'],
    });
  });

  it('exits 1 when the stop outlives the deadline, naming what was pending', async () => {
    const s = setup(20);
    current = s.signals;
    process.emit('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    expect(s.events[1]).toEqual({ kind: 'deadline', deadlineMs: 20, pending: ['the ingress'] });
    expect(s.order).toEqual(['emergency', 'exit']);
    expect(s.exits).toEqual([1]);
  });

  it('arms the deadline for a stop without a signal, and dispose() disarms it', async () => {
    const s = setup(20);
    s.signals.beginStop();
    s.signals.dispose();
    await new Promise((r) => setTimeout(r, 100));
    expect(s.exits).toEqual([]);
    const before = process.listenerCount('SIGTERM');
    const t = setup();
    expect(process.listenerCount('SIGTERM')).toBe(before + 1);
    t.signals.dispose();
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });

  it('exit codes are 128 + the signal number', () => {
    expect(exitCodeFor('SIGINT')).toBe(130);
    expect(exitCodeFor('SIGTERM')).toBe(143);
  });
});
