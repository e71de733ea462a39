// `eventwire controller|dispatcher|ingress` exit on the first SIGTERM within their shutdown
// deadline even when NATS or the API server is already gone (a Pod that ignores SIGTERM
// holds up every rollout), and at once on a second signal. Each component runs as its own
// process against its own control plane and nats-server, which the test kills in each order.
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventStream, EventSubscription } from '../../../src/api/types.ts';
import { startControlPlane, type ControlPlane } from '../../../src/devenv/control-plane.ts';
import { startNats, type NatsServer } from '../../../src/devenv/nats.ts';
import { freePort, waitFor } from '../../../src/devenv/processes.ts';
import {
  Resources,
  ensureNamespace,
  scoped,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { startSink, type TestSink } from '../../harness/sink.ts';
import { harnessTools } from '../../harness/tools.ts';
import { leftovers, spawnGroup, type GroupProcess } from './process-group.ts';

const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

/** The documented deadlines (docs/operations.md), plus room for a loaded 2-core machine. */
const CONTROLLER_DEADLINE_MS = 15_000;
const INGRESS_DEADLINE_MS = 15_000;
const DISPATCHER_GRACE_MS = 5_000;
const DISPATCHER_DEADLINE_MS = DISPATCHER_GRACE_MS + 8_000;
const MARGIN_MS = 10_000;

interface Component {
  readonly name: 'controller' | 'dispatcher' | 'ingress';
  readonly proc: GroupProcess;
  readonly opsPort: number;
  readonly deadlineMs: number;
}

const started: GroupProcess[] = [];

async function startComponent(
  name: Component['name'],
  env: Record<string, string>,
  deadlineMs: number,
): Promise<Component> {
  const opsPort = await freePort();
  const proc = spawnGroup(process.execPath, [main, name], {
    ...process.env,
    EVENTWIRE_LOG_LEVEL: 'info',
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: String(opsPort),
    ...env,
  });
  started.push(proc);
  await waitFor(
    `${name} /readyz`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`${name} exited:\n${proc.output()}`);
      return (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).ok;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  return { name, proc, opsPort, deadlineMs };
}

interface System {
  readonly cp: ControlPlane;
  readonly nats: NatsServer;
  readonly components: Component[];
  readonly ingressUrl: string;
}

function stream(ns: string): EventStream {
  return {
    apiVersion: 'eventwire.io/v1alpha1',
    kind: 'EventStream',
    metadata: { name: 'orders', namespace: ns },
    spec: { subjectPrefix: 'orders', storage: 'memory' },
  };
}

function subscription(ns: string, sinkUrl: string): EventSubscription {
  return {
    apiVersion: 'eventwire.io/v1alpha1',
    kind: 'EventSubscription',
    metadata: { name: 'all', namespace: ns },
    spec: { stream: { name: 'orders' }, sink: { uri: `${sinkUrl}/all` } },
  };
}

async function publish(url: string, id: string): Promise<number> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'ce-specversion': '1.0',
      'ce-id': id,
      'ce-source': '/shutdown-test',
      'ce-type': 'order.created',
      'content-type': 'application/json',
    },
    body: '{}',
  });
  return res.status;
}

/** A control plane, a nats-server and the three components, delivering to `sink`. */
async function startSystem(sink: TestSink, scenario: string): Promise<System> {
  const tools = await harnessTools();
  const [cp, nats] = await Promise.all([
    startControlPlane({ tools, controllerManager: false }),
    startNats({ tool: tools['nats-server'] }),
  ]);
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  await installCrds(kc);
  const common = { KUBECONFIG: cp.kubeconfigPath, EVENTWIRE_NATS_URL: nats.url };
  const controller = await startComponent(
    'controller',
    {
      ...common,
      // leader election on: stopping releases the lease, against an API server that is gone
      EVENTWIRE_LEADER_ELECT: 'true',
      EVENTWIRE_NAMESPACE: 'default',
      EVENTWIRE_LEASE_NAME: `shutdown-${scenario}`,
      // long enough that it is still leading (and has a lease to hand back) at the SIGTERM
      EVENTWIRE_LEASE_DURATION: '120s',
      EVENTWIRE_RENEW_DEADLINE: '110s',
    },
    CONTROLLER_DEADLINE_MS,
  );
  const dispatcher = await startComponent(
    'dispatcher',
    { ...common, EVENTWIRE_SHUTDOWN_GRACE_PERIOD: `${DISPATCHER_GRACE_MS}ms` },
    DISPATCHER_DEADLINE_MS,
  );
  const port = await freePort();
  const ingress = await startComponent(
    'ingress',
    { ...common, EVENTWIRE_INGRESS_HOST: '127.0.0.1', EVENTWIRE_INGRESS_PORT: String(port) },
    INGRESS_DEADLINE_MS,
  );
  const res = new Resources(kc);
  await res.createStream(stream('default'));
  await res.createSub(subscription('default', sink.url));
  await waitForCondition('the subscription', () => res.getSub('default', 'all'), 'Ready', 'True');
  const ingressUrl = `http://127.0.0.1:${port}/default/orders`;
  // an event end to end: the ingress publishes and the dispatcher's worker delivers
  const id = `probe-${scenario}`;
  await waitFor(
    'an event through the ingress and the dispatcher',
    async () => {
      if (!sink.delivered().some((e) => e.id === id)) await publish(ingressUrl, id);
      return sink.delivered().some((e) => e.id === id);
    },
    { timeoutMs: 60_000, intervalMs: 1_000 },
  );
  return { cp, nats, components: [controller, dispatcher, ingress], ingressUrl };
}

/** One SIGTERM to each component at the same moment; each must exit 0 within its deadline. */
async function terminateAll(system: System): Promise<void> {
  for (const c of system.components) process.kill(c.proc.pid, 'SIGTERM');
  const exits = await Promise.all(
    system.components.map(async (c) => ({
      c,
      exit: await c.proc.exit(c.deadlineMs + MARGIN_MS),
    })),
  );
  for (const { c, exit } of exits) {
    expect(exit, `${c.name} still running after one SIGTERM:\n${c.proc.output()}`).toEqual({
      code: 0,
      signal: null,
    });
    expect(await leftovers(c.proc.pid, [])).toEqual([]);
  }
}

describe('component shutdown with NATS or the API server gone', () => {
  let sink: TestSink;
  const systems: System[] = [];
  beforeAll(async () => {
    sink = await startSink();
  });
  afterEach(async () => {
    for (const p of started.splice(0)) p.killGroup();
    for (const s of systems.splice(0)) await Promise.all([s.cp.stop(), s.nats.dispose()]);
  });
  afterAll(async () => {
    await sink.close();
  });

  it('exits on the first SIGTERM when nats-server is killed (the API server is up)', async () => {
    const system = await startSystem(sink, 'nats');
    systems.push(system);
    await system.nats.kill();
    await terminateAll(system);
  }, 240_000);

  it('exits on the first SIGTERM when nats-server is killed, then the control plane stopped', async () => {
    const system = await startSystem(sink, 'nats-then-api');
    systems.push(system);
    await system.nats.kill();
    await system.cp.stop();
    await terminateAll(system);
  }, 240_000);

  it('exits on the first SIGTERM when the control plane is stopped, then nats-server killed', async () => {
    const system = await startSystem(sink, 'api-then-nats');
    systems.push(system);
    await system.cp.stop();
    await system.nats.kill();
    await terminateAll(system);
  }, 240_000);
});

describe('a second signal', () => {
  it('makes a draining dispatcher exit at once', async () => {
    const kubeconfigPath = inject('kubeconfigPath');
    const natsUrl = inject('natsUrl');
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    const ns = 'shutdown-second-signal';
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    const controller = await startTestController({ kubeconfigPath, natsUrl, scope: ns });
    // the sink never answers: the delivery stays in flight for the whole grace period
    const sink = await startSink(() => ({ hang: true }));
    try {
      const res = new Resources(kc);
      await res.createStream(
        scoped({ ...stream(ns), spec: { subjectPrefix: ns, storage: 'memory' } }, ns),
      );
      await res.createSub(scoped(subscription(ns, sink.url), ns));
      await waitForCondition('the subscription', () => res.getSub(ns, 'all'), 'Ready', 'True');
      const dispatcher = await startComponent(
        'dispatcher',
        {
          KUBECONFIG: kubeconfigPath,
          EVENTWIRE_NATS_URL: natsUrl,
          EVENTWIRE_WATCH_NAMESPACE: ns,
          EVENTWIRE_SHUTDOWN_GRACE_PERIOD: '120s',
        },
        0,
      );
      const ingressPort = await freePort();
      const ingress = await startComponent(
        'ingress',
        {
          KUBECONFIG: kubeconfigPath,
          EVENTWIRE_NATS_URL: natsUrl,
          EVENTWIRE_INGRESS_HOST: '127.0.0.1',
          EVENTWIRE_INGRESS_PORT: String(ingressPort),
        },
        INGRESS_DEADLINE_MS,
      );
      expect(await publish(`http://127.0.0.1:${ingressPort}/${ns}/orders`, 'slow')).toBe(202);
      await waitFor('the delivery to be in flight', () => Promise.resolve(sink.inProgress > 0), {
        timeoutMs: 30_000,
      });
      process.kill(ingress.proc.pid, 'SIGTERM');
      process.kill(dispatcher.proc.pid, 'SIGTERM');
      await dispatcher.proc.waitFor(/dispatcher stopping/, 10_000);
      // still draining: the grace period is two minutes
      expect(await dispatcher.proc.exit(1_000)).toBeUndefined();
      process.kill(dispatcher.proc.pid, 'SIGTERM');
      // 128 + SIGTERM, as a shell reports a terminated command
      expect(await dispatcher.proc.exit(MARGIN_MS), dispatcher.proc.output()).toEqual({
        code: 143,
        signal: null,
      });
      expect(await ingress.proc.exit(INGRESS_DEADLINE_MS + MARGIN_MS)).toEqual({
        code: 0,
        signal: null,
      });
    } finally {
      for (const p of started.splice(0)) p.killGroup();
      await sink.close();
      await controller.stop();
    }
  }, 240_000);
});
