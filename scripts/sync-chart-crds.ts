// Copies the CRDs in crds/ (the source of truth) into the Helm chart as templates, wrapped in
// the chart's `crds.install` / `crds.keep` logic; `spec` is copied verbatim, metadata is the
// chart's. `npm run check:crds` compares the copies' spec with crds/.
//   node scripts/sync-chart-crds.ts           (npm run sync:crds) writes the templates
//   node scripts/sync-chart-crds.ts --check   fails when a template is out of date
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from './gen-api-types.ts';

export const chartCrdTemplateDir = join('charts', 'eventwire', 'templates', 'crds');

/** The chart template for one CRD file of crds/. */
export function crdTemplate(file: string, text: string): string {
  const crd = parse(text) as { metadata?: { name?: string } };
  const name = crd.metadata?.name;
  if (name === undefined) throw new Error(`crds/${file}: no metadata.name`);
  const at = text.search(/^spec:/m);
  if (at < 0) throw new Error(`crds/${file}: no top-level spec`);
  const spec = text.slice(at);
  if (spec.includes('{{') || spec.includes('}}')) {
    // Helm would read them as template actions
    throw new Error(`crds/${file}: the spec contains "{{" or "}}"; Helm cannot copy it verbatim`);
  }
  return [
    `{{- /* Generated from crds/${file} by scripts/sync-chart-crds.ts (npm run sync:crds): do not edit. */ -}}`,
    '{{- if .Values.crds.install }}',
    'apiVersion: apiextensions.k8s.io/v1',
    'kind: CustomResourceDefinition',
    'metadata:',
    `  name: ${name}`,
    '  labels:',
    '    {{- include "eventwire.crdLabels" . | nindent 4 }}',
    '  {{- if .Values.crds.keep }}',
    '  annotations:',
    '    # helm uninstall leaves the CRD, and with it every EventStream and EventSubscription',
    '    helm.sh/resource-policy: keep',
    '  {{- end }}',
    spec.trimEnd(),
    '{{- end }}',
    '',
  ].join('\n');
}

/** The templates as they should be, by file name. */
export async function expectedTemplates(root: string = repoRoot): Promise<Map<string, string>> {
  const dir = join(root, 'crds');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
  const out = new Map<string, string>();
  for (const f of files) out.set(f, crdTemplate(f, await readFile(join(dir, f), 'utf8')));
  return out;
}

/** Template files that are missing or differ from what crds/ gives; empty when in sync. */
export async function outOfDate(root: string = repoRoot): Promise<string[]> {
  const stale: string[] = [];
  for (const [file, want] of await expectedTemplates(root)) {
    const path = join(root, chartCrdTemplateDir, file);
    const have = await readFile(path, 'utf8').catch(() => '');
    if (have !== want) stale.push(join(chartCrdTemplateDir, file));
  }
  return stale;
}

async function main(): Promise<void> {
  if (process.argv.includes('--check')) {
    const stale = await outOfDate();
    for (const f of stale) console.error(`sync:crds: ${f} is out of date: run npm run sync:crds`);
    if (stale.length > 0) process.exitCode = 1;
    return;
  }
  await mkdir(join(repoRoot, chartCrdTemplateDir), { recursive: true });
  for (const [file, text] of await expectedTemplates()) {
    await writeFile(join(repoRoot, chartCrdTemplateDir, file), text);
    console.log(`sync:crds: wrote ${join(chartCrdTemplateDir, file)}`);
  }
}

if (import.meta.main) await main();
