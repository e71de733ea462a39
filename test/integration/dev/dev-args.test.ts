// `eventwire dev` refuses wrong arguments before starting anything (exit 2, naming the
// argument) and documents its options.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');
const run = promisify(execFile);

async function eventwire(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [main, ...args]);
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

describe('eventwire dev arguments', () => {
  it('shows its options with --help', async () => {
    const r = await eventwire('dev', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('--example shop');
  });

  it('refuses an unknown example, an unknown option and a bad port', async () => {
    const example = await eventwire('dev', '--example', 'zoo');
    expect(example.code).toBe(2);
    expect(example.err).toContain('--example zoo: the examples are shop');
    const option = await eventwire('dev', '--exampel', 'shop');
    expect(option.code).toBe(2);
    expect(option.err).toContain("Unknown option '--exampel'");
    const port = await eventwire('dev', '--port', '70000');
    expect(port.code).toBe(2);
    expect(port.err).toContain('--port 70000');
  });

  it('refuses an unknown command and a wrong argument to an env-configured command', async () => {
    const unknown = await eventwire('deploy');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "deploy"');
    const wrong = await eventwire('controller', '--verbose');
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain("eventwire controller: Unknown option '--verbose'");
  });
});
