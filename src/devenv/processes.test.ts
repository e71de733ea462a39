import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManagedProcess, RunDir, isProcessAlive, killAllNow, waitFor } from './processes.ts';

describe('killAllNow', () => {
  it('kills every child still running and removes every run directory, at once', async () => {
    const run = await RunDir.create('kill-all-test');
    // a child whose command line names its run directory, as etcd and nats-server do
    const child = new ManagedProcess({
      name: 'sleeper',
      bin: process.execPath,
      args: ['-e', 'setInterval(() => undefined, 1000)', join(run.path, 'marker')],
      runDir: run,
    });
    const pid = child.pid ?? 0;
    expect(isProcessAlive(pid)).toBe(true);
    const done = killAllNow();
    expect(done.killed).toEqual([`${process.execPath} (pid ${pid})`]);
    expect(done.removed).toContain(run.path);
    expect(existsSync(run.path)).toBe(false);
    await waitFor('the child to die', () => Promise.resolve(!isProcessAlive(pid)), {
      timeoutMs: 5_000,
    });
    expect(await child.waitExit()).toBeNull();
    // nothing is left for a second call
    expect(killAllNow()).toEqual({ killed: [], removed: [] });
  });
});
