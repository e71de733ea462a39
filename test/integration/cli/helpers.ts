// Runs a CLI command in-process with captured stdout and stderr; runs `eventwire
// uninstall-cleanup` in a child process as the chart's uninstall hook Jobs run it.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { SCOPE_LABEL } from '../../harness/controller.ts';

const execFileAsync = promisify(execFile);
const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

export interface Captured {
  readonly out: Writable;
  readonly err: Writable;
  text(): string;
  errText(): string;
}

function sink(onChunk: (s: string) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      onChunk(chunk.toString());
      cb();
    },
  });
}

export function capture(): Captured {
  let out = '';
  let err = '';
  return {
    out: sink((s) => (out += s)),
    err: sink((s) => (err += s)),
    text: () => out,
    errText: () => err,
  };
}

type Command = (
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
) => Promise<number>;

export async function runCli(
  command: Command,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; out: string; err: string }> {
  const c = capture();
  const code = await command(argv, env, c.out, c.err);
  return { code, out: c.text(), err: c.errText() };
}

export function unique(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The labels the chart puts on what it creates (eventwire.labels in _helpers.tpl). */
export const chartLabels = (release: string): Record<string, string> => ({
  'app.kubernetes.io/name': 'eventwire',
  'app.kubernetes.io/instance': release,
  'app.kubernetes.io/managed-by': 'Helm',
  'app.kubernetes.io/part-of': 'eventwire',
});

/**
 * The arguments of `eventwire uninstall-cleanup` as the chart's hook Job passes them for
 * `release` installed in `namespace` (templates/uninstall-hook.yaml): the release's
 * selector and the controller's Lease `<release>-eventwire-controller`; `scope` is a test
 * scope (`--scope eventwire.io/test-scope=<scope>`).
 */
export function uninstallCleanupArgs(opts: {
  readonly release: string;
  readonly namespace: string;
  readonly timeout: string;
  readonly stage?: string;
  readonly scope?: string;
  readonly testPod?: string;
}): string[] {
  return [
    ...(opts.stage === undefined ? [] : ['--stage', opts.stage]),
    '--namespace',
    opts.namespace,
    '--selector',
    `app.kubernetes.io/instance=${opts.release},app.kubernetes.io/managed-by=Helm,app.kubernetes.io/name=eventwire`,
    '--controller-lease',
    `${opts.release}-eventwire-controller`,
    ...(opts.scope === undefined ? [] : ['--scope', `${SCOPE_LABEL}=${opts.scope}`]),
    ...(opts.testPod === undefined ? [] : ['--test-pod', opts.testPod]),
    '--timeout',
    opts.timeout,
  ];
}

export interface ChildRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * `eventwire uninstall-cleanup` in a child process with `kubeconfig`, as the hook Job's
 * container runs it (`node src/cli/main.ts`); killed after `timeoutMs`.
 */
export async function uninstallCleanup(
  kubeconfig: string,
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<ChildRun> {
  const started = Date.now();
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [main, 'uninstall-cleanup', ...args],
      { env: { PATH: process.env.PATH ?? '', KUBECONFIG: kubeconfig }, timeout: timeoutMs },
    );
    return { code: 0, stdout, stderr, ms: Date.now() - started };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
      ms: Date.now() - started,
    };
  }
}
