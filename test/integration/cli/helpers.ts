// Runs a CLI command in-process with captured stdout and stderr.
import { Writable } from 'node:stream';

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
