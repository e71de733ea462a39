// `eventwire dev`: the whole of eventwire on one machine without a cluster. A real local
// control plane (etcd, kube-apiserver, kube-controller-manager) and a nats-server with
// JetStream, the CRDs and a default EventStream, and the controller, dispatcher and ingress
// running in this process. Runs until Ctrl-C, then cleans up.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { parseControllerConfig } from '../controller/config.ts';
import { startController } from '../controller/controller.ts';
import { startControlPlane, type ControlPlane } from '../devenv/control-plane.ts';
import { installCrds } from '../devenv/crds.ts';
import { startNats } from '../devenv/nats.ts';
import { freePort } from '../devenv/processes.ts';
import { defaultCacheDir, ensureTools } from '../devenv/tools.ts';
import { parseDispatcherConfig } from '../dispatcher/config.ts';
import { startDispatcher } from '../dispatcher/dispatcher.ts';
import { parseIngressConfig } from '../ingress/config.ts';
import { startIngress } from '../ingress/server.ts';
import { createLogger } from '../observability/logger.ts';

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

export interface DevOptions {
  /** the ingress port; a free one when 0 */
  readonly ingressPort: number;
}

/** Controller, dispatcher and ingress in this process; registers their clean-ups. */
async function startComponents(
  cp: ControlPlane,
  natsUrl: string,
  env: NodeJS.ProcessEnv,
  opts: DevOptions,
  cleanups: (() => Promise<void>)[],
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
    { kubeConfig: cp.kubeConfig, log: createLogger({ component: 'controller', level }) },
  );
  cleanups.unshift(() => controller.stop());
  const dispatcher = await startDispatcher(parseDispatcherConfig(common), {
    kubeConfig: cp.kubeConfig,
    log: createLogger({ component: 'dispatcher', level }),
  });
  cleanups.unshift(() => dispatcher.stop(5_000));
  const port = opts.ingressPort === 0 ? await freePort() : opts.ingressPort;
  const ingress = await startIngress(
    parseIngressConfig({
      ...common,
      EVENTWIRE_INGRESS_HOST: '127.0.0.1',
      EVENTWIRE_INGRESS_PORT: String(port),
    }),
    { kubeConfig: cp.kubeConfig, log: createLogger({ component: 'ingress', level }) },
  );
  cleanups.unshift(() => ingress.close());
  return ingress.port;
}

export async function runDev(
  env: NodeJS.ProcessEnv,
  out: Writable,
  opts: DevOptions = { ingressPort: 0 },
): Promise<number> {
  const say = (line: string): void => {
    out.write(`${line}\n`);
  };
  say('[dev] resolving binaries (the first run builds them from source: a few minutes)');
  const tools = await ensureTools({
    cacheDir: defaultCacheDir(env),
    kubebuilderAssets: env.KUBEBUILDER_ASSETS,
    path: env.PATH,
    log: say,
  });
  const [cp, nats] = await Promise.all([
    startControlPlane({ tools }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  const cleanups: (() => Promise<void>)[] = [() => cp.stop(), () => nats.dispose()];
  try {
    await installCrds(cp.kubeConfig);
    await createDefaultStream(cp.kubeConfig);
    const ingressPort = await startComponents(cp, nats.url, env, opts, cleanups);
    const url = `http://127.0.0.1:${ingressPort}/${DEV_STREAM.namespace}/${DEV_STREAM.name}`;
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
    say(
      `EVENTWIRE_DEV_READY ${JSON.stringify({ kubeconfig: cp.kubeconfigPath, nats: nats.url, ingress: url })}`,
    );
    await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
    say('[dev] stopping');
    return 0;
  } finally {
    for (const cleanup of cleanups) await cleanup();
  }
}
