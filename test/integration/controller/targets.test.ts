// Where a subscription writes besides its sink, checked by the controller against the real API
// server and nats-server: a dead-letter subject no EventStream captures, or one captured only by
// a stream that does not allow the namespace, a dead-letter sink URI where external URIs are
// forbidden, and a reply stream that does not allow the namespace each make the subscription
// not Ready with a reason naming the field; the dispatcher serves only Ready subscriptions.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventStream, EventSubscription } from '../../../src/api/types.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import {
  Resources,
  condition,
  ensureNamespace,
  eventStream,
  eventSubscription,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';

const scope = 'targets';
const ns = 'ctl-targets';
const other = 'ctl-targets-other';

const stream = (name: string, namespace: string, spec: Partial<EventStream['spec']>) =>
  eventStream(
    scope,
    { namespace, name },
    { subjectPrefix: `tg-${name}`, storage: 'memory', ...spec },
  );

const sub = (name: string, spec: Partial<EventSubscription['spec']>) =>
  eventSubscription(
    scope,
    { namespace: ns, name },
    {
      stream: { name: 'main' },
      sink: { ref: { apiVersion: 'v1', kind: 'Service', name: 'handler', port: 8080 } },
      ...spec,
    },
  );

describe('dead-letter and reply targets', () => {
  const kc = new KubeConfig();
  let controller: ControllerHandle;
  let res: Resources;
  const get = (name: string) => () => res.getSub(ns, name);

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    await ensureNamespace(kc, other);
    res = new Resources(kc);
    await kc.makeApiClient(CoreV1Api).createNamespacedService({
      namespace: ns,
      body: {
        metadata: { name: 'handler' },
        spec: { selector: { app: 'handler' }, ports: [{ port: 8080 }] },
      },
    });
    controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope,
      env: { EVENTWIRE_ALLOW_EXTERNAL_SINK_URIS: 'false' },
    });
    await res.createStream(stream('main', ns, {}));
    // another team's stream, which does not allow this namespace
    await res.createStream(stream('theirs', other, { allowedNamespaces: [other] }));
    for (const [n, name] of [
      [ns, 'main'],
      [other, 'theirs'],
    ] as const) {
      await waitForCondition(`EventStream ${name}`, () => res.getStream(n, name), 'Ready', 'True');
    }
  });
  afterAll(async () => {
    await controller.stop();
  });

  it('is not Ready while no EventStream captures the dead-letter subject, and Ready once one does', async () => {
    await res.createSub(sub('dl-nowhere', { delivery: { deadLetter: { subject: 'tg-dlq.x' } } }));
    const waiting = await waitForCondition(
      'EventSubscription dl-nowhere',
      get('dl-nowhere'),
      'DeadLetterResolved',
      'False',
      'DeadLetterNotCaptured',
    );
    expect(condition(waiting, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'DeadLetterNotCaptured',
    });
    expect(
      waiting.status?.conditions?.find((c) => c.type === 'DeadLetterResolved')?.message,
    ).toContain('spec.delivery.deadLetter.subject tg-dlq.x');
    await res.createStream(stream('dlq', ns, {}));
    const ok = await waitForCondition(
      'EventSubscription dl-nowhere',
      get('dl-nowhere'),
      'Ready',
      'True',
    );
    expect(condition(ok, 'DeadLetterResolved')).toMatchObject({
      status: 'True',
      reason: 'DeadLetterStreamReady',
    });
  });

  it("refuses a dead-letter subject of another namespace's stream that does not allow it", async () => {
    await res.createSub(
      sub('dl-theirs', { delivery: { deadLetter: { subject: 'tg-theirs.dlq' } } }),
    );
    const s = await waitForCondition(
      'EventSubscription dl-theirs',
      get('dl-theirs'),
      'DeadLetterResolved',
      'False',
      'DeadLetterNamespaceNotAllowed',
    );
    expect(condition(s, 'Ready')?.status).toBe('False');
    expect(s.status?.conditions?.find((c) => c.type === 'DeadLetterResolved')?.message).toContain(
      `${other}/theirs`,
    );
  });

  it('refuses a dead-letter sink URI where external URIs are forbidden, like a sink URI', async () => {
    await res.createSub(
      sub('dl-external', {
        delivery: { deadLetter: { sink: { uri: 'https://hooks.example.com/dead' } } },
      }),
    );
    const s = await waitForCondition(
      'EventSubscription dl-external',
      get('dl-external'),
      'DeadLetterResolved',
      'False',
      'DeadLetterExternalSinkForbidden',
    );
    expect(condition(s, 'Ready')?.status).toBe('False');
    expect(s.status?.deadLetterSinkUri).toBeUndefined();
  });

  it('resolves a dead-letter sink ref like the sink, into status.deadLetterSinkUri', async () => {
    await res.createSub(
      sub('dl-ref', {
        delivery: {
          deadLetter: {
            sink: { ref: { apiVersion: 'v1', kind: 'Service', name: 'handler' }, uri: '/dead' },
          },
        },
      }),
    );
    const s = await waitForCondition('EventSubscription dl-ref', get('dl-ref'), 'Ready', 'True');
    expect(s.status?.deadLetterSinkUri).toBe(`http://handler.${ns}.svc.cluster.local:8080/dead`);
  });

  it('refuses a reply stream that does not allow the namespace', async () => {
    await res.createSub(
      sub('reply-theirs', { reply: { stream: { name: 'theirs', namespace: other } } }),
    );
    const s = await waitForCondition(
      'EventSubscription reply-theirs',
      get('reply-theirs'),
      'ReplyResolved',
      'False',
      'ReplyNamespaceNotAllowed',
    );
    expect(condition(s, 'Ready')?.status).toBe('False');
    await res.updateStream(other, 'theirs', (es) => {
      es.spec.allowedNamespaces = [ns];
    });
    await waitForCondition('EventSubscription reply-theirs', get('reply-theirs'), 'Ready', 'True');
  });
});
