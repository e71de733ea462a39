// Generates docs/reference/crds.md from the CRDs in crds/ (the source of truth): every field
// with its type, default, validation and description, the printer columns and the API server's
// CEL rules. `npm run check:docs` (and test/unit/docs/crd-reference.test.ts) fail when the
// committed file is stale.
//   node scripts/gen-crd-reference.ts           write docs/reference/crds.md
//   node scripts/gen-crd-reference.ts --check   exit 1 when it is out of date
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as prettier from 'prettier';
import { loadCrdFiles, repoRoot } from './gen-api-types.ts';

export const referencePath = join('docs', 'reference', 'crds.md');

type Node = Record<string, unknown>;

interface Validation {
  readonly rule: string;
  readonly message?: string;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
/** Markdown-safe text on one line: pipes, emphasis characters and angle brackets escaped. */
const cell = (text: string): string =>
  text
    .replace(/\s+/g, ' ')
    .replace(/[|*_<>[\]]/g, (c) => `\\${c}`)
    .trim();
const code = (text: string): string => (text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``);

function typeOf(s: Node): string {
  if (s['x-kubernetes-int-or-string'] === true) return 'integer or string';
  const t = typeof s.type === 'string' ? s.type : 'object';
  if (t === 'array') {
    const items = (s.items ?? {}) as Node;
    return `array of ${typeOf(items)}`;
  }
  if (t === 'object' && typeof s.additionalProperties === 'object') {
    return `map of ${typeOf(s.additionalProperties as Node)}`;
  }
  return typeof s.format === 'string' ? `${t} (${s.format})` : t;
}

function limits(s: Node): string[] {
  const out: string[] = [];
  if (Array.isArray(s.enum)) out.push(`one of ${s.enum.map((e) => code(str(e))).join(', ')}`);
  const bounds: [string, string][] = [
    ['minimum', '≥'],
    ['maximum', '≤'],
    ['minLength', 'length ≥'],
    ['maxLength', 'length ≤'],
    ['minItems', 'items ≥'],
    ['maxItems', 'items ≤'],
    ['minProperties', 'entries ≥'],
    ['maxProperties', 'entries ≤'],
  ];
  for (const [key, label] of bounds) {
    if (typeof s[key] === 'number') out.push(`${label} ${String(s[key])}`);
  }
  if (typeof s.pattern === 'string') out.push(`pattern ${code(s.pattern)}`);
  for (const v of (s['x-kubernetes-validations'] ?? []) as Validation[]) {
    out.push(v.message === undefined ? `rule ${code(v.rule)}` : cell(v.message));
  }
  return out;
}

/** Nested filter levels repeat the top level: document them once. */
function isNestedFilter(path: string, key: string): boolean {
  return path.includes('filters[]') && ['all', 'any', 'not'].includes(key);
}

function rows(schema: Node, path: string, out: string[]): void {
  const props = (schema.properties ?? {}) as Record<string, Node>;
  const required = new Set((schema.required ?? []) as string[]);
  for (const [key, prop] of Object.entries(props)) {
    const p = path === '' ? key : `${path}.${key}`;
    const def = prop.default === undefined ? '' : code(str(prop.default));
    const desc = cell(typeof prop.description === 'string' ? prop.description : '');
    const nested = isNestedFilter(path, key) ? ' Nested filters have the fields of a filter.' : '';
    out.push(
      `| ${code(p)}${required.has(key) ? ' (required)' : ''} | ${typeOf(prop)} | ${def} | ${limits(prop).join('; ')} | ${desc}${nested} |`,
    );
    if (isNestedFilter(path, key) || key === 'metadata') continue;
    const child = prop.type === 'array' ? ((prop.items ?? {}) as Node) : prop;
    if (child.properties !== undefined) rows(child, prop.type === 'array' ? `${p}[]` : p, out);
  }
}

function renderCrd(crd: Node): string {
  const spec = crd.spec as Node;
  const names = spec.names as Node;
  const version = (spec.versions as Node[])[0] ?? {};
  const schema = ((version.schema as Node).openAPIV3Schema ?? {}) as Node;
  const lines = [
    `## ${str(names.kind)}`,
    '',
    cell(str(schema.description ?? '')),
    '',
    `- API: \`${str(spec.group)}/${str(version.name)}\`, ${str(spec.scope)}; plural \`${str(names.plural)}\`; short names ${((names.shortNames ?? []) as string[]).map(code).join(', ')}; categories ${((names.categories ?? []) as string[]).map(code).join(', ')}`,
    `- \`kubectl explain ${str(names.plural)}.spec\` shows the same descriptions.`,
    '',
    '### Printer columns (`kubectl get`)',
    '',
    '| column | JSON path | description |',
    '| --- | --- | --- |',
    ...((version.additionalPrinterColumns ?? []) as Node[]).map(
      (c) => `| ${str(c.name)} | ${code(str(c.jsonPath))} | ${cell(str(c.description ?? ''))} |`,
    ),
    '',
  ];
  const topRules = limits(schema);
  if (topRules.length > 0) lines.push('Object rules: ', ...topRules.map((r) => `- ${r}`), '');
  lines.push(
    '### Fields',
    '',
    '| field | type | default | validation | description |',
    '| --- | --- | --- | --- | --- |',
  );
  rows(schema, '', lines);
  lines.push('');
  return lines.join('\n');
}

export async function renderCrdReference(root: string = repoRoot): Promise<string> {
  const crds = await loadCrdFiles(root);
  const body = [
    '<!-- Generated from crds/ by scripts/gen-crd-reference.ts (npm run gen:docs); do not edit. -->',
    '',
    '# CRD reference',
    '',
    'The eventwire.io/v1alpha1 API, generated from the CustomResourceDefinitions in `crds/`, the',
    'single source of truth. Durations are Go-style strings (`500ms`, `30s`, `5m`, `168h`).',
    'Validation listed here is enforced by the API server itself (structural schema and CEL',
    '`x-kubernetes-validations`); what it cannot check becomes a condition (see',
    '[troubleshooting](../troubleshooting.md)).',
    '',
    ...crds.map(({ crd }) => renderCrd(crd as unknown as Node)),
  ].join('\n');
  const config = (await prettier.resolveConfig(join(root, referencePath))) ?? {};
  return prettier.format(body, { ...config, parser: 'markdown' });
}

/** The problems with the committed reference: empty when it is current. */
export async function checkCrdReference(root: string = repoRoot): Promise<string[]> {
  const want = await renderCrdReference(root);
  let have: string;
  try {
    have = await readFile(join(root, referencePath), 'utf8');
  } catch {
    return [`${referencePath} is missing: run \`npm run gen:docs\``];
  }
  return have === want
    ? []
    : [`${referencePath} is out of date with crds/: run \`npm run gen:docs\``];
}

if (import.meta.filename === process.argv[1]) {
  if (process.argv.includes('--check')) {
    const problems = await checkCrdReference();
    for (const p of problems) console.error(p);
    process.exitCode = problems.length === 0 ? 0 : 1;
  } else {
    await writeFile(join(repoRoot, referencePath), await renderCrdReference());
    console.log(`wrote ${referencePath}`);
  }
}
