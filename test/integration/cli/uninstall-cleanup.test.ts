// `eventwire uninstall-cleanup`, what the chart's uninstall hooks run, against the shared
// control plane (its kube-controller-manager deletes namespaces) and nats-server, run as the
// Job runs it: `node src/cli/main.ts uninstall-cleanup ...` in a child process.
// Without a controller: the release's own EventStream goes (its finalizer removed), the users'
// resources stay without the finalizer, and the users' namespace can then be deleted. With a
// controller: the release's own stream is finalized by the controller (its JetStream stream
// is deleted, deletionPolicy Delete); the users' finalizers are removed only after the
// controller has stopped (post-delete), since a running controller adds them back.
// Every resource carries this file's scope label and every run passes --scope, so the other
// test files' resources on the shared control plane are never touched.
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  V1MicroTime,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventStream, EventSubscription } from '../../../src/api/types.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import {
  Resources,
  ensureNamespace,
  eventStream,
  eventSubscription,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';
import { chartLabels, uninstallCleanup, uninstallCleanupArgs, unique } from './helpers.ts';

const FINALIZER = 'eventwire.io/finalizer';

function labelled<T extends KubernetesObject>(obj: T, labels: Record<string, string>): T {
  return {
    ...obj,
    metadata: { ...obj.metadata, labels: { ...(obj.metadata?.labels ?? {}), ...labels } },
  };
}

/** As the controller leaves a resource: with its finalizer. */
function finalized<T extends KubernetesObject>(obj: T): T {
  return { ...obj, metadata: { ...obj.metadata, finalizers: [FINALIZER] } };
}

/** The chart's default stream in the release namespace, as a controller left it. */
const releaseStream = (scope: string, release: string, namespace: string): EventStream =>
  finalized(
    labelled(
      eventStream(
        scope,
        { namespace, name: 'default' },
        { subjectPrefix: `${scope}.default`, storage: 'memory' },
      ),
      chartLabels(release),
    ),
  );

describe('eventwire uninstall-cleanup', () => {
  const kubeconfigPath = inject('kubeconfigPath');
  const kc = new KubeConfig();
  let res: Resources;
  let core: CoreV1Api;

  const namespaceGone = (name: string) =>
    waitFor(
      `namespace ${name} to be deleted`,
      async () => {
        try {
          await core.readNamespace({ name });
          return false;
        } catch (err) {
          if ((err as { code?: number }).code === 404) return true;
          throw err;
        }
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );

  beforeAll(async () => {
    kc.loadFromFile(kubeconfigPath);
    await installCrds(kc);
    res = new Resources(kc);
    core = kc.makeApiClient(CoreV1Api);
  });

  it('with no controller running: deletes the release’s own stream and frees the users’ resources, so their namespace can be deleted', async () => {
    const scope = unique('uc-none');
    const release = unique('rel');
    const releaseNs = unique('uc-release');
    const userNs = unique('uc-user');
    await ensureNamespace(kc, releaseNs);
    await ensureNamespace(kc, userNs);
    await res.createStream(releaseStream(scope, release, releaseNs));
    // a user's stream and subscription in their own namespace, also with the finalizer
    await res.createStream(
      finalized(
        eventStream(
          scope,
          { namespace: userNs, name: 'orders' },
          { subjectPrefix: `${scope}.orders`, storage: 'memory' },
        ),
      ),
    );
    await res.createSub(
      finalized(
        eventSubscription(
          scope,
          { namespace: userNs, name: 'billing' },
          {
            stream: { name: 'default', namespace: releaseNs },
            sink: { uri: 'http://billing.example/' },
          },
        ),
      ),
    );
    // the Pod `helm test` leaves (kept for `helm test --logs`); never scheduled here
    const testPod = `${release}-eventwire-test`;
    await core.createNamespacedPod({
      namespace: releaseNs,
      body: {
        metadata: { name: testPod, labels: chartLabels(release) },
        spec: { containers: [{ name: 'c', image: 'eventwire' }] },
      },
    });

    // --controller-lease names no Lease: no controller runs
    const run = await uninstallCleanup(
      kubeconfigPath,
      uninstallCleanupArgs({ release, namespace: releaseNs, scope, testPod, timeout: '20s' }),
    );
    expect(run.code, run.stderr + run.stdout).toBe(0);
    // the controller is known to be gone: no waiting for the timeout
    expect(run.ms).toBeLessThan(15_000);

    expect(await res.streamGone(releaseNs, 'default')).toBe(true);
    const sub = await res.getSub(userNs, 'billing');
    expect(sub.metadata?.finalizers ?? []).not.toContain(FINALIZER);
    expect(sub.metadata?.deletionTimestamp).toBeUndefined();
    const stream = await res.getStream(userNs, 'orders');
    expect(stream.metadata?.finalizers ?? []).not.toContain(FINALIZER);
    await expect(core.readNamespacedPod({ namespace: releaseNs, name: testPod })).rejects.toThrow(
      /404|not found/i,
    );

    // what the defect blocked: the user deletes their namespace after the operator is gone
    await core.deleteNamespace({ name: userNs });
    await namespaceGone(userNs);
    await core.deleteNamespace({ name: releaseNs });
    await namespaceGone(releaseNs);
  });

  describe('with the controller running', () => {
    const scope = unique('uc-ctl');
    const release = unique('rel');
    const releaseNs = unique('uc-release');
    const userNs = unique('uc-user');
    const lease = `${release}-eventwire-controller`;
    const streamName = `UC_${scope.replace(/-/g, '_').toUpperCase()}`;
    let controller: ControllerHandle | undefined;
    let nc: NatsConnection;
    let jsm: JetStreamManager;
    const args = (stage: string, timeout: string) =>
      uninstallCleanupArgs({ stage, release, namespace: releaseNs, scope, timeout });

    beforeAll(async () => {
      await ensureNamespace(kc, releaseNs);
      await ensureNamespace(kc, userNs);
      nc = await connect({ servers: inject('natsUrl') });
      jsm = await jetstreamManager(nc);
      // as the chart runs it: leader election on the release's Lease
      controller = await startTestController({
        kubeconfigPath,
        natsUrl: inject('natsUrl'),
        scope,
        env: {
          EVENTWIRE_LEADER_ELECT: 'true',
          EVENTWIRE_NAMESPACE: releaseNs,
          EVENTWIRE_LEASE_NAME: lease,
          EVENTWIRE_LEASE_DURATION: '3s',
          EVENTWIRE_RENEW_DEADLINE: '2s',
          EVENTWIRE_RETRY_PERIOD: '500ms',
          POD_NAME: `controller-${scope}`,
        },
      });
      const own: EventStream = labelled(
        eventStream(
          scope,
          { namespace: releaseNs, name: 'default' },
          {
            subjectPrefix: `${scope}.default`,
            streamName,
            storage: 'memory',
            deletionPolicy: 'Delete',
          },
        ),
        chartLabels(release),
      );
      await res.createStream(own);
      const user: EventSubscription = eventSubscription(
        scope,
        { namespace: userNs, name: 'billing' },
        {
          stream: { name: 'default', namespace: releaseNs },
          sink: { uri: 'http://billing.example/' },
        },
      );
      await res.createSub(user);
      await waitForCondition(
        'the release’s stream',
        () => res.getStream(releaseNs, 'default'),
        'Ready',
        'True',
      );
      await waitFor(
        'the controller’s finalizer on the user’s subscription',
        async () =>
          ((await res.getSub(userNs, 'billing')).metadata?.finalizers ?? []).includes(FINALIZER),
        { timeoutMs: 20_000, intervalMs: 200 },
      );
      await jsm.streams.info(streamName); // the controller created it
    });
    afterAll(async () => {
      await controller?.stop();
      await nc.close();
    });

    it('pre-delete: the controller finalizes the release’s stream; the users’ finalizers stay while it runs', async () => {
      const run = await uninstallCleanup(kubeconfigPath, args('pre-delete', '30s'));
      expect(run.code, run.stderr + run.stdout).toBe(0);
      expect(run.ms).toBeLessThan(20_000); // done when the controller was, not at the timeout
      expect(await res.streamGone(releaseNs, 'default')).toBe(true);
      // the controller's finalizer ran: deletionPolicy Delete removed the JetStream stream
      await expect(jsm.streams.info(streamName)).rejects.toThrow(/stream not found/i);
      const sub = await res.getSub(userNs, 'billing');
      expect(sub.metadata?.finalizers).toContain(FINALIZER);
    });

    it('post-delete: once the controller stopped, the users’ finalizers go and their namespace can be deleted', async () => {
      await controller?.stop(); // what helm uninstall does between the two hooks
      controller = undefined;
      const run = await uninstallCleanup(kubeconfigPath, args('post-delete', '30s'));
      expect(run.code, run.stderr + run.stdout).toBe(0);
      const sub = await res.getSub(userNs, 'billing');
      expect(sub.metadata?.finalizers ?? []).not.toContain(FINALIZER);
      await core.deleteNamespace({ name: userNs });
      await namespaceGone(userNs);
    });
  });

  it('pre-delete: removes the finalizer itself at the timeout when the Lease is held but nothing finalizes', async () => {
    // a controller that holds its Lease but never gets to the resource (stuck, or scoped
    // by controller.resourceSelector so that it does not see the chart's stream)
    const scope = unique('uc-stuck');
    const release = unique('rel');
    const releaseNs = unique('uc-release');
    await ensureNamespace(kc, releaseNs);
    const lease = `${release}-eventwire-controller`;
    await kc.makeApiClient(CoordinationV1Api).createNamespacedLease({
      namespace: releaseNs,
      body: {
        metadata: { name: lease },
        spec: {
          holderIdentity: 'stuck-controller',
          leaseDurationSeconds: 3600,
          renewTime: new V1MicroTime(),
        },
      },
    });
    await res.createStream(releaseStream(scope, release, releaseNs));
    const run = await uninstallCleanup(
      kubeconfigPath,
      uninstallCleanupArgs({ stage: 'pre-delete', release, namespace: releaseNs, timeout: '3s' }),
    );
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(run.ms).toBeGreaterThanOrEqual(3000); // it did wait for the controller first
    expect(await res.streamGone(releaseNs, 'default')).toBe(true);
    const logs = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; reason?: string; name?: string });
    expect(logs).toContainEqual(
      expect.objectContaining({ msg: 'removed the finalizer', reason: 'timeout', name: 'default' }),
    );
    await core.deleteNamespace({ name: releaseNs });
  });

  it('exits 2 with the usage on a wrong or missing argument', async () => {
    const missing = await uninstallCleanup(kubeconfigPath, ['--namespace', 'x']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--selector');
    const stage = await uninstallCleanup(kubeconfigPath, [
      '--namespace',
      'x',
      '--selector',
      'a=b',
      '--stage',
      'later',
    ]);
    expect(stage.code).toBe(2);
    expect(stage.stderr).toContain('--stage');
  });
});
