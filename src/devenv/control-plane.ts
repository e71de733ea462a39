// A real, local Kubernetes control plane: etcd and kube-apiserver (and optionally
// kube-controller-manager) on free loopback ports, in a temporary run directory, with TLS
// from a generated CA, an admin user by client certificate and RBAC authorization.
import { request } from 'node:https';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createCertAuthority, serviceAccountKeyPair, type CertAuthority, type Pem } from './pki.ts';
import { ManagedProcess, RunDir, freePort, waitFor } from './processes.ts';
import type { ResolvedTools } from './tools.ts';

export interface ControlPlaneOptions {
  readonly tools: Pick<ResolvedTools, 'etcd' | 'kube-apiserver' | 'kube-controller-manager'>;
  /** run kube-controller-manager too (garbage collection, namespaces, service accounts) */
  readonly controllerManager?: boolean;
  readonly startTimeoutMs?: number;
  /**
   * Serve the Pods of a local node: listen on `address` (the node's bridge address, which
   * Pods reach) instead of loopback, put `address` and the kubernetes Service's `serviceIp`
   * in the serving certificate, keep the kubernetes Service's endpoints, reach kubelets by
   * their InternalIP with a client certificate (logs, exec, port-forward), authorize Nodes.
   */
  readonly node?: { readonly address: string; readonly serviceIp: string };
}

export interface ControlPlane {
  readonly server: string;
  readonly runDir: string;
  /** kubeconfig file of the admin user (system:masters) */
  readonly kubeconfigPath: string;
  readonly kubeConfig: KubeConfig;
  readonly caCert: string;
  readonly versions: { readonly kubeApiserver: string; readonly etcd: string };
  /** the CA every certificate of this control plane chains to (a node's kubelet serves with one) */
  readonly certAuthority: CertAuthority;
  /** a kubeconfig for another user, authenticated by a client certificate */
  kubeConfigFor(user: string, groups?: readonly string[]): Promise<KubeConfig>;
  stop(): Promise<void>;
}

interface TlsProbe {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

/** GET url over TLS and resolve its status code and body. */
export async function httpsGet(
  url: string,
  tls: TlsProbe,
): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = request(url, { ...tls, method: 'GET', timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export function kubeconfigYaml(server: string, caCert: string, user: string, pem: Pem): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'eventwire-local', cluster: { server, 'certificate-authority-data': b64(caCert) } },
    ],
    users: [
      {
        name: user,
        user: { 'client-certificate-data': b64(pem.cert), 'client-key-data': b64(pem.key) },
      },
    ],
    contexts: [{ name: 'eventwire-local', context: { cluster: 'eventwire-local', user } }],
    'current-context': 'eventwire-local',
  });
}

async function startEtcd(
  tools: ControlPlaneOptions['tools'],
  run: RunDir,
  timeoutMs: number,
): Promise<{ proc: ManagedProcess; url: string }> {
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const proc = new ManagedProcess({
    name: 'etcd',
    bin: tools.etcd.path,
    runDir: run,
    args: [
      '--name=default',
      `--data-dir=${join(run.path, 'etcd')}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
  });
  await waitFor(
    'etcd /health',
    async () => {
      const res = await fetch(`${url}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    },
    { timeoutMs, proc },
  );
  return { proc, url };
}

interface ApiserverFiles {
  readonly ca: string;
  readonly serving: { cert: string; key: string };
  readonly saPub: string;
  readonly saKey: string;
  /** node mode: the API server's client certificate towards kubelets */
  readonly kubeletClient?: { cert: string; key: string };
}

async function writePem(
  dir: string,
  name: string,
  pem: Pem,
): Promise<{ cert: string; key: string }> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await writeFile(files.cert, pem.cert);
  await writeFile(files.key, pem.key, { mode: 0o600 });
  return files;
}

async function writePki(
  run: RunDir,
  ca: CertAuthority,
  node: ControlPlaneOptions['node'],
): Promise<ApiserverFiles> {
  const dir = join(run.path, 'pki');
  await mkdir(dir, { recursive: true });
  const svc = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc'];
  const serving = await ca.issueServing('kube-apiserver', {
    dns: ['localhost', ...svc, ...(node ? ['kubernetes.default.svc.cluster.local'] : [])],
    ips: ['127.0.0.1', ...(node ? [node.address, node.serviceIp] : [])],
  });
  const sa = serviceAccountKeyPair();
  const files = {
    ca: join(dir, 'ca.crt'),
    serving: await writePem(dir, 'apiserver', serving),
    saPub: join(dir, 'sa.pub'),
    saKey: join(dir, 'sa.key'),
    ...(node
      ? {
          kubeletClient: await writePem(
            dir,
            'apiserver-kubelet-client',
            await ca.issueClient('kube-apiserver-kubelet-client', ['system:masters']),
          ),
        }
      : {}),
  };
  await writeFile(files.ca, ca.cert);
  await writeFile(files.saPub, sa.publicKey);
  await writeFile(files.saKey, sa.privateKey, { mode: 0o600 });
  return files;
}

/** Where the API server listens, and what it needs to serve a node's Pods. */
function addressArgs(node: ControlPlaneOptions['node'], files: ApiserverFiles): string[] {
  if (!node || !files.kubeletClient) {
    return [
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      // loopback cannot back the kubernetes Service's endpoints; nothing in-cluster dials it
      '--endpoint-reconciler-type=none',
      '--authorization-mode=RBAC',
    ];
  }
  return [
    `--bind-address=${node.address}`,
    `--advertise-address=${node.address}`,
    `--kubelet-client-certificate=${files.kubeletClient.cert}`,
    `--kubelet-client-key=${files.kubeletClient.key}`,
    `--kubelet-certificate-authority=${files.ca}`,
    '--kubelet-preferred-address-types=InternalIP',
    '--authorization-mode=Node,RBAC',
  ];
}

function apiserverArgs(
  port: number,
  etcdUrl: string,
  files: ApiserverFiles,
  run: RunDir,
  node: ControlPlaneOptions['node'],
): string[] {
  return [
    `--etcd-servers=${etcdUrl}`,
    ...addressArgs(node, files),
    `--secure-port=${port}`,
    `--cert-dir=${join(run.path, 'apiserver-certs')}`,
    `--tls-cert-file=${files.serving.cert}`,
    `--tls-private-key-file=${files.serving.key}`,
    `--client-ca-file=${files.ca}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${files.saPub}`,
    `--service-account-signing-key-file=${files.saKey}`,
    '--service-cluster-ip-range=10.96.0.0/16',
    '--allow-privileged=true',
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    '--v=1',
  ];
}

async function startControllerManager(
  tools: ControlPlaneOptions['tools'],
  run: RunDir,
  kubeconfigPath: string,
  files: ApiserverFiles,
  withNode: boolean,
): Promise<ManagedProcess> {
  const port = await freePort();
  const proc = new ManagedProcess({
    name: 'kube-controller-manager',
    bin: tools['kube-controller-manager'].path,
    runDir: run,
    args: [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${join(run.path, 'kcm-certs')}`,
      '--leader-elect=false',
      `--service-account-private-key-file=${files.saKey}`,
      `--root-ca-file=${files.ca}`,
      '--use-service-account-credentials=false',
      // a node's lifecycle controller lifts the not-ready taint its kubelet registers with
      withNode ? '--controllers=*,-nodeipam' : '--controllers=*,-nodeipam,-nodelifecycle',
      '--v=1',
    ],
  });
  await waitFor(
    'kube-controller-manager /healthz',
    async () => {
      const res = await httpsGet(`https://127.0.0.1:${port}/healthz`, {
        ca: '',
        // its serving certificate is self-signed at start; only liveness is probed here
        ...({ rejectUnauthorized: false } as object),
      });
      return res.status === 200;
    },
    { timeoutMs: 60_000, proc },
  );
  return proc;
}

async function probeVersionOf(server: string, tls: TlsProbe): Promise<string> {
  const res = await httpsGet(`${server}/version`, tls);
  return (JSON.parse(res.body) as { gitVersion: string }).gitVersion;
}

/** Start etcd and kube-apiserver (and kube-controller-manager) and wait until ready. */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const run = await RunDir.create('cp');
  const procs: ManagedProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop();
  };
  try {
    const ca = await createCertAuthority();
    const files = await writePki(run, ca, opts.node);
    const etcd = await startEtcd(opts.tools, run, timeoutMs);
    procs.push(etcd.proc);
    const port = await freePort();
    const server = `https://${opts.node?.address ?? '127.0.0.1'}:${port}`;
    const apiserver = new ManagedProcess({
      name: 'kube-apiserver',
      bin: opts.tools['kube-apiserver'].path,
      runDir: run,
      args: apiserverArgs(port, etcd.url, files, run, opts.node),
    });
    procs.push(apiserver);
    const admin = await ca.issueClient('eventwire-admin', ['system:masters']);
    const tls = { ca: ca.cert, cert: admin.cert, key: admin.key };
    await waitFor(
      'kube-apiserver /readyz',
      async () => (await httpsGet(`${server}/readyz`, tls)).status === 200,
      { timeoutMs, proc: apiserver, intervalMs: 250 },
    );
    const kubeconfigPath = join(run.path, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(server, ca.cert, 'eventwire-admin', admin), {
      mode: 0o600,
    });
    if (opts.controllerManager ?? true) {
      procs.push(
        await startControllerManager(opts.tools, run, kubeconfigPath, files, Boolean(opts.node)),
      );
    }
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    return {
      server,
      runDir: run.path,
      kubeconfigPath,
      kubeConfig,
      caCert: ca.cert,
      certAuthority: ca,
      versions: {
        kubeApiserver: await probeVersionOf(server, tls),
        etcd: opts.tools.etcd.version,
      },
      kubeConfigFor: async (user, groups) => {
        const kc = new KubeConfig();
        kc.loadFromString(
          kubeconfigYaml(server, ca.cert, user, await ca.issueClient(user, groups)),
        );
        return kc;
      },
      stop: async () => {
        await stopAll();
        await run.remove();
      },
    };
  } catch (err) {
    await stopAll();
    throw new Error(`the local control plane did not start (logs in ${run.path})`, { cause: err });
  }
}
