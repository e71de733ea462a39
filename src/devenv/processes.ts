// Child processes of the local environment (etcd, kube-apiserver, nats-server, ...), each in
// a run directory that records its owner and its children. A run killed half-way leaves
// a directory whose owner is dead: the next run kills the recorded children and removes it.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  createWriteStream,
  existsSync,
  readFileSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const RUN_DIR_PREFIX = 'eventwire-run-';
const live = new Set<ChildProcess>();
/** run directories this process created and has not removed yet */
const liveRunDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/**
 * The last thing before an early exit (a second Ctrl-C, a stop deadline): SIGKILL to every
 * child still running and removal of every run directory this process created, at once and
 * synchronously. Returns what it killed and removed.
 */
export function killAllNow(): { killed: string[]; removed: string[] } {
  const killed: string[] = [];
  for (const child of live) {
    if (child.kill('SIGKILL')) killed.push(`${child.spawnfile} (pid ${child.pid ?? '?'})`);
  }
  const removed: string[] = [];
  for (const dir of liveRunDirs) {
    // a child killed a moment ago may still be writing: retry a directory that refills
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    liveRunDirs.delete(dir);
    removed.push(dir);
  }
  return { killed, removed };
}

/** A free TCP port on 127.0.0.1, as the kernel hands it out. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      server.close(() => {
        if (addr && typeof addr === 'object') resolvePort(addr.port);
        else reject(new Error('could not read the address of a probe socket'));
      });
    });
  });
}

/** Is `pid` a live process? A zombie (dead, not yet reaped) counts as dead. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state letter follows the last ')'
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // no /proc (not Linux): kill(0) succeeded, so it is alive
    return true;
  }
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    // the process is gone, or this is not Linux: nothing to match against
    return '';
  }
}

function procPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((e) => /^\d+$/.test(e))
      .map(Number);
  } catch {
    // no /proc (not Linux): only the recorded pids can be found
    return [];
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    // gone since the listing
    return undefined;
  }
}

/**
 * The processes whose command line names `dir` (a run's daemons, and the shims a container
 * runtime started with a socket in it, which outlive their parent), and every descendant of
 * them (the containers under a shim), descendants first.
 */
export function processesOf(dir: string): number[] {
  const all = procPids();
  const children = childrenByParent(all);
  const roots = all.filter((pid) => pid !== process.pid && cmdlineOf(pid).includes(dir));
  return treesOf(roots, children);
}

function childrenByParent(all: readonly number[]): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const pid of all) {
    const ppid = parentOf(pid);
    if (ppid !== undefined) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  return children;
}

/** `roots` and all their descendants, descendants first. */
function treesOf(roots: readonly number[], children: Map<number, number[]>): number[] {
  const out: number[] = [];
  const visit = (pid: number): void => {
    if (out.includes(pid)) return;
    for (const child of children.get(pid) ?? []) visit(child);
    out.push(pid);
  };
  for (const pid of roots) visit(pid);
  return out;
}

/** Every live descendant of `root` (children, their children, ...), descendants first. */
export function descendantsOf(root: number): number[] {
  return treesOf([root], childrenByParent(procPids())).filter((pid) => pid !== root);
}

/** SIGKILL every process of `dir` (see processesOf); returns how many. */
export function killProcessesOf(dir: string): number {
  let killed = 0;
  for (const pid of processesOf(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
      killed += 1;
    } catch {
      // already gone
    }
  }
  return killed;
}

/** Mount points at or under `dir`, deepest first (a run's container filesystems, volumes). */
export function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/mounts', 'utf8');
  } catch {
    // no /proc/mounts (not Linux): nothing is mounted by our runs there
    return [];
  }
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Lazily unmount everything at or under `dir`, so removing it never reaches through a mount. */
export async function unmountUnder(dir: string): Promise<void> {
  for (const point of mountsUnder(dir)) {
    await new Promise<void>((done) => {
      const child = spawn('umount', ['-l', point], { stdio: 'ignore' });
      child.on('error', () => {
        done();
      });
      child.on('exit', () => {
        done();
      });
    });
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`could not unmount ${left.join(', ')}`);
}

/** Kill the children of earlier runs whose owner died, and remove their directories. */
export async function sweepStaleRuns(root: string = tmpdir()): Promise<string[]> {
  const swept: string[] = [];
  for (const entry of readdirSync(root)) {
    if (!entry.startsWith(RUN_DIR_PREFIX)) continue;
    const dir = join(root, entry);
    const ownerFile = join(dir, 'owner');
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, 'utf8').trim());
    if (Number.isInteger(owner) && owner > 0 && isProcessAlive(owner)) continue;
    const pidsFile = join(dir, 'pids');
    const pids = existsSync(pidsFile) ? readFileSync(pidsFile, 'utf8').split('\n') : [];
    for (const pid of pids.map(Number).filter((p) => Number.isInteger(p) && p > 0)) {
      // only a process whose command line names this run directory is ours
      if (cmdlineOf(pid).includes(dir)) process.kill(pid, 'SIGKILL');
    }
    // a node's run also leaves container shims (and their containers) and mounts
    killProcessesOf(dir);
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
    swept.push(dir);
  }
  return swept;
}

export class RunDir {
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  static async create(label: string): Promise<RunDir> {
    await sweepStaleRuns();
    const path = await mkdtemp(join(tmpdir(), `${RUN_DIR_PREFIX}${label}-`));
    liveRunDirs.add(path);
    await writeFile(join(path, 'owner'), `${process.pid}\n`);
    return new RunDir(path);
  }

  recordPid(pid: number): void {
    appendFileSync(join(this.path, 'pids'), `${pid}\n`);
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    liveRunDirs.delete(this.path);
  }
}

export interface ManagedProcessOptions {
  readonly name: string;
  readonly bin: string;
  readonly args: readonly string[];
  readonly runDir: RunDir;
  readonly env?: NodeJS.ProcessEnv;
}

/** A child process whose output goes to <runDir>/<name>.log. */
export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  private child: ChildProcess;
  private exited: Promise<number | null>;

  constructor(opts: ManagedProcessOptions) {
    installExitHook();
    this.name = opts.name;
    this.logFile = join(opts.runDir.path, `${opts.name}.log`);
    const out = createWriteStream(this.logFile, { flags: 'a' });
    out.on('error', (err: NodeJS.ErrnoException) => {
      // the run directory was removed under a log still opening (killAllNow): nothing to keep
      if (err.code === 'ENOENT' && !liveRunDirs.has(opts.runDir.path)) return;
      process.stderr.write(`cannot write the log ${this.logFile}: ${err.message}\n`);
    });
    const child = spawn(opts.bin, [...opts.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    if (child.pid !== undefined) opts.runDir.recordPid(child.pid);
    live.add(child);
    this.child = child;
    this.exited = new Promise((resolveExit) => {
      child.on('error', (err) => {
        out.write(`spawn error: ${err.message}\n`);
        resolveExit(-1);
      });
      child.on('exit', (code, signal) => {
        live.delete(child);
        out.write(`\n[exited code=${code} signal=${signal}]\n`);
        resolveExit(code);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines of the log, for error messages. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const done = await Promise.race([
      this.exited.then(() => true),
      sleep(graceMs, false, { ref: false }),
    ]);
    if (!done) await this.kill();
  }

  /** SIGKILL at once, as a crash would. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async waitExit(): Promise<number | null> {
    return this.exited;
  }
}

/** Poll `probe` until it returns true; fail with `describe()` after timeoutMs. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; proc?: ManagedProcess },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (opts.proc && !opts.proc.running) {
      throw new Error(
        `${opts.proc.name} exited while waiting for ${what}:\n${opts.proc.logTail()}`,
      );
    }
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err;
    }
    await sleep(opts.intervalMs ?? 100);
  }
  const tail = opts.proc ? `\n${opts.proc.logTail()}` : '';
  throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${tail}`, {
    cause: lastError,
  });
}
