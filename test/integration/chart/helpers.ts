// Shared pieces of the chart tests: helm and kubectl as a user runs them, the value sets the
// acceptance names (default, production, minimal, every option on), rendered manifests, and
// for the RBAC proofs, the chart's roles, accounts bound to copies of them and their tokens.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { harnessTools } from '../../harness/index.ts';

const execFileAsync = promisify(execFile);

export const repoRoot = join(import.meta.dirname, '..', '..', '..');
export const chartDir = join(repoRoot, 'charts', 'eventwire');

/** The value sets every chart test covers: name → values files (none: the defaults). */
export const valueSets: Readonly<Record<string, readonly string[]>> = {
  default: [],
  production: [join(chartDir, 'ci', 'production-values.yaml')],
  minimal: [join(chartDir, 'ci', 'minimal-values.yaml')],
  'all-options': [join(chartDir, 'ci', 'all-options-values.yaml')],
};

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

async function run(bin: string, args: readonly string[], input?: string): Promise<RunResult> {
  const child = execFileAsync(bin, args, { maxBuffer: 64 * 1024 * 1024 });
  if (input !== undefined) child.child.stdin?.end(input);
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}`, {
      cause: err,
    });
  }
}

export async function helm(args: readonly string[], input?: string): Promise<RunResult> {
  const tools = await harnessTools();
  return run(tools.helm.path, args, input);
}

export async function kubectl(
  kubeconfig: string,
  args: readonly string[],
  input?: string,
): Promise<RunResult> {
  const tools = await harnessTools();
  return run(tools.kubectl.path, ['--kubeconfig', kubeconfig, ...args], input);
}

export const valuesArgs = (files: readonly string[], set: readonly string[] = []): string[] => [
  ...files.flatMap((f) => ['-f', f]),
  ...set.flatMap((s) => ['--set', s]),
];

/** `helm template` of the chart; returns the documents (hooks and tests included). */
export async function renderChart(opts: {
  release?: string;
  namespace: string;
  files?: readonly string[];
  set?: readonly string[];
  chart?: string;
}): Promise<Manifest[]> {
  const { stdout } = await helm([
    'template',
    opts.release ?? 'eventwire',
    opts.chart ?? chartDir,
    '--namespace',
    opts.namespace,
    ...valuesArgs(opts.files ?? [], opts.set),
  ]);
  return parseManifests(stdout);
}

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS({ maxAliasCount: -1 }) as Manifest | null)
    .filter((m): m is Manifest => m !== null && typeof m === 'object' && 'kind' in m);
}

export const isHook = (m: Manifest): boolean =>
  m.metadata.annotations?.['helm.sh/hook'] !== undefined;

export interface PodSpecLike {
  serviceAccountName?: string;
  securityContext?: Record<string, unknown>;
  containers: {
    name: string;
    securityContext?: Record<string, unknown>;
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
    livenessProbe?: unknown;
    readinessProbe?: unknown;
    env?: { name: string; value?: string }[];
    args?: string[];
  }[];
  volumes?: Record<string, unknown>[];
}

/** The Pod spec of a Pod, Deployment or StatefulSet; undefined for other kinds. */
export function podSpecOf(m: Manifest): PodSpecLike | undefined {
  if (m.kind === 'Pod') return m.spec as PodSpecLike;
  if (m.kind === 'Deployment' || m.kind === 'StatefulSet') {
    return (m.spec as { template: { spec: PodSpecLike } }).template.spec;
  }
  return undefined;
}

export const toYamlStream = (docs: readonly object[]): string =>
  docs.map((d) => JSON.stringify(d)).join('\n---\n');

export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
/** A Role or ClusterRole of the chart. */
export type Role = Manifest & { rules: Rule[] };

const RBAC_KINDS = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];

/** The Roles and ClusterRoles among `docs` labelled with `component`. */
export const rolesOf = (docs: readonly Manifest[], component: string): Role[] =>
  docs.filter(
    (d): d is Role =>
      (d.kind === 'ClusterRole' || d.kind === 'Role') &&
      d.metadata.labels?.['app.kubernetes.io/component'] === component,
  );

/** Applies the ServiceAccounts, roles and bindings among `docs` in `namespace`. */
export async function applyRbac(
  kubeconfigPath: string,
  namespace: string,
  docs: readonly Manifest[],
): Promise<void> {
  await kubectl(
    kubeconfigPath,
    ['apply', '--server-side', '-n', namespace, '-f', '-'],
    toYamlStream(docs.filter((d) => RBAC_KINDS.includes(d.kind))),
  );
}

/** For each rule of `roles` in turn: the roles without it. */
export function eachRuleRemoved(
  roles: readonly Role[],
): { role: Role; rule: Rule; without: Role[] }[] {
  return roles.flatMap((role, r) =>
    role.rules.map((rule, i) => ({
      role,
      rule,
      without: roles.map((x, j) =>
        j === r ? { ...x, rules: x.rules.filter((_, k) => k !== i) } : x,
      ),
    })),
  );
}

/** Runs `fns` with at most `limit` at once. */
export async function pool<T>(limit: number, fns: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < fns.length) {
      const i = next++;
      out[i] = await (fns[i] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}

/** A token of ServiceAccount `sa` in `ns`; for the API server unless `audiences` says otherwise. */
export async function serviceAccountToken(
  admin: KubeConfig,
  ns: string,
  sa: string,
  audiences: string[] = [],
): Promise<string> {
  const req = await admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name: sa,
    namespace: ns,
    body: { spec: { audiences, expirationSeconds: 3600 } },
  });
  return req.status?.token ?? '';
}

/** Writes a kubeconfig file at `path` with the API server of `admin` and a bearer token. */
export async function tokenKubeconfig(
  admin: KubeConfig,
  token: string,
  path: string,
): Promise<string> {
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('no cluster');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'c',
        cluster: { server: cluster.server, 'certificate-authority-data': cluster.caData },
      },
    ],
    users: [{ name: 'sa', user: { token } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
    'current-context': 'c',
  };
  await writeFile(path, JSON.stringify(config));
  return path;
}

/** Writes a kubeconfig file at `path` authenticating as ServiceAccount `sa` of `ns`. */
export async function serviceAccountKubeconfig(
  admin: KubeConfig,
  ns: string,
  sa: string,
  path: string,
): Promise<string> {
  return tokenKubeconfig(admin, await serviceAccountToken(admin, ns, sa), path);
}

/**
 * A new namespace with a ServiceAccount `sa` bound to a copy of each of `roles` (a ClusterRole
 * under a name of its own, `<namespace>-<name>`); writes a kubeconfig file authenticating as
 * it at `path` and returns the path.
 */
export async function accountWithRoles(opts: {
  readonly admin: KubeConfig;
  readonly kubeconfigPath: string;
  readonly namespace: string;
  readonly roles: readonly Role[];
  readonly path: string;
}): Promise<string> {
  const ns = opts.namespace;
  await kubectl(opts.kubeconfigPath, ['create', 'namespace', ns]);
  const objs: object[] = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sa', namespace: ns } },
  ];
  for (const role of opts.roles) {
    const cluster = role.kind === 'ClusterRole';
    const roleName = cluster ? `${ns}-${role.metadata.name}` : role.metadata.name;
    const metadata = { name: roleName, ...(cluster ? {} : { namespace: ns }) };
    objs.push({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: role.kind,
      metadata,
      rules: role.rules,
    });
    objs.push({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: cluster ? 'ClusterRoleBinding' : 'RoleBinding',
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: role.kind, name: roleName },
      subjects: [{ kind: 'ServiceAccount', name: 'sa', namespace: ns }],
    });
  }
  await kubectl(opts.kubeconfigPath, ['apply', '--server-side', '-f', '-'], toYamlStream(objs));
  return serviceAccountKubeconfig(opts.admin, ns, 'sa', opts.path);
}
