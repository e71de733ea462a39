// helm lint --strict and helm template for the default values and the other value sets, and
// what every rendering must hold: restricted Pod security, probes and resources, PDBs,
// least-privilege RBAC (no wildcards, nothing on Secrets), CRD copies identical to crds/,
// a values schema that refuses what it does not know, the helm test's hooks as
// `helm test --logs` needs them, and the uninstall hooks (ADR 0010).
import { describe, expect, it } from 'vitest';
import { checkCrds } from '../../../scripts/check-crds.ts';
import { outOfDate } from '../../../scripts/sync-chart-crds.ts';
import { loadCrds } from '../../harness/crds.ts';
import {
  chartDir,
  helm,
  isHook,
  podSpecOf,
  renderChart,
  valueSets,
  valuesArgs,
  type Manifest,
  type PodSpecLike,
} from './helpers.ts';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
}

const kinds = (docs: readonly Manifest[]) => docs.map((d) => d.kind);
const UNINSTALL = 'uninstall-cleanup';
const componentOf = (d: Manifest) => d.metadata.labels?.['app.kubernetes.io/component'];
const annotation = (d: Manifest | undefined, key: string) => d?.metadata.annotations?.[key];

function found<T>(item: T | undefined): T {
  if (item === undefined) throw new Error('not rendered');
  return item;
}

/** The Pod spec of a Pod, Deployment, StatefulSet or Job. */
function podSpecOfAny(m: Manifest): PodSpecLike | undefined {
  if (m.kind === 'Job') {
    return (m.spec as { template: { spec: PodSpecLike } }).template.spec;
  }
  return podSpecOf(m);
}

describe.each(Object.entries(valueSets))('chart with %s values', (name, files) => {
  it('passes helm lint --strict', async () => {
    const { stdout } = await helm(['lint', '--strict', chartDir, ...valuesArgs(files)]);
    expect(stdout).toContain('0 chart(s) failed');
  });

  it('renders Pods that meet the restricted Pod Security Standard, with probes and resources', async () => {
    const docs = await renderChart({ namespace: 'eventwire-system', files });
    const pods = docs.filter((d) => podSpecOfAny(d) !== undefined);
    expect(pods.length).toBeGreaterThanOrEqual(3);
    for (const m of pods) {
      const spec = podSpecOfAny(m);
      const where = `${m.kind}/${m.metadata.name}`;
      expect(spec?.securityContext, where).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const c of spec?.containers ?? []) {
        expect(c.securityContext, `${where} ${c.name}`).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c.resources?.requests?.memory, `${where} ${c.name}`).toBeDefined();
        expect(c.resources?.limits?.memory, `${where} ${c.name}`).toBeDefined();
        if (m.kind !== 'Pod' && m.kind !== 'Job') {
          expect(c.livenessProbe, where).toBeDefined();
          expect(c.readinessProbe, where).toBeDefined();
        }
      }
    }
    const deployments = docs.filter((d) => d.kind === 'Deployment').map((d) => d.metadata.name);
    expect(deployments.map((n) => n.replace(/^.*-/, '')).sort()).toEqual([
      'controller',
      'dispatcher',
      'ingress',
    ]);
  });

  it('grants least privilege: no wildcards, nothing on Secrets, no list or watch beyond need', async () => {
    const docs = await renderChart({ namespace: 'eventwire-system', files });
    const roles = docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role');
    expect(roles.length).toBeGreaterThanOrEqual(3);
    for (const r of roles) {
      for (const rule of (r as unknown as { rules: Rule[] }).rules) {
        const all = [...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...(rule.verbs ?? [])];
        expect(all, r.metadata.name).not.toContain('*');
        expect(rule.resources ?? [], r.metadata.name).not.toContain('secrets');
        expect(rule.verbs ?? [], r.metadata.name).not.toContain('patch');
        // only the uninstall hook deletes (its rules are checked exactly below)
        if (componentOf(r) !== UNINSTALL) {
          expect(rule.verbs ?? [], r.metadata.name).not.toContain('delete');
        }
      }
    }
  });

  it('keeps the helm test Pod for `helm test --logs`: test hooks are named like the Pod', async () => {
    const docs = await renderChart({
      namespace: 'eventwire-system',
      files,
      set: ['tests.enabled=true', 'defaultStream.enabled=true'],
    });
    const tests = docs.filter((d) => annotation(d, 'helm.sh/hook') === 'test');
    expect(tests.map((d) => d.kind).sort()).toEqual(['EventSubscription', 'Pod']);
    for (const d of tests) {
      // not hook-succeeded: helm deleted the Pod before --logs read it (pods "..." not found)
      expect(annotation(d, 'helm.sh/hook-delete-policy'), d.kind).toBe('before-hook-creation');
    }
    // Helm 3's --logs asks for a Pod by the name of every test hook
    const pod = tests.find((d) => d.kind === 'Pod');
    expect(tests.map((d) => d.metadata.name)).toEqual(tests.map(() => pod?.metadata.name));
  });

  it('has a PodDisruptionBudget for each component unless turned off', async () => {
    const docs = await renderChart({ namespace: 'eventwire-system', files });
    const pdbs = docs.filter((d) => d.kind === 'PodDisruptionBudget');
    expect(pdbs.length).toBe(name === 'minimal' ? 0 : 3);
  });
});

describe('the uninstall hooks (uninstall.cleanup)', () => {
  const ns = 'eventwire-system';
  type Role = Manifest & { rules: Rule[] };
  const hookDocs = (docs: readonly Manifest[]) => docs.filter((d) => componentOf(d) === UNINSTALL);

  it('render a pre-delete and a post-delete Job after their ServiceAccount and RBAC', async () => {
    const docs = hookDocs(await renderChart({ namespace: ns }));
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual([
      'ClusterRole/eventwire-uninstall',
      'ClusterRoleBinding/eventwire-uninstall',
      'Job/eventwire-uninstall-post',
      'Job/eventwire-uninstall-pre',
      'Role/eventwire-uninstall',
      'RoleBinding/eventwire-uninstall',
      'ServiceAccount/eventwire-uninstall',
    ]);
    const weight = (d: Manifest) => Number(annotation(d, 'helm.sh/hook-weight'));
    const jobs = docs.filter((d) => d.kind === 'Job');
    for (const d of docs) {
      const where = `${d.kind}/${d.metadata.name}`;
      expect(isHook(d), where).toBe(true);
      expect(annotation(d, 'helm.sh/hook-delete-policy'), where).toBe(
        'before-hook-creation,hook-succeeded',
      );
      if (d.kind === 'Job') continue;
      // the identity exists for both Jobs, before either runs
      expect(annotation(d, 'helm.sh/hook'), where).toBe('pre-delete,post-delete');
      for (const job of jobs) expect(weight(d), where).toBeLessThan(weight(job));
    }
    expect(jobs.map((j) => annotation(j, 'helm.sh/hook')).sort()).toEqual([
      'post-delete',
      'pre-delete',
    ]);
    const pre = found(jobs.find((j) => annotation(j, 'helm.sh/hook') === 'pre-delete'));
    // a failed Job prints its logs with the helm error and is bounded in time
    expect(annotation(pre, 'helm.sh/hook-output-log-policy')).toBe('hook-failed');
    expect(pre.spec).toMatchObject({ backoffLimit: 1, activeDeadlineSeconds: 180 });
    const spec = podSpecOfAny(pre);
    expect(spec?.serviceAccountName).toBe('eventwire-uninstall');
    expect(spec?.containers[0]?.args).toEqual([
      'uninstall-cleanup',
      '--stage',
      'pre-delete',
      '--namespace',
      ns,
      '--selector',
      'app.kubernetes.io/instance=eventwire,app.kubernetes.io/managed-by=Helm,app.kubernetes.io/name=eventwire',
      '--controller-lease',
      'eventwire-controller',
      '--test-pod',
      'eventwire-test',
      '--timeout',
      '60s',
    ]);
    // the test Pod it deletes is the one the chart's helm test creates
    const all = await renderChart({ namespace: ns });
    const testPod = all.find((d) => d.kind === 'Pod' && annotation(d, 'helm.sh/hook') === 'test');
    expect(testPod?.metadata.name).toBe('eventwire-test');
    // the Lease it reads is the controller's
    const controller = all.find(
      (d) => d.kind === 'Deployment' && d.metadata.name === 'eventwire-controller',
    );
    expect(podSpecOfAny(found(controller))?.containers[0]?.env).toContainEqual({
      name: 'EVENTWIRE_LEASE_NAME',
      value: 'eventwire-controller',
    });
  });

  it('passes the controller’s resource selector as the scope, and no Lease without leader election', async () => {
    const docs = hookDocs(
      await renderChart({
        namespace: ns,
        set: [
          'controller.resourceSelector=team=a',
          'controller.leaderElection.enabled=false',
          'uninstall.cleanup.timeoutSeconds=300',
        ],
      }),
    );
    const post = found(docs.find((d) => d.metadata.name === 'eventwire-uninstall-post'));
    const args = podSpecOfAny(post)?.containers[0]?.args ?? [];
    expect(args.slice(args.indexOf('--scope'), args.indexOf('--scope') + 2)).toEqual([
      '--scope',
      'team=a',
    ]);
    expect(args).not.toContain('--controller-lease');
    expect(args).not.toContain('--test-pod');
    expect(args.slice(-2)).toEqual(['--timeout', '300s']);
    expect(post.spec).toMatchObject({ activeDeadlineSeconds: 420 });
    const role = docs.find((d) => d.kind === 'Role') as Role;
    expect(role.rules.flatMap((r) => r.resources)).not.toContain('leases');
  });

  it('grants the hook exactly what the command needs', async () => {
    const docs = hookDocs(await renderChart({ namespace: ns }));
    const rules = (kind: string) =>
      (docs.find((d) => d.kind === kind) as Role).rules.map((r) => ({
        apiGroups: r.apiGroups,
        resources: r.resources,
        verbs: r.verbs,
        ...(r.resourceNames ? { resourceNames: r.resourceNames } : {}),
      }));
    const crd = (resources: string, verbs: string) => ({
      apiGroups: ['eventwire.io'],
      resources: [resources],
      verbs: [verbs],
    });
    // cluster-wide: find resources and remove the finalizer; never delete or create
    expect(rules('ClusterRole')).toEqual([
      crd('eventstreams', 'list'),
      crd('eventstreams', 'update'),
      crd('eventsubscriptions', 'list'),
      crd('eventsubscriptions', 'update'),
    ]);
    // in the release namespace only: delete its own resources, read the Lease, delete the test Pod
    expect(rules('Role')).toEqual([
      crd('eventstreams', 'delete'),
      crd('eventsubscriptions', 'delete'),
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        verbs: ['get'],
        resourceNames: ['eventwire-controller'],
      },
      {
        apiGroups: [''],
        resources: ['pods'],
        verbs: ['delete'],
        resourceNames: ['eventwire-test'],
      },
    ]);
    const none = hookDocs(await renderChart({ namespace: ns, set: ['rbac.create=false'] }));
    expect(none.map((d) => d.kind).sort()).toEqual(['Job', 'Job', 'ServiceAccount']);
  });

  it('leaves the Jobs’ egress to the API server open: no NetworkPolicy restricts egress', async () => {
    const docs = await renderChart({ namespace: ns, set: ['networkPolicy.enabled=true'] });
    const policies = docs.filter((d) => d.kind === 'NetworkPolicy');
    expect(policies.length).toBeGreaterThan(0);
    for (const p of policies) {
      expect((p.spec as { policyTypes: string[] }).policyTypes, p.metadata.name).toEqual([
        'Ingress',
      ]);
    }
  });

  it('renders nothing with uninstall.cleanup.enabled=false', async () => {
    const docs = await renderChart({ namespace: ns, set: ['uninstall.cleanup.enabled=false'] });
    expect(hookDocs(docs)).toEqual([]);
    expect(docs.filter((d) => d.kind === 'Job')).toEqual([]);
  });
});

describe('chart values and CRDs', () => {
  it('creates the optional NATS server, the default EventStream and the helm test by default', async () => {
    const docs = await renderChart({ namespace: 'ew', files: [] });
    expect(kinds(docs)).toEqual(
      expect.arrayContaining(['StatefulSet', 'EventStream', 'Pod', 'CustomResourceDefinition']),
    );
    const stream = docs.find((d) => d.kind === 'EventStream');
    expect(stream?.metadata.annotations?.['helm.sh/hook']).toBe('post-install');
    const test = docs.find((d) => d.kind === 'Pod');
    expect(test?.metadata.annotations?.['helm.sh/hook']).toBe('test');
    const controller = docs.find(
      (d) => d.kind === 'Deployment' && d.metadata.name === 'eventwire-controller',
    );
    const env = podSpecOf(controller ?? ({} as Manifest))?.containers[0]?.env ?? [];
    expect(env).toContainEqual({ name: 'EVENTWIRE_DEFAULT_STREAM', value: 'ew/default' });
    expect(env).toContainEqual({
      name: 'EVENTWIRE_NATS_URL',
      value: 'nats://eventwire-nats.ew.svc:4222',
    });
  });

  it('takes NATS credentials and TLS from Secrets in production', async () => {
    const docs = await renderChart({ namespace: 'ew', files: valueSets.production ?? [] });
    const ingress = docs.find(
      (d) => d.kind === 'Deployment' && d.metadata.name.endsWith('ingress'),
    );
    const spec = podSpecOf(ingress ?? ({} as Manifest));
    const env = Object.fromEntries((spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      EVENTWIRE_NATS_CREDS_FILE: '/etc/eventwire/nats/auth/nats.creds',
      EVENTWIRE_NATS_TLS_CA_FILE: '/etc/eventwire/nats/tls/ca.crt',
      EVENTWIRE_NATS_TLS_CERT_FILE: '/etc/eventwire/nats/tls/tls.crt',
      EVENTWIRE_NATS_TLS_KEY_FILE: '/etc/eventwire/nats/tls/tls.key',
      EVENTWIRE_INGRESS_AUTH: 'true',
      EVENTWIRE_INGRESS_AUTH_AUDIENCES: 'eventwire',
    });
    expect(spec?.volumes).toContainEqual(
      expect.objectContaining({
        name: 'nats-auth',
        secret: expect.objectContaining({ secretName: 'eventwire-nats-creds' }) as unknown,
      }),
    );
    expect(kinds(docs)).not.toContain('StatefulSet');
  });

  it('passes the accepted token audiences to the ingress, comma-separated', async () => {
    const docs = await renderChart({ namespace: 'ew', files: valueSets['all-options'] ?? [] });
    const ingress = docs.find(
      (d) => d.kind === 'Deployment' && d.metadata.name.endsWith('ingress'),
    );
    const env = podSpecOf(ingress ?? ({} as Manifest))?.containers[0]?.env ?? [];
    expect(env).toContainEqual({
      name: 'EVENTWIRE_INGRESS_AUTH_AUDIENCES',
      value: 'eventwire,https://kubernetes.default.svc.cluster.local',
    });
  });

  it('refuses unknown keys, wrong types and missing NATS settings (values.schema.json)', async () => {
    const bad: [string[], RegExp][] = [
      [['controler.replicas=2'], /additional properties 'controler' not allowed/],
      [['ingress.replicas=many'], /ingress\/replicas/],
      [['natsServer.enabled=false'], /nats\/url/],
      [['nats.auth.type=creds'], /secretName/],
      [['nats.auth.type=kerberos'], /nats\/auth\/type/],
      [['controller.resyncPeriod=soon'], /resyncPeriod/],
      [['ingress.auth.audiences={}'], /audiences/],
      [['ingress.auth.audiences[0]=a b'], /audiences/],
      [['uninstall.cleanup.enabled=maybe'], /uninstall\/cleanup\/enabled/],
      [['uninstall.cleanup.timeoutSeconds=1'], /timeoutSeconds/],
      [['uninstall.cleanup.timeout=60s'], /additional properties 'timeout' not allowed/],
    ];
    for (const [set, message] of bad) {
      await expect(
        helm(['template', 'x', chartDir, ...valuesArgs([], set)]),
        set.join(),
      ).rejects.toThrow(message);
    }
  });

  it('keeps CRD templates identical in spec to crds/ (npm run check:crds, sync:crds)', async () => {
    expect(await outOfDate()).toEqual([]);
    expect(await checkCrds()).toEqual([]);
    const docs = await renderChart({ namespace: 'ew', files: [] });
    const rendered = docs.filter((d) => d.kind === 'CustomResourceDefinition');
    const source = await loadCrds();
    expect(rendered.map((d) => d.metadata.name).sort()).toEqual(
      source.map((c) => c.metadata?.name).sort(),
    );
    for (const crd of rendered) {
      expect(crd.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    }
    const unkept = await renderChart({ namespace: 'ew', set: ['crds.keep=false'] });
    const crds = unkept.filter((d) => d.kind === 'CustomResourceDefinition');
    expect(crds.map((d) => d.metadata.annotations?.['helm.sh/resource-policy'])).toEqual([
      undefined,
      undefined,
    ]);
    const none = await renderChart({ namespace: 'ew', set: ['crds.install=false'] });
    expect(kinds(none)).not.toContain('CustomResourceDefinition');
  });
});
