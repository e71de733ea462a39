// Commands of the e2e suite: a documented block through bash, kubectl and helm with the suite's
// kubeconfig. A block runs in its own process group, which is killed when it ends, so a
// `port-forward &` in it does not outlive it.
import { execFile, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import type { DocBlock } from './docs.ts';

const execFileAsync = promisify(execFile);
export const repoRoot = join(import.meta.dirname, '..', '..');

/** PATH and KUBECONFIG as a user of the docs has them: pinned kubectl and helm first. */
export function suiteEnv(): NodeJS.ProcessEnv {
  const tools = inject('e2eTools');
  return {
    ...process.env,
    KUBECONFIG: inject('kubeconfigPath'),
    PATH: [
      dirname(tools.kubectl),
      dirname(tools.helm),
      join(repoRoot, 'node_modules', '.bin'),
      process.env.PATH ?? '',
      '/usr/local/sbin:/usr/sbin:/sbin',
    ].join(':'),
  };
}

export interface RunResult {
  readonly code: number | null;
  readonly output: string;
}

/** Run `script` with bash -euo pipefail in the repository; resolves with its exit and output. */
export function bash(
  script: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: repoRoot,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let partial = '';
    const take = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      output += text;
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine?.(line);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const killGroup = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    };
    const timer = setTimeout(() => {
      killGroup();
      reject(
        new Error(`timed out after ${timeoutMs} ms running:\n${script}\n--- output:\n${output}`),
      );
    }, timeoutMs);
    child.on('error', reject);
    // when bash exits, end what it left in the background (a `port-forward &` holds the
    // output pipes open, so 'close' would wait for it), then collect the last output
    child.on('exit', killGroup);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Run a documented block; a non-zero exit fails with the block's place and its output. */
export async function runDocBlock(block: DocBlock, timeoutMs = 600_000): Promise<string> {
  const res = await bash(block.text, suiteEnv(), timeoutMs);
  if (res.code !== 0) {
    throw new Error(
      `docs/quickstart-kind.md:${block.line}: exit ${res.code} from:\n${block.text}\n--- output:\n${res.output}`,
    );
  }
  return res.output;
}

async function tool(bin: string, args: readonly string[], timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await execFileAsync(bin, [...args], {
      env: suiteEnv(),
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, {
      cause: err,
    });
  }
}

export const kubectl = (args: readonly string[], timeoutMs = 120_000): Promise<string> =>
  tool(inject('e2eTools').kubectl, args, timeoutMs);

export const helm = (args: readonly string[], timeoutMs = 600_000): Promise<string> =>
  tool(inject('e2eTools').helm, args, timeoutMs);

/** kubectl ... -o json, parsed */
export async function kubectlJson<T>(args: readonly string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
}
