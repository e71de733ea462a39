// Faults under a steady publish load from a Pod through the ingress Service: the dispatcher
// Pod force-deleted, the handler Pod killed, and `helm upgrade` to another image tag. Every
// event the ingress acknowledged (202) must reach the handler; duplicates are counted and
// reported, not failed (at-least-once). The handler records on the node's disk what it
// acknowledged, so a killed handler Pod does not forget it.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { retagOnNode } from '../backend.ts';
import { getFromPod, isReady, podsOf, until } from '../kube.ts';
import { helm, kubectl, repoRoot } from '../shell.ts';
import { NS } from './install.ts';

const FNS = 'e2e-faults';
const fixtures = join(repoRoot, 'test', 'e2e', 'fixtures');
const runId = randomUUID().slice(0, 8);

const manifests = `
apiVersion: eventwire.io/v1alpha1
kind: EventStream
metadata: { name: faults, namespace: ${FNS} }
spec: { subjectPrefix: faults, storage: file }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: recorder, namespace: ${FNS} }
spec:
  replicas: 1
  selector: { matchLabels: { app: recorder } }
  template:
    metadata: { labels: { app: recorder } }
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: recorder
          image: node:24-alpine
          command: [node, /fixtures/recorder.ts]
          ports: [{ name: http, containerPort: 8080 }]
          readinessProbe: { httpGet: { path: /healthz, port: http }, periodSeconds: 1 }
          volumeMounts:
            - { name: fixtures, mountPath: /fixtures }
            - { name: data, mountPath: /data }
      volumes:
        - { name: fixtures, configMap: { name: fixtures } }
        # the ledger outlives the Pod: a killed handler must not forget what it acknowledged
        - { name: data, hostPath: { path: /tmp/eventwire-e2e-${runId}, type: DirectoryOrCreate } }
---
apiVersion: eventwire.io/v1alpha1
kind: EventSubscription
metadata: { name: recorder, namespace: ${FNS} }
spec:
  stream: { name: faults }
  startFrom: all
  sink:
    ref: { apiVersion: apps/v1, kind: Deployment, name: recorder, port: http }
  delivery:
    timeout: 5s
    retry: 60
    backoffDelay: 500ms
    backoffMax: 5s
    maxInFlight: 16
    ordering: key
    orderingKey: key
`;

interface Ledger {
  readonly received: Map<string, number>;
  /** when each delivery arrived, by event id */
  readonly arrivals: { readonly id: string; readonly at: number }[];
}

async function ledger(): Promise<Ledger> {
  const text = await getFromPod(FNS, 'deploy/recorder', '/ledger');
  const received = new Map<string, number>();
  const arrivals: { id: string; at: number }[] = [];
  for (const line of text.split('\n').filter(Boolean)) {
    const { id, at } = JSON.parse(line) as { id: string; at: number };
    received.set(id, (received.get(id) ?? 0) + 1);
    arrivals.push({ id, at });
  }
  return { received, arrivals };
}

async function applyObject(obj: object): Promise<void> {
  const file = join(await mkdtemp(join(tmpdir(), 'eventwire-e2e-')), 'object.json');
  await writeFile(file, JSON.stringify(obj));
  await kubectl(['apply', '-f', file]);
}

/** Start a publisher Pod: `count` events at `rate`/s with ids `<prefix>-1..count`. */
async function startPublisher(prefix: string, count: number, rate: number): Promise<void> {
  await applyObject({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `publisher-${prefix}`, namespace: FNS },
    spec: {
      restartPolicy: 'Never',
      containers: [
        {
          name: 'publisher',
          image: 'node:24-alpine',
          command: ['node', '/fixtures/publisher.ts'],
          env: Object.entries({
            URL: `http://eventwire-ingress.${NS}.svc.cluster.local/${FNS}/faults`,
            COUNT: String(count),
            RATE: String(rate),
            PREFIX: prefix,
          }).map(([name, value]) => ({ name, value })),
          volumeMounts: [{ name: 'fixtures', mountPath: '/fixtures' }],
        },
      ],
      volumes: [{ name: 'fixtures', configMap: { name: 'fixtures' } }],
    },
  });
}

/** Wait for the publisher to finish; its last line reports what was acknowledged. */
async function publisherDone(
  prefix: string,
): Promise<{ count: number; retries: number; statuses: object }> {
  const line = await until(
    `publisher-${prefix} done`,
    async () => {
      const log = await kubectl(['-n', FNS, 'logs', `publisher-${prefix}`]);
      return /^DONE (.*)$/m.exec(log)?.[1];
    },
    300_000,
  );
  return JSON.parse(line) as { count: number; retries: number; statuses: object };
}

/** Every id `<prefix>-1..count` in the ledger; returns the duplicates and the longest pause. */
async function allDelivered(
  prefix: string,
  count: number,
): Promise<{ duplicates: number; longestGapMs: number }> {
  const l = await until(
    `all ${count} events of ${prefix} at the handler`,
    async () => {
      const got = await ledger();
      const missingIds = Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`).filter(
        (id) => !got.received.has(id),
      );
      return missingIds.length === 0 ? got : undefined;
    },
    300_000,
    3_000,
  );
  let duplicates = 0;
  for (const [id, n] of l.received) if (id.startsWith(`${prefix}-`) && n > 1) duplicates += n - 1;
  // the longest pause between two deliveries of this load (not of the earlier ones)
  const times = l.arrivals
    .filter((a) => a.id.startsWith(`${prefix}-`))
    .map((a) => a.at)
    .sort((a, b) => a - b);
  let longestGapMs = 0;
  for (let i = 1; i < times.length; i += 1)
    longestGapMs = Math.max(longestGapMs, (times[i] ?? 0) - (times[i - 1] ?? 0));
  return { duplicates, longestGapMs };
}

function report(what: string, facts: object): void {
  process.stdout.write(`[e2e] ${what}: ${JSON.stringify(facts)}\n`);
}

export function faultsSuite(): void {
  describe('faults under a steady load from a Pod through the ingress Service', () => {
    afterAll(async () => {
      // the handler's ledger on the node's disk (on kind, inside the node's container)
      if (inject('e2eBackend') === 'local') {
        await rm(`/tmp/eventwire-e2e-${runId}`, { recursive: true, force: true });
      }
    });

    it('sets up a handler Deployment and its subscription', async () => {
      await kubectl(['create', 'namespace', FNS]);
      await kubectl([
        '-n',
        FNS,
        'create',
        'configmap',
        'fixtures',
        `--from-file=${join(fixtures, 'recorder.ts')}`,
        `--from-file=${join(fixtures, 'publisher.ts')}`,
      ]);
      const file = join(await mkdtemp(join(tmpdir(), 'eventwire-e2e-')), 'faults.yaml');
      await writeFile(file, manifests);
      await kubectl(['apply', '-f', file]);
      await kubectl(['-n', FNS, 'rollout', 'status', 'deployment/recorder', '--timeout=3m']);
      await kubectl([
        '-n',
        FNS,
        'wait',
        '--for=condition=Ready',
        'eventsubscription/recorder',
        '--timeout=3m',
      ]);
    });

    it('loses nothing when the dispatcher Pod is force-deleted mid-stream', async () => {
      await startPublisher('dispatcher', 600, 40);
      await sleep(5_000);
      await kubectl([
        '-n',
        NS,
        'delete',
        'pod',
        '-l',
        'app.kubernetes.io/component=dispatcher',
        '--grace-period=0',
        '--force',
      ]);
      const published = await publisherDone('dispatcher');
      const got = await allDelivered('dispatcher', 600);
      report('dispatcher force-deleted', { published, ...got });
      expect(published.count).toBe(600);
    });

    it('loses nothing when the handler Pod is killed mid-stream, and delivers its events once it is back', async () => {
      await startPublisher('handler', 600, 40);
      await sleep(5_000);
      await kubectl([
        '-n',
        FNS,
        'delete',
        'pod',
        '-l',
        'app=recorder',
        '--grace-period=0',
        '--force',
      ]);
      const published = await publisherDone('handler');
      await kubectl(['-n', FNS, 'rollout', 'status', 'deployment/recorder', '--timeout=3m']);
      const got = await allDelivered('handler', 600);
      report('handler killed', { published, ...got });
      expect(published.count).toBe(600);
    });

    it('loses nothing while helm upgrade rolls every component onto another image tag', async () => {
      const backend = inject('e2eBackend');
      await retagOnNode(
        backend,
        'ghcr.io/eventwire/eventwire:dev',
        'ghcr.io/eventwire/eventwire:dev2',
      );
      await startPublisher('upgrade', 1200, 40);
      await sleep(3_000);
      await helm([
        'upgrade',
        'eventwire',
        join(repoRoot, 'charts', 'eventwire'),
        '-n',
        NS,
        '--reuse-values',
        '--set',
        'image.tag=dev2',
        '--wait',
        '--timeout',
        '5m',
      ]);
      const published = await publisherDone('upgrade');
      const got = await allDelivered('upgrade', 1200);
      report('helm upgrade', { published, ...got });
      // the Pods of the new ReplicaSets (old ones may still be terminating)
      const ready = (await podsOf(NS, 'app.kubernetes.io/instance=eventwire')).filter(
        (p) => isReady(p) && p.metadata.labels?.['app.kubernetes.io/component'] !== 'nats',
      );
      expect(new Set(ready.map((p) => p.metadata.labels?.['app.kubernetes.io/component']))).toEqual(
        new Set(['controller', 'dispatcher', 'ingress']),
      );
      expect(ready.map((p) => p.spec.containers[0]?.image)).toEqual(
        ready.map(() => 'ghcr.io/eventwire/eventwire:dev2'),
      );
    });
  });
}
