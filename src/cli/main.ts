#!/usr/bin/env node
// The eventwire command: `eventwire <command> [options]`. This entry point is the only place
// that reads process.env; each command parses its configuration once into a typed object.
import { parseArgs } from 'node:util';
import { runController } from './controller.ts';
import { DEV_USAGE, runDevCommand } from './dev.ts';
import { runDispatcher } from './dispatcher.ts';
import { runIngress } from './ingress.ts';
import { PUBLISH_USAGE, runPublish } from './publish.ts';
import { STATUS_USAGE, runStatus } from './status.ts';
import { TAIL_USAGE, runTail } from './tail.ts';
import { UNINSTALL_CLEANUP_USAGE, runUninstallCleanup } from './uninstall-cleanup.ts';

const USAGE = `Usage: eventwire <command> [options]

Commands:
  controller   reconcile EventStreams and EventSubscriptions
  dispatcher   deliver the events of Ready subscriptions to their sinks over HTTP
  ingress      accept CloudEvents over HTTP and publish them to JetStream
  publish      send one CloudEvent through the ingress or straight to JetStream
  tail         print the CloudEvents of an EventStream as they arrive
  status       list EventSubscriptions with readiness, sink and lag
  dev          run eventwire locally: a real control plane and nats-server, no cluster needed
               (--example shop runs the shop example end to end)
  uninstall-cleanup
               what the chart's uninstall hooks run: no resource keeps the controller's
               finalizer once the controller is gone

controller, dispatcher and ingress are configured by EVENTWIRE_* environment variables
(docs/configuration.md).

Options:
  -h, --help   show help for eventwire or a command
`;

interface Command {
  readonly help: string;
  /** parses its own arguments (the others take only --help) */
  readonly ownArgs?: boolean;
  /**
   * a long-running command: the process exits as soon as it returns, so that nothing its
   * stop gave up on (a request to a server that is gone, a keep-alive socket) keeps it alive
   */
  readonly exitsWhenDone?: boolean;
  readonly run: (args: readonly string[]) => Promise<number>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  controller: {
    help: 'Usage: eventwire controller\n\nReconciles EventStreams and EventSubscriptions. Configuration comes from environment variables; see docs/configuration.md.\n',
    exitsWhenDone: true,
    run: () => runController(process.env),
  },
  dispatcher: {
    help: 'Usage: eventwire dispatcher\n\nDelivers the events of Ready EventSubscriptions to their sinks. Configuration comes from environment variables; see docs/configuration.md.\n',
    exitsWhenDone: true,
    run: () => runDispatcher(process.env),
  },
  ingress: {
    help: 'Usage: eventwire ingress\n\nAccepts CloudEvents at POST /<namespace>/<stream> and publishes them to JetStream. Configuration comes from environment variables; see docs/ingress.md.\n',
    exitsWhenDone: true,
    run: () => runIngress(process.env),
  },
  publish: {
    help: PUBLISH_USAGE,
    ownArgs: true,
    run: (args) => runPublish(args, process.env, process.stdout),
  },
  tail: {
    help: TAIL_USAGE,
    ownArgs: true,
    run: (args) => runTail(args, process.env, process.stdout, process.stderr),
  },
  status: {
    help: STATUS_USAGE,
    ownArgs: true,
    run: (args) => runStatus(args, process.env, process.stdout, process.stderr),
  },
  dev: {
    help: DEV_USAGE,
    ownArgs: true,
    exitsWhenDone: true,
    run: (args) => runDevCommand(args, process.env, process.stdout, process.stderr),
  },
  'uninstall-cleanup': {
    help: UNINSTALL_CLEANUP_USAGE,
    ownArgs: true,
    // a Job's container: exit as soon as done, whatever keep-alive sockets remain
    exitsWhenDone: true,
    run: (args) => runUninstallCleanup(args, process.env, process.stdout, process.stderr),
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
  let values: { help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: [...rest],
      options: { help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    // a wrong argument: say which, show the command's help, exit 2 like the other usage errors
    process.stderr.write(`eventwire ${name}: ${(err as Error).message}\n\n${command.help}`);
    return 2;
  }
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

const argv = process.argv.slice(2);
const exitsWhenDone = COMMANDS[argv[0] ?? '']?.exitsWhenDone === true;
main(argv).then(
  (code) => {
    process.exitCode = code;
    if (exitsWhenDone) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`eventwire: ${describe(err)}\n`);
    process.exitCode = 1;
    if (exitsWhenDone) process.exit(1);
  },
);
