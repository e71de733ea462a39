// A test run killed half-way must leave nothing that breaks the next run: the next run
// kills the orphaned servers of the dead run and removes its directory.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { isProcessAlive, sweepStaleRuns, waitFor } from '../../harness/index.ts';

const fixture = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'harness',
  'fixtures',
  'start-nats-and-hang.ts',
);

describe('a run killed half-way', () => {
  it('leaves orphans that the next run sweeps away', async () => {
    const child = spawn(process.execPath, [fixture], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolveLine, reject) => {
      let buf = '';
      child.stdout.on('data', (c: Buffer) => {
        buf += c.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0) resolveLine(buf.slice(0, nl));
      });
      child.on('exit', (code) => {
        reject(new Error(`fixture exited early with ${code}`));
      });
    });
    const { storeDir, url } = JSON.parse(line) as { storeDir: string; url: string };
    const runDir = dirname(storeDir);
    const natsPid = Number(readFileSync(join(runDir, 'pids'), 'utf8').trim().split('\n')[0]);

    child.kill('SIGKILL');
    await waitFor(
      'the fixture to die',
      () => Promise.resolve(child.exitCode !== null || child.signalCode !== null),
      {
        timeoutMs: 10_000,
      },
    );
    // the orphan is still serving: this is what a killed run leaves behind
    expect(isProcessAlive(natsPid)).toBe(true);
    const nc = await connect({ servers: url });
    await nc.close();

    const swept = await sweepStaleRuns();
    expect(swept).toContain(runDir);
    expect(existsSync(runDir)).toBe(false);
    await waitFor(
      'the orphaned nats-server to die',
      () => Promise.resolve(!isProcessAlive(natsPid)),
      {
        timeoutMs: 10_000,
      },
    );
  });
});
