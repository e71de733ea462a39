// Proves the local control plane is a real Kubernetes API server: namespaces, CRDs with
// structural schemas, custom objects, server-side validation, RBAC and kubectl.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { createCertAuthority } from '../../../src/devenv/pki.ts';
import { harnessTools, impersonating, waitFor } from '../../harness/index.ts';

const execFileAsync = promisify(execFile);
const group = 'harness.eventwire.io';

const widgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `widgets.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: { size: { type: 'integer', minimum: 1 } },
              },
            },
          },
        },
      },
    ],
  },
};

describe('local control plane', () => {
  const kc = new KubeConfig();
  let core: CoreV1Api;
  let custom: CustomObjectsApi;

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: widgetCrd });
    await waitFor(
      'the Widget CRD to be established',
      async () => {
        const crd = await ext.readCustomResourceDefinition({ name: `widgets.${group}` });
        return (crd.status?.conditions ?? []).some(
          (c) => c.type === 'Established' && c.status === 'True',
        );
      },
      { timeoutMs: 30_000 },
    );
  });

  it('creates and reads a namespace', async () => {
    await core.createNamespace({ body: { metadata: { name: 'harness-ns' } } });
    const ns = await core.readNamespace({ name: 'harness-ns' });
    expect(ns.metadata?.name).toBe('harness-ns');
    expect(ns.status?.phase).toBe('Active');
  });

  it('stores a custom object and reads it back', async () => {
    await core.createNamespace({ body: { metadata: { name: 'harness-cr' } } });
    await custom.createNamespacedCustomObject({
      group,
      version: 'v1',
      namespace: 'harness-cr',
      plural: 'widgets',
      body: {
        apiVersion: `${group}/v1`,
        kind: 'Widget',
        metadata: { name: 'w1' },
        spec: { size: 3 },
      },
    });
    const got = (await custom.getNamespacedCustomObject({
      group,
      version: 'v1',
      namespace: 'harness-cr',
      plural: 'widgets',
      name: 'w1',
    })) as { spec: { size: number }; metadata: { uid?: string } };
    expect(got.spec.size).toBe(3);
    expect(got.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('rejects an object that breaks the schema, naming the field', async () => {
    const err: unknown = await custom
      .createNamespacedCustomObject({
        group,
        version: 'v1',
        namespace: 'default',
        plural: 'widgets',
        body: {
          apiVersion: `${group}/v1`,
          kind: 'Widget',
          metadata: { name: 'bad' },
          spec: { size: 0 },
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiException);
    const apiErr = err as ApiException<string>;
    expect(apiErr.code).toBe(422);
    expect(apiErr.body).toContain('spec.size');
    expect(apiErr.body).toContain('should be greater than or equal to 1');
  });

  it('authenticates client certificates: one from an untrusted CA is refused', async () => {
    const stranger = await createCertAuthority('stranger');
    const pem = await stranger.issueClient('mallory', ['system:masters']);
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('no cluster in kubeconfig');
    const strangerKc = new KubeConfig();
    strangerKc.loadFromOptions({
      clusters: [cluster],
      users: [
        {
          name: 'mallory',
          certData: Buffer.from(pem.cert).toString('base64'),
          keyData: Buffer.from(pem.key).toString('base64'),
        },
      ],
      contexts: [{ name: 'c', cluster: cluster.name, user: 'mallory' }],
      currentContext: 'c',
    });
    const err: unknown = await strangerKc
      .makeApiClient(CoreV1Api)
      .listNamespace()
      .catch((e: unknown) => e);
    expect((err as ApiException<unknown>).code).toBe(401);
  });

  it('authorizes with RBAC: forbidden without a binding, allowed with one', async () => {
    const asAlice = impersonating(kc, 'alice').makeApiClient(CoreV1Api);
    const err: unknown = await asAlice.listNamespace().catch((e: unknown) => e);
    expect((err as ApiException<unknown>).code).toBe(403);
    await kc.makeApiClient(RbacAuthorizationV1Api).createClusterRoleBinding({
      body: {
        metadata: { name: 'alice-view' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: 'cluster-admin',
        },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'alice' }],
      },
    });
    await waitFor(
      'alice to be allowed to list namespaces',
      async () => (await asAlice.listNamespace()).items.length > 0,
      { timeoutMs: 10_000 },
    );
  });

  it('runs kubectl against the generated kubeconfig', async () => {
    const tools = await harnessTools();
    const { stdout } = await execFileAsync(tools.kubectl.path, [
      '--kubeconfig',
      inject('kubeconfigPath'),
      'get',
      'namespaces',
      '-o',
      'name',
    ]);
    expect(stdout.split('\n')).toContain('namespace/default');
  });
});
