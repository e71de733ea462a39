// Installs eventwire's CRDs (crds/*.yaml, the source of truth) into a control plane: the
// local one of `eventwire dev` and of the tests.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ApiException,
  ApiextensionsV1Api,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { waitFor } from './processes.ts';

export const crdDir = join(import.meta.dirname, '..', '..', 'crds');

/**
 * The CRDs in crds/, parsed (YAML aliases expanded) into client-node models: raw JSON would
 * lose the x-kubernetes-* keys, which the client serializes from camel-case fields.
 */
export async function loadCrds(): Promise<V1CustomResourceDefinition[]> {
  const files = (await readdir(crdDir)).filter((f) => f.endsWith('.yaml')).sort();
  return Promise.all(
    files.map(async (f) =>
      loadYaml<V1CustomResourceDefinition>(await readFile(join(crdDir, f), 'utf8')),
    ),
  );
}

function isEstablished(crd: V1CustomResourceDefinition): boolean {
  return (crd.status?.conditions ?? []).some(
    (c) => c.type === 'Established' && c.status === 'True',
  );
}

async function createOrReplace(ext: ApiextensionsV1Api, crd: V1CustomResourceDefinition) {
  const name = crd.metadata?.name ?? '';
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (err) {
    if (!(err instanceof ApiException) || err.code !== 409) throw err;
    // another test file installed it first: replace it, so the newest schema wins
    const current = await ext.readCustomResourceDefinition({ name });
    const resourceVersion = current.metadata?.resourceVersion;
    if (crd.metadata && resourceVersion !== undefined)
      crd.metadata.resourceVersion = resourceVersion;
    await ext.replaceCustomResourceDefinition({ name, body: crd });
  }
}

/**
 * Creates (or replaces) every CRD in crds/ and waits until the API server serves them.
 * Safe to call from several test files against the shared control plane.
 */
export async function installCrds(kc: KubeConfig): Promise<V1CustomResourceDefinition[]> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const crds = await loadCrds();
  for (const crd of crds) {
    const name = crd.metadata?.name ?? '';
    for (let attempt = 1; ; attempt++) {
      try {
        await createOrReplace(ext, crd);
        break;
      } catch (err) {
        // 409 on replace: another test file changed it in between; try again
        if (!(err instanceof ApiException) || err.code !== 409 || attempt >= 10) {
          throw new Error(`installing the CRD ${name} failed`, { cause: err });
        }
      }
    }
    await waitFor(
      `the CRD ${name} to be established`,
      async () => isEstablished(await ext.readCustomResourceDefinition({ name })),
      { timeoutMs: 30_000 },
    );
  }
  return crds;
}
