// Every manifest the chart renders (hooks and the helm test included), for each value set,
// is accepted by the real kube-apiserver with server-side dry-run in a namespace that
// enforces the restricted Pod Security Standard. Deployments and StatefulSets are only
// warned about by Pod Security admission, so each Pod template is also dry-run as a Pod,
// where enforce applies. The ServiceAccounts are created for real first: Pod admission
// checks that a Pod's ServiceAccount exists. ServiceMonitor and ScaledObject are checked
// against stand-in CRDs (their real schemas belong to the Prometheus Operator and KEDA).
import { KubeConfig } from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { installCrds } from '../../harness/crds.ts';
import {
  kubectl,
  podSpecOf,
  renderChart,
  toYamlStream,
  valueSets,
  type Manifest,
} from './helpers.ts';

const standInCrd = (group: string, version: string, kind: string, plural: string) => ({
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${plural}.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { kind, plural, listKind: `${kind}List`, singular: kind.toLowerCase() },
    versions: [
      {
        name: version,
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          },
        },
      },
    ],
  },
});

function asPod(m: Manifest, namespace: string): object | undefined {
  if (m.kind === 'Pod') return undefined;
  const spec = podSpecOf(m);
  if (spec === undefined) return undefined;
  const claims = (
    (m.spec as { volumeClaimTemplates?: { metadata: { name: string } }[] }).volumeClaimTemplates ??
    []
  ).map((c) => ({
    name: c.metadata.name,
    persistentVolumeClaim: { claimName: `${c.metadata.name}-${m.metadata.name}-0` },
  }));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${m.metadata.name}-template`, namespace },
    spec: { ...spec, volumes: [...(spec.volumes ?? []), ...claims] },
  };
}

describe('rendered manifests on the real API server (server-side dry-run)', () => {
  const kubeconfig = inject('kubeconfigPath');

  beforeAll(async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    await installCrds(kc);
    const standIns = [
      standInCrd('monitoring.coreos.com', 'v1', 'ServiceMonitor', 'servicemonitors'),
      standInCrd('keda.sh', 'v1alpha1', 'ScaledObject', 'scaledobjects'),
    ];
    await kubectl(kubeconfig, ['apply', '--server-side', '-f', '-'], toYamlStream(standIns));
    await kubectl(kubeconfig, [
      'wait',
      '--for=condition=Established',
      'crd/servicemonitors.monitoring.coreos.com',
      'crd/scaledobjects.keda.sh',
    ]);
  });

  it.each(Object.entries(valueSets))(
    'accepts the %s values in a restricted namespace',
    async (name, files) => {
      const ns = `chart-dry-${name}-${String(process.pid)}`;
      await kubectl(kubeconfig, ['create', 'namespace', ns]);
      await kubectl(kubeconfig, [
        'label',
        'namespace',
        ns,
        'pod-security.kubernetes.io/enforce=restricted',
        'pod-security.kubernetes.io/warn=restricted',
        'pod-security.kubernetes.io/audit=restricted',
      ]);
      const docs = await renderChart({ namespace: ns, files });
      const accounts = docs.filter((d) => d.kind === 'ServiceAccount');
      await kubectl(
        kubeconfig,
        ['apply', '--server-side', '-n', ns, '-f', '-'],
        toYamlStream(accounts),
      );

      // CRDs go first so that the custom resources after them map to a kind
      const ordered = [
        ...docs.filter((d) => d.kind === 'CustomResourceDefinition'),
        ...docs.filter((d) => d.kind !== 'CustomResourceDefinition'),
      ];
      const applied = await kubectl(
        kubeconfig,
        ['apply', '--server-side', '--force-conflicts', '--dry-run=server', '-n', ns, '-f', '-'],
        toYamlStream(ordered),
      );
      const lines = applied.stdout.trim().split('\n');
      expect(lines.length).toBe(docs.length);
      for (const line of lines) expect(line).toMatch(/\(server dry run\)$/);
      expect(applied.stderr).not.toMatch(/PodSecurity|violate/i);

      const pods = docs.map((d) => asPod(d, ns)).filter((p): p is object => p !== undefined);
      expect(pods.length).toBeGreaterThanOrEqual(3);
      const created = await kubectl(
        kubeconfig,
        ['create', '--dry-run=server', '-n', ns, '-f', '-'],
        toYamlStream(pods),
      );
      expect(created.stdout.trim().split('\n')).toHaveLength(pods.length);
      expect(created.stderr).not.toMatch(/PodSecurity|violate/i);
    },
  );

  it('is refused by the restricted namespace when the security context is weakened', async () => {
    // the check above can fail: a root container is rejected in the same namespace set-up
    const ns = `chart-dry-weak-${String(process.pid)}`;
    await kubectl(kubeconfig, ['create', 'namespace', ns]);
    await kubectl(kubeconfig, [
      'label',
      'namespace',
      ns,
      'pod-security.kubernetes.io/enforce=restricted',
    ]);
    const docs = await renderChart({
      namespace: ns,
      set: [
        'global.securityContext.allowPrivilegeEscalation=true',
        'controller.serviceAccount.create=false',
      ],
    });
    const controller = docs.find(
      (d) => d.kind === 'Deployment' && d.metadata.name.endsWith('controller'),
    );
    if (controller === undefined) throw new Error('no controller Deployment');
    const pod = asPod(controller, ns);
    if (pod === undefined) throw new Error('no Pod template');
    await expect(
      kubectl(kubeconfig, ['create', '--dry-run=server', '-n', ns, '-f', '-'], toYamlStream([pod])),
    ).rejects.toThrow(/violates PodSecurity "restricted/);
  });
});
