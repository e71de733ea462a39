// RBAC proof for the uninstall hooks (templates/uninstall-hook.yaml): `eventwire
// uninstall-cleanup --stage all` runs as the chart's hook ServiceAccount, authenticated by a
// real token, on the shared API server, and does everything it must; then each rule of the
// hook's roles is removed in turn (a copy of the roles without it, bound to a fresh account)
// and the same run must fail. The scenario: the release's own EventStream and EventSubscription
// (chart labels, the controller's finalizer), a user's stream and subscription in another
// namespace (finalizer), the Pod helm test keeps, and no controller running.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SCOPE_LABEL } from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { chartLabels, uninstallCleanup, uninstallCleanupArgs } from '../cli/helpers.ts';
import {
  accountWithRoles,
  applyRbac,
  eachRuleRemoved,
  kubectl,
  pool,
  renderChart,
  rolesOf,
  serviceAccountKubeconfig,
  type Manifest,
  type Role,
} from './helpers.ts';

const FINALIZER = 'eventwire.io/finalizer';

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

  /**
   * The scenario in `ns` (the release namespace) and `${ns}-user`, run with `kubeconfig`;
   * true when the command exits 0 and left what it must.
   */
  async function scenario(ns: string, kubeconfig: string): Promise<boolean> {
    const scope = `rbacu-${randomUUID().slice(0, 8)}`;
    const userNs = `${ns}-user`;
    await kubectl(kubeconfigPath, ['create', 'namespace', userNs]);
    const custom = admin.makeApiClient(CustomObjectsApi);
    const releaseLabels = { ...chartLabels(release), [SCOPE_LABEL]: scope };
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
    await stream(ns, 'default', releaseLabels);
    await sub(ns, `${fullname}-test`, releaseLabels);
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

    const args = uninstallCleanupArgs({
      stage: 'all',
      release,
      namespace: ns,
      scope,
      testPod: `${fullname}-test`,
      timeout: '2s',
    });
    if ((await uninstallCleanup(kubeconfig, args, 40_000)).code !== 0) return false;
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
  const account = (ns: string, roles: Role[]): Promise<string> =>
    accountWithRoles({
      admin,
      kubeconfigPath,
      namespace: ns,
      roles,
      path: join(dir, `${ns}.kubeconfig`),
    });

  beforeAll(async () => {
    admin.loadFromFile(kubeconfigPath);
    await installCrds(admin);
    dir = await mkdtemp(join(tmpdir(), 'eventwire-rbacu-'));
    await kubectl(kubeconfigPath, ['create', 'namespace', chartNs]);
    docs = await renderChart({ release, namespace: chartNs });
    const hook = docs.filter(
      (d) => d.metadata.labels?.['app.kubernetes.io/component'] === 'uninstall-cleanup',
    );
    hookRoles = rolesOf(docs, 'uninstall-cleanup');
    await applyRbac(kubeconfigPath, chartNs, hook);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the command does all it must as the chart’s hook ServiceAccount', async () => {
    const kubeconfig = await serviceAccountKubeconfig(
      admin,
      chartNs,
      `${fullname}-uninstall`,
      join(dir, 'chart.kubeconfig'),
    );
    expect(await scenario(chartNs, kubeconfig)).toBe(true);
  });

  it('fails when any one rule of the hook’s roles is removed', async () => {
    expect(hookRoles.map((r) => r.kind).sort()).toEqual(['ClusterRole', 'Role']);
    const cases: { label: string; roles: Role[] }[] = [{ label: 'control', roles: hookRoles }];
    for (const { role, rule, without } of eachRuleRemoved(hookRoles)) {
      cases.push({
        label: `${role.kind}: ${rule.verbs.join(',')} ${rule.resources.join(',')}`,
        roles: without,
      });
    }
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
