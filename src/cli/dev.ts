// `eventwire dev`: the whole of eventwire on one machine without a cluster. A real local
// control plane (etcd, kube-apiserver, kube-controller-manager) and a nats-server with
// JetStream, the CRDs and a default EventStream, and the controller, dispatcher and ingress
// running in this process. Runs until Ctrl-C, then cleans up. `--example shop` also runs the
// shop example (examples/shop): its handlers as local processes, its streams and
// subscriptions, and its events end to end. `--cluster` runs eventwire on a real local
// Kubernetes node instead (dev-cluster.ts).
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { parseControllerConfig } from '../controller/config.ts';
import { startController } from '../controller/controller.ts';
import { startControlPlane, type ControlPlane } from '../devenv/control-plane.ts';
import { installCrds } from '../devenv/crds.ts';
import { startNats, type NatsServer } from '../devenv/nats.ts';
import { freePort, killAllNow } from '../devenv/processes.ts';
import { defaultCacheDir, ensureTools, type ResolvedTools } from '../devenv/tools.ts';
import { parseDispatcherConfig } from '../dispatcher/config.ts';
import { startDispatcher } from '../dispatcher/dispatcher.ts';
import { parseIngressConfig } from '../ingress/config.ts';
import { startIngress } from '../ingress/server.ts';
import { createLogger } from '../observability/logger.ts';
import { describeSummary, startShop } from '../../examples/shop/local.ts';
import { runDevCluster } from './dev-cluster.ts';
import { StopSignals, type StopEvent } from './signals.ts';

export const DEV_STREAM = { namespace: 'default', name: 'default', subjectPrefix: 'events' };

async function createDefaultStream(kc: KubeConfig): Promise<void> {
  await kc.makeApiClient(CoreV1Api).readNamespace({ name: DEV_STREAM.namespace });
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'eventwire.io',
    version: 'v1alpha1',
    plural: 'eventstreams',
    namespace: DEV_STREAM.namespace,
    body: {
      apiVersion: 'eventwire.io/v1alpha1',
      kind: 'EventStream',
      metadata: { name: DEV_STREAM.name, namespace: DEV_STREAM.namespace },
      spec: { subjectPrefix: DEV_STREAM.subjectPrefix, storage: 'file', allowedNamespaces: ['*'] },
    },
  });
}

export const EXAMPLES = ['shop'] as const;
export type ExampleName = (typeof EXAMPLES)[number];

export interface DevOptions {
  /** the ingress port; a free one when 0 */
  readonly ingressPort: number;
  /** an example to run once everything is up */
  readonly example?: ExampleName | undefined;
}

export const DEV_USAGE = `Usage: eventwire dev [--example shop] [--port N]
       eventwire dev --cluster [--example shop]

Starts a local control plane (etcd, kube-apiserver, kube-controller-manager) and a nats-server
with JetStream on free loopback ports, installs the CRDs and the EventStream default/default,
runs the controller, dispatcher and ingress in this process, prints the KUBECONFIG line for
kubectl, and runs until Ctrl-C, then cleans up. The first run builds the pinned binaries.

With --cluster (root on Linux, no Docker needed): builds the images with podman, starts a real
one-node Kubernetes cluster on this machine (containerd, kubelet, kube-proxy, CoreDNS), installs
the chart from this working tree with helm (release eventwire in eventwire-system), prints the
KUBECONFIG and PATH lines for kubectl and helm, and runs until Ctrl-C, then removes the node.

Options:
  --example shop   also run the shop example (examples/shop): its four handlers as local
                   processes, its streams and subscriptions, and its events end to end, showing
                   each delivery as it happens; with --cluster, kubectl apply -k examples/shop
                   and its events through the ingress Service
  --port N         the ingress port (default: a free one); not with --cluster
  --cluster        eventwire on a real local Kubernetes node, as above
  -h, --help       show this help
`;

/** `eventwire dev [options]`: parses the arguments, then runs; 2 for a wrong argument. */
export async function runDevCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
): Promise<number> {
  let values: {
    example?: string | undefined;
    port?: string | undefined;
    cluster?: boolean | undefined;
    help?: boolean | undefined;
  };
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        example: { type: 'string' },
        port: { type: 'string' },
        cluster: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    return usageError(err, (e as Error).message);
  }
  if (values.help === true) {
    out.write(DEV_USAGE);
    return 0;
  }
  const example = values.example;
  if (example !== undefined && !(EXAMPLES as readonly string[]).includes(example)) {
    return usageError(err, `--example ${example}: the examples are ${EXAMPLES.join(', ')}`);
  }
  const port = Number(values.port ?? '0');
  if (values.port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    return usageError(err, `--port ${values.port}: give a TCP port number, 1 to 65535`);
  }
  if (values.cluster === true) {
    if (values.port !== undefined) {
      return usageError(
        err,
        '--cluster and --port cannot be combined: on the local node the ingress is the Service eventwire-ingress (reached at its ClusterIP), not a port on this host',
      );
    }
    return runDevCluster(env, out, err, { example: example as ExampleName | undefined });
  }
  return runDev(env, out, { ingressPort: port, example: example as ExampleName | undefined });
}

function usageError(err: Writable, message: string): number {
  err.write(`eventwire dev: ${message}\nRun eventwire dev --help for the options.\n`);
  return 2;
}

async function runExample(
  cp: ControlPlane,
  ingressBase: string,
  say: (line: string) => void,
  cleanups: Cleanup[],
): Promise<void> {
  say('[shop] starting the shop example: product, cart, inventory and order handlers');
  const shop = await startShop({ kubeConfig: cp.kubeConfig, ingressBase, say });
  cleanups.unshift({ name: 'the shop handlers', run: () => shop.stop() });
  const summary = await shop.run();
  for (const line of describeSummary(summary)) say(line);
  say(
    `[shop] look inside: curl ${shop.handlers.order}/state; publish more with eventwire publish --url ${ingressBase}/shop/shop ...`,
  );
  say(
    `EVENTWIRE_SHOP_DONE ${JSON.stringify({ seconds: summary.seconds, handlers: shop.handlers })}`,
  );
}

/** Controller, dispatcher and ingress in this process; registers their clean-ups. */
async function startComponents(
  cp: ControlPlane,
  natsUrl: string,
  env: NodeJS.ProcessEnv,
  opts: DevOptions,
  cleanups: Cleanup[],
): Promise<number> {
  const level = env.EVENTWIRE_LOG_LEVEL ?? 'warn';
  const common = {
    KUBECONFIG: cp.kubeconfigPath,
    EVENTWIRE_NATS_URL: natsUrl,
    EVENTWIRE_LOG_LEVEL: level,
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: '0',
  };
  const controller = await startController(
    parseControllerConfig({
      ...common,
      EVENTWIRE_LEADER_ELECT: 'false',
      EVENTWIRE_DEFAULT_STREAM: `${DEV_STREAM.namespace}/${DEV_STREAM.name}`,
      EVENTWIRE_RESYNC_PERIOD: '10s',
    }),
    {
      kubeConfig: cp.kubeConfig,
      // the controller retries status-write conflicts at warn level; only errors by default here
      log: createLogger({ component: 'controller', level: env.EVENTWIRE_LOG_LEVEL ?? 'error' }),
    },
  );
  cleanups.unshift({ name: 'the controller', run: () => controller.stop() });
  const dispatcher = await startDispatcher(parseDispatcherConfig(common), {
    kubeConfig: cp.kubeConfig,
    log: createLogger({ component: 'dispatcher', level }),
  });
  cleanups.unshift({ name: 'the dispatcher', run: () => dispatcher.stop(5_000) });
  const port = opts.ingressPort === 0 ? await freePort() : opts.ingressPort;
  const ingress = await startIngress(
    parseIngressConfig({
      ...common,
      EVENTWIRE_INGRESS_HOST: '127.0.0.1',
      EVENTWIRE_INGRESS_PORT: String(port),
    }),
    { kubeConfig: cp.kubeConfig, log: createLogger({ component: 'ingress', level }) },
  );
  cleanups.unshift({ name: 'the ingress', run: () => ingress.close() });
  return ingress.port;
}

/** After the first Ctrl-C (or SIGTERM), dev exits within this, killing what is left. */
export const DEV_STOP_DEADLINE_MS = 20_000;

interface Cleanup {
  readonly name: string;
  readonly run: () => Promise<void>;
}

export function sayStopEvents(say: (line: string) => void): (e: StopEvent) => void {
  return (e) => {
    switch (e.kind) {
      case 'stopping': {
        const why = e.reason === 'parent-exited' ? 'the parent process exited' : e.reason;
        say(`[dev] stopping (${why}; what is left is killed after ${e.deadlineMs / 1000} s)`);
        break;
      }
      case 'second-signal':
        say(`[dev] ${e.signal} again: killing ${e.pending.join(', ')} now`);
        break;
      case 'deadline':
        say(
          `[dev] still stopping after ${e.deadlineMs / 1000} s: ${e.pending.join(', ')}; killing`,
        );
        break;
      case 'emergency-failed':
        say(`[dev] the clean-up failed: ${(e.err as Error).message}`);
        break;
    }
  };
}

/**
 * Runs the clean-ups in order, each one even when the one before failed; a clean-up stays in
 * the list (named when the deadline passes) until it has finished.
 */
async function cleanUp(cleanups: Cleanup[], say: (line: string) => void): Promise<void> {
  for (let c = cleanups[0]; c !== undefined; c = cleanups[0]) {
    try {
      await c.run();
    } catch (err) {
      say(`[dev] stopping ${c.name} failed: ${(err as Error).message}`);
    }
    cleanups.splice(cleanups.indexOf(c), 1);
  }
  // anything a clean-up gave up on, or a start-up interrupted half-way, left behind
  killAllNow();
}

async function startServers(
  tools: ResolvedTools,
  cleanups: Cleanup[],
): Promise<[ControlPlane, NatsServer]> {
  const [cp, nats] = await Promise.allSettled([
    startControlPlane({ tools }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  // the servers stop last, together
  cleanups.push({
    name: 'the control plane and nats-server',
    run: async () => {
      const stopped = await Promise.allSettled([
        cp.status === 'fulfilled' ? cp.value.stop() : undefined,
        nats.status === 'fulfilled' ? nats.value.dispose() : undefined,
      ]);
      for (const r of stopped) if (r.status === 'rejected') throw r.reason;
    },
  });
  if (cp.status === 'rejected') throw cp.reason;
  if (nats.status === 'rejected') throw nats.reason;
  return [cp.value, nats.value];
}

export async function runDev(
  env: NodeJS.ProcessEnv,
  out: Writable,
  opts: DevOptions = { ingressPort: 0 },
): Promise<number> {
  const say = (line: string): void => {
    out.write(`${line}\n`);
  };
  const cleanups: Cleanup[] = [];
  const signals = new StopSignals({
    deadlineMs: DEV_STOP_DEADLINE_MS,
    report: sayStopEvents(say),
    pending: () => cleanups.map((c) => c.name),
    emergency: () => {
      const { killed, removed } = killAllNow();
      say(
        `[dev] killed: ${killed.join(', ') || 'nothing'}; removed: ${removed.join(', ') || 'nothing'}`,
      );
    },
  });
  // a dev run never outlives the terminal or the npm that started it
  signals.stopWhenOrphaned();
  try {
    const running = runUntilStopped(env, say, opts, cleanups, signals);
    // a Ctrl-C during start-up or the example stops at once: what is half-started is cleaned
    // up, and whatever the interrupted start-up fails with afterwards no longer matters
    const stopped = signals.received.then(() => {
      running.catch(() => undefined);
    });
    await Promise.race([running, stopped]);
    return 0;
  } finally {
    signals.beginStop();
    await cleanUp(cleanups, say);
    signals.dispose();
    say('[dev] stopped');
  }
}

async function runUntilStopped(
  env: NodeJS.ProcessEnv,
  say: (line: string) => void,
  opts: DevOptions,
  cleanups: Cleanup[],
  signals: StopSignals,
): Promise<void> {
  say('[dev] resolving binaries (the first run builds them from source: a few minutes)');
  const tools = await ensureTools({
    cacheDir: defaultCacheDir(env),
    kubebuilderAssets: env.KUBEBUILDER_ASSETS,
    path: env.PATH,
    log: say,
  });
  const [cp, nats] = await startServers(tools, cleanups);
  await installCrds(cp.kubeConfig);
  await createDefaultStream(cp.kubeConfig);
  const ingressPort = await startComponents(cp, nats.url, env, opts, cleanups);
  const ingressBase = `http://127.0.0.1:${ingressPort}`;
  const url = `${ingressBase}/${DEV_STREAM.namespace}/${DEV_STREAM.name}`;
  say(
    `[dev] kube-apiserver ${cp.versions.kubeApiserver} at ${cp.server}; nats-server ${nats.version} at ${nats.url}`,
  );
  say(
    '[dev] controller, dispatcher and ingress are running; EventStream default/default is ready for events',
  );
  say(
    `[dev] kubectl:  export KUBECONFIG=${cp.kubeconfigPath}; alias kubectl=${tools.kubectl.path}`,
  );
  say(
    `[dev] publish:  curl -X POST ${url} -H 'ce-specversion: 1.0' -H 'ce-id: 1' -H 'ce-source: /dev' -H 'ce-type: demo.hello' -H 'content-type: application/json' -d '{"hello":"world"}'`,
  );
  say(`[dev] ingress:  ${url}`);
  say('[dev] ready; press Ctrl-C to stop');
  const ready = {
    kubeconfig: cp.kubeconfigPath,
    nats: nats.url,
    ingress: url,
    runDirs: [cp.runDir, nats.runDir],
    pid: process.pid,
  };
  say(`EVENTWIRE_DEV_READY ${JSON.stringify(ready)}`);
  if (opts.example === 'shop') await runExample(cp, ingressBase, say, cleanups);
  await signals.received;
}
