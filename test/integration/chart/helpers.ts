// Shared pieces of the chart tests: helm and kubectl as a user runs them, the value sets the
// acceptance names (default, production, minimal, every option on), and rendered manifests.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { harnessTools } from '../../harness/index.ts';

const execFileAsync = promisify(execFile);

export const repoRoot = join(import.meta.dirname, '..', '..', '..');
export const chartDir = join(repoRoot, 'charts', 'eventwire');

/** The value sets every chart test covers: name → values files (none: the defaults). */
export const valueSets: Readonly<Record<string, readonly string[]>> = {
  default: [],
  production: [join(chartDir, 'ci', 'production-values.yaml')],
  minimal: [join(chartDir, 'ci', 'minimal-values.yaml')],
  'all-options': [join(chartDir, 'ci', 'all-options-values.yaml')],
};

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

async function run(bin: string, args: readonly string[], input?: string): Promise<RunResult> {
  const child = execFileAsync(bin, args, { maxBuffer: 64 * 1024 * 1024 });
  if (input !== undefined) child.child.stdin?.end(input);
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}`, {
      cause: err,
    });
  }
}

export async function helm(args: readonly string[], input?: string): Promise<RunResult> {
  const tools = await harnessTools();
  return run(tools.helm.path, args, input);
}

export async function kubectl(
  kubeconfig: string,
  args: readonly string[],
  input?: string,
): Promise<RunResult> {
  const tools = await harnessTools();
  return run(tools.kubectl.path, ['--kubeconfig', kubeconfig, ...args], input);
}

export const valuesArgs = (files: readonly string[], set: readonly string[] = []): string[] => [
  ...files.flatMap((f) => ['-f', f]),
  ...set.flatMap((s) => ['--set', s]),
];

/** `helm template` of the chart; returns the documents (hooks and tests included). */
export async function renderChart(opts: {
  release?: string;
  namespace: string;
  files?: readonly string[];
  set?: readonly string[];
  chart?: string;
}): Promise<Manifest[]> {
  const { stdout } = await helm([
    'template',
    opts.release ?? 'eventwire',
    opts.chart ?? chartDir,
    '--namespace',
    opts.namespace,
    ...valuesArgs(opts.files ?? [], opts.set),
  ]);
  return parseManifests(stdout);
}

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS({ maxAliasCount: -1 }) as Manifest | null)
    .filter((m): m is Manifest => m !== null && typeof m === 'object' && 'kind' in m);
}

export const isHook = (m: Manifest): boolean =>
  m.metadata.annotations?.['helm.sh/hook'] !== undefined;

export interface PodSpecLike {
  serviceAccountName?: string;
  securityContext?: Record<string, unknown>;
  containers: {
    name: string;
    securityContext?: Record<string, unknown>;
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
    livenessProbe?: unknown;
    readinessProbe?: unknown;
    env?: { name: string; value?: string }[];
    args?: string[];
  }[];
  volumes?: Record<string, unknown>[];
}

/** The Pod spec of a Pod, Deployment or StatefulSet; undefined for other kinds. */
export function podSpecOf(m: Manifest): PodSpecLike | undefined {
  if (m.kind === 'Pod') return m.spec as PodSpecLike;
  if (m.kind === 'Deployment' || m.kind === 'StatefulSet') {
    return (m.spec as { template: { spec: PodSpecLike } }).template.spec;
  }
  return undefined;
}

export const toYamlStream = (docs: readonly object[]): string =>
  docs.map((d) => JSON.stringify(d)).join('\n---\n');
