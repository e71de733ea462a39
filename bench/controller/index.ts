// How long 1,000 EventSubscriptions take to become Ready under the controller, against a
// baseline measured in the same run: the bare I/O a controller cannot avoid (create the 1,000
// objects and their 1,000 consumers directly, same concurrency); and the controller's memory
// (RSS of the controller process) idle and with 1,000 subscriptions.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { AckPolicy, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startControlPlane } from '../../src/devenv/control-plane.ts';
import { startNats } from '../../src/devenv/nats.ts';
import { freePort, waitFor } from '../../src/devenv/processes.ts';
import { defaultCacheDir, requireTools } from '../../src/devenv/tools.ts';
import { installCrds } from '../../test/harness/crds.ts';
import { stopChild } from '../child.ts';
import type { BenchResult, BenchSuite } from '../types.ts';

const COUNT = 1_000;
const CONCURRENCY = 16;
const G = { group: 'eventwire.io', version: 'v1alpha1' };

async function pool<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const item = items[next++];
        if (item !== undefined) await fn(item);
      }
    }),
  );
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

function subscription(ns: string, i: number) {
  return {
    apiVersion: 'eventwire.io/v1alpha1',
    kind: 'EventSubscription',
    metadata: { name: `sub-${i}`, namespace: ns },
    spec: {
      stream: { name: 'bench' },
      filters: [{ exact: { type: `bench.type${i}` } }],
      sink: { uri: 'http://127.0.0.1:9/' },
    },
  };
}

async function countReady(api: CustomObjectsApi, ns: string): Promise<number> {
  const list = (await api.listNamespacedCustomObject({
    ...G,
    namespace: ns,
    plural: 'eventsubscriptions',
  })) as {
    items: { status?: { conditions?: { type: string; status: string }[] } }[];
  };
  return list.items.filter((s) =>
    s.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  ).length;
}

async function run(): Promise<BenchResult[]> {
  const tools = await requireTools({
    cacheDir: defaultCacheDir(process.env),
    kubebuilderAssets: process.env.KUBEBUILDER_ASSETS,
    path: process.env.PATH,
  });
  const [cp, nats] = await Promise.all([
    startControlPlane({ tools }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  const api = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  const controller = { proc: undefined as ReturnType<typeof spawn> | undefined };
  try {
    await installCrds(kc);
    for (const ns of ['bench-base', 'bench-ctl'])
      await core.createNamespace({ body: { metadata: { name: ns } } });
    const idx = Array.from({ length: COUNT }, (_, i) => i);

    // baseline: the objects and consumers, created directly
    await jsm.streams.add({
      name: 'BENCH_BASE',
      subjects: ['benchbase.>'],
      storage: 'memory',
    });
    let t = performance.now();
    await pool(idx, CONCURRENCY, async (i) => {
      await api.createNamespacedCustomObject({
        ...G,
        namespace: 'bench-base',
        plural: 'eventsubscriptions',
        body: subscription('bench-base', i),
      });
      await jsm.consumers.add('BENCH_BASE', {
        durable_name: `base-${i}`,
        ack_policy: AckPolicy.Explicit,
        filter_subjects: [`benchbase.bench.type${i}`],
      });
    });
    const baselineMs = performance.now() - t;

    // the controller, as its own process
    const opsPort = await freePort();
    const heapUsedMiB = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
      return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? 0) / 1024 / 1024;
    };
    const proc = spawn(
      process.execPath,
      [join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts'), 'controller'],
      {
        env: {
          ...process.env,
          KUBECONFIG: cp.kubeconfigPath,
          EVENTWIRE_NATS_URL: nats.url,
          EVENTWIRE_LEADER_ELECT: 'false',
          EVENTWIRE_OPS_HOST: '127.0.0.1',
          EVENTWIRE_OPS_PORT: String(opsPort),
          EVENTWIRE_LOG_LEVEL: 'warn',
          EVENTWIRE_RESOURCE_SELECTOR: 'bench=controller',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    controller.proc = proc;
    const pid = proc.pid ?? 0;
    await api.createNamespacedCustomObject({
      ...G,
      namespace: 'bench-ctl',
      plural: 'eventstreams',
      body: {
        apiVersion: 'eventwire.io/v1alpha1',
        kind: 'EventStream',
        metadata: { name: 'bench', namespace: 'bench-ctl', labels: { bench: 'controller' } },
        spec: { subjectPrefix: 'benchctl', storage: 'memory' },
      },
    });
    await new Promise((r) => setTimeout(r, 3_000));
    const idleRss = rssMiB(pid);
    const idleHeap = await heapUsedMiB();
    t = performance.now();
    await pool(idx, CONCURRENCY, async (i) => {
      const body = subscription('bench-ctl', i);
      await api.createNamespacedCustomObject({
        ...G,
        namespace: 'bench-ctl',
        plural: 'eventsubscriptions',
        body: { ...body, metadata: { ...body.metadata, labels: { bench: 'controller' } } },
      });
    });
    await waitFor(
      '1,000 Ready subscriptions',
      async () => (await countReady(api, 'bench-ctl')) === COUNT,
      {
        timeoutMs: 600_000,
        intervalMs: 500,
      },
    );
    const readyMs = performance.now() - t;
    const busyRss = rssMiB(pid);
    // after a few resync periods: what the 1,000 subscriptions keep, not what reconciling them churned
    await new Promise((r) => setTimeout(r, 20_000));
    const settledHeap = await heapUsedMiB();
    return [
      {
        name: `${COUNT} subscriptions Ready (controller)`,
        value: readyMs / 1000,
        unit: 's',
        baseline: { name: 'create objects + consumers directly', value: baselineMs / 1000 },
      },
      {
        name: `controller RSS with ${COUNT} subscriptions`,
        value: busyRss,
        unit: 'MiB',
        baseline: { name: 'controller RSS idle', value: idleRss },
      },
      {
        name: `controller heap used with ${COUNT} subscriptions (settled)`,
        value: settledHeap,
        unit: 'MiB',
        baseline: { name: 'controller heap used idle', value: idleHeap },
      },
    ];
  } finally {
    // the controller first, while the API server and NATS it talks to are still up
    if (controller.proc) await stopChild(controller.proc, 'the controller');
    await nc.close();
    await Promise.all([cp.stop(), nats.dispose()]);
  }
}

const suite: BenchSuite = {
  description: 'controller: time for 1,000 EventSubscriptions to become Ready, and memory',
  run,
};
export default suite;
