// Fails CI when src/api/generated.ts is stale, a CRD property lacks a description, or the
// Helm chart's CRD copies drift from crds/.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkCrds } from '../../../scripts/check-crds.ts';
import { generatedPath, repoRoot } from '../../../scripts/gen-api-types.ts';

const temps: string[] = [];

/** A scratch copy of crds/ and the generated file, to break on purpose. */
async function scratchRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'eventwire-check-crds-'));
  temps.push(root);
  await cp(join(repoRoot, 'crds'), join(root, 'crds'), { recursive: true });
  await mkdir(join(root, 'src', 'api'), { recursive: true });
  await cp(join(repoRoot, generatedPath), join(root, generatedPath));
  return root;
}

afterEach(async () => {
  await Promise.all(temps.splice(0).map((t) => rm(t, { recursive: true, force: true })));
});

describe('check:crds', () => {
  it('finds the committed CRDs, generated types and chart copies in agreement', async () => {
    expect(await checkCrds(repoRoot)).toEqual([]);
  });

  it('reports stale generated types, naming the fix', async () => {
    const root = await scratchRoot();
    const file = join(root, 'crds', 'eventsubscription.yaml');
    const yaml = await readFile(file, 'utf8');
    await writeFile(file, yaml.replace('default: 30s', 'default: 45s'));
    expect(await checkCrds(root)).toEqual([
      'src/api/generated.ts is out of date with crds/: run `npm run gen:api`',
    ]);
  });

  it('reports a property without a description', async () => {
    const root = await scratchRoot();
    const file = join(root, 'crds', 'eventstream.yaml');
    const yaml = await readFile(file, 'utf8');
    const broken = yaml.replace(
      '                  description: The number of consumers on the stream.\n',
      '',
    );
    expect(broken).not.toBe(yaml);
    await writeFile(file, broken);
    expect(await checkCrds(root)).toContain(
      'crds/eventstream.yaml: v1alpha1 schema property status.consumerCount has no description',
    );
  });

  it('compares the Helm chart copies when there are any', async () => {
    const root = await scratchRoot();
    const dir = join(root, 'charts', 'eventwire', 'templates', 'crds');
    await mkdir(dir, { recursive: true });
    const stream = await readFile(join(root, 'crds', 'eventstream.yaml'), 'utf8');
    // a template copy: wrapped in a condition, with a templated label
    await writeFile(
      join(dir, 'eventstream.yaml'),
      `{{- if .Values.crds.install }}\n${stream.replace(
        '    app.kubernetes.io/name: eventwire\n',
        '    app.kubernetes.io/name: eventwire\n    helm.sh/chart: {{ .Chart.Name }}\n',
      )}{{- end }}\n`,
    );
    expect(await checkCrds(root)).toEqual([
      'the Helm chart has no copy of the CRD eventsubscriptions.eventwire.io',
    ]);
    const sub = await readFile(join(root, 'crds', 'eventsubscription.yaml'), 'utf8');
    await writeFile(
      join(dir, 'eventsubscription.yaml'),
      sub.replace('maxItems: 16', 'maxItems: 17'),
    );
    expect(await checkCrds(root)).toEqual([
      "the Helm chart's copy of eventsubscriptions.eventwire.io differs from crds/: copy it again",
    ]);
    await writeFile(join(dir, 'eventsubscription.yaml'), sub);
    expect(await checkCrds(root)).toEqual([]);
  });
});
