// The Kubernetes scenario of each component, run as a child process of the real CLI
// (`node src/cli/main.ts <component>`, as in the image) with a kubeconfig holding a real
// token of a ServiceAccount, so the API server authorizes exactly what that account's RBAC
// grants. A scenario resolves true when the component did everything it must within the
// time limit, false otherwise; the child is always killed (by its own pid) afterwards.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
} from '@kubernetes/client-node';
import { makeEvent, toHttpRequest } from '../../../src/cloudevents/index.ts';
import { freePort } from '../../harness/index.ts';
import { startSink } from '../../harness/sink.ts';
import { event, makeStream, natsAt, publish, writeReadyStatus } from '../dispatcher/helpers.ts';
import { repoRoot } from './helpers.ts';

const group = 'eventwire.io';
const version = 'v1alpha1';

/** Create an eventwire resource in `ns`. */
async function createResource(
  custom: CustomObjectsApi,
  ns: string,
  kind: 'EventStream' | 'EventSubscription',
  metadata: { name: string; labels?: Record<string, string> },
  spec: object,
): Promise<void> {
  await custom.createNamespacedCustomObject({
    group,
    version,
    namespace: ns,
    plural: `${kind.toLowerCase()}s`,
    body: { apiVersion: `${group}/${version}`, kind, metadata, spec },
  });
}

export interface ScenarioInput {
  readonly admin: KubeConfig;
  /** kubeconfig file authenticating as the component's ServiceAccount */
  readonly kubeconfig: string;
  readonly namespace: string;
  readonly natsUrl: string;
  readonly timeoutMs: number;
  /** the Lease name the chart configures */
  readonly leaseName: string;
  /** where the controller's Lease lives (default: namespace) */
  readonly leaseNamespace?: string;
  /** a token allowed to publish (ingress scenario) */
  readonly producerToken?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds or the deadline passes. */
async function until(deadline: number, check: () => Promise<boolean>): Promise<boolean> {
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(250);
  }
  return false;
}

function runComponent(component: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [join(repoRoot, 'src', 'cli', 'main.ts'), component], {
    env: { PATH: process.env.PATH ?? '', EVENTWIRE_LOG_LEVEL: 'warn', ...env },
    stdio: process.env.EVENTWIRE_TEST_LOGS ? ['ignore', 'inherit', 'inherit'] : 'ignore',
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

const conditionTrue = (obj: unknown, type = 'Ready') =>
  (
    (obj as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions ??
    []
  ).some((c) => c.type === type && c.status === 'True');

/** Controller: streams and subscriptions Ready (finalizers, status), managed Service created
 * and updated, Kubernetes Events recorded, Lease acquired and renewed. */
export async function controllerScenario(input: ScenarioInput): Promise<boolean> {
  const { admin, namespace: ns } = input;
  const leaseNs = input.leaseNamespace ?? ns;
  const id = randomUUID().slice(0, 8);
  const scope = `rbac-${id}`;
  const custom = admin.makeApiClient(CustomObjectsApi);
  const labels = { 'eventwire.io/test-scope': scope };
  const child = runComponent('controller', {
    KUBECONFIG: input.kubeconfig,
    EVENTWIRE_NATS_URL: input.natsUrl,
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: String(await freePort()),
    EVENTWIRE_RESOURCE_SELECTOR: `eventwire.io/test-scope=${scope}`,
    EVENTWIRE_RESYNC_PERIOD: '2s',
    EVENTWIRE_LEADER_ELECT: 'true',
    EVENTWIRE_NAMESPACE: leaseNs,
    EVENTWIRE_LEASE_NAME: input.leaseName,
    EVENTWIRE_LEASE_DURATION: '3s',
    EVENTWIRE_RENEW_DEADLINE: '2s',
    EVENTWIRE_RETRY_PERIOD: '500ms',
    POD_NAME: `controller-${id}`,
  });
  const deadline = Date.now() + input.timeoutMs;
  try {
    await createResource(
      custom,
      ns,
      'EventStream',
      { name: 'orders', labels },
      { subjectPrefix: `rbac${id}`, streamName: `RBAC_${id}`, storage: 'memory' },
    );
    await admin.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'handler' },
        spec: {
          selector: { matchLabels: { app: 'handler' } },
          template: {
            metadata: { labels: { app: 'handler' } },
            spec: {
              containers: [{ name: 'h', image: 'handler', ports: [{ containerPort: 8080 }] }],
            },
          },
        },
      },
    });
    for (const name of ['first', 'second']) {
      await createResource(
        custom,
        ns,
        'EventSubscription',
        { name, labels },
        {
          stream: { name: 'orders' },
          sink: {
            ref: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'handler', port: 8080 },
            uri: '/events',
          },
        },
      );
    }
    const get = (plural: string, name: string): Promise<unknown> =>
      custom.getNamespacedCustomObject({ group, version, namespace: ns, plural, name });
    const core = admin.makeApiClient(CoreV1Api);
    const leases = admin.makeApiClient(CoordinationV1Api);
    const ready = await until(deadline, async () => {
      const [s, a, b] = await Promise.all([
        get('eventstreams', 'orders'),
        get('eventsubscriptions', 'first'),
        get('eventsubscriptions', 'second'),
      ]);
      if (!conditionTrue(s) || !conditionTrue(a) || !conditionTrue(b)) return false;
      const svc = await core.readNamespacedService({ name: 'handler', namespace: ns });
      if ((svc.metadata?.ownerReferences ?? []).length !== 2) return false; // created, then updated
      const events = await core.listNamespacedEvent({ namespace: ns });
      return ['orders', 'first', 'second'].every((n) =>
        events.items.some((e) => e.involvedObject.name === n && e.type === 'Normal'),
      );
    });
    if (!ready) return false;
    // leadership holds past the renew deadline: the Lease was renewed (update)
    const first = await leases.readNamespacedLease({ name: input.leaseName, namespace: leaseNs });
    await sleep(3_000);
    const later = await leases.readNamespacedLease({ name: input.leaseName, namespace: leaseNs });
    return (
      child.exitCode === null &&
      later.spec?.holderIdentity === `controller-${id}` &&
      String(later.spec.renewTime) !== String(first.spec?.renewTime)
    );
  } finally {
    await stop(child);
  }
}

/** Dispatcher: delivers the events of the Ready subscriptions it learns from its informers,
 * records the Warning Event EventTerminated for a terminal failure without a dead letter, and
 * adds a dead letter to the subscription's status.stats.deadLettered (get + update status). */
export async function dispatcherScenario(input: ScenarioInput): Promise<boolean> {
  const { admin, namespace: ns } = input;
  const custom = admin.makeApiClient(CustomObjectsApi);
  const n = await natsAt(input.natsUrl);
  const sink = await startSink(() => ({ status: 400 }));
  const s = await makeStream(n);
  const dl = await makeStream(n); // its dead letters go to its own dead-letter stream
  const ops = await freePort();
  const child = runComponent('dispatcher', {
    KUBECONFIG: input.kubeconfig,
    EVENTWIRE_NATS_URL: input.natsUrl,
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: String(ops),
    EVENTWIRE_WATCH_NAMESPACE: ns,
    EVENTWIRE_STATS_FLUSH_INTERVAL: '200ms',
  });
  const deadline = Date.now() + input.timeoutMs;
  try {
    await createResource(custom, ns, 'EventStream', { name: 'shop' }, { subjectPrefix: s.prefix });
    await createResource(
      custom,
      ns,
      'EventSubscription',
      { name: 'orders' },
      { stream: { name: 'shop' }, sink: { uri: `${sink.url}/events` }, delivery: { retry: 0 } },
    );
    await writeReadyStatus(
      custom,
      { namespace: ns, plural: 'eventsubscriptions', name: 'orders' },
      { sinkUri: `${sink.url}/events`, consumer: { stream: s.name, name: s.consumer } },
    );
    await createResource(
      custom,
      ns,
      'EventSubscription',
      { name: 'dead-lettered' },
      {
        stream: { name: 'shop' },
        sink: { uri: `${sink.url}/dl` },
        delivery: { retry: 0, deadLetter: { subject: dl.dlSubject } },
      },
    );
    await writeReadyStatus(
      custom,
      { namespace: ns, plural: 'eventsubscriptions', name: 'dead-lettered' },
      { sinkUri: `${sink.url}/dl`, consumer: { stream: dl.name, name: dl.consumer } },
    );
    await publish(n, s.prefix, [event(1)]);
    await publish(n, dl.prefix, [event(2)]);
    const core = admin.makeApiClient(CoreV1Api);
    return await until(deadline, async () => {
      if (sink.requests.length < 2) return false;
      // ready only once both informers (EventSubscriptions, EventStreams) have synced
      const readyz = await fetch(`http://127.0.0.1:${String(ops)}/readyz`);
      if (readyz.status !== 200) return false;
      const events = await core.listNamespacedEvent({ namespace: ns });
      if (!events.items.some((e) => e.reason === 'EventTerminated' && e.type === 'Warning')) {
        return false;
      }
      const counted = (await custom.getNamespacedCustomObject({
        group,
        version,
        namespace: ns,
        plural: 'eventsubscriptions',
        name: 'dead-lettered',
      })) as { status?: { stats?: { deadLettered?: number } } };
      return counted.status?.stats?.deadLettered === 1;
    });
  } finally {
    await stop(child);
    await sink.close();
    await n.nc.close();
  }
}

/** Ingress with authentication: resolves the EventStream through its informer, checks the
 * producer's token (TokenReview) and permission (SubjectAccessReview), and publishes (202). */
export async function ingressScenario(input: ScenarioInput): Promise<boolean> {
  const { admin, namespace: ns } = input;
  const custom = admin.makeApiClient(CustomObjectsApi);
  const n = await natsAt(input.natsUrl);
  const s = await makeStream(n);
  const port = await freePort();
  const child = runComponent('ingress', {
    KUBECONFIG: input.kubeconfig,
    EVENTWIRE_NATS_URL: input.natsUrl,
    EVENTWIRE_INGRESS_HOST: '127.0.0.1',
    EVENTWIRE_INGRESS_PORT: String(port),
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: String(await freePort()),
    EVENTWIRE_INGRESS_AUTH: 'true',
  });
  const deadline = Date.now() + input.timeoutMs;
  try {
    await createResource(custom, ns, 'EventStream', { name: 'shop' }, { subjectPrefix: s.prefix });
    await writeReadyStatus(
      custom,
      { namespace: ns, plural: 'eventstreams', name: 'shop' },
      { streamName: s.name },
      { reason: 'StreamReady', message: 'ok' },
    );
    const req = toHttpRequest(
      makeEvent({ id: randomUUID(), source: '/rbac', type: 'com.example.rbac' }),
      'binary',
    );
    return await until(deadline, async () => {
      const res = await fetch(`http://127.0.0.1:${String(port)}/${ns}/shop`, {
        method: 'POST',
        headers: { ...req.headers, authorization: `Bearer ${input.producerToken ?? ''}` },
        body: req.body,
      });
      return res.status === 202;
    });
  } finally {
    await stop(child);
    await n.nc.close();
  }
}
