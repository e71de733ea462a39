#!/usr/bin/env node
// The eventwire command: `eventwire <component> [options]`.
import { parseArgs } from 'node:util';
import { runDev } from './dev.ts';

const USAGE = `Usage: eventwire <command> [options]

Commands:
  dev          run eventwire locally: a real control plane and nats-server, no cluster needed

Options:
  -h, --help   show this help
`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  switch (command) {
    case 'dev': {
      const { values } = parseArgs({
        args: [...rest],
        options: { help: { type: 'boolean', short: 'h' } },
        strict: true,
      });
      if (values.help) {
        process.stdout.write('Usage: eventwire dev\n\nStarts a local control plane and nats-server, prints how to reach them, and runs until Ctrl-C.\n');
        return 0;
      }
      return runDev(process.env, process.stdout);
    }
    default:
      process.stderr.write(`eventwire: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`eventwire: ${err instanceof Error ? err.message : String(err)}\n`);
    if (err instanceof Error && err.cause !== undefined) {
      process.stderr.write(`  caused by: ${String(err.cause)}\n`);
    }
    process.exitCode = 1;
  },
);
