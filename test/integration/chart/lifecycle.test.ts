// helm install, upgrade and uninstall against a real kube-apiserver. The upgrade goes from an
// older chart version whose EventStream CRD allows at most 3 replicas to this chart (5):
// the CRD is upgraded in place (it is a template, not the chart's crds/ folder). With
// crds.keep the CRDs and the user's resources survive uninstall; without it they go.
// This file starts its own control plane: changing the CRDs of the shared one would disturb
// the other test files. Pods never run here (no kubelet), so nothing waits for them, and
// `helm uninstall` runs with --no-hooks: its hook Jobs need a node. The e2e suite runs them for
// real on a node (test/e2e/suites/uninstall.ts), and test/integration/cli/uninstall-cleanup.test.ts
// runs their command against this API server.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  harnessTools,
  startControlPlane,
  waitFor,
  type ControlPlane,
} from '../../harness/index.ts';
import { chartDir, helm, kubectl } from './helpers.ts';

const ns = 'eventwire-system';
const userNs = 'shop';
const ref = { group: 'eventwire.io', version: 'v1alpha1', plural: 'eventstreams' };

async function oldChart(dir: string): Promise<string> {
  const old = join(dir, 'eventwire-0.0.9');
  await cp(chartDir, old, { recursive: true });
  const chartYaml = join(old, 'Chart.yaml');
  await writeFile(
    chartYaml,
    (await readFile(chartYaml, 'utf8')).replace(/^version: .*$/m, 'version: 0.0.9'),
  );
  const crd = join(old, 'templates', 'crds', 'eventstream.yaml');
  const text = await readFile(crd, 'utf8');
  if (text.split('maximum: 5').length !== 2) throw new Error('expected one "maximum: 5"');
  await writeFile(crd, text.replace('maximum: 5', 'maximum: 3'));
  return old;
}

describe('helm install, upgrade and uninstall on a real control plane', () => {
  let plane: ControlPlane;
  let dir: string;
  let old: string;
  let kubeconfig: string;
  const h = (args: string[]) => helm([...args, '--kubeconfig', kubeconfig]);

  beforeAll(async () => {
    const tools = await harnessTools();
    plane = await startControlPlane({ tools, controllerManager: false });
    kubeconfig = plane.kubeconfigPath;
    dir = await mkdtemp(join(tmpdir(), 'eventwire-chart-'));
    old = await oldChart(dir);
    for (const name of [ns, userNs]) {
      await kubectl(kubeconfig, ['create', 'namespace', name]);
      await kubectl(kubeconfig, [
        'label',
        'namespace',
        name,
        'pod-security.kubernetes.io/enforce=restricted',
      ]);
    }
  });
  afterAll(async () => {
    await plane.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const ext = () => plane.kubeConfig.makeApiClient(ApiextensionsV1Api);
  const custom = () => plane.kubeConfig.makeApiClient(CustomObjectsApi);
  const replicasMax = async () => {
    const crd = await ext().readCustomResourceDefinition({ name: 'eventstreams.eventwire.io' });
    return crd.spec.versions[0]?.schema?.openAPIV3Schema?.properties?.spec?.properties?.replicas
      ?.maximum;
  };
  const createStream = (name: string, replicas: number) =>
    custom().createNamespacedCustomObject({
      ...ref,
      namespace: userNs,
      body: {
        apiVersion: 'eventwire.io/v1alpha1',
        kind: 'EventStream',
        metadata: { name },
        spec: { subjectPrefix: name, replicas },
      },
    });

  it('installs, upgrades the CRDs with the chart, and keeps CRDs and resources on uninstall', async () => {
    const installed = await h(['install', 'eventwire', old, '-n', ns, '--wait=false']);
    expect(installed.stdout).toContain('STATUS: deployed');
    expect(installed.stdout).toContain('helm test eventwire'); // NOTES.txt: the next command
    expect(await replicasMax()).toBe(3);
    const defaultStream = (await custom().getNamespacedCustomObject({
      ...ref,
      namespace: ns,
      name: 'default',
    })) as { metadata: { uid: string } };
    const apps = plane.kubeConfig.makeApiClient(AppsV1Api);
    const deployments = await apps.listNamespacedDeployment({ namespace: ns });
    expect(deployments.items.map((d) => d.metadata?.name).sort()).toEqual([
      'eventwire-controller',
      'eventwire-dispatcher',
      'eventwire-ingress',
    ]);
    await expect(createStream('orders', 5)).rejects.toThrow(/replicas/);
    await createStream('orders', 3);

    const upgraded = await h(['upgrade', 'eventwire', chartDir, '-n', ns, '--wait=false']);
    expect(upgraded.stdout).toContain('REVISION: 2');
    await waitFor('the upgraded CRD', async () => (await replicasMax()) === 5, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    await createStream('payments', 5); // accepted by the new schema
    const again = (await custom().getNamespacedCustomObject({
      ...ref,
      namespace: ns,
      name: 'default',
    })) as { metadata: { uid: string } };
    expect(again.metadata.uid).toBe(defaultStream.metadata.uid); // the hook left it alone
    const history = await h(['history', 'eventwire', '-n', ns, '-o', 'json']);
    expect((JSON.parse(history.stdout) as { chart: string }[]).map((r) => r.chart)).toEqual([
      'eventwire-0.0.9',
      'eventwire-0.1.0',
    ]);

    await h(['uninstall', 'eventwire', '-n', ns, '--wait', '--no-hooks']);
    expect((await apps.listNamespacedDeployment({ namespace: ns })).items).toEqual([]);
    const rbac = plane.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    const roles = await rbac.listClusterRole({
      labelSelector: 'app.kubernetes.io/instance=eventwire',
    });
    expect(roles.items).toEqual([]);
    expect(await replicasMax()).toBe(5); // the CRDs stay (crds.keep)
    const left = (await custom().listNamespacedCustomObject({ ...ref, namespace: userNs })) as {
      items: { metadata: { name: string } }[];
    };
    // the users' resources stay
    expect(left.items.map((s) => s.metadata.name)).toEqual(['orders', 'payments']);
  });

  it('adopts kept CRDs on a new install, and deletes them on uninstall when crds.keep is off', async () => {
    await h([
      'install',
      'eventwire',
      chartDir,
      '-n',
      ns,
      '--wait=false',
      '--set',
      'crds.keep=false',
    ]);
    const core = plane.kubeConfig.makeApiClient(CoreV1Api);
    expect((await core.listNamespacedService({ namespace: ns })).items.length).toBeGreaterThan(0);
    await h(['uninstall', 'eventwire', '-n', ns, '--wait', '--no-hooks']);
    await waitFor(
      'the CRDs to be deleted',
      async () => {
        const list = await ext().listCustomResourceDefinition();
        return !list.items.some((c) => c.spec.group === 'eventwire.io');
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  });
});
