// The host side of the local node: the bridge its Pods live on, the route to Services, the
// egress rule that keeps Pod traffic on this machine, and the removal of all of it (and of
// what kubelet and kube-proxy added to iptables). Everything here needs root on Linux.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The one local node's addresses (one node per machine: they are fixed). */
export const NODE_NETWORK = {
  bridge: 'eventwire0',
  /** the host's address on the bridge: API server, kubelet and CoreDNS listen here */
  address: '10.244.0.1',
  podCidr: '10.244.0.0/24',
  serviceCidr: '10.96.0.0/16',
  kubernetesServiceIp: '10.96.0.1',
  dnsServiceIp: '10.96.0.10',
  /** drops anything from the Pod range that would leave by another interface */
  egressChain: 'EVENTWIRE-EGRESS',
} as const;

/** PATH for the node's processes: kubelet and kube-proxy call iptables, mount, conntrack. */
export function nodePath(path: string | undefined): string {
  return [path ?? '', '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin']
    .filter(Boolean)
    .join(':');
}

async function run(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, [...args], {
      env: { ...process.env, PATH: nodePath(process.env.PATH) },
      timeout: 60_000,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`, {
      cause: err,
    });
  }
}

/** Run each command, ignoring failures (teardown: each step may have nothing to remove). */
async function tryAll(cmds: readonly (readonly string[])[]): Promise<void> {
  for (const [cmd, ...args] of cmds) {
    if (!cmd) continue;
    await run(cmd, args).catch(() => undefined);
  }
}

export function bridgeExists(): boolean {
  return existsSync(`/sys/class/net/${NODE_NETWORK.bridge}`);
}

/** Create the bridge, the Service route and the egress rule; remember ip_forward. */
export async function setUpHostNetwork(runDir: string): Promise<void> {
  const n = NODE_NETWORK;
  const forward = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  await writeFile(join(runDir, 'ip_forward.orig'), `${forward}\n`);
  await run('ip', ['link', 'add', n.bridge, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${n.address}/24`, 'dev', n.bridge]);
  await run('ip', ['link', 'set', n.bridge, 'up']);
  // host-originated packets to Service IPs stay on the bridge instead of the default route
  await run('ip', ['route', 'add', n.serviceCidr, 'dev', n.bridge, 'src', n.address]);
  if (forward !== '1') await run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await run('iptables', ['-N', n.egressChain]);
  await run('iptables', ['-A', n.egressChain, '-s', n.podCidr, '!', '-o', n.bridge, '-j', 'DROP']);
  await run('iptables', ['-I', 'FORWARD', '1', '-j', n.egressChain]);
}

/** The iptables chains the kubelet creates (canaries, firewall), in both families. */
function kubeletChainCleanup(): string[][] {
  const out: string[][] = [];
  for (const ipt of ['iptables', 'ip6tables']) {
    out.push([ipt, '-D', 'INPUT', '-j', 'KUBE-FIREWALL']);
    out.push([ipt, '-D', 'OUTPUT', '-j', 'KUBE-FIREWALL']);
    out.push([ipt, '-F', 'KUBE-FIREWALL'], [ipt, '-X', 'KUBE-FIREWALL']);
    for (const table of ['mangle', 'nat', 'filter']) {
      out.push([ipt, '-t', table, '-F', 'KUBE-KUBELET-CANARY']);
      out.push([ipt, '-t', table, '-X', 'KUBE-KUBELET-CANARY']);
    }
    out.push([ipt, '-t', 'mangle', '-X', 'KUBE-IPTABLES-HINT']);
  }
  return out;
}

/** Empty cgroups the runtime left for Pods (containerd's cgroupfs parent /k8s.io). */
function removePodCgroups(): void {
  const root = '/sys/fs/cgroup';
  if (!existsSync(root)) return;
  const removeTree = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) removeTree(join(dir, entry.name));
    }
    try {
      rmdirSync(dir);
    } catch {
      // a cgroup that still holds a process (or a file system that refuses): left alone
    }
  };
  const candidates = [join(root, 'k8s.io')];
  for (const h of readdirSync(root)) candidates.push(join(root, h, 'k8s.io'));
  for (const dir of candidates) if (existsSync(dir)) removeTree(dir);
}

/**
 * Remove what the node added to the host: kube-proxy's and the kubelet's iptables rules, the
 * egress rule, the bridge with its veths, the route; restore ip_forward. Idempotent; also the
 * sweep of a run that was killed half-way.
 */
export async function tearDownHostNetwork(
  runDir: string | undefined,
  kubeProxy: string | undefined,
): Promise<void> {
  const n = NODE_NETWORK;
  if (kubeProxy && existsSync(kubeProxy)) {
    await tryAll([[kubeProxy, '--cleanup', '--proxy-mode=iptables']]);
  }
  await tryAll(kubeletChainCleanup());
  await tryAll([
    ['iptables', '-D', 'FORWARD', '-j', n.egressChain],
    ['iptables', '-F', n.egressChain],
    ['iptables', '-X', n.egressChain],
  ]);
  if (bridgeExists()) {
    const veths = readdirSync(`/sys/class/net/${n.bridge}/brif`);
    await tryAll(veths.map((v) => ['ip', 'link', 'del', v]));
    await tryAll([
      ['ip', 'route', 'del', n.serviceCidr, 'dev', n.bridge],
      ['ip', 'link', 'del', n.bridge],
    ]);
  }
  const orig = runDir ? join(runDir, 'ip_forward.orig') : undefined;
  if (orig && existsSync(orig)) {
    const value = readFileSync(orig, 'utf8').trim();
    if (value === '0' || value === '1')
      await tryAll([['sysctl', '-qw', `net.ipv4.ip_forward=${value}`]]);
  }
  removePodCgroups();
}

/** What the local node needs from the host, and the fix for each thing missing. */
export function hostProblems(env: { platform: string; uid: number | undefined }): string[] {
  if (env.platform !== 'linux') {
    return ['the local node runs on Linux only: use kind (docs/quickstart-kind.md)'];
  }
  if (env.uid !== 0) {
    return [
      'the local node needs root (it creates a bridge and iptables rules, and removes them): ' +
        'run it as root, or use kind (docs/quickstart-kind.md)',
    ];
  }
  const path = nodePath(process.env.PATH).split(':');
  const onPath = (bin: string): boolean => path.some((d) => existsSync(join(d, bin)));
  const missing = [
    'containerd',
    'containerd-shim-runc-v2',
    'ctr',
    'runc',
    'iptables',
    'conntrack',
    'ip',
  ].filter((b) => !onPath(b));
  const cni = ['bridge', 'host-local', 'portmap', 'loopback'].filter(
    (p) => !existsSync(join(CNI_BIN_DIR, p)),
  );
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing commands: ${missing.join(', ')}`);
  if (cni.length > 0) problems.push(`missing CNI plugins in ${CNI_BIN_DIR}: ${cni.join(', ')}`);
  if (problems.length > 0) {
    problems.push(
      'fix: `npm run tools` as root installs them (Debian packages containerd runc ' +
        'containernetworking-plugins iptables conntrack)',
    );
  }
  return problems;
}

/** Debian's containernetworking-plugins */
export const CNI_BIN_DIR = '/usr/lib/cni';

/** The host packages the local node needs, by Debian package name. */
export const NODE_PACKAGES = [
  'containerd',
  'runc',
  'containernetworking-plugins',
  'iptables',
  'conntrack',
  'iproute2',
] as const;
