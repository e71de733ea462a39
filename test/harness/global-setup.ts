// Vitest global setup for the integration project: one real control plane and one real
// nats-server shared by the test files; tests that break a service start their own.
import type { TestProject } from 'vitest/node';
import { startControlPlane } from '../../src/devenv/control-plane.ts';
import { startNats } from '../../src/devenv/nats.ts';
import { harnessTools } from './tools.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    natsUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const tools = await harnessTools();
  const started = Date.now();
  const [cp, ns] = await Promise.allSettled([
    startControlPlane({ tools }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  if (cp.status === 'rejected' || ns.status === 'rejected') {
    // stop whichever did start before failing the run
    await Promise.all([
      cp.status === 'fulfilled' ? cp.value.stop() : undefined,
      ns.status === 'fulfilled' ? ns.value.dispose() : undefined,
    ]);
    throw cp.status === 'rejected' ? cp.reason : (ns as PromiseRejectedResult).reason;
  }
  const controlPlane = cp.value;
  const nats = ns.value;
  process.stdout.write(
    `[harness] kube-apiserver ${controlPlane.versions.kubeApiserver} at ${controlPlane.server}, ` +
      `etcd ${controlPlane.versions.etcd}, nats-server ${nats.version} at ${nats.url} ` +
      `(started in ${Date.now() - started} ms)\n`,
  );
  project.provide('kubeconfigPath', controlPlane.kubeconfigPath);
  project.provide('natsUrl', nats.url);
  return async () => {
    await Promise.all([controlPlane.stop(), nats.dispose()]);
  };
}
