// The spec's example manifests, applied as kubectl would, become Ready within seconds and
// the durable consumer exists with the configuration the spec derives from them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import type { EventStream, EventSubscription } from '../../../src/api/types.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import {
  Resources,
  ensureNamespace,
  kubectlApply,
  scoped,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';

const scope = 'examples';
const examples = join(import.meta.dirname, '..', '..', '..', 'examples', 'basic');

describe('the example manifests', () => {
  const kc = new KubeConfig();
  let controller: ControllerHandle;
  let nc: NatsConnection;
  let res: Resources;

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, 'shop');
    res = new Resources(kc);
    nc = await connect({ servers: inject('natsUrl') });
    controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope,
    });
  });
  afterAll(async () => {
    await controller.stop();
    await nc.close();
  });

  it('become Ready and create the stream and consumer the spec describes', async () => {
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
      namespace: 'shop',
      body: {
        metadata: { name: 'order-handler' },
        spec: {
          selector: { matchLabels: { app: 'order-handler' } },
          template: {
            metadata: { labels: { app: 'order-handler' } },
            spec: {
              containers: [
                {
                  name: 'handler',
                  image: 'example/order-handler',
                  ports: [{ containerPort: 8080 }],
                },
              ],
            },
          },
        },
      },
    });
    const stream = parse(await readFile(join(examples, 'eventstream.yaml'), 'utf8')) as EventStream;
    const sub = parse(
      await readFile(join(examples, 'eventsubscription.yaml'), 'utf8'),
    ) as EventSubscription;
    const out = await kubectlApply(inject('kubeconfigPath'), [
      scoped(stream, scope),
      scoped(sub, scope),
    ]);
    expect(out).toContain('eventstream.eventwire.io/shop created');
    expect(out).toContain('eventsubscription.eventwire.io/order-created created');

    const es = await waitForCondition(
      'EventStream shop',
      () => res.getStream('shop', 'shop'),
      'Ready',
      'True',
    );
    expect(es.status?.streamName).toBe('SHOP');
    expect(es.status?.observedGeneration).toBe(es.metadata?.generation);

    const ready = await waitForCondition(
      'EventSubscription order-created',
      () => res.getSub('shop', 'order-created'),
      'Ready',
      'True',
    );
    for (const type of ['StreamReady', 'SinkResolved', 'ConsumerReady']) {
      const c = ready.status?.conditions?.find((x) => x.type === type);
      expect(c, type).toMatchObject({
        status: 'True',
        observedGeneration: ready.metadata?.generation,
      });
    }
    expect(ready.status?.sinkUri).toBe('http://order-handler.shop.svc.cluster.local:8080/events');
    expect(ready.metadata?.finalizers).toContain('eventwire.io/finalizer');

    const jsm = await jetstreamManager(nc);
    const si = await jsm.streams.info('SHOP');
    expect(si.config.subjects).toEqual(['shop.>']);
    expect(si.config.max_age).toBe(168 * 3600 * 1e9);
    expect(si.config.duplicate_window).toBe(120 * 1e9);
    const name = ready.status?.consumer?.name ?? '';
    expect(ready.status?.consumer?.stream).toBe('SHOP');
    const ci = await jsm.consumers.info('SHOP', name);
    expect(ci.config.durable_name).toBe(name);
    expect(ci.config.ack_policy).toBe('explicit');
    expect(ci.config.deliver_policy).toBe('new');
    expect(ci.config.filter_subjects).toEqual(['shop.com.example.order.created']);
    expect(ci.config.ack_wait).toBe(40 * 1e9);
    expect(ci.config.max_deliver).toBe(111);
    expect(ci.config.max_ack_pending).toBe(32);
    expect(ready.status?.consumer?.filterSubjects).toEqual(['shop.com.example.order.created']);
  });

  it('serves /healthz, /readyz and /metrics with reconcile counts', async () => {
    const base = `http://127.0.0.1:${controller.opsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(
      /eventwire_controller_reconciles_total\{kind="sub",result="success"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /eventwire_controller_reconcile_duration_seconds_count\{kind="stream"\} [1-9]/,
    );
    expect(metrics).toContain('eventwire_controller_leader 1');
  });
});
