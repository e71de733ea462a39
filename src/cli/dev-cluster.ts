// `eventwire dev --cluster`: eventwire on a real one-node Kubernetes cluster on this machine,
// for people without Docker (root on Linux). The images are built here (podman), the node
// (src/devenv/node.ts) imports them, and the chart is installed from the working tree with the
// same helm and kubectl commands as on kind. Runs until Ctrl-C, then stops the node, which
// removes every Pod, daemon, mount, bridge and iptables rule. `--example shop` also applies
// examples/shop and publishes its scenario to the ingress Service from this host.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { describeSummary, HANDLERS, type HandlerName } from '../../examples/shop/local.ts';
import { missing, publish, scenarioEvents, type ShopStates } from '../../examples/shop/scenario.ts';
import { buildLocalImages, PAUSE_IMAGE } from '../devenv/images.ts';
import { checkHost, startLocalNode, type LocalNode } from '../devenv/node.ts';
import { descendantsOf, killProcessesOf, unmountUnder } from '../devenv/processes.ts';
import {
  defaultCacheDir,
  defaultRepoRoot,
  ensureTools,
  type ResolvedTools,
} from '../devenv/tools.ts';
import { sayStopEvents, type ExampleName } from './dev.ts';
import { StopSignals } from './signals.ts';

const execFileAsync = promisify(execFile);

/** The release, as docs/quickstart-kind.md installs it, so its commands work here too. */
export const CLUSTER_RELEASE = { name: 'eventwire', namespace: 'eventwire-system' } as const;
/** The chart's default repository with tag `dev`: `--set image.tag=dev` selects it. */
export const CLUSTER_EVENTWIRE_IMAGE = 'ghcr.io/eventwire/eventwire:dev';
/** After the first Ctrl-C, what is still running is killed after this (the node's stop). */
export const CLUSTER_STOP_DEADLINE_MS = 45_000;
/** How long the shop's Deployments and resources may take to become Ready. */
const SHOP_READY_TIMEOUT_MS = 180_000;
const RUN_DIR_PREFIX = 'eventwire-run-';

export interface ClusterOptions {
  readonly example?: ExampleName | undefined;
}

/** Where the image tarballs are kept between runs: beside the tools, outside the clone. */
export function imagesCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'eventwire', 'images');
}

// ---- processes ------------------------------------------------------------------------------

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone already
    }
  }
}

/** The run directories this process created that are still there (a node's, its control plane's). */
function ownRunDirs(): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(RUN_DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    try {
      if (Number(readFileSync(join(dir, 'owner'), 'utf8').trim()) === process.pid) out.push(dir);
    } catch {
      // no owner file (yet, or any more): not one to act on
    }
  }
  return out;
}

/** Runs a pinned tool; fails with the command and the tail of its output. */
async function runTool(
  bin: string,
  args: readonly string[],
  opts: { readonly signal: AbortSignal; readonly timeoutMs: number; readonly cwd?: string },
): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync(bin, [...args], {
      signal: opts.signal,
      timeout: opts.timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    return `${stdout}${stderr}`;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`${basename(bin)} ${args.join(' ')} failed: ${output || e.message}`, {
      cause: err,
    });
  }
}

// ---- the cluster's state ---------------------------------------------------------------------

/** "name: phase, waiting reason" of each Pod in a namespace, for an error message. */
async function podSummary(kc: KubeConfig, namespace: string): Promise<string> {
  try {
    const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace });
    const lines = pods.items.map((p) => {
      const waiting = (p.status?.containerStatuses ?? [])
        .map((c) => c.state?.waiting?.reason)
        .filter((r) => r !== undefined);
      const why = waiting.length > 0 ? ` (${waiting.join(', ')})` : '';
      return `${p.metadata?.name ?? '?'}: ${p.status?.phase ?? '?'}${why}`;
    });
    return lines.join('; ') || 'no Pods';
  } catch (err) {
    return `the Pods could not be listed: ${(err as Error).message}`;
  }
}

/** http://<ClusterIP>:<port> of a Service: the host reaches ClusterIPs over the node's bridge. */
async function serviceUrl(kc: KubeConfig, namespace: string, name: string): Promise<string> {
  const svc = await kc.makeApiClient(CoreV1Api).readNamespacedService({ name, namespace });
  const ip = svc.spec?.clusterIP;
  const ports = svc.spec?.ports ?? [];
  const port = (ports.find((p) => p.name === 'http') ?? ports[0])?.port;
  if (ip === undefined || ip === 'None' || port === undefined) {
    throw new Error(`Service ${namespace}/${name} has no ClusterIP and port`);
  }
  return `http://${ip}:${port}`;
}

interface Conditioned {
  metadata?: { name?: string };
  status?: { conditions?: { type: string; status: string; reason?: string }[] };
}

const SHOP_NAMESPACE = 'shop';

/** The shop's handler Deployments that do not have their replicas ready yet. */
async function deploymentsNotReady(kc: KubeConfig): Promise<string[]> {
  const list = await kc
    .makeApiClient(AppsV1Api)
    .listNamespacedDeployment({ namespace: SHOP_NAMESPACE });
  const out = list.items.flatMap((d) => {
    const want = d.spec?.replicas ?? 1;
    const ready = d.status?.readyReplicas ?? 0;
    return ready < want ? [`Deployment ${d.metadata?.name ?? '?'} ${ready}/${want} ready`] : [];
  });
  if (list.items.length < HANDLERS.length) out.push('the handler Deployments are not all there');
  return out;
}

/** The shop's EventStreams or EventSubscriptions (`plural`) whose Ready is not True. */
async function resourcesNotReady(kc: KubeConfig, plural: string): Promise<string[]> {
  const list = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
    group: 'eventwire.io',
    version: 'v1alpha1',
    namespace: SHOP_NAMESPACE,
    plural,
  })) as { items?: Conditioned[] };
  const items = list.items ?? [];
  if (items.length === 0) return [`no ${plural} yet`];
  return items.flatMap((o) => {
    const c = o.status?.conditions?.find((x) => x.type === 'Ready');
    if (c?.status === 'True') return [];
    return [`${plural} ${o.metadata?.name ?? '?'}: ${c?.reason ?? 'no status yet'}`];
  });
}

/** What in namespace shop is not Ready yet: Deployments, EventStreams, EventSubscriptions. */
async function shopNotReady(kc: KubeConfig): Promise<string[]> {
  return [
    ...(await deploymentsNotReady(kc)),
    ...(await resourcesNotReady(kc, 'eventstreams')),
    ...(await resourcesNotReady(kc, 'eventsubscriptions')),
  ];
}

async function readStates(
  handlers: Readonly<Record<HandlerName, string>>,
  signal: AbortSignal,
): Promise<ShopStates> {
  const get = async (name: HandlerName): Promise<unknown> => {
    const res = await fetch(`${handlers[name]}/state`, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(5_000)]),
    });
    return res.json();
  };
  const [product, cart, inventory, order] = await Promise.all(HANDLERS.map(get));
  return { product, cart, inventory, order } as ShopStates;
}

// ---- the run ---------------------------------------------------------------------------------

class ClusterRun {
  readonly #env: NodeJS.ProcessEnv;
  readonly #say: (line: string) => void;
  readonly #opts: ClusterOptions;
  readonly #repoRoot = defaultRepoRoot();
  readonly #abort = new AbortController();
  /** what the stop waits for, named when its deadline passes */
  #pending = 'the start';
  #booting: Promise<LocalNode> | undefined;
  #booted = false;
  /** set once startLocalNode is called: from then on a stop waits for the node's start */
  #nodeStarting = false;
  #node: LocalNode | undefined;
  #tools: ResolvedTools | undefined;

  constructor(env: NodeJS.ProcessEnv, say: (line: string) => void, opts: ClusterOptions) {
    this.#env = env;
    this.#say = say;
    this.#opts = opts;
  }

  pending(): string[] {
    return [this.#pending];
  }

  #checkpoint(): void {
    if (this.#abort.signal.aborted) throw new Error('stopped during the start');
  }

  /** The pinned binaries, the images, and the node with the images imported. */
  async #boot(): Promise<LocalNode> {
    const say = this.#say;
    say('[dev] resolving binaries (the first run builds them from source: a few minutes)');
    this.#pending = 'the binaries';
    const tools = await ensureTools({
      cacheDir: defaultCacheDir(this.#env),
      kubebuilderAssets: this.#env.KUBEBUILDER_ASSETS,
      path: this.#env.PATH,
      log: say,
    });
    this.#tools = tools;
    this.#checkpoint();
    say('[dev] building the images (podman; later runs reuse what did not change)');
    this.#pending = 'the image build';
    const images = await buildLocalImages({
      repoRoot: this.#repoRoot,
      cacheDir: imagesCacheDir(this.#env),
      eventwireRef: CLUSTER_EVENTWIRE_IMAGE,
      tools,
      log: say,
    });
    this.#checkpoint();
    say('[dev] starting the local node (control plane, containerd, kubelet, kube-proxy, CoreDNS)');
    this.#pending = 'the node start';
    this.#nodeStarting = true;
    const node = await startLocalNode({ tools, pauseImage: PAUSE_IMAGE, images, log: say });
    this.#node = node;
    this.#pending = 'the local node';
    return node;
  }

  /** Namespace labelled restricted, then helm install from the working tree. */
  async #install(node: LocalNode, tools: ResolvedTools): Promise<void> {
    const { name, namespace } = CLUSTER_RELEASE;
    const kc = node.controlPlane.kubeConfig;
    await kc.makeApiClient(CoreV1Api).createNamespace({
      body: {
        metadata: {
          name: namespace,
          labels: { 'pod-security.kubernetes.io/enforce': 'restricted' },
        },
      },
    });
    this.#say(
      `[dev] helm install ${name} charts/eventwire -n ${namespace} --wait (image ${CLUSTER_EVENTWIRE_IMAGE})`,
    );
    const started = Date.now();
    const args = [
      'install',
      name,
      join(this.#repoRoot, 'charts', 'eventwire'),
      `--namespace=${namespace}`,
      `--kubeconfig=${node.kubeconfigPath}`,
      '--set=image.tag=dev',
      '--set=image.pullPolicy=Never',
      '--wait',
      '--timeout=5m',
    ];
    try {
      await runTool(tools.helm.path, args, { signal: this.#abort.signal, timeoutMs: 6 * 60_000 });
    } catch (err) {
      this.#checkpoint();
      const pods = await podSummary(kc, namespace);
      throw new Error(`helm install failed; Pods in ${namespace}: ${pods}`, { cause: err });
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    this.#say(`[dev] eventwire is installed: ${await podSummary(kc, namespace)} (${seconds} s)`);
  }

  #announce(node: LocalNode, tools: ResolvedTools): void {
    const say = this.#say;
    const v = node.versions;
    say(
      `[dev] node ${node.nodeName}: kube-apiserver ${v.kubeApiserver}, kubelet ${v.kubelet}, containerd ${v.containerd}, runc ${v.runc}, CoreDNS ${v.coredns}`,
    );
    const dirs = [...new Set([dirname(tools.kubectl.path), dirname(tools.helm.path)])];
    say('[dev] in another shell (helm and kubectl are the pinned ones, from the PATH line):');
    say(`export KUBECONFIG=${node.kubeconfigPath}`);
    say(`export PATH=${dirs.join(':')}:$PATH`);
    say(`[dev]   kubectl -n ${CLUSTER_RELEASE.namespace} get pods`);
    say(`[dev]   helm test ${CLUSTER_RELEASE.name} -n ${CLUSTER_RELEASE.namespace} --logs`);
    say('[dev]   kubectl apply -k examples/shop');
    say('[dev] press Ctrl-C to stop: the node and everything on it is removed');
    const ready = {
      kubeconfig: node.kubeconfigPath,
      runDirs: [node.runDir, node.controlPlane.runDir],
      pid: process.pid,
    };
    say(`EVENTWIRE_DEV_READY ${JSON.stringify(ready)}`);
    say('[dev] ready');
  }

  /** Everything until the stop: start, install, the example; then waits for the signal. */
  async run(signals: StopSignals): Promise<void> {
    this.#booting = this.#boot().finally(() => {
      this.#booted = true;
    });
    const node = await this.#booting;
    this.#checkpoint();
    const tools = this.#tools;
    if (tools === undefined) throw new Error('the binaries were not resolved');
    await this.#install(node, tools);
    this.#announce(node, tools);
    if (this.#opts.example === 'shop') await this.#shop(node, tools);
    await signals.received;
  }

  async #shop(node: LocalNode, tools: ResolvedTools): Promise<void> {
    const say = this.#say;
    const kc = node.controlPlane.kubeConfig;
    const signal = this.#abort.signal;
    say('[shop] kubectl apply -k examples/shop');
    const applied = await runTool(
      tools.kubectl.path,
      ['apply', '-k', 'examples/shop', `--kubeconfig=${node.kubeconfigPath}`],
      { signal, timeoutMs: 120_000, cwd: this.#repoRoot },
    );
    for (const line of applied.trim().split('\n')) say(`[shop]   ${line}`);
    say(
      '[shop] waiting for the handler Deployments, EventStreams and EventSubscriptions to be Ready',
    );
    await this.#until('the shop to be Ready', SHOP_READY_TIMEOUT_MS, () => shopNotReady(kc));
    say(
      '[shop] namespace shop: 4 handler Deployments, 2 EventStreams and 6 EventSubscriptions are Ready',
    );
    const handlers = {} as Record<HandlerName, string>;
    for (const h of HANDLERS) handlers[h] = await serviceUrl(kc, SHOP_NAMESPACE, `${h}-handler`);
    const ingress = await serviceUrl(
      kc,
      CLUSTER_RELEASE.namespace,
      `${CLUSTER_RELEASE.name}-ingress`,
    );
    const url = `${ingress}/shop/shop`;
    const { products, carts } = scenarioEvents();
    say(
      `[shop] publishing ${products.length} product.added and ${carts.length} cart.updated to ${url} (Service eventwire-ingress)`,
    );
    const started = Date.now();
    for (const e of [...products, ...carts]) {
      this.#checkpoint();
      await publish(url, e);
    }
    let states: ShopStates | undefined;
    await this.#until('every handler to have its events', 60_000, async () => {
      states = await readStates(handlers, signal);
      return missing(states);
    });
    if (states === undefined) throw new Error('no handler state was read');
    for (const line of describeSummary({ seconds: (Date.now() - started) / 1000, states }))
      say(line);
    say(
      `[shop] look inside: curl ${handlers.order}/state; or kubectl -n shop logs deploy/order-handler`,
    );
    const done = { seconds: (Date.now() - started) / 1000, handlers };
    say(`EVENTWIRE_SHOP_DONE ${JSON.stringify(done)}`);
  }

  /** Polls `left` until it returns nothing; fails with what is left after timeoutMs. */
  async #until(what: string, timeoutMs: number, left: () => Promise<string[]>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: string[];
    for (;;) {
      this.#checkpoint();
      try {
        last = await left();
        if (last.length === 0) return;
      } catch (err) {
        last = [(err as Error).message];
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs / 1000} s waiting for ${what}: ${last.join('; ')}`,
        );
      }
      await sleep(500, undefined, { signal: this.#abort.signal }).catch(() => undefined);
    }
  }

  /**
   * The graceful stop. During the binaries' or images' build, what runs for it (go, podman)
   * gets SIGTERM until the build gives up. A node start is waited for (about 15 s; it is
   * bounded by its own timeouts and the stop deadline): killing its daemons from here would
   * race with the ones it starts next and with the clean-up of its own failure path. Then the
   * node is stopped: every Pod, daemon, mount, the bridge and the iptables rules go.
   */
  async stop(interrupted: boolean): Promise<void> {
    this.#abort.abort();
    const booting = this.#booting?.catch(() => undefined);
    // go and podman start further commands after a failed one: signal until the build ends
    while (booting && !this.#booted && !this.#nodeStarting) {
      signalAll(descendantsOf(process.pid), 'SIGTERM');
      await Promise.race([booting, sleep(250)]);
    }
    await booting;
    const node = this.#node;
    if (node) {
      this.#pending = 'the local node';
      try {
        await node.stop();
      } catch (err) {
        this.#say(`[dev] stopping the local node failed: ${(err as Error).message}`);
      }
    }
    this.#pending = 'the last check';
    await this.#leftovers(interrupted);
  }

  /**
   * Run directories of this process still there: a start interrupted half-way leaves its
   * control plane's (logs only), removed after a Ctrl-C; after a failure it is kept for its
   * logs, and a node's is kept for sweepStaleNode (mounts, bridge), with nothing running.
   */
  async #leftovers(interrupted: boolean): Promise<void> {
    const kept: string[] = [];
    for (const dir of ownRunDirs()) {
      killProcessesOf(dir);
      if (!interrupted || basename(dir).startsWith(`${RUN_DIR_PREFIX}node-`)) {
        kept.push(dir);
        continue;
      }
      try {
        await unmountUnder(dir);
        await rm(dir, { recursive: true, force: true });
      } catch (err) {
        kept.push(`${dir} (${(err as Error).message})`);
      }
    }
    if (kept.length > 0) this.#say(`[dev] left for the next run to remove: ${kept.join(', ')}`);
  }

  /**
   * The early exit (second Ctrl-C, deadline), synchronous: SIGKILL to this process's
   * descendants and to every process of its run directories (container shims, containers).
   * Mounts, the run directories, the bridge and the iptables rules are left: the next node
   * start sweeps them (sweepStaleNode), as after a crash.
   */
  emergency(): void {
    const pids = descendantsOf(process.pid);
    signalAll(pids, 'SIGKILL');
    const dirs = ownRunDirs();
    const inDirs = dirs.reduce((n, dir) => n + killProcessesOf(dir), 0);
    this.#say(
      `[dev] killed ${pids.length + inDirs} processes; the next run removes the rest (${dirs.join(', ') || 'no run directory'}${existsSync('/sys/class/net/eventwire0') ? ', the eventwire0 bridge and its rules' : ''})`,
    );
  }
}

/**
 * `eventwire dev --cluster`: 2 (and nothing started) when this host cannot run the local
 * node; 0 after a stop by Ctrl-C or SIGTERM; throws when the start fails.
 */
export async function runDevCluster(
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
  opts: ClusterOptions = {},
): Promise<number> {
  try {
    checkHost();
  } catch (e) {
    const message = (e as Error).message;
    const kind = message.includes('kind') ? '' : '; or use kind: docs/quickstart-kind.md';
    err.write(`eventwire dev --cluster: ${message}${kind}\n`);
    return 2;
  }
  const say = (line: string): void => {
    out.write(`${line}\n`);
  };
  const run = new ClusterRun(env, say, opts);
  const signals = new StopSignals({
    deadlineMs: CLUSTER_STOP_DEADLINE_MS,
    report: sayStopEvents(say),
    pending: () => run.pending(),
    emergency: () => {
      run.emergency();
    },
  });
  signals.stopWhenOrphaned();
  let interrupted = false;
  try {
    const running = run.run(signals);
    const stopped = signals.received.then(() => {
      interrupted = true;
      running.catch(() => undefined);
    });
    await Promise.race([running, stopped]);
    return 0;
  } finally {
    signals.beginStop();
    await run.stop(interrupted);
    signals.dispose();
    say('[dev] stopped');
  }
}
