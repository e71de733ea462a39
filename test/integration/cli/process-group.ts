// Runs a command the way a terminal does: in a process group of its own, so that a signal can
// reach the whole group (Ctrl-C) or the leader alone (`kill <pid>`), and looks for anything
// of the group, or anything naming a directory, left running afterwards.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface GroupProcess {
  readonly child: ChildProcess;
  /** the leader's pid, which is also the group id */
  readonly pid: number;
  /** stdout and stderr so far */
  output(): string;
  /** the first match of `re` in the output (waits for it; fails when the output ends first) */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  /** the leader's exit, or undefined when it is still running after timeoutMs */
  exit(timeoutMs: number): Promise<Exit | undefined>;
  /** SIGKILL to every member still running (clean-up after a failed test) */
  killGroup(): void;
}

export function spawnGroup(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): GroupProcess {
  const child = spawn(command, [...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${command}`);
  let output = '';
  const onData = (c: Buffer): void => {
    output += c.toString();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<Exit>((resolve) => {
    child.on('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  // gone: the output is complete (every writer of the pipes, children included, closed them)
  let open = 2;
  let gone = false;
  const onClose = (): void => {
    open -= 1;
    gone = open === 0;
  };
  child.stdout.on('close', onClose);
  child.stderr.on('close', onClose);
  return {
    child,
    pid,
    output: () => output,
    async waitFor(re, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(output);
        if (m) return m;
        if (gone) throw new Error(`${command} ended its output without ${re}:\n${output}`);
        if (Date.now() > deadline) throw new Error(`no ${re} after ${timeoutMs} ms:\n${output}`);
        await sleep(100);
      }
    },
    exit: (timeoutMs) =>
      Promise.race([exited, sleep(timeoutMs, undefined, { ref: false })]).then((e) => e),
    killGroup: () => {
      for (const member of groupMembers(pid)) {
        try {
          process.kill(member, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
    },
  };
}

interface ProcInfo {
  readonly pid: number;
  readonly state: string;
  readonly pgrp: number;
  readonly cmdline: string;
}

function procs(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      // "pid (comm) S ppid pgrp ...": the fields after the last ')'
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const [state = '', , pgrp = ''] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      out.push({ pid, state, pgrp: Number(pgrp), cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** Live (not zombie) processes of the group `pgid`. */
export function groupMembers(pgid: number): number[] {
  return procs()
    .filter((p) => p.pgrp === pgid && p.state !== 'Z')
    .map((p) => p.pid);
}

/** Live processes whose command line contains `text`, described for an assertion message. */
export function processesNaming(text: string): string[] {
  return procs()
    .filter((p) => p.state !== 'Z' && p.cmdline.includes(text) && p.pid !== process.pid)
    .map((p) => `${p.pid}: ${p.cmdline}`);
}

/** What the group left behind: live members, and processes naming any of `dirs`. */
export async function leftovers(pgid: number, dirs: readonly string[]): Promise<string[]> {
  // members that got their signal a moment ago may still be on their way out
  for (let i = 0; i < 20; i += 1) {
    if (groupMembers(pgid).length === 0) break;
    await sleep(100);
  }
  const members = procs().filter((p) => p.pgrp === pgid && p.state !== 'Z');
  return [
    ...members.map((p) => `group member ${p.pid}: ${p.cmdline}`),
    ...dirs.flatMap((d) => processesNaming(d)),
  ];
}
