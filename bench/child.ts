// Stopping a benchmark's child process: SIGTERM, wait for it to exit, SIGKILL when it has not
// within graceMs (said on stderr: a component that ignores SIGTERM is a bug worth seeing).
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export async function stopChild(
  child: ChildProcess,
  name: string,
  graceMs = 20_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const stopped = await Promise.race([exited.then(() => true), sleep(graceMs, false)]);
  if (stopped) return;
  console.error(
    `${name} (pid ${child.pid ?? '?'}) still running ${graceMs} ms after SIGTERM; killing it`,
  );
  child.kill('SIGKILL');
  await exited;
}
