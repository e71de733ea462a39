// `eventwire dev --cluster`: eventwire on a real local Kubernetes node. Wrong arguments and a
// host that cannot run the node are refused before anything starts (exit 2, naming the fix);
// as root on Linux, the chart is installed on the node with every Pod Running and Ready, the
// ingress Service answers this host at its ClusterIP, the shop example runs end to end, and
// Ctrl-C (or SIGTERM) removes the node: no bridge, no iptables chain, no process and no mount
// of its run directories. Only one node can exist per machine: the runs take the lock the
// other node users take (flock /tmp/eventwire-node.lock) and hold it until the checks after
// the stop are done.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { hostProblems, NODE_NETWORK, nodePath } from '../../../src/devenv/node-host.ts';
import { isProcessAlive } from '../../../src/devenv/processes.ts';
import { processesNaming } from '../cli/process-group.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const main = join(root, 'src', 'cli', 'main.ts');
const run = promisify(execFile);
const LOCK = '/tmp/eventwire-node.lock';
const hasSetpriv = ['/usr/bin/setpriv', '/bin/setpriv'].some((p) => existsSync(p));
const asRoot = process.platform === 'linux' && process.getuid?.() === 0;

async function eventwire(
  args: readonly string[],
  prefix: readonly string[] = [],
): Promise<{ code: number; out: string; err: string }> {
  const [cmd, ...rest] = [...prefix, process.execPath, main, ...args];
  try {
    const { stdout, stderr } = await run(cmd ?? '', rest);
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

interface Ready {
  kubeconfig: string;
  runDirs: string[];
  pid: number;
}

/**
 * `eventwire dev --cluster ...` under the node lock, in a process group of its own. The shell
 * holding the lock prints "[test] exit N" when dev exits and keeps the lock until release().
 */
class ClusterDev {
  readonly child: ChildProcess;
  #output = '';
  ready: Ready | undefined;

  constructor(args: readonly string[]) {
    const script = '"$@" </dev/null; echo "[test] exit $?"; cat >/dev/null';
    this.child = spawn(
      'flock',
      [LOCK, 'sh', '-c', script, 'sh', process.execPath, main, 'dev', '--cluster', ...args],
      { detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const onData = (c: Buffer): void => {
      this.#output += c.toString();
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
  }

  output(): string {
    return this.#output;
  }

  async waitFor(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.#output);
      if (m) return m;
      if (this.child.exitCode !== null) throw new Error(`ended without ${re}:\n${this.#output}`);
      if (Date.now() > deadline)
        throw new Error(`no ${re} after ${timeoutMs} ms:\n${this.#output}`);
      await sleep(200);
    }
  }

  /** The ready line's facts; waits for the lock (another node run), the build and the start. */
  async waitReady(): Promise<Ready> {
    const m = await this.waitFor(/EVENTWIRE_DEV_READY (.*)\n/, 420_000);
    await this.waitFor(/^\[dev\] ready$/m, 10_000);
    this.ready = JSON.parse(m[1] ?? '') as Ready;
    return this.ready;
  }

  /** dev's exit code, read while the lock is still held. */
  async exitCode(timeoutMs: number): Promise<number> {
    const m = await this.waitFor(/^\[test\] exit (\d+)$/m, timeoutMs);
    return Number(m[1]);
  }

  /** After a failure: stop dev gracefully if it still runs, then free the lock. */
  async release(): Promise<void> {
    const pid = this.ready?.pid;
    if (pid !== undefined && isProcessAlive(pid)) {
      process.kill(pid, 'SIGINT');
      for (let i = 0; i < 600 && isProcessAlive(pid); i += 1) await sleep(100);
    }
    this.child.stdin?.end();
    if (this.child.pid !== undefined && this.child.exitCode === null) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // the group is gone
      }
    }
  }
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** What the node left on the host (checked while this test still holds the node lock). */
async function nodeLeftovers(ready: Ready): Promise<string[]> {
  const out: string[] = [];
  if (existsSync(`/sys/class/net/${NODE_NETWORK.bridge}`)) out.push('the eventwire0 bridge');
  const env = { ...process.env, PATH: nodePath(process.env.PATH) };
  const { stdout } = await run('iptables', ['-S'], { env });
  if (stdout.includes(NODE_NETWORK.egressChain)) out.push('the EVENTWIRE-EGRESS chain');
  for (const dir of ready.runDirs) {
    out.push(...processesNaming(dir).map((p) => `process ${p}`));
    out.push(...mountsUnder(dir).map((m) => `mount ${m}`));
    if (existsSync(dir)) out.push(`run directory ${dir}`);
  }
  return out;
}

/** The printed next steps: KUBECONFIG and a PATH with the pinned kubectl and helm. */
function printedSetup(output: string): { kubeconfig: string; pathDirs: string[] } {
  const kubeconfig = /^export KUBECONFIG=(\S+)$/m.exec(output)?.[1] ?? '';
  const path = /^export PATH=(\S+):\$PATH$/m.exec(output)?.[1] ?? '';
  return { kubeconfig, pathDirs: path.split(':') };
}

describe('eventwire dev --cluster refusals', () => {
  it('refuses --port with --cluster, naming both, before starting anything', async () => {
    const r = await eventwire(['dev', '--cluster', '--port', '8080']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--cluster and --port cannot be combined');
    expect(r.out).toBe('');
  });

  it('lists --cluster in the help', async () => {
    const r = await eventwire(['dev', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('eventwire dev --cluster [--example shop]');
  });

  it.skipIf(!hasSetpriv)(
    'tells a user who is not root to run it as root or use kind, before any build',
    async () => {
      const r = await eventwire(
        ['dev', '--cluster'],
        ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
      );
      expect(r.code).toBe(2);
      expect(r.err).toContain('the local node needs root');
      expect(r.err).toContain('use kind (docs/quickstart-kind.md)');
      expect(r.out).toBe('');
    },
  );

  it('names kind for a host that is not Linux or where the user is not root', () => {
    expect(hostProblems({ platform: 'darwin', uid: 0 }).join()).toContain(
      'Linux only: use kind (docs/quickstart-kind.md)',
    );
    expect(hostProblems({ platform: 'linux', uid: 1000 }).join()).toMatch(/needs root.*kind/);
  });
});

describe.skipIf(!asRoot)('eventwire dev --cluster on a real local node (root on Linux)', () => {
  let dev: ClusterDev | undefined;
  afterEach(async () => {
    await dev?.release();
    dev = undefined;
  });

  it('installs eventwire with every Pod Ready, and Ctrl-C removes the node', async () => {
    dev = new ClusterDev([]);
    const ready = await dev.waitReady();
    const { kubeconfig, pathDirs } = printedSetup(dev.output());
    expect(kubeconfig).toBe(ready.kubeconfig);
    expect(pathDirs.some((d) => existsSync(join(d, 'kubectl')))).toBe(true);
    expect(pathDirs.some((d) => existsSync(join(d, 'helm')))).toBe(true);
    for (const d of ready.runDirs) expect(existsSync(d), d).toBe(true);

    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const pods = (await core.listNamespacedPod({ namespace: 'eventwire-system' })).items;
    const components = pods.map((p) => p.metadata?.labels?.['app.kubernetes.io/component']);
    for (const c of ['controller', 'dispatcher', 'ingress']) expect(components).toContain(c);
    for (const p of pods) {
      const ok = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      expect({ pod: p.metadata?.name, phase: p.status?.phase, ready: ok }).toEqual({
        pod: p.metadata?.name,
        phase: 'Running',
        ready: true,
      });
    }
    // this host reaches Services at their ClusterIP (what --example shop publishes through)
    const svc = await core.readNamespacedService({
      name: 'eventwire-ingress',
      namespace: 'eventwire-system',
    });
    const res = await fetch(`http://${svc.spec?.clusterIP ?? ''}:80/eventwire-system/default`, {
      method: 'POST',
      headers: {
        'ce-specversion': '1.0',
        'ce-id': 'dev-cluster-1',
        'ce-source': '/test',
        'ce-type': 'demo.hello',
        'content-type': 'application/json',
      },
      body: '{"hello":"node"}',
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status).toBe(202);

    // while it runs, the check below sees the node: it is not vacuous
    const running = await nodeLeftovers(ready);
    expect(running).toContain('the eventwire0 bridge');
    expect(running).toContain('the EVENTWIRE-EGRESS chain');
    expect(running.some((l) => l.startsWith('mount '))).toBe(true);
    expect(running.some((l) => l.startsWith('process '))).toBe(true);

    // Ctrl-C to dev itself (to flock it would free the lock while the node is still stopping)
    process.kill(ready.pid, 'SIGINT');
    expect(await dev.exitCode(60_000)).toBe(0);
    expect(dev.output()).toContain('[dev] stopped');
    expect(await nodeLeftovers(ready)).toEqual([]);
  }, 600_000);

  it('runs the shop example on the node, and SIGTERM removes the node', async () => {
    dev = new ClusterDev(['--example', 'shop']);
    const ready = await dev.waitReady();
    const done = await dev.waitFor(/EVENTWIRE_SHOP_DONE (.*)\n/, 300_000);
    const { handlers } = JSON.parse(done[1] ?? '') as { handlers: Record<string, string> };
    const out = dev.output();
    expect(out).toContain('[shop] done: every handler got its events');
    expect(out).toContain('order-c-100 confirmed (reply chain');
    expect(out).toContain('order-c-200 confirmed (reply chain');
    expect(out).toContain('order-c-300 rejected via the dead letter');
    // the handler's state, read at its Service's ClusterIP as the printed curl line does
    const state = (await (await fetch(`${handlers.order ?? ''}/state`)).json()) as {
      orders: { orderId: string; status: string }[];
    };
    expect(state.orders.map((o) => `${o.orderId} ${o.status}`).sort()).toEqual([
      'order-c-100 confirmed',
      'order-c-200 confirmed',
      'order-c-300 rejected',
    ]);

    process.kill(ready.pid, 'SIGTERM');
    expect(await dev.exitCode(60_000)).toBe(0);
    expect(await nodeLeftovers(ready)).toEqual([]);
  }, 600_000);

  it('stops cleanly on a Ctrl-C during the node start', async () => {
    dev = new ClusterDev([]);
    await dev.waitFor(/^\[dev\] starting the local node/m, 420_000);
    const devPid = await grandchildOf(dev.child.pid ?? 0);
    // the node's run directories are there once its start is under way
    let runDirs: string[] = [];
    for (let i = 0; i < 100 && !runDirs.some((d) => d.includes('-run-node-')); i += 1) {
      await sleep(100);
      runDirs = runDirsOwnedBy(devPid);
    }
    expect(
      runDirs.some((d) => d.includes('-run-node-')),
      dev.output(),
    ).toBe(true);
    process.kill(devPid, 'SIGINT');
    expect(await dev.exitCode(60_000)).toBe(0);
    const out = dev.output();
    expect(out).toContain('[dev] stopped');
    expect(out).not.toContain('[dev] ready');
    expect(out).not.toContain('helm install');
    expect(await nodeLeftovers({ kubeconfig: '', runDirs, pid: devPid })).toEqual([]);
  }, 600_000);
});

/** The run directories (eventwire-run-*) whose owner file names `pid`. */
function runDirsOwnedBy(pid: number): string[] {
  return readdirSync(tmpdir())
    .filter((e) => e.startsWith('eventwire-run-'))
    .map((e) => join(tmpdir(), e))
    .filter((dir) => {
      try {
        return Number(readFileSync(join(dir, 'owner'), 'utf8').trim()) === pid;
      } catch {
        return false;
      }
    });
}

function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) {
        out.push(Number(entry));
      }
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** dev under flock's shell: flock -> sh -> node. */
async function grandchildOf(flockPid: number): Promise<number> {
  for (let i = 0; i < 50; i += 1) {
    const node = childrenOf(flockPid).flatMap(childrenOf)[0];
    if (node !== undefined) return node;
    await sleep(100);
  }
  throw new Error(`no dev process under flock ${flockPid}`);
}
