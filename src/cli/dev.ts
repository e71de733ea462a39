// `eventwire dev`: a local control plane and nats-server, for trying eventwire without a
// cluster. The controller, dispatcher and ingress join this process as they land.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { startControlPlane } from '../devenv/control-plane.ts';
import { startNats } from '../devenv/nats.ts';
import { defaultCacheDir, ensureTools } from '../devenv/tools.ts';

export async function runDev(env: NodeJS.ProcessEnv, out: Writable): Promise<number> {
  const say = (line: string): void => {
    out.write(`${line}\n`);
  };
  say('[dev] resolving binaries (the first run builds them, which takes a few minutes)');
  const tools = await ensureTools({
    cacheDir: defaultCacheDir(env),
    kubebuilderAssets: env.KUBEBUILDER_ASSETS,
    path: env.PATH,
    log: say,
  });
  const [controlPlane, nats] = await Promise.all([
    startControlPlane({ tools }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  say(`[dev] kube-apiserver ${controlPlane.versions.kubeApiserver} at ${controlPlane.server}`);
  say(`[dev] nats-server ${nats.version} with JetStream at ${nats.url}`);
  say(`[dev] in another shell: export KUBECONFIG=${controlPlane.kubeconfigPath}`);
  say(`[dev] kubectl: ${tools.kubectl.path}`);
  say('[dev] ready; press Ctrl-C to stop');
  await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
  say('[dev] stopping');
  await Promise.all([controlPlane.stop(), nats.dispose()]);
  return 0;
}
