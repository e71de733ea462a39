// RBAC proof for the uninstall hooks (templates/uninstall-hook.yaml): `eventwire
// uninstall-cleanup --stage all` runs as the chart's hook ServiceAccount, authenticated by a
// real token, on the shared API server, and does everything it must; then each rule of the
// hook's roles is removed in turn (a copy of the roles without it, bound to a fresh account)
// and the same run must fail. The scenario: the release's own EventStream and EventSubscription
// (chart labels, the controller's finalizer), a user's stream and subscription in another
// namespace (finalizer), the Pod helm test keeps, and no controller running.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { installCrds } from '../../harness/crds.ts';
import { kubectl, renderChart, repoRoot, toYamlStream, type Manifest } from './helpers.ts';

const execFileAsync = promisify(execFile);
const FINALIZER = 'eventwire.io/finalizer';
const SCOPE_LABEL = 'eventwire.io/test-scope';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
type Role = Manifest & { rules: Rule[] };

/** Runs `fns` with at most `limit` at once. */
async function pool<T>(limit: number, fns: (() => Promise<T>)[]): Promise<T[]> {
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

describe('uninstall hook RBAC, proven rule by rule on the real API server', () => {
  const kubeconfigPath = inject('kubeconfigPath');
  const admin = new KubeConfig();
  const id = randomUUID().slice(0, 6);
  const release = `rbacu-${id}`;
  const fullname = `${release}-eventwire`;
  const chartNs = `${release}-chart`;
  let dir: string;
  let docs: Manifest[];
  let hookRoles: Role[];

  const apply = (objs: object[]) =>
    kubectl(kubeconfigPath, ['apply', '--server-side', '-f', '-'], toYamlStream(objs));

  async function tokenKubeconfig(ns: string, sa: string, path: string): Promise<string> {
    const core = admin.makeApiClient(CoreV1Api);
    const req = await core.createNamespacedServiceAccountToken({
      name: sa,
      namespace: ns,
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const cluster = admin.getCurrentCluster();
    if (!cluster) throw new Error('no cluster');
    await writeFile(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'c',
            cluster: { server: cluster.server, 'certificate-authority-data': cluster.caData },
          },
        ],
        users: [{ name: 'sa', user: { token: req.status?.token ?? '' } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
        'current-context': 'c',
      }),
    );
    return path;
  }

  /**
   * The scenario in `ns` (the release namespace) and `${ns}-user`, run with `kubeconfig`;
   * true when the command exits 0 and left what it must.
   */
  async function scenario(ns: string, kubeconfig: string): Promise<boolean> {
    const scope = `rbacu-${randomUUID().slice(0, 8)}`;
    const userNs = `${ns}-user`;
    await kubectl(kubeconfigPath, ['create', 'namespace', userNs]);
    const custom = admin.makeApiClient(CustomObjectsApi);
    const chartLabels = {
      'app.kubernetes.io/name': 'eventwire',
      'app.kubernetes.io/instance': release,
      'app.kubernetes.io/managed-by': 'Helm',
      [SCOPE_LABEL]: scope,
    };
    const create = (namespace: string, plural: string, body: object) =>
      custom.createNamespacedCustomObject({
        group: 'eventwire.io',
        version: 'v1alpha1',
        namespace,
        plural,
        body,
      });
    const meta = (name: string, labels: Record<string, string>) => ({
      name,
      labels,
      finalizers: [FINALIZER],
    });
    const stream = (namespace: string, name: string, labels: Record<string, string>) =>
      create(namespace, 'eventstreams', {
        apiVersion: 'eventwire.io/v1alpha1',
        kind: 'EventStream',
        metadata: meta(name, labels),
        spec: { subjectPrefix: `${scope}.${name}` },
      });
    const sub = (namespace: string, name: string, labels: Record<string, string>) =>
      create(namespace, 'eventsubscriptions', {
        apiVersion: 'eventwire.io/v1alpha1',
        kind: 'EventSubscription',
        metadata: meta(name, labels),
        spec: { stream: { name: 'default', namespace: ns }, sink: { uri: 'http://x.example/' } },
      });
    await stream(ns, 'default', chartLabels);
    await sub(ns, `${fullname}-test`, chartLabels);
    await stream(userNs, 'orders', { [SCOPE_LABEL]: scope });
    await sub(userNs, 'billing', { [SCOPE_LABEL]: scope });
    const core = admin.makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: `${fullname}-test` },
        spec: { containers: [{ name: 'c', image: 'eventwire' }] },
      },
    });

    const args = [
      '--stage',
      'all',
      '--namespace',
      ns,
      '--selector',
      `app.kubernetes.io/instance=${release},app.kubernetes.io/managed-by=Helm,app.kubernetes.io/name=eventwire`,
      '--controller-lease',
      `${fullname}-controller`,
      '--scope',
      `${SCOPE_LABEL}=${scope}`,
      '--test-pod',
      `${fullname}-test`,
      '--timeout',
      '2s',
    ];
    try {
      await execFileAsync(
        process.execPath,
        [join(repoRoot, 'src', 'cli', 'main.ts'), 'uninstall-cleanup', ...args],
        { env: { PATH: process.env.PATH ?? '', KUBECONFIG: kubeconfig }, timeout: 40_000 },
      );
    } catch {
      return false;
    }
    const finalizersOf = async (namespace: string, plural: string, name: string) => {
      try {
        const obj = (await custom.getNamespacedCustomObject({
          group: 'eventwire.io',
          version: 'v1alpha1',
          namespace,
          plural,
          name,
        })) as { metadata: { finalizers?: string[] } };
        return obj.metadata.finalizers ?? [];
      } catch (err) {
        if ((err as { code?: number }).code === 404) return 'gone';
        throw err;
      }
    };
    const podGone = await core.readNamespacedPod({ namespace: ns, name: `${fullname}-test` }).then(
      () => false,
      (err: unknown) => (err as { code?: number }).code === 404,
    );
    return (
      podGone &&
      (await finalizersOf(ns, 'eventstreams', 'default')) === 'gone' &&
      (await finalizersOf(ns, 'eventsubscriptions', `${fullname}-test`)) === 'gone' &&
      JSON.stringify(await finalizersOf(userNs, 'eventstreams', 'orders')) === '[]' &&
      JSON.stringify(await finalizersOf(userNs, 'eventsubscriptions', 'billing')) === '[]'
    );
  }

  /** A namespace with a ServiceAccount bound to `roles`; returns its kubeconfig. */
  async function account(ns: string, roles: Role[]): Promise<string> {
    await kubectl(kubeconfigPath, ['create', 'namespace', ns]);
    const objs: object[] = [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sa', namespace: ns } },
    ];
    for (const role of roles) {
      const cluster = role.kind === 'ClusterRole';
      const roleName = cluster ? `${ns}-${role.metadata.name}` : role.metadata.name;
      objs.push({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: role.kind,
        metadata: { name: roleName, ...(cluster ? {} : { namespace: ns }) },
        rules: role.rules,
      });
      objs.push({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: cluster ? 'ClusterRoleBinding' : 'RoleBinding',
        metadata: { name: roleName, ...(cluster ? {} : { namespace: ns }) },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: role.kind, name: roleName },
        subjects: [{ kind: 'ServiceAccount', name: 'sa', namespace: ns }],
      });
    }
    await apply(objs);
    return tokenKubeconfig(ns, 'sa', join(dir, `${ns}.kubeconfig`));
  }

  beforeAll(async () => {
    admin.loadFromFile(kubeconfigPath);
    await installCrds(admin);
    dir = await mkdtemp(join(tmpdir(), 'eventwire-rbacu-'));
    await kubectl(kubeconfigPath, ['create', 'namespace', chartNs]);
    docs = await renderChart({ release, namespace: chartNs });
    const hook = docs.filter(
      (d) => d.metadata.labels?.['app.kubernetes.io/component'] === 'uninstall-cleanup',
    );
    hookRoles = hook.filter((d): d is Role => d.kind === 'ClusterRole' || d.kind === 'Role');
    const rbacKinds = [
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'Role',
      'RoleBinding',
    ];
    await kubectl(
      kubeconfigPath,
      ['apply', '--server-side', '-n', chartNs, '-f', '-'],
      toYamlStream(hook.filter((d) => rbacKinds.includes(d.kind))),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the command does all it must as the chart’s hook ServiceAccount', async () => {
    const kubeconfig = await tokenKubeconfig(
      chartNs,
      `${fullname}-uninstall`,
      join(dir, 'chart.kubeconfig'),
    );
    expect(await scenario(chartNs, kubeconfig)).toBe(true);
  });

  it('fails when any one rule of the hook’s roles is removed', async () => {
    expect(hookRoles.map((r) => r.kind).sort()).toEqual(['ClusterRole', 'Role']);
    const cases: { label: string; roles: Role[] }[] = [{ label: 'control', roles: hookRoles }];
    hookRoles.forEach((role, r) => {
      role.rules.forEach((rule, i) => {
        cases.push({
          label: `${role.kind}: ${rule.verbs.join(',')} ${rule.resources.join(',')}`,
          roles: hookRoles.map((x, j) =>
            j === r ? { ...x, rules: x.rules.filter((_, k) => k !== i) } : x,
          ),
        });
      });
    });
    expect(cases.length).toBe(9);
    const results = await pool(
      3,
      cases.map((c, n) => async () => {
        const ns = `${release}-case-${String(n)}`;
        const kubeconfig = await account(ns, c.roles);
        return { label: c.label, passed: await scenario(ns, kubeconfig) };
      }),
    );
    expect(results.filter((r) => r.label === 'control').map((r) => r.passed)).toEqual([true]);
    expect(results.filter((r) => r.label !== 'control' && r.passed).map((r) => r.label)).toEqual(
      [],
    );
  }, 180_000);
});
