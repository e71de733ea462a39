import { describe, expect, it } from 'vitest';
import { silentLogger } from '../observability/logger.ts';
import { runStopSteps, settleWithin } from './shutdown.ts';

describe('settleWithin', () => {
  it('tells done, failed and timed out apart', async () => {
    expect(await settleWithin(Promise.resolve(1), 1_000)).toEqual({ kind: 'done', value: 1 });
    const err = new Error('boom');
    expect(await settleWithin(Promise.reject(err), 1_000)).toEqual({ kind: 'failed', err });
    expect(await settleWithin(new Promise(() => undefined), 10)).toEqual({ kind: 'timeout' });
  });
});

describe('runStopSteps', () => {
  it('runs every step in order past one that fails and one that never ends', async () => {
    const ran: string[] = [];
    const step = (name: string, run: () => Promise<unknown>) => ({
      name,
      timeoutMs: 20,
      run: () => {
        ran.push(name);
        return run();
      },
    });
    const unfinished = await runStopSteps(
      [
        step('hangs', () => new Promise(() => undefined)),
        step('fails', () => Promise.reject(new Error('gone'))),
        step('throws', () => {
          throw new Error('at once');
        }),
        step('works', () => Promise.resolve()),
      ],
      silentLogger(),
    );
    expect(ran).toEqual(['hangs', 'fails', 'throws', 'works']);
    expect(unfinished).toEqual(['hangs', 'fails', 'throws']);
  });
});
