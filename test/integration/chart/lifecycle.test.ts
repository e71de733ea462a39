// helm install, upgrade and uninstall against a real kube-apiserver. The upgrade goes from an
// older chart version whose EventStream CRD allows at most 3 replicas to this chart (5):
// the CRD is upgraded in place (it is a template, not the chart's crds/ folder). With
// crds.keep the CRDs and the user's resources survive uninstall; without it they go.
// This file starts its own control plane: changing the CRDs of the shared one would disturb
// the other test files. Pods never run here (no kubelet), so nothing waits for them, except
// the uninstall hook Jobs, which helm waits for: the test plays the kubelet and the Job
// controller for them (runHookJobs), so `helm uninstall` runs with its hooks, not --no-hooks.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  type KubeConfig,
  type V1Job,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  harnessTools,
  startControlPlane,
  waitFor,
  type ControlPlane,
} from '../../harness/index.ts';
import { chartDir, helm, kubectl, repoRoot } from './helpers.ts';

const execFileAsync = promisify(execFile);
const ns = 'eventwire-system';
const userNs = 'shop';
const ref = { group: 'eventwire.io', version: 'v1alpha1', plural: 'eventstreams' };
const FINALIZER = 'eventwire.io/finalizer';

/**
 * What a kubelet and the Job controller would do for one uninstall hook Job: admit its Pod
 * (a server-side dry run, so the namespace's restricted Pod Security applies), run its
 * container's command (`node src/cli/main.ts`, as the image's entrypoint does) with a token of
 * its ServiceAccount, then write the Job's status Complete or Failed, which helm waits for.
 */
async function runHookJob(kc: KubeConfig, dir: string, job: V1Job): Promise<string> {
  const name = job.metadata?.name ?? '';
  const spec = job.spec?.template.spec;
  const container = spec?.containers[0];
  if (!spec || !container) throw new Error(`Job ${name} has no container`);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: `${name}-pod`, labels: job.spec?.template.metadata?.labels ?? {} },
      spec,
    },
    dryRun: 'All',
  });
  const token = await core.createNamespacedServiceAccountToken({
    name: spec.serviceAccountName ?? 'default',
    namespace: ns,
    body: { spec: { audiences: [], expirationSeconds: 600 } },
  });
  const cluster = kc.getCurrentCluster();
  const kubeconfig = join(dir, `${name}.kubeconfig`);
  await writeFile(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'c',
          cluster: { server: cluster?.server, 'certificate-authority-data': cluster?.caData },
        },
      ],
      users: [{ name: 'sa', user: { token: token.status?.token } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
      'current-context': 'c',
    }),
  );
  const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
  const started = new Date();
  let output: string;
  let ok: boolean;
  try {
    const r = await execFileAsync(
      process.execPath,
      [join(repoRoot, 'src', 'cli', 'main.ts'), ...(container.args ?? [])],
      { env: { PATH: process.env.PATH ?? '', ...env, KUBECONFIG: kubeconfig }, timeout: 60_000 },
    );
    output = r.stdout + r.stderr;
    ok = true;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    ok = false;
  }
  const now = new Date();
  const cond = (type: string) => ({
    type,
    status: 'True',
    lastProbeTime: now,
    lastTransitionTime: now,
    reason: ok ? 'CompletionsReached' : 'BackoffLimitExceeded',
    message: ok ? 'Reached expected number of succeeded pods' : 'Job has reached the backoff limit',
  });
  const batch = kc.makeApiClient(BatchV1Api);
  const current = await batch.readNamespacedJob({ name, namespace: ns });
  await batch.replaceNamespacedJobStatus({
    name,
    namespace: ns,
    body: {
      ...current,
      status: ok
        ? {
            startTime: started,
            completionTime: now,
            succeeded: 1,
            conditions: [cond('SuccessCriteriaMet'), cond('Complete')],
          }
        : { startTime: started, failed: 1, conditions: [cond('FailureTarget'), cond('Failed')] },
    },
  });
  if (!ok) throw new Error(`hook Job ${name} failed:\n${output}`);
  return name;
}

/**
 * Runs every uninstall hook Job that appears in the release namespace while `work` (a helm
 * command) is running; resolves with its result and the Jobs run, in order.
 */
async function runHookJobs<T>(
  kc: KubeConfig,
  dir: string,
  work: Promise<T>,
): Promise<{ result: T; jobs: string[] }> {
  const batch = kc.makeApiClient(BatchV1Api);
  const seen = new Set<string>();
  const jobs: string[] = [];
  const state = { settled: false };
  const done = work.finally(() => {
    state.settled = true;
  });
  const kubelet = (async () => {
    while (!state.settled) {
      const list = await batch.listNamespacedJob({
        namespace: ns,
        labelSelector: 'app.kubernetes.io/component=uninstall-cleanup',
      });
      for (const job of list.items) {
        const uid = job.metadata?.uid ?? '';
        if (seen.has(uid)) continue;
        seen.add(uid);
        jobs.push(await runHookJob(kc, dir, job));
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const [result] = await Promise.all([done, kubelet]);
  return { result, jobs };
}

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

    // as a controller leaves them: the finalizer on the chart's stream and on a user's
    for (const [namespace, name] of [
      [ns, 'default'],
      [userNs, 'orders'],
    ] as const) {
      await custom().patchNamespacedCustomObject({
        ...ref,
        namespace,
        name,
        body: [{ op: 'add', path: '/metadata/finalizers', value: [FINALIZER] }],
      });
    }

    const { jobs } = await runHookJobs(
      plane.kubeConfig,
      dir,
      h(['uninstall', 'eventwire', '-n', ns, '--wait']),
    );
    expect(jobs).toEqual(['eventwire-uninstall-pre', 'eventwire-uninstall-post']);
    expect((await apps.listNamespacedDeployment({ namespace: ns })).items).toEqual([]);
    const rbac = plane.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    const roles = await rbac.listClusterRole({
      labelSelector: 'app.kubernetes.io/instance=eventwire',
    });
    expect(roles.items).toEqual([]);
    expect(await replicasMax()).toBe(5); // the CRDs stay (crds.keep)
    const left = (await custom().listNamespacedCustomObject({ ...ref, namespace: userNs })) as {
      items: { metadata: { name: string; finalizers?: string[] } }[];
    };
    // the users' resources stay, without the finalizer: their namespace can be deleted
    expect(left.items.map((s) => [s.metadata.name, s.metadata.finalizers ?? []])).toEqual([
      ['orders', []],
      ['payments', []],
    ]);
    // the release's own stream went through the pre-delete hook (no controller ran here)
    await expect(
      custom().getNamespacedCustomObject({ ...ref, namespace: ns, name: 'default' }),
    ).rejects.toThrow(/404|not found/i);
    // the hooks' Jobs, ServiceAccount and RBAC are deleted once they succeeded
    expect(
      (await plane.kubeConfig.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: ns })).items,
    ).toEqual([]);
    const core = plane.kubeConfig.makeApiClient(CoreV1Api);
    const accounts = await core.listNamespacedServiceAccount({ namespace: ns });
    expect(accounts.items.map((a) => a.metadata?.name)).not.toContain('eventwire-uninstall');
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
    // the post-delete hook runs after the CRDs are gone: nothing left to list, it succeeds
    const { jobs } = await runHookJobs(
      plane.kubeConfig,
      dir,
      h(['uninstall', 'eventwire', '-n', ns, '--wait', '--timeout', '60s']),
    );
    expect(jobs).toEqual(['eventwire-uninstall-pre', 'eventwire-uninstall-post']);
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
