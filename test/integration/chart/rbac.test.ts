// RBAC proof: the controller, dispatcher and ingress each pass their Kubernetes scenario
// (test/integration/chart/rbac-scenarios.ts) as the chart's ServiceAccount, authenticated by
// a real token of that account, on the shared API server; then each rule of the chart's
// roles is removed in turn (a copy of the roles without it, bound to a fresh account) and
// the scenario must fail. Every rule is reached by a scenario: none is kept "just in case".
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { installCrds } from '../../harness/crds.ts';
import {
  accountWithRoles,
  applyRbac,
  eachRuleRemoved,
  kubectl,
  pool,
  renderChart,
  rolesOf,
  serviceAccountKubeconfig,
  serviceAccountToken,
  toYamlStream,
  type Manifest,
  type Role,
} from './helpers.ts';
import {
  controllerScenario,
  dispatcherScenario,
  ingressScenario,
  type ScenarioInput,
} from './rbac-scenarios.ts';

type Component = 'controller' | 'dispatcher' | 'ingress';

const scenarios: Record<Component, (i: ScenarioInput) => Promise<boolean>> = {
  controller: controllerScenario,
  dispatcher: dispatcherScenario,
  ingress: ingressScenario,
};
const FAIL_TIMEOUT_MS = 12_000;
const PASS_TIMEOUT_MS = 40_000;

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

  /** A namespace with a ServiceAccount bound to `roles`; returns the scenario input. */
  async function account(name: string, roles: Role[]): Promise<ScenarioInput> {
    const ns = `${release}-${name}`;
    const kubeconfig = await accountWithRoles({
      admin,
      kubeconfigPath,
      namespace: ns,
      roles,
      path: join(dir, `${ns}.kubeconfig`),
    });
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

  beforeAll(async () => {
    admin.loadFromFile(kubeconfigPath);
    await installCrds(admin);
    dir = await mkdtemp(join(tmpdir(), 'eventwire-rbac-'));
    const chartNs = `${release}-chart`;
    await kubectl(kubeconfigPath, ['create', 'namespace', chartNs]);
    // ingress.auth on renders the ingress's review rules; everything else is the defaults
    docs = await renderChart({ release, namespace: chartNs, set: ['ingress.auth.enabled=true'] });
    await applyRbac(kubeconfigPath, chartNs, docs);
    await apply([
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'producer', namespace: chartNs },
      },
    ]);
    // what docs/security.md tells producers to do: a token for the ingress's audience
    producerToken = await serviceAccountToken(admin, chartNs, 'producer', ['eventwire']);
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
        rolesOf(docs, component).filter((r) => r.kind === 'Role'),
      );
      const kubeconfig = await serviceAccountKubeconfig(
        admin,
        chartNs,
        `${fullname}-${component}`,
        join(dir, `${component}-chart.kubeconfig`),
      );
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
      const roles = rolesOf(docs, component);
      // a control with every rule, under the same load and time limit: it must pass, so a
      // failure of the others is the missing rule's, not the load's
      cases.push({ component, label: 'control', roles });
      for (const { role, rule, without } of eachRuleRemoved(roles)) {
        cases.push({
          component,
          label: `${role.kind} ${role.metadata.name}: ${rule.verbs.join(',')} ${rule.resources.join(',')}`,
          roles: without,
        });
      }
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
