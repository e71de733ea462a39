// Where the e2e suite's cluster comes from. `local` (the default, and CI): the local node that
// `npm run dev -- --cluster` starts (docs/quickstart-kind.md section 1b, run as written), stopped
// with Ctrl-C (SIGINT) at the end, after which nothing of it may be left on the host. `kind`
// (EVENTWIRE_E2E_BACKEND=kind, needs Docker and kind): the commands of section 1a.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { NODE_NETWORK } from '../../src/devenv/node-host.ts';
import { quickstartBlocks } from './docs.ts';
import { repoRoot } from './shell.ts';

const execFileAsync = promisify(execFile);

export const BACKENDS = ['local', 'kind'] as const;
export type Backend = (typeof BACKENDS)[number];

export function backendOf(env: NodeJS.ProcessEnv): Backend {
  const b = env.EVENTWIRE_E2E_BACKEND ?? 'local';
  if (!(BACKENDS as readonly string[]).includes(b)) {
    throw new Error(`EVENTWIRE_E2E_BACKEND=${b}: use local (a node on this machine) or kind`);
  }
  return b as Backend;
}

export interface Cluster {
  readonly kubeconfigPath: string;
  stop(): Promise<void>;
}

const sbin = '/usr/local/sbin:/usr/sbin:/sbin';
const userEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  PATH: [join(repoRoot, 'node_modules', '.bin'), process.env.PATH ?? '', sbin].join(':'),
});

/** What a stopped local node left on this host (empty when it cleaned up). */
export async function nodeLeftovers(): Promise<string[]> {
  const left: string[] = [];
  if (existsSync(`/sys/class/net/${NODE_NETWORK.bridge}`))
    left.push(`bridge ${NODE_NETWORK.bridge}`);
  const rules = await execFileAsync('iptables', ['-S'], { env: userEnv() }).catch(() => ({
    stdout: '',
  }));
  if (rules.stdout.includes(NODE_NETWORK.egressChain))
    left.push(`iptables chain ${NODE_NETWORK.egressChain}`);
  const runs = readdirSync(tmpdir()).filter((e) => e.startsWith('eventwire-run-node-'));
  left.push(...runs.map((r) => `run directory ${join(tmpdir(), r)}`));
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.includes('eventwire-run-node-'));
  left.push(...mounts.map((m) => `mount ${m.split(' ')[1] ?? m}`));
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue; // gone
    }
    if (cmd.includes('eventwire-run-node-'))
      left.push(`process ${pid} ${cmd.replaceAll('\0', ' ')}`);
  }
  return left;
}

async function groupGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(-pid, 0);
    } catch {
      return true;
    }
    await sleep(250);
  }
  return false;
}

/** `npm run dev -- --cluster` as the docs say; resolves once it printed `[dev] ready`. */
async function startLocal(log: (line: string) => void): Promise<Cluster> {
  const [block] = quickstartBlocks('local-start');
  if (!block) throw new Error('docs/quickstart-kind.md has no local-start block');
  const child = spawn('bash', ['-euo', 'pipefail', '-c', block.text], {
    cwd: repoRoot,
    env: userEnv(),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start: ${block.text}`);
  let kubeconfigPath = '';
  const tail: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    let partial = '';
    const take = (chunk: Buffer): void => {
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        log(line);
        tail.push(line);
        if (tail.length > 60) tail.shift();
        const m = /^export KUBECONFIG=(\S+)$/.exec(line.trim());
        if (m?.[1]) kubeconfigPath = m[1];
        if (line.trim() === '[dev] ready') {
          if (kubeconfigPath) resolve();
          else reject(new Error('`[dev] ready` came before any `export KUBECONFIG=` line'));
        }
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('exit', (code, signal) => {
      reject(
        new Error(
          `${block.text} exited (${code ?? signal}) before it was ready:\n${tail.join('\n')}`,
        ),
      );
    });
  });
  const stop = async (): Promise<void> => {
    // Ctrl-C in a terminal: SIGINT to the whole foreground process group
    try {
      process.kill(-pid, 'SIGINT');
    } catch {
      // already gone
    }
    if (!(await groupGone(pid, 120_000))) {
      process.kill(-pid, 'SIGKILL');
      throw new Error(`${block.text} did not stop within 120 s of Ctrl-C:\n${tail.join('\n')}`);
    }
    const left = await nodeLeftovers();
    if (left.length > 0) {
      throw new Error(`after Ctrl-C, the local node left behind:\n${left.join('\n')}`);
    }
    log('[e2e] the local node stopped on Ctrl-C and left nothing behind');
  };
  try {
    await ready;
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { kubeconfigPath, stop };
}

async function runBlocks(mark: 'kind' | 'kind-stop', log: (line: string) => void): Promise<void> {
  for (const block of quickstartBlocks(mark)) {
    log(`[e2e] docs/quickstart-kind.md:${block.line}: ${block.text.split('\n')[0] ?? ''} ...`);
    await execFileAsync('bash', ['-euo', 'pipefail', '-c', block.text], {
      cwd: repoRoot,
      env: userEnv(),
      maxBuffer: 64 * 1024 * 1024,
      timeout: 20 * 60_000,
    }).catch((err: unknown) => {
      const e = err as { stdout?: string; stderr?: string };
      throw new Error(
        `docs/quickstart-kind.md:${block.line} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`,
        {
          cause: err,
        },
      );
    });
  }
}

async function startKind(log: (line: string) => void): Promise<Cluster> {
  for (const tool of ['docker', 'kind']) {
    await execFileAsync('sh', ['-c', `command -v ${tool}`]).catch((err: unknown) => {
      throw new Error(`the kind backend needs ${tool} on PATH`, { cause: err });
    });
  }
  await runBlocks('kind', log);
  const dir = await mkdtemp(join(tmpdir(), 'eventwire-e2e-kind-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  const { stdout } = await execFileAsync('kind', ['get', 'kubeconfig', '--name', 'eventwire']);
  await writeFile(kubeconfigPath, stdout, { mode: 0o600 });
  return {
    kubeconfigPath,
    stop: async () => {
      await runBlocks('kind-stop', log);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function startCluster(backend: Backend, log: (line: string) => void): Promise<Cluster> {
  return backend === 'local' ? startLocal(log) : startKind(log);
}

/** The containerd socket of the running local node. */
function localContainerdSocket(): string {
  for (const e of readdirSync(tmpdir())) {
    const sock = join(tmpdir(), e, 'containerd', 'containerd.sock');
    if (e.startsWith('eventwire-run-node-') && existsSync(sock)) return sock;
  }
  throw new Error('no local node is running (no containerd socket under eventwire-run-node-*)');
}

/**
 * Make image `ref` available on the cluster's node under a second tag `to` (an image "built
 * from another commit", for an upgrade): podman + ctr import on the local node, docker + kind
 * load on kind.
 */
export async function retagOnNode(backend: Backend, ref: string, to: string): Promise<void> {
  if (backend === 'kind') {
    await execFileAsync('docker', ['tag', ref, to]);
    await execFileAsync('kind', ['load', 'docker-image', to, '--name', 'eventwire']);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'eventwire-e2e-image-'));
  try {
    const archive = join(dir, 'image.tar');
    await execFileAsync('podman', ['tag', ref, to]);
    await execFileAsync('podman', ['save', '-q', '--format', 'docker-archive', '-o', archive, to]);
    await execFileAsync(
      'ctr',
      ['-a', localContainerdSocket(), '-n', 'k8s.io', 'images', 'import', archive],
      {
        env: userEnv(),
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
