// Generates src/api/generated.ts (TypeScript types and default values) from the CRDs in
// crds/*.yaml, the single source of truth for the eventwire.io API.
//   node scripts/gen-api-types.ts        (npm run gen:api)
// scripts/check-crds.ts fails CI when the committed file differs from what this produces.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { parse } from 'yaml';

export const repoRoot = join(import.meta.dirname, '..');
export const generatedPath = join('src', 'api', 'generated.ts');

export interface Schema {
  type?: string;
  description?: string;
  format?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  default?: unknown;
  'x-kubernetes-int-or-string'?: boolean;
}

export interface Crd {
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    names: { kind: string; plural: string; listKind?: string };
    versions: { name: string; schema: { openAPIV3Schema: Schema } }[];
  };
}

/** Type names for the object schemas at these paths (kind + JSON path, arrays as []). */
const typeNames: Record<string, string> = {
  'EventStream.spec': 'EventStreamSpec',
  'EventStream.status': 'EventStreamStatus',
  'EventStream.status.conditions[]': 'Condition',
  'EventSubscription.spec': 'EventSubscriptionSpec',
  'EventSubscription.spec.stream': 'StreamRef',
  'EventSubscription.spec.filters[]': 'Filter',
  'EventSubscription.spec.sink': 'SinkSpec',
  'EventSubscription.spec.sink.ref': 'SinkRef',
  'EventSubscription.spec.delivery': 'DeliverySpec',
  'EventSubscription.spec.delivery.deadLetter': 'DeadLetterSpec',
  'EventSubscription.spec.delivery.deadLetter.sink': 'SinkSpec',
  'EventSubscription.spec.delivery.deadLetter.sink.ref': 'SinkRef',
  'EventSubscription.spec.reply': 'ReplySpec',
  'EventSubscription.spec.reply.stream': 'StreamRef',
  'EventSubscription.status': 'EventSubscriptionStatus',
  'EventSubscription.status.conditions[]': 'Condition',
  'EventSubscription.status.consumer': 'ConsumerStatus',
  'EventSubscription.status.stats': 'SubscriptionStats',
};

/**
 * The CRD nests filters to a fixed depth (structural schemas cannot recurse); in TypeScript
 * every nested level is the top-level Filter type. The API server enforces the depth.
 */
const nestedFilter = /^EventSubscription\.spec\.filters\[\](\.(all\[\]|any\[\]|not))+$/;

/** Constants holding the CRD defaults of these types' fields. */
const defaultsConstants: Record<string, string> = {
  EventStreamSpec: 'EVENTSTREAM_DEFAULTS',
  EventSubscriptionSpec: 'EVENTSUBSCRIPTION_DEFAULTS',
  DeliverySpec: 'DELIVERY_DEFAULTS',
};

export async function loadCrdFiles(root: string): Promise<{ file: string; crd: Crd }[]> {
  const dir = join(root, 'crds');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
  return Promise.all(
    files.map(async (f) => ({
      file: join('crds', f),
      crd: parse(await readFile(join(dir, f), 'utf8')) as Crd,
    })),
  );
}

/** The schema without descriptions: two uses of a type name must have the same shape. */
function shape(schema: unknown): string {
  return JSON.stringify(schema, (key, value: unknown) =>
    key === 'description' ? undefined : value,
  );
}

/** Splits text into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

function docComment(schema: Schema, indent: string, withDefault = true): string {
  const lines = wrap(schema.description ?? '', 96 - indent.length);
  if (schema.format === 'date-time') lines.push('An RFC 3339 date-time string.');
  if (withDefault && schema.default !== undefined) {
    lines.push(`@default ${JSON.stringify(schema.default)}`);
  }
  const body = lines.map((l) => `${indent} * ${l.replaceAll('*/', '*\\/')}`);
  return body.length === 0 ? '' : `${indent}/**\n${body.join('\n')}\n${indent} */\n`;
}

class Emitter {
  readonly declarations: string[] = [];
  readonly shapes = new Map<string, string>();
  readonly objectSchemas = new Map<string, Schema>();

  typeOf(schema: Schema, path: string): string {
    if (schema['x-kubernetes-int-or-string'] === true) return 'number | string';
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
    switch (schema.type) {
      case 'string':
        return 'string';
      case 'integer':
      case 'number':
        return 'number';
      case 'boolean':
        return 'boolean';
      case 'array':
        return this.arrayType(schema, path);
      case 'object':
        return this.objectType(schema, path);
      default:
        throw new Error(`${path}: unsupported schema type ${String(schema.type)}`);
    }
  }

  arrayType(schema: Schema, path: string): string {
    if (!schema.items) throw new Error(`${path}: array without items`);
    const item = this.typeOf(schema.items, `${path}[]`);
    return /[ |]/.test(item) ? `(${item})[]` : `${item}[]`;
  }

  objectType(schema: Schema, path: string): string {
    if (nestedFilter.test(path)) return 'Filter';
    const name = typeNames[path];
    if (!schema.properties) {
      const extra = schema.additionalProperties;
      if (typeof extra === 'object') return `Record<string, ${this.typeOf(extra, `${path}{}`)}>`;
      return 'Record<string, unknown>';
    }
    if (name === undefined) return `{\n${this.members(schema, path, '  ')}}`;
    const seen = this.shapes.get(name);
    if (seen !== undefined) {
      if (seen !== shape(schema)) throw new Error(`${path}: ${name} differs from its other uses`);
      return name;
    }
    this.shapes.set(name, shape(schema));
    this.objectSchemas.set(name, schema);
    const members = this.members(schema, path, '  ');
    this.declarations.push(
      `${docComment(schema, '', false)}export interface ${name} {\n${members}}\n`,
    );
    return name;
  }

  members(schema: Schema, path: string, indent: string, isRoot = false): string {
    const required = new Set(schema.required ?? []);
    return Object.entries(schema.properties ?? {})
      .map(([key, prop]) => {
        const type =
          isRoot && key === 'metadata' ? 'V1ObjectMeta' : this.typeOf(prop, `${path}.${key}`);
        const optional = required.has(key) ? '' : '?';
        return `${docComment(prop, indent)}${indent}${key}${optional}: ${type};\n`;
      })
      .join('');
  }

  defaultsConstant(typeName: string, constName: string): string {
    const schema = this.objectSchemas.get(typeName);
    if (!schema) throw new Error(`no type ${typeName} to take defaults from`);
    const entries = Object.entries(schema.properties ?? {}).filter(
      ([, p]) => p.default !== undefined && p.type !== 'object',
    );
    const keys = entries.map(([k]) => JSON.stringify(k)).join(' | ');
    const values = entries.map(([k, p]) => `  ${k}: ${JSON.stringify(p.default)},\n`).join('');
    return (
      `/** The defaults the API server fills into ${typeName} (from the CRD). */\n` +
      `export const ${constName}: Readonly<Required<Pick<${typeName}, ${keys}>>> = {\n${values}};\n`
    );
  }
}

function rootDeclarations(emitter: Emitter, crd: Crd): string {
  const kind = crd.spec.names.kind;
  const version = crd.spec.versions[0];
  if (!version) throw new Error(`${crd.metadata.name}: no versions`);
  const schema = version.schema.openAPIV3Schema;
  const members = emitter.members(schema, kind, '  ', true);
  const listKind = crd.spec.names.listKind ?? `${kind}List`;
  return (
    `${docComment(schema, '')}export interface ${kind} {\n${members}}\n\n` +
    `/** A list of ${kind} objects, as the API server returns it. */\n` +
    `export interface ${listKind} {\n  apiVersion?: string;\n  kind?: string;\n` +
    `  metadata?: V1ListMeta;\n  items: ${kind}[];\n}\n`
  );
}

/** The contents src/api/generated.ts must have for the CRDs under root. */
export async function generateApiTypes(root: string = repoRoot): Promise<string> {
  const crds = await loadCrdFiles(root);
  const emitter = new Emitter();
  const roots = crds.map(({ crd }) => rootDeclarations(emitter, crd));
  const defaults = Object.entries(defaultsConstants).map(([type, name]) =>
    emitter.defaultsConstant(type, name),
  );
  const source = [
    '// Code generated by scripts/gen-api-types.ts from crds/*.yaml. DO NOT EDIT.',
    '// Change the CRDs, then run `npm run gen:api`; `npm run check:crds` verifies this file.',
    `// Sources: ${crds.map((c) => c.file).join(', ')}.`,
    "import type { V1ListMeta, V1ObjectMeta } from '@kubernetes/client-node';",
    '',
    ...roots,
    ...emitter.declarations,
    ...defaults,
  ].join('\n');
  const options = await resolveConfig(join(repoRoot, generatedPath));
  return format(source, { ...options, parser: 'typescript' });
}

async function main(): Promise<void> {
  const out = join(repoRoot, generatedPath);
  await writeFile(out, await generateApiTypes(repoRoot));
  console.log(`wrote ${generatedPath}`);
}

if (import.meta.main) await main();
