// helm lint --strict and helm template for the default values and the other value sets, and
// what every rendering must hold: restricted Pod security, probes and resources, PDBs,
// least-privilege RBAC (no wildcards, nothing on Secrets), CRD copies identical to crds/,
// and a values schema that refuses what it does not know.
import { describe, expect, it } from 'vitest';
import { checkCrds } from '../../../scripts/check-crds.ts';
import { outOfDate } from '../../../scripts/sync-chart-crds.ts';
import { loadCrds } from '../../harness/crds.ts';
import {
  chartDir,
  helm,
  podSpecOf,
  renderChart,
  valueSets,
  valuesArgs,
  type Manifest,
} from './helpers.ts';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
}

const kinds = (docs: readonly Manifest[]) => docs.map((d) => d.kind);

describe.each(Object.entries(valueSets))('chart with %s values', (name, files) => {
  it('passes helm lint --strict', async () => {
    const { stdout } = await helm(['lint', '--strict', chartDir, ...valuesArgs(files)]);
    expect(stdout).toContain('0 chart(s) failed');
  });

  it('renders Pods that meet the restricted Pod Security Standard, with probes and resources', async () => {
    const docs = await renderChart({ namespace: 'eventwire-system', files });
    const pods = docs.filter((d) => podSpecOf(d) !== undefined);
    expect(pods.length).toBeGreaterThanOrEqual(3);
    for (const m of pods) {
      const spec = podSpecOf(m);
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
        if (m.kind !== 'Pod') {
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
        expect(rule.verbs ?? [], r.metadata.name).not.toContain('delete');
        expect(rule.verbs ?? [], r.metadata.name).not.toContain('patch');
      }
    }
  });

  it('has a PodDisruptionBudget for each component unless turned off', async () => {
    const docs = await renderChart({ namespace: 'eventwire-system', files });
    const pdbs = docs.filter((d) => d.kind === 'PodDisruptionBudget');
    expect(pdbs.length).toBe(name === 'minimal' ? 0 : 3);
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
