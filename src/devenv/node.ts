// A real one-node Kubernetes cluster on this machine, without kind or Docker: the local
// control plane in node mode (etcd, kube-apiserver, kube-controller-manager) plus
// kube-scheduler, containerd + runc + the CNI bridge, the kubelet, kube-proxy (iptables) and
// CoreDNS. Images come from local archives (nothing is pulled). Needs root on Linux.
// One node per machine (fixed bridge and addresses); a run killed half-way is swept by the
// next one: its processes, containers, mounts, bridge, routes and iptables rules.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from './control-plane.ts';
import {
  containerdConfig,
  cniConfig,
  corefile,
  kubeDnsManifests,
  kubeletConfig,
  type NodePaths,
} from './node-config.ts';
import {
  NODE_NETWORK,
  bridgeExists,
  hostProblems,
  nodePath,
  setUpHostNetwork,
  tearDownHostNetwork,
} from './node-host.ts';
import {
  ManagedProcess,
  RunDir,
  freePort,
  isProcessAlive,
  killProcessesOf,
  sweepStaleRuns,
  unmountUnder,
  waitFor,
} from './processes.ts';
import type { ResolvedTools } from './tools.ts';

const execFileAsync = promisify(execFile);
const NODE_NAME = 'eventwire-node';
const RUN_LABEL = 'node';

/** An image archive (docker-archive tarball) to import, and the reference it carries. */
export interface NodeImage {
  readonly ref: string;
  readonly archive: string;
}

export interface LocalNodeOptions {
  readonly tools: ResolvedTools;
  /** the sandbox image every Pod starts with; must be among `images` */
  readonly pauseImage: string;
  /** imported before the node reports ready */
  readonly images: readonly NodeImage[];
  readonly log?: (line: string) => void;
  readonly startTimeoutMs?: number;
}

export interface LocalNode {
  readonly nodeName: string;
  /** the admin kubeconfig (system:masters) */
  readonly kubeconfigPath: string;
  readonly controlPlane: ControlPlane;
  readonly runDir: string;
  readonly versions: {
    readonly kubelet: string;
    readonly containerd: string;
    readonly runc: string;
    readonly coredns: string;
    readonly kubeApiserver: string;
  };
  /** milliseconds from the start until the Node was Ready */
  readonly readyAfterMs: number;
  importImages(images: readonly NodeImage[]): Promise<void>;
  stop(): Promise<void>;
}

async function output(cmd: string, args: readonly string[]): Promise<string> {
  const { stdout, stderr } = await execFileAsync(cmd, [...args], {
    env: { ...process.env, PATH: nodePath(process.env.PATH) },
    timeout: 120_000,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((err: unknown) => {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`, {
      cause: err,
    });
  });
  return `${stdout}${stderr}`;
}

const firstVersion = (text: string): string =>
  /v?\d+\.\d+\.\d+[^\s,]*/.exec(text)?.[0].replace(/^v?/, 'v') ?? text.trim();

/** A live node of another process, by its run directory's owner. */
function liveNodeRun(): { dir: string; owner: number } | undefined {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(`eventwire-run-${RUN_LABEL}-`)) continue;
    const dir = join(tmpdir(), entry);
    const ownerFile = join(dir, 'owner');
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, 'utf8').trim());
    if (owner !== process.pid && isProcessAlive(owner)) return { dir, owner };
  }
  return undefined;
}

/** Fail with the fix when this host cannot run the node, or another node runs. */
export function checkHost(): void {
  const problems = hostProblems({ platform: process.platform, uid: process.getuid?.() });
  if (problems.length > 0) {
    throw new Error(`cannot start the local node: ${problems.join('; ')}`);
  }
  const other = liveNodeRun();
  if (other) {
    throw new Error(
      `a local node is already running (pid ${other.owner}, ${other.dir}): stop it first; ` +
        'one node per machine',
    );
  }
}

/** Remove what a killed node run left: its run directory (via the run sweep) and the network. */
export async function sweepStaleNode(tools: Pick<ResolvedTools, 'kube-proxy'>): Promise<void> {
  await sweepStaleRuns();
  if (bridgeExists() && !liveNodeRun()) {
    await tearDownHostNetwork(undefined, tools['kube-proxy'].path);
  }
}

class NodeProcesses {
  readonly procs: ManagedProcess[] = [];
  private readonly run: RunDir;

  constructor(run: RunDir) {
    this.run = run;
  }

  start(name: string, bin: string, args: readonly string[]): ManagedProcess {
    const proc = new ManagedProcess({
      name,
      bin,
      args,
      runDir: this.run,
      env: { ...process.env, PATH: nodePath(process.env.PATH) },
    });
    this.procs.push(proc);
    return proc;
  }

  byName(name: string): ManagedProcess | undefined {
    return this.procs.find((p) => p.name === name);
  }
}

async function writeNodeFiles(
  run: RunDir,
  cp: ControlPlane,
  opts: LocalNodeOptions,
  ports: { kubeletHealthz: number; dnsHealth: number },
): Promise<NodePaths> {
  const pki = join(run.path, 'pki');
  await mkdir(pki, { recursive: true });
  await mkdir(join(run.path, 'containerd'), { recursive: true });
  const serving = await cp.certAuthority.issueServing(NODE_NAME, {
    dns: [NODE_NAME],
    ips: [NODE_NETWORK.address],
  });
  const paths: NodePaths = {
    runDir: run.path,
    containerdSocket: join(run.path, 'containerd', 'containerd.sock'),
    cniConfDir: join(run.path, 'net.d'),
    kubeconfig: cp.kubeconfigPath,
    caCert: join(pki, 'ca.crt'),
    kubeletCert: join(pki, 'kubelet.crt'),
    kubeletKey: join(pki, 'kubelet.key'),
  };
  await mkdir(paths.cniConfDir, { recursive: true });
  await writeFile(paths.caCert, cp.caCert);
  await writeFile(paths.kubeletCert, serving.cert);
  await writeFile(paths.kubeletKey, serving.key, { mode: 0o600 });
  const runc = (await output('sh', ['-c', 'command -v runc'])).trim();
  await writeFile(
    join(run.path, 'containerd.toml'),
    containerdConfig(paths, opts.pauseImage, runc),
  );
  await writeFile(join(paths.cniConfDir, '10-eventwire.conflist'), cniConfig(paths));
  await writeFile(join(run.path, 'kubelet.yaml'), kubeletConfig(paths, ports.kubeletHealthz));
  await writeFile(join(run.path, 'Corefile'), corefile(paths, ports.dnsHealth));
  return paths;
}

async function importInto(socket: string, images: readonly NodeImage[]): Promise<void> {
  for (const image of images) {
    await output('ctr', ['-a', socket, '-n', 'k8s.io', 'images', 'import', image.archive]);
  }
}

async function applyObjects(cp: ControlPlane, objects: readonly KubernetesObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(cp.kubeConfig);
  for (const obj of objects) await api.create(obj);
}

async function nodeReady(cp: ControlPlane): Promise<boolean> {
  const core = cp.kubeConfig.makeApiClient(CoreV1Api);
  const node = await core.readNode({ name: NODE_NAME });
  return (node.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

async function dnsAnswers(): Promise<boolean> {
  const resolver = new Resolver({ timeout: 1_000, tries: 1 });
  resolver.setServers([NODE_NETWORK.address]);
  const found = await resolver.resolve4('kubernetes.default.svc.cluster.local');
  return found.includes(NODE_NETWORK.kubernetesServiceIp);
}

async function stopNode(
  run: RunDir,
  procs: NodeProcesses,
  cp: ControlPlane | undefined,
  tools: ResolvedTools,
): Promise<void> {
  // the kubelet first, so it restarts nothing; then every container and shim, then the rest
  for (const name of ['kubelet', 'kube-proxy']) await procs.byName(name)?.stop();
  killProcessesOf(run.path);
  for (const p of [...procs.procs].reverse()) await p.stop();
  await cp?.stop();
  await unmountUnder(run.path);
  await tearDownHostNetwork(run.path, tools['kube-proxy'].path);
  await run.remove();
}

function startDaemons(
  procs: NodeProcesses,
  run: RunDir,
  cp: ControlPlane,
  tools: ResolvedTools,
  ports: { scheduler: number; proxyMetrics: number; proxyHealthz: number },
): void {
  const kc = cp.kubeconfigPath;
  procs.start('kube-scheduler', tools['kube-scheduler'].path, [
    `--kubeconfig=${kc}`,
    `--authentication-kubeconfig=${kc}`,
    `--authorization-kubeconfig=${kc}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${ports.scheduler}`,
    '--leader-elect=false',
    '--v=1',
  ]);
  procs.start('kubelet', tools.kubelet.path, [
    `--config=${join(run.path, 'kubelet.yaml')}`,
    `--kubeconfig=${kc}`,
    `--hostname-override=${NODE_NAME}`,
    `--node-ip=${NODE_NETWORK.address}`,
    `--root-dir=${join(run.path, 'kubelet')}`,
    '--v=1',
  ]);
  procs.start('kube-proxy', tools['kube-proxy'].path, [
    `--kubeconfig=${kc}`,
    '--proxy-mode=iptables',
    `--hostname-override=${NODE_NAME}`,
    `--cluster-cidr=${NODE_NETWORK.podCidr}`,
    `--nodeport-addresses=${NODE_NETWORK.address}/32`,
    '--iptables-localhost-nodeports=false',
    `--metrics-bind-address=127.0.0.1:${ports.proxyMetrics}`,
    `--healthz-bind-address=127.0.0.1:${ports.proxyHealthz}`,
    // leave the host's conntrack limits alone (a CI container may not change them)
    '--conntrack-max-per-core=0',
    '--conntrack-tcp-timeout-established=0s',
    '--conntrack-tcp-timeout-close-wait=0s',
    '--v=1',
  ]);
}

/** Copy the daemons' logs out of the run directories before they are removed. */
async function keepLogs(...dirs: (string | undefined)[]): Promise<string> {
  const out = await mkdtemp(join(tmpdir(), 'eventwire-node-logs-'));
  for (const dir of dirs) {
    if (!dir || !existsSync(dir)) continue;
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.log'))) {
      await copyFile(join(dir, f), join(out, f)).catch(() => undefined);
    }
  }
  return out;
}

/** Start the local node and wait until it is Ready, DNS answers and the images are in. */
async function startContainerd(procs: NodeProcesses, run: RunDir, socket: string): Promise<void> {
  const containerd = procs.start('containerd', 'containerd', [
    '--config',
    join(run.path, 'containerd.toml'),
  ]);
  await waitFor(
    'containerd',
    async () => {
      await output('ctr', ['-a', socket, 'version']);
      return true;
    },
    { timeoutMs: 30_000, proc: containerd, intervalMs: 200 },
  );
}

/** CoreDNS on the bridge address behind Service kube-dns; then the default ServiceAccount. */
async function startClusterDns(
  procs: NodeProcesses,
  run: RunDir,
  cp: ControlPlane,
  tools: ResolvedTools,
): Promise<void> {
  const coredns = procs.start('coredns', tools.coredns.path, ['-conf', join(run.path, 'Corefile')]);
  await applyObjects(cp, kubeDnsManifests());
  await waitFor('CoreDNS answering kubernetes.default', dnsAnswers, {
    timeoutMs: 30_000,
    proc: coredns,
    intervalMs: 250,
  });
  await waitFor(
    'the default ServiceAccount',
    async () => {
      await cp.kubeConfig
        .makeApiClient(CoreV1Api)
        .readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
}

async function versionsOf(tools: ResolvedTools, cp: ControlPlane): Promise<LocalNode['versions']> {
  return {
    kubelet: tools.kubelet.version,
    // "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>"
    containerd: firstVersion((await output('containerd', ['--version'])).split(' ')[2] ?? ''),
    runc: firstVersion(await output('runc', ['--version'])),
    coredns: firstVersion(await output(tools.coredns.path, ['-version'])),
    kubeApiserver: cp.versions.kubeApiserver,
  };
}

/** Start the local node and wait until it is Ready, DNS answers and the images are in. */
export async function startLocalNode(opts: LocalNodeOptions): Promise<LocalNode> {
  const log = opts.log ?? ((): void => undefined);
  const timeoutMs = opts.startTimeoutMs ?? 120_000;
  const { tools } = opts;
  checkHost();
  await sweepStaleNode(tools);
  const started = Date.now();
  const run = await RunDir.create(RUN_LABEL);
  const procs = new NodeProcesses(run);
  let cp: ControlPlane | undefined;
  try {
    await setUpHostNetwork(run.path);
    const plane = await startControlPlane({
      tools,
      node: { address: NODE_NETWORK.address, serviceIp: NODE_NETWORK.kubernetesServiceIp },
      startTimeoutMs: timeoutMs,
    });
    cp = plane;
    const ports = {
      kubeletHealthz: await freePort(),
      dnsHealth: await freePort(),
      scheduler: await freePort(),
      proxyMetrics: await freePort(),
      proxyHealthz: await freePort(),
    };
    const paths = await writeNodeFiles(run, plane, opts, ports);
    await startContainerd(procs, run, paths.containerdSocket);
    const importing = importInto(paths.containerdSocket, opts.images);
    startDaemons(procs, run, plane, tools, ports);
    const kubelet = procs.byName('kubelet');
    await waitFor('the node Ready', () => nodeReady(plane), {
      timeoutMs,
      intervalMs: 250,
      ...(kubelet ? { proc: kubelet } : {}),
    });
    const readyAfterMs = Date.now() - started;
    await startClusterDns(procs, run, plane, tools);
    await importing;
    const versions = await versionsOf(tools, plane);
    log(
      `[harness] node: kubelet ${versions.kubelet}, containerd ${versions.containerd}, ` +
        `runc ${versions.runc}, CoreDNS ${versions.coredns}; Ready in ${readyAfterMs} ms`,
    );
    return {
      nodeName: NODE_NAME,
      kubeconfigPath: plane.kubeconfigPath,
      controlPlane: plane,
      runDir: run.path,
      versions,
      readyAfterMs,
      importImages: (images) => importInto(paths.containerdSocket, images),
      stop: () => stopNode(run, procs, plane, tools),
    };
  } catch (err) {
    const logs = await keepLogs(run.path, cp?.runDir);
    await stopNode(run, procs, cp, tools).catch(() => undefined);
    throw new Error(`the local node did not start (its logs are kept in ${logs})`, { cause: err });
  }
}
