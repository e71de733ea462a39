// Fails CI when docs/reference/crds.md is stale: it must be exactly what
// scripts/gen-crd-reference.ts generates from crds/ now (npm run gen:docs).
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../scripts/gen-api-types.ts';
import {
  checkCrdReference,
  referencePath,
  renderCrdReference,
} from '../../../scripts/gen-crd-reference.ts';

const temps: string[] = [];

afterEach(async () => {
  await Promise.all(temps.splice(0).map((t) => rm(t, { recursive: true, force: true })));
});

describe('check:docs (the CRD reference)', () => {
  it('finds docs/reference/crds.md current with crds/', async () => {
    expect(await checkCrdReference(repoRoot)).toEqual([]);
  });

  it('documents every spec field with its description and default', async () => {
    const md = await renderCrdReference(repoRoot);
    expect(md).toMatch(/\| `spec\.delivery\.orderingKey` +\| string +\|/);
    expect(md).toMatch(/\| `spec\.storage` +\| string +\| `file` +\| one of `file`, `memory`/);
    expect(md).toContain('## EventSubscription');
  });

  it('reports a stale reference after a CRD changes, naming the fix', async () => {
    const root = await mkdtemp(join(tmpdir(), 'eventwire-check-docs-'));
    temps.push(root);
    await cp(join(repoRoot, 'crds'), join(root, 'crds'), { recursive: true });
    await mkdir(join(root, 'docs', 'reference'), { recursive: true });
    await cp(join(repoRoot, referencePath), join(root, referencePath));
    await cp(join(repoRoot, '.prettierrc.json'), join(root, '.prettierrc.json'));
    expect(await checkCrdReference(root)).toEqual([]);
    const file = join(root, 'crds', 'eventsubscription.yaml');
    const yaml = await readFile(file, 'utf8');
    const changed = yaml.replace('default: 30s', 'default: 45s');
    expect(changed).not.toBe(yaml);
    await writeFile(file, changed);
    expect(await checkCrdReference(root)).toEqual([
      'docs/reference/crds.md is out of date with crds/: run `npm run gen:docs`',
    ]);
  });
});
