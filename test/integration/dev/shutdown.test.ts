// `eventwire dev` runs until Ctrl-C, then cleans up, whatever order its processes die in:
// a terminal's Ctrl-C signals the whole process group, so nats-server, etcd and the control
// plane get SIGINT at the same moment as node; `npm run dev` forwards SIGTERM to node alone.
// Afterwards nothing of the run is left: no process of the group, none naming a run
// directory, and the run directories are gone.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isProcessAlive, waitFor } from '../../../src/devenv/processes.ts';
import { leftovers, spawnGroup, type GroupProcess } from '../cli/process-group.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const main = join(root, 'src', 'cli', 'main.ts');

interface Ready {
  kubeconfig: string;
  nats: string;
  ingress: string;
  runDirs: string[];
  pid: number;
}

/** The stop must end well within this (the hard deadline is 20 s); a hang fails the test. */
const EXIT_WITHIN_MS = 45_000;

async function ready(p: GroupProcess): Promise<Ready> {
  const m = await p.waitFor(/EVENTWIRE_DEV_READY (.*)\n/, 150_000);
  const r = JSON.parse(m[1] ?? '') as Ready;
  expect(r.runDirs.length).toBeGreaterThanOrEqual(2);
  for (const d of r.runDirs) expect(existsSync(d)).toBe(true);
  return r;
}

async function expectNothingLeft(p: GroupProcess, r: Ready): Promise<void> {
  expect(await leftovers(p.pid, r.runDirs)).toEqual([]);
  for (const d of r.runDirs) expect(existsSync(d), d).toBe(false);
}

describe('eventwire dev shutdown', () => {
  let p: GroupProcess | undefined;
  afterEach(() => {
    p?.killGroup();
  });

  it('stops and cleans up when Ctrl-C reaches the whole process group', async () => {
    p = spawnGroup(process.execPath, [main, 'dev']);
    const r = await ready(p);
    process.kill(-p.pid, 'SIGINT');
    const exit = await p.exit(EXIT_WITHIN_MS);
    expect(exit, `still running:\n${p.output()}`).toEqual({ code: 0, signal: null });
    expect(p.output()).toContain('[dev] stopped');
    await expectNothingLeft(p, r);
  }, 240_000);

  it('exits at once on a second Ctrl-C, and still leaves nothing behind', async () => {
    p = spawnGroup(process.execPath, [main, 'dev']);
    const r = await ready(p);
    process.kill(-p.pid, 'SIGINT');
    await p.waitFor(/\[dev\] stopping/, 10_000);
    process.kill(-p.pid, 'SIGINT');
    const exit = await p.exit(EXIT_WITHIN_MS);
    expect(exit?.signal, `still running or killed by the signal:\n${p.output()}`).toBeNull();
    // 128 + SIGINT, as a shell reports an interrupted command (0: the stop had just ended)
    expect([130, 0]).toContain(exit?.code);
    await expectNothingLeft(p, r);
  }, 240_000);

  it('stops and cleans up on SIGTERM to `npm run dev -- --example shop`', async () => {
    const npm = spawnGroup('npm', ['run', 'dev', '--', '--example', 'shop'], {
      ...process.env,
      PATH: `${join(root, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`,
    });
    p = npm;
    const r = await ready(npm);
    const done = await npm.waitFor(/EVENTWIRE_SHOP_DONE (.*)\n/, 150_000);
    const { handlers } = JSON.parse(done[1] ?? '') as { handlers: Record<string, string> };
    expect(r.pid).not.toBe(npm.pid);
    // to npm alone, as a process manager sends it; npm passes it to the shell it runs node
    // under, which dies of it without passing it on: node learns that its parent is gone
    process.kill(npm.pid, 'SIGTERM');
    expect(await npm.exit(EXIT_WITHIN_MS), `npm still running:\n${npm.output()}`).toBeDefined();
    // npm may exit before node has finished: the stop must end all the same
    await waitFor('eventwire dev to exit', () => Promise.resolve(!isProcessAlive(r.pid)), {
      timeoutMs: EXIT_WITHIN_MS,
      intervalMs: 200,
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}:\n${npm.output()}`);
    });
    await npm.waitFor(/\[dev\] stopped/, 5_000);
    await expectNothingLeft(npm, r);
    for (const url of Object.values(handlers)) {
      await expect(fetch(`${url}/healthz`), `${url} still answers`).rejects.toThrow();
    }
  }, 300_000);
});
