// The ingress with Kubernetes: streams resolved from EventStreams on a real kube-apiserver
// (through the informer; status written via the status subresource, as no controller runs
// here), ServiceAccount tokens checked by TokenReview and publishing authorized by
// SubjectAccessReview (create on eventstreams/publish), and allowedNamespaces. Tokens are
// real TokenRequest tokens: for the ingress's audience (`eventwire`), and for the API
// server's own audience, which the ingress refuses unless configured to accept it.
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeEvent, toHttpRequest } from '../../../src/cloudevents/index.ts';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';
import {
  createStream,
  messageCount,
  natsClient,
  post,
  startTestIngress,
  unique,
  type Answer,
} from './helpers.ts';

const group = 'eventwire.io';
const version = 'v1alpha1';
const plural = 'eventstreams';
/** The API server's audience: its --service-account-issuer (src/devenv/control-plane.ts). */
const API_SERVER_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';

describe('ingress with Kubernetes authentication, authorization and EventStreams', () => {
  const kc = new KubeConfig();
  let core: CoreV1Api;
  let rbac: RbacAuthorizationV1Api;
  let custom: CustomObjectsApi;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ingress: Awaited<ReturnType<typeof startTestIngress>>;
  const ns = `ingress-auth-${String(process.pid)}`;
  const otherNs = `ingress-other-${String(process.pid)}`;
  const jsStream = unique('AUTH');
  const prefix = unique('auth');
  const tokens: Record<'allowed' | 'denied' | 'outsider' | 'apiServer' | 'other', string> = {
    allowed: '',
    denied: '',
    outsider: '',
    apiServer: '',
    other: '',
  };

  async function eventStream(name: string, spec: Record<string, unknown>, ready: boolean) {
    const created = (await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: 'EventStream', metadata: { name }, spec },
    })) as Record<string, unknown>;
    if (ready) await markReady(name, created);
  }

  async function markReady(name: string, obj?: Record<string, unknown>) {
    const current =
      obj ??
      ((await custom.getNamespacedCustomObject({
        group,
        version,
        namespace: ns,
        plural,
        name,
      })) as Record<string, unknown>);
    await custom.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace: ns,
      plural,
      name,
      body: {
        ...current,
        status: {
          observedGeneration: 1,
          streamName: jsStream,
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'StreamReady',
              message: 'the JetStream stream exists',
              lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
              observedGeneration: 1,
            },
          ],
        },
      },
    });
  }

  /** A token as `kubectl create token <name> --audience <audience>` makes it. */
  async function serviceAccountToken(
    namespace: string,
    name: string,
    audiences: string[] = ['eventwire'],
    create = true,
  ): Promise<string> {
    if (create)
      await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
    const req = await core.createNamespacedServiceAccountToken({
      name,
      namespace,
      body: { spec: { audiences, expirationSeconds: 3600 } },
    });
    return req.status?.token ?? '';
  }

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    core = kc.makeApiClient(CoreV1Api);
    rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    await installCrds(kc);
    for (const name of [ns, otherNs]) await core.createNamespace({ body: { metadata: { name } } });
    ({ nc, jsm } = await natsClient(inject('natsUrl')));
    await createStream(jsm, { name: jsStream, prefix });

    tokens.allowed = await serviceAccountToken(ns, 'producer');
    tokens.denied = await serviceAccountToken(ns, 'stranger');
    tokens.outsider = await serviceAccountToken(otherNs, 'outsider');
    // the same permitted ServiceAccount, with the API server's audience (audiences: []) and another
    tokens.apiServer = await serviceAccountToken(ns, 'producer', [], false);
    tokens.other = await serviceAccountToken(ns, 'producer', ['someone-else'], false);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: 'publisher' },
        rules: [{ apiGroups: [group], resources: ['eventstreams/publish'], verbs: ['create'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'publishers' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'publisher' },
        subjects: [
          { kind: 'ServiceAccount', name: 'producer', namespace: ns },
          { kind: 'ServiceAccount', name: 'outsider', namespace: otherNs },
        ],
      },
    });

    await eventStream('shop', { subjectPrefix: prefix }, true);
    await eventStream('pending', { subjectPrefix: prefix }, false);
    await eventStream(
      'restricted',
      { subjectPrefix: prefix, allowedNamespaces: ['billing'] },
      true,
    );
    await eventStream('partners', { subjectPrefix: prefix, allowedNamespaces: [otherNs] }, true);

    ingress = await startTestIngress({
      EVENTWIRE_NATS_URL: inject('natsUrl'),
      KUBECONFIG: inject('kubeconfigPath'),
      EVENTWIRE_INGRESS_AUTH: 'true',
      EVENTWIRE_INGRESS_AUTH_CACHE_TTL: '0s',
    });
  });
  afterAll(async () => {
    await ingress.close();
    await jsm.streams.delete(jsStream);
    await nc.close();
    for (const name of [ns, otherNs]) await core.deleteNamespace({ name });
  });

  let seq = 0;
  function send(stream: string, token?: string, base = ingress.url): Promise<Answer> {
    seq += 1;
    const req = toHttpRequest(
      makeEvent({ id: `auth-${String(seq)}`, source: '/auth', type: 'auth.test' }),
      'binary',
    );
    const auth: Record<string, string> =
      token === undefined ? {} : { authorization: `Bearer ${token}` };
    return post(`${base}/${ns}/${stream}`, { ...req.headers, ...auth }, req.body);
  }

  it('answers 401 without a token and with a token the API server does not accept', async () => {
    const before = await messageCount(jsm, jsStream);
    const none = await send('shop');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(none.body.field).toBe('authorization');
    expect((await send('shop', 'not-a-token')).status).toBe(401);
    expect(await messageCount(jsm, jsStream)).toBe(before);
  });

  it('reviews tokens for its own audience: an eventwire token is accepted, API-server and other audiences get 401', async () => {
    const before = await messageCount(jsm, jsStream);
    expect((await send('shop', tokens.allowed)).status).toBe(202);
    for (const token of [tokens.apiServer, tokens.other]) {
      const answer = await send('shop', token);
      expect(answer.status).toBe(401);
      expect(answer.body.field).toBe('authorization');
      expect(String(answer.body.fix)).toContain('--audience eventwire');
    }
    expect(await messageCount(jsm, jsStream)).toBe(before + 1);
  });

  it('accepts API-server-audience tokens only when that audience is configured', async () => {
    const lenient = await startTestIngress({
      EVENTWIRE_NATS_URL: inject('natsUrl'),
      KUBECONFIG: inject('kubeconfigPath'),
      EVENTWIRE_INGRESS_AUTH: 'true',
      EVENTWIRE_INGRESS_AUTH_CACHE_TTL: '0s',
      EVENTWIRE_INGRESS_AUTH_AUDIENCES: `eventwire, ${API_SERVER_AUDIENCE}`,
    });
    try {
      expect((await send('shop', tokens.apiServer, lenient.url)).status).toBe(202);
      expect((await send('shop', tokens.allowed, lenient.url)).status).toBe(202);
      expect((await send('shop', tokens.other, lenient.url)).status).toBe(401);
    } finally {
      await lenient.close();
    }
  });

  it('answers 403 to a ServiceAccount without create on eventstreams/publish', async () => {
    const before = await messageCount(jsm, jsStream);
    const answer = await send('shop', tokens.denied);
    expect(answer.status).toBe(403);
    expect(answer.body.field).toBe('authorization');
    expect(String(answer.body.detail)).toContain(`system:serviceaccount:${ns}:stranger`);
    expect(await messageCount(jsm, jsStream)).toBe(before);
  });

  it('accepts a permitted ServiceAccount with 202 and stores the event', async () => {
    const before = await messageCount(jsm, jsStream);
    const answer = await send('shop', tokens.allowed);
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    expect(await messageCount(jsm, jsStream)).toBe(before + 1);
  });

  it('resolves streams from EventStreams: 404 unknown, 503 until Ready, then 202', async () => {
    expect((await send('missing', tokens.allowed)).status).toBe(404);
    const pending = await send('pending', tokens.allowed);
    expect(pending.status).toBe(503);
    expect(pending.headers.get('retry-after')).not.toBeNull();
    await markReady('pending');
    await waitFor(
      'the ingress to see the Ready status',
      async () => (await send('pending', tokens.allowed)).status === 202,
      {
        timeoutMs: 20_000,
      },
    );
  });

  it('respects allowedNamespaces for producers from other namespaces', async () => {
    const before = await messageCount(jsm, jsStream);
    const restricted = await send('restricted', tokens.outsider);
    expect(restricted.status).toBe(403);
    expect(restricted.body.field).toBe('namespace');
    // the stream's own namespace is always allowed
    expect((await send('restricted', tokens.allowed)).status).toBe(202);
    expect((await send('partners', tokens.outsider)).status).toBe(202);
    expect(await messageCount(jsm, jsStream)).toBe(before + 2);
  });
});
