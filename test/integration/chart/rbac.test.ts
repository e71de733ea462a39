// RBAC proof: the controller, dispatcher and ingress each pass their Kubernetes scenario
// (test/integration/chart/rbac-scenarios.ts) as the chart's ServiceAccount, authenticated by
// a real token of that account, on the shared API server; then each rule of the chart's
// roles is removed in turn (a copy of the roles without it, bound to a fresh account) and
// the scenario must fail. Every rule is reached by a scenario: none is kept "just in case".
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { installCrds } from '../../harness/crds.ts';
import { kubectl, renderChart, toYamlStream, type Manifest } from './helpers.ts';
import {
  controllerScenario,
  dispatcherScenario,
  ingressScenario,
  tokenKubeconfig,
  type ScenarioInput,
} from './rbac-scenarios.ts';

type Component = 'controller' | 'dispatcher' | 'ingress';
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
type Role = Manifest & { rules: Rule[] };

const scenarios: Record<Component, (i: ScenarioInput) => Promise<boolean>> = {
  controller: controllerScenario,
  dispatcher: dispatcherScenario,
  ingress: ingressScenario,
};
const FAIL_TIMEOUT_MS = 12_000;
const PASS_TIMEOUT_MS = 40_000;

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

describe('chart RBAC, proven rule by rule on the real API server', () => {
  const kubeconfigPath = inject('kubeconfigPath');
  const natsUrl = inject('natsUrl');
  const admin = new KubeConfig();
  const id = randomUUID().slice(0, 6);
  const release = `rbac-${id}`;
  const fullname = `${release}-eventwire`;
  let dir: string;
  let docs: Manifest[];
  let producerToken = '';

  const apply = (objs: object[]) =>
    kubectl(kubeconfigPath, ['apply', '--server-side', '-f', '-'], toYamlStream(objs));

  /** A ServiceAccount token; for the API server unless `audiences` says otherwise. */
  async function token(ns: string, sa: string, audiences: string[] = []): Promise<string> {
    const core = admin.makeApiClient(CoreV1Api);
    const req = await core.createNamespacedServiceAccountToken({
      name: sa,
      namespace: ns,
      body: { spec: { audiences, expirationSeconds: 3600 } },
    });
    return req.status?.token ?? '';
  }

  /** A namespace with a ServiceAccount bound to `roles`; returns the scenario input. */
  async function account(name: string, roles: Role[]): Promise<ScenarioInput> {
    const ns = `${release}-${name}`;
    await kubectl(kubeconfigPath, ['create', 'namespace', ns]);
    const sa = {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'sa', namespace: ns },
    };
    const objs: object[] = [sa];
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
    // the publisher role of the chart lets the producer publish into this namespace
    await kubectl(kubeconfigPath, [
      'create',
      'rolebinding',
      'producer',
      '-n',
      ns,
      `--clusterrole=${fullname}-publisher`,
      `--serviceaccount=${release}-chart:producer`,
    ]);
    const kubeconfig = join(dir, `${ns}.kubeconfig`);
    await tokenKubeconfig(admin, await token(ns, 'sa'), kubeconfig);
    return {
      admin,
      kubeconfig,
      namespace: ns,
      natsUrl,
      leaseName: `${fullname}-controller`,
      producerToken,
      timeoutMs: FAIL_TIMEOUT_MS,
    };
  }

  const rolesOf = (component: Component): Role[] =>
    docs.filter(
      (d): d is Role =>
        (d.kind === 'ClusterRole' || d.kind === 'Role') &&
        d.metadata.labels?.['app.kubernetes.io/component'] === component,
    );

  beforeAll(async () => {
    admin.loadFromFile(kubeconfigPath);
    await installCrds(admin);
    dir = await mkdtemp(join(tmpdir(), 'eventwire-rbac-'));
    const chartNs = `${release}-chart`;
    await kubectl(kubeconfigPath, ['create', 'namespace', chartNs]);
    // ingress.auth on renders the ingress's review rules; everything else is the defaults
    docs = await renderChart({ release, namespace: chartNs, set: ['ingress.auth.enabled=true'] });
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
      toYamlStream(docs.filter((d) => rbacKinds.includes(d.kind))),
    );
    await apply([
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'producer', namespace: chartNs },
      },
    ]);
    // what docs/security.md tells producers to do: a token for the ingress's audience
    producerToken = await token(chartNs, 'producer', ['eventwire']);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(['controller', 'dispatcher', 'ingress'] as const)(
    'the %s passes its scenario as the chart ServiceAccount',
    async (component) => {
      const chartNs = `${release}-chart`;
      // the chart's own account and bindings; the scenario runs in a namespace of its own
      // (the controller's Lease Role is namespaced, so it gets a copy there)
      const base = await account(
        `${component}-full`,
        rolesOf(component).filter((r) => r.kind === 'Role'),
      );
      const kubeconfig = join(dir, `${component}-chart.kubeconfig`);
      const sa = `${fullname}-${component}`;
      await tokenKubeconfig(admin, await token(chartNs, sa), kubeconfig);
      const ok = await scenarios[component]({
        ...base,
        kubeconfig,
        leaseNamespace: chartNs,
        timeoutMs: PASS_TIMEOUT_MS,
      });
      expect(ok).toBe(true);
    },
  );

  it('fails each scenario when any one rule is removed', async () => {
    const cases: { component: Component; label: string; roles: Role[] }[] = [];
    for (const component of ['controller', 'dispatcher', 'ingress'] as const) {
      const roles = rolesOf(component);
      // a control with every rule, under the same load and time limit: it must pass, so a
      // failure of the others is the missing rule's, not the load's
      cases.push({ component, label: 'control', roles });
      roles.forEach((role, r) => {
        role.rules.forEach((rule, i) => {
          const without = roles.map((x, j) =>
            j === r ? { ...x, rules: x.rules.filter((_, k) => k !== i) } : x,
          );
          cases.push({
            component,
            label: `${role.kind} ${role.metadata.name}: ${rule.verbs.join(',')} ${rule.resources.join(',')}`,
            roles: without,
          });
        });
      });
    }
    expect(cases.length).toBeGreaterThanOrEqual(20);
    const results = await pool(
      4,
      cases.map((c, n) => async () => {
        const input = await account(`${c.component.slice(0, 4)}-without-${String(n)}`, c.roles);
        return {
          label: `${c.component} without [${c.label}]`,
          passed: await scenarios[c.component](input),
        };
      }),
    );
    const controls = results.filter((r) => r.label.endsWith('[control]'));
    expect(controls.map((r) => r.passed)).toEqual([true, true, true]);
    // every scenario must fail once one of its rules is gone
    const removals = results.filter((r) => !r.label.endsWith('[control]'));
    expect(removals.filter((r) => r.passed).map((r) => r.label)).toEqual([]);
  }, 240_000);
});
