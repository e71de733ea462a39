#!/usr/bin/env node
// The eventwire command: `eventwire <command> [options]`. This entry point is the only place
// that reads process.env; each command parses its configuration once into a typed object.
import { parseArgs } from 'node:util';
import { runController } from './controller.ts';
import { runDev } from './dev.ts';
import { runDispatcher } from './dispatcher.ts';
import { runIngress } from './ingress.ts';
import { PUBLISH_USAGE, runPublish } from './publish.ts';

const USAGE = `Usage: eventwire <command> [options]

Commands:
  controller   reconcile EventStreams and EventSubscriptions
  dispatcher   deliver the events of Ready subscriptions to their sinks over HTTP
  ingress      accept CloudEvents over HTTP and publish them to JetStream
  publish      send one CloudEvent through the ingress or straight to JetStream
  dev          run eventwire locally: a real control plane and nats-server, no cluster needed

controller, dispatcher and ingress are configured by EVENTWIRE_* environment variables
(docs/configuration.md).

Options:
  -h, --help   show help for eventwire or a command
`;

interface Command {
  readonly help: string;
  /** parses its own arguments (the others take only --help) */
  readonly ownArgs?: boolean;
  readonly run: (args: readonly string[]) => Promise<number>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  controller: {
    help: 'Usage: eventwire controller\n\nReconciles EventStreams and EventSubscriptions. Configuration comes from environment variables; see docs/configuration.md.\n',
    run: () => runController(process.env),
  },
  dispatcher: {
    help: 'Usage: eventwire dispatcher\n\nDelivers the events of Ready EventSubscriptions to their sinks. Configuration comes from environment variables; see docs/configuration.md.\n',
    run: () => runDispatcher(process.env),
  },
  ingress: {
    help: 'Usage: eventwire ingress\n\nAccepts CloudEvents at POST /<namespace>/<stream> and publishes them to JetStream. Configuration comes from environment variables; see docs/ingress.md.\n',
    run: () => runIngress(process.env),
  },
  publish: {
    help: PUBLISH_USAGE,
    ownArgs: true,
    run: (args) => runPublish(args, process.env, process.stdout),
  },
  dev: {
    help: 'Usage: eventwire dev\n\nStarts a local control plane and nats-server with the controller, prints how to reach them, and runs until Ctrl-C.\n',
    run: () => runDev(process.env, process.stdout),
  },
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`eventwire: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  if (command.ownArgs) return command.run(rest);
  const { values } = parseArgs({
    args: [...rest],
    options: { help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(command.help);
    return 0;
  }
  return command.run(rest);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `\n  caused by: ${describe(err.cause)}` : '';
  return `${err.message}${cause}`;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`eventwire: ${describe(err)}\n`);
    process.exitCode = 1;
  },
);
