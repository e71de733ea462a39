// Every Kubernetes manifest the project shows a person is valid against the real API server
// with the CRDs installed: the ```yaml blocks of docs/**/*.md that hold objects (apiVersion and
// kind), every examples/**/*.yaml, and the shop example as `kubectl apply -k examples/shop`
// builds it. Each is applied with server-side apply and dryRun=All, so the structural schema,
// the CEL rules and the built-in types all check it, and nothing is stored.
//
// A block that is only a fragment (no apiVersion/kind, such as a Role's `rules:`) is not an
// object and is skipped. A block for an API this control plane does not serve (for example a
// Prometheus Operator ServiceMonitor) must be preceded by `<!-- docs-check: skip <reason> -->`.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig, KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ensureNamespace } from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { harnessTools } from '../../harness/index.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const run = promisify(execFile);

async function filesUnder(dir: string, suffix: string): Promise<string[]> {
  const entries = await readdir(join(root, dir), { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith(suffix))
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

/** The ```yaml blocks of a Markdown file, without those marked `docs-check: skip`. */
export function yamlBlocks(markdown: string): { line: number; text: string }[] {
  const blocks: { line: number; text: string }[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    if (!/^\s*```ya?ml\s*$/.test(lines[i] ?? '')) continue;
    const skip = /<!--\s*docs-check:\s*skip/.test(lines[i - 1] ?? lines[i - 2] ?? '');
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] ?? '')) end += 1;
    if (!skip) blocks.push({ line: start + 1, text: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

function objectsOf(text: string, where: string): KubernetesObject[] {
  const out: KubernetesObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${where}: ${doc.errors[0]?.message ?? ''}`);
    const obj = doc.toJS() as unknown;
    if (typeof obj !== 'object' || obj === null) continue;
    // status is the controller's to write: the API server ignores it in what a person applies
    // (docs/spec.md sketches it with placeholders), so only the rest is validated
    const o = { ...(obj as KubernetesObject & { status?: unknown }) };
    delete o.status;
    if (typeof o.apiVersion === 'string' && typeof o.kind === 'string') out.push(o);
  }
  return out;
}

/** Each Markdown file under docs/ that shows at least one object, with its objects. */
const docs: [string, { where: string; objects: KubernetesObject[] }[]][] = [];
for (const file of await filesUnder('docs', '.md')) {
  const blocks = yamlBlocks(await readFile(join(root, file), 'utf8')).map((b) => ({
    where: `${file}:${b.line}`,
    objects: objectsOf(b.text, `${file}:${b.line}`),
  }));
  const withObjects = blocks.filter((b) => b.objects.length > 0);
  if (withObjects.length > 0) docs.push([file, withObjects]);
}
const examples = (await filesUnder('examples', '.yaml')).filter(
  (f) => !f.endsWith('kustomization.yaml'),
);

describe('manifests in docs/ and examples/ against the real API server', () => {
  const kc = new KubeConfig();
  let client: KubernetesObjectApi;

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    client = KubernetesObjectApi.makeApiClient(kc);
  });

  async function dryRunApply(objects: readonly KubernetesObject[], where: string): Promise<void> {
    for (const obj of objects) {
      const ns = obj.metadata?.namespace;
      if (ns !== undefined) await ensureNamespace(kc, ns);
      const name = `${where}: ${obj.kind ?? ''} ${ns ?? ''}/${obj.metadata?.name ?? ''}`;
      try {
        await client.patch(
          obj,
          undefined,
          'All',
          'eventwire-docs-check',
          true,
          'application/apply-patch+yaml',
        );
      } catch (err) {
        const body = (err as { body?: unknown }).body;
        throw new Error(`${name} is refused by the API server: ${String(body ?? err)}`, {
          cause: err,
        });
      }
    }
  }

  it('finds the manifests of the docs', () => {
    const files = docs.map(([file]) => file);
    for (const file of ['docs/spec.md', 'docs/ordering.md', 'docs/quickstart-kind.md']) {
      expect(files).toContain(file);
    }
  });

  it.each(docs)('%s', async (_file, blocks) => {
    for (const block of blocks) await dryRunApply(block.objects, block.where);
  });

  it.each(examples)('%s', async (file) => {
    const objects = objectsOf(await readFile(join(root, file), 'utf8'), file);
    expect(objects.length, `${file} holds no Kubernetes object`).toBeGreaterThan(0);
    await dryRunApply(objects, file);
  });

  it('examples/shop as kubectl apply -k builds it', async () => {
    const tools = await harnessTools();
    const { stdout } = await run(tools.kubectl.path, ['kustomize', join(root, 'examples', 'shop')]);
    const objects = objectsOf(stdout, 'kubectl kustomize examples/shop');
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      ...Array<string>(4).fill('Deployment'),
      ...Array<string>(2).fill('EventStream'),
      ...Array<string>(6).fill('EventSubscription'),
      'Namespace',
    ]);
    await dryRunApply(objects, 'kubectl kustomize examples/shop');
  });
});
