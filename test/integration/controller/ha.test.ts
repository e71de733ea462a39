// A controller restart, and a leader failover between two controllers, leave every
// resource correct: status, consumers and streams converge, nothing is duplicated.
import { KubeConfig } from '@kubernetes/client-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventStream, EventSubscription } from '../../../src/api/types.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import {
  Resources,
  ensureNamespace,
  scoped,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';

const ns = 'ctl-ha';

function streamObj(name: string, scope: string): EventStream {
  return scoped(
    {
      apiVersion: 'eventwire.io/v1alpha1',
      kind: 'EventStream',
      metadata: { name, namespace: ns },
      spec: { subjectPrefix: `ha.${name}`, storage: 'memory' },
    },
    scope,
  );
}

function subObj(name: string, stream: string, scope: string): EventSubscription {
  return scoped(
    {
      apiVersion: 'eventwire.io/v1alpha1',
      kind: 'EventSubscription',
      metadata: { name, namespace: ns },
      spec: {
        stream: { name: stream },
        filters: [{ prefix: { type: `${name}.` } }],
        sink: { uri: 'http://127.0.0.1:9/' },
      },
    },
    scope,
  );
}

async function consumersOf(jsm: JetStreamManager, stream: string): Promise<string[]> {
  const names: string[] = [];
  for await (const c of jsm.consumers.list(stream)) names.push(c.name);
  return names.sort();
}

describe('controller availability', () => {
  const kc = new KubeConfig();
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let res: Resources;
  const running: ControllerHandle[] = [];
  const start = async (scope: string, env: Record<string, string> = {}) => {
    const c = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope,
      env,
    });
    running.push(c);
    return c;
  };

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    res = new Resources(kc);
    nc = await connect({ servers: inject('natsUrl') });
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    for (const c of running) await c.stop();
    await nc.close();
  });

  it('converges after a restart, including changes made while it was down', async () => {
    const scope = 'ha-restart';
    const first = await start(scope);
    await res.createStream(streamObj('restart', scope));
    await res.createSub(subObj('r1', 'restart', scope));
    const r1 = await waitForCondition('r1', () => res.getSub(ns, 'r1'), 'Ready', 'True');
    await first.stop();

    // while no controller runs: a new subscription, a changed one and a deleted consumer
    await res.createSub(subObj('r2', 'restart', scope));
    await res.updateSub(ns, 'r1', (s) => {
      s.spec.delivery = { maxInFlight: 3 };
    });
    await jsm.consumers.delete(r1.status?.consumer?.stream ?? '', r1.status?.consumer?.name ?? '');

    await start(scope);
    const r2 = await waitForCondition('r2', () => res.getSub(ns, 'r2'), 'Ready', 'True');
    await waitFor(
      'r1 to be restored with the new settings',
      async () => {
        const s = await res.getSub(ns, 'r1');
        if (s.status?.observedGeneration !== s.metadata?.generation) return false;
        const ci = await jsm.consumers.info(
          s.status?.consumer?.stream ?? '',
          s.status?.consumer?.name ?? '',
        );
        return ci.config.max_ack_pending === 3;
      },
      { timeoutMs: 20_000 },
    );
    const stream = r2.status?.consumer?.stream ?? '';
    expect(await consumersOf(jsm, stream)).toEqual(
      [r1.status?.consumer?.name ?? '', r2.status?.consumer?.name ?? ''].sort(),
    );
  });

  it('fails over to the second controller within one lease duration', async () => {
    const scope = 'ha-leader';
    const lease = {
      EVENTWIRE_LEADER_ELECT: 'true',
      EVENTWIRE_NAMESPACE: ns,
      EVENTWIRE_LEASE_NAME: 'ha-test-controller',
      EVENTWIRE_LEASE_DURATION: '3s',
      EVENTWIRE_RENEW_DEADLINE: '2s',
      EVENTWIRE_RETRY_PERIOD: '500ms',
    };
    const a = await start(scope, { ...lease, POD_NAME: 'controller-a' });
    await waitFor('controller a to lead', () => Promise.resolve(a.isLeader()), {
      timeoutMs: 10_000,
    });
    const b = await start(scope, { ...lease, POD_NAME: 'controller-b' });
    await res.createStream(streamObj('leader', scope));
    await res.createSub(subObj('l1', 'leader', scope));
    await waitForCondition('l1', () => res.getSub(ns, 'l1'), 'Ready', 'True');
    expect(b.isLeader()).toBe(false);

    // a dies without releasing its lease: b takes over once the lease has expired
    await a.stop({ releaseLease: false });
    const died = Date.now();
    await waitFor('controller b to lead', () => Promise.resolve(b.isLeader()), {
      timeoutMs: 10_000,
    });
    expect(Date.now() - died).toBeLessThan(3_000 + 2_000);

    // b reconciles: a new subscription becomes Ready, the old one stays correct
    await res.createSub(subObj('l2', 'leader', scope));
    const l2 = await waitForCondition('l2', () => res.getSub(ns, 'l2'), 'Ready', 'True');
    const l1 = await res.getSub(ns, 'l1');
    expect(await consumersOf(jsm, l2.status?.consumer?.stream ?? '')).toEqual(
      [l1.status?.consumer?.name ?? '', l2.status?.consumer?.name ?? ''].sort(),
    );
  });
});
