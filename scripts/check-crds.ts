// Checks the CRDs in crds/ (the source of truth) against everything derived from them:
// - src/api/generated.ts is exactly what scripts/gen-api-types.ts produces now;
// - every schema property has a description (kubectl explain shows it);
// - group, version, plural and kind match the constants in src/api/types.ts;
// - the Helm chart's CRD copies, when the chart has any, have the same spec.
//   node scripts/check-crds.ts        (npm run check:crds)
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import * as api from '../src/api/types.ts';
import {
  generateApiTypes,
  generatedPath,
  loadCrdFiles,
  repoRoot,
  type Crd,
  type Schema,
} from './gen-api-types.ts';

/** Where the Helm chart may keep copies of the CRDs. */
export const chartCrdDirs = [
  join('charts', 'eventwire', 'crds'),
  join('charts', 'eventwire', 'templates', 'crds'),
  join('charts', 'eventwire', 'templates'),
];

const expectedNames: Record<string, { plural: string; kind: string }> = {
  [`${api.EVENTSTREAM_PLURAL}.${api.API_GROUP}`]: {
    plural: api.EVENTSTREAM_PLURAL,
    kind: api.EVENTSTREAM_KIND,
  },
  [`${api.EVENTSUBSCRIPTION_PLURAL}.${api.API_GROUP}`]: {
    plural: api.EVENTSUBSCRIPTION_PLURAL,
    kind: api.EVENTSUBSCRIPTION_KIND,
  },
};

/** Paths (JSON-path-like) of schema properties without a description. */
export function undocumented(schema: Schema, path: string): string[] {
  const out: string[] = [];
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const at = `${path}.${key}`;
    // the API server forbids anything but type in the root metadata schema
    const isRootMetadata = path === '' && key === 'metadata';
    if (!isRootMetadata && (prop.description ?? '').trim() === '') out.push(at);
    out.push(...undocumented(prop, at));
  }
  if (schema.items) out.push(...undocumented(schema.items, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') {
    out.push(...undocumented(schema.additionalProperties, `${path}{}`));
  }
  return out;
}

function checkNames(file: string, crd: Crd): string[] {
  const problems: string[] = [];
  const expected = expectedNames[crd.metadata.name];
  if (crd.kind !== 'CustomResourceDefinition' || expected === undefined) {
    return [`${file}: expected the CustomResourceDefinition of an eventwire kind`];
  }
  if (crd.spec.group !== api.API_GROUP) problems.push(`${file}: group is not ${api.API_GROUP}`);
  if (crd.spec.names.plural !== expected.plural || crd.spec.names.kind !== expected.kind) {
    problems.push(`${file}: names do not match ${expected.kind}/${expected.plural}`);
  }
  if (crd.spec.versions.map((v) => v.name).join() !== api.API_VERSION) {
    problems.push(`${file}: expected exactly the version ${api.API_VERSION}`);
  }
  return problems;
}

/**
 * The CRDs found in the chart's copies, by name. Templates are made parseable by dropping
 * lines that hold only a template action and blanking inline actions; only spec is compared.
 */
export async function chartCrdCopies(root: string): Promise<Map<string, unknown>> {
  const copies = new Map<string, unknown>();
  for (const dir of chartCrdDirs.map((d) => join(root, d)).filter((d) => existsSync(d))) {
    const files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f));
    for (const file of files) {
      const text = await readFile(join(dir, file), 'utf8');
      if (!text.includes('CustomResourceDefinition')) continue;
      const plain = text
        .split('\n')
        .filter((line) => !/^\s*\{\{.*\}\}\s*$/.test(line))
        .join('\n')
        .replace(/\{\{.*?\}\}/g, 'TEMPLATE');
      for (const doc of parseAllDocuments(plain)) {
        if (doc.errors.length > 0) continue; // not YAML even without its template actions
        const crd = doc.toJS({ maxAliasCount: -1 }) as Partial<Crd> | null;
        if (crd?.kind === 'CustomResourceDefinition' && crd.metadata) {
          copies.set(crd.metadata.name, crd.spec);
        }
      }
    }
  }
  return copies;
}

async function checkChartCopies(root: string, crds: { crd: Crd }[]): Promise<string[]> {
  const copies = await chartCrdCopies(root);
  if (copies.size === 0) return []; // the chart has no CRD copies (yet)
  return crds.flatMap(({ crd }) => {
    const copy = copies.get(crd.metadata.name);
    if (copy === undefined) return [`the Helm chart has no copy of the CRD ${crd.metadata.name}`];
    return isDeepStrictEqual(copy, crd.spec)
      ? []
      : [`the Helm chart's copy of ${crd.metadata.name} differs from crds/: copy it again`];
  });
}

/** Every problem found; empty when the CRDs and everything derived from them agree. */
export async function checkCrds(root: string = repoRoot): Promise<string[]> {
  const crds = await loadCrdFiles(root);
  const problems = crds.flatMap(({ file, crd }) => [
    ...checkNames(file, crd),
    ...crd.spec.versions.flatMap((v) =>
      undocumented(v.schema.openAPIV3Schema, '').map(
        (p) => `${file}: ${v.name} schema property ${p.slice(1)} has no description`,
      ),
    ),
  ]);
  const generated = join(root, generatedPath);
  const current = existsSync(generated) ? await readFile(generated, 'utf8') : '';
  if (current !== (await generateApiTypes(root))) {
    problems.push(`${generatedPath} is out of date with crds/: run \`npm run gen:api\``);
  }
  problems.push(...(await checkChartCopies(root, crds)));
  return problems;
}

async function main(): Promise<void> {
  const problems = await checkCrds(repoRoot);
  for (const p of problems) console.error(`check:crds: ${p}`);
  if (problems.length > 0) {
    process.exitCode = 1;
    return;
  }
  console.log('check:crds: crds/ and everything derived from them agree');
}

if (import.meta.main) await main();
