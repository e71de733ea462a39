// Proves the EventStream and EventSubscription CRDs (crds/*.yaml) on a real kube-apiserver:
// the examples are accepted, every schema and CEL rule rejects a bad object with 422 and a
// message naming the field, defaults are applied, and kubectl explains and lists them.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { crdDir, installCrds } from '../../harness/crds.ts';
import { harnessTools, waitFor } from '../../harness/index.ts';

const execFileAsync = promisify(execFile);
const namespace = 'crd-validation';
const group = 'eventwire.io';
const version = 'v1alpha1';
const examplesDir = join(import.meta.dirname, '..', '..', '..', 'examples', 'basic');

type Kind = 'EventStream' | 'EventSubscription';
const plural: Record<Kind, string> = {
  EventStream: 'eventstreams',
  EventSubscription: 'eventsubscriptions',
};

const kc = new KubeConfig();
let custom: CustomObjectsApi;
let counter = 0;

function uniqueName(): string {
  counter += 1;
  return `obj-${counter}`;
}

async function create(
  kind: Kind,
  spec: unknown,
  fieldValidation = 'Strict',
): Promise<Record<string, unknown>> {
  return (await custom.createNamespacedCustomObject({
    group,
    version,
    namespace,
    plural: plural[kind],
    fieldValidation,
    body: {
      apiVersion: `${group}/${version}`,
      kind,
      metadata: { name: uniqueName() },
      spec,
    },
  })) as Record<string, unknown>;
}

/** Creates the object expecting the API server to refuse it; returns code and message. */
async function rejection(
  kind: Kind,
  spec: unknown,
  fieldValidation = 'Strict',
): Promise<{ code: number; message: string }> {
  const err: unknown = await create(kind, spec, fieldValidation).then(
    () => new Error(`the API server accepted ${JSON.stringify(spec)}`),
    (e: unknown) => e,
  );
  if (!(err instanceof ApiException)) throw err;
  const apiErr = err as ApiException<string>;
  const status = JSON.parse(apiErr.body) as { message: string };
  return { code: apiErr.code, message: status.message };
}

async function expectInvalid(kind: Kind, spec: unknown, ...fragments: string[]): Promise<void> {
  const { code, message } = await rejection(kind, spec);
  expect(code, message).toBe(422);
  for (const f of fragments) expect(message).toContain(f);
}

async function expectUnknownField(kind: Kind, spec: unknown, field: string): Promise<void> {
  const { code, message } = await rejection(kind, spec);
  expect(code, message).toBe(400);
  expect(message).toContain(`strict decoding error: unknown field "${field}"`);
}

async function expectValid(kind: Kind, spec: unknown): Promise<Record<string, unknown>> {
  return create(kind, spec);
}

async function kubectl(...args: string[]): Promise<string> {
  const tools = await harnessTools();
  const { stdout } = await execFileAsync(tools.kubectl.path, [
    '--kubeconfig',
    inject('kubeconfigPath'),
    ...args,
  ]);
  return stdout;
}

const stream = { subjectPrefix: 'shop' };
const serviceSink = { ref: { apiVersion: 'v1', kind: 'Service', name: 'handler' } };
const sub = (extra: Record<string, unknown> = {}) => ({ sink: serviceSink, ...extra });
const withDelivery = (delivery: Record<string, unknown>) => sub({ delivery });
const withFilters = (...filters: unknown[]) => sub({ filters });
const withRef = (ref: Record<string, unknown>) =>
  sub({ sink: { ref: { ...serviceSink.ref, ...ref } } });

beforeAll(async () => {
  kc.loadFromFile(inject('kubeconfigPath'));
  custom = kc.makeApiClient(CustomObjectsApi);
  await installCrds(kc);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  // the CRDs are Established; wait until the new resources accept objects
  await waitFor(
    'eventstreams to be served',
    async () => {
      await create('EventStream', stream);
      return true;
    },
    { timeoutMs: 30_000 },
  );
});

describe('examples/basic', () => {
  it.each(['eventstream.yaml', 'eventsubscription.yaml'])('%s is accepted', async (file) => {
    const manifest = parse(await readFile(join(examplesDir, file), 'utf8')) as {
      kind: Kind;
      metadata: { name: string; namespace?: string };
    };
    const created = (await custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: plural[manifest.kind],
      fieldValidation: 'Strict',
      body: { ...manifest, metadata: { name: manifest.metadata.name } },
    })) as { metadata: { uid: string } };
    expect(created.metadata.uid).toBeTruthy();
  });
});

describe('EventStream', () => {
  it('fills in the documented defaults', async () => {
    const created = (await expectValid('EventStream', stream)) as { spec: Record<string, unknown> };
    expect(created.spec).toEqual({
      subjectPrefix: 'shop',
      storage: 'file',
      replicas: 1,
      retention: 'limits',
      discard: 'old',
      duplicateWindow: '2m',
      allowedNamespaces: ['*'],
      deletionPolicy: 'Retain',
    });
  });

  it('requires spec', async () => {
    await expectInvalid('EventStream', undefined, 'spec: Required value');
  });

  it('requires subjectPrefix', async () => {
    await expectInvalid('EventStream', { storage: 'file' }, 'spec.subjectPrefix: Required value');
  });

  it.each(['shop.>', 'shop.*', 'shop orders', 'shop..orders', '.shop', 'shop.'])(
    'rejects the subjectPrefix %j',
    async (subjectPrefix) => {
      await expectInvalid(
        'EventStream',
        { subjectPrefix },
        'spec.subjectPrefix',
        'subjectPrefix must be dot-separated tokens',
      );
    },
  );

  it('accepts a multi-token subjectPrefix', async () => {
    await expectValid('EventStream', { subjectPrefix: 'shop.orders-v1_x' });
  });

  it.each(['SHOP.ORDERS', 'shop>', 'a b', 'a/b'])(
    'rejects the streamName %j',
    async (streamName) => {
      await expectInvalid(
        'EventStream',
        { ...stream, streamName },
        'spec.streamName',
        'streamName may only contain letters, digits',
      );
    },
  );

  it('accepts a streamName', async () => {
    await expectValid('EventStream', { ...stream, streamName: 'SHOP_orders-1' });
  });

  it.each([
    ['storage', 'disk', '"file", "memory"'],
    ['retention', 'forever', '"limits", "interest", "workqueue"'],
    ['discard', 'oldest', '"old", "new"'],
    ['deletionPolicy', 'Orphan', '"Retain", "Delete"'],
  ])('rejects %s %j (enum)', async (field, value, supported) => {
    await expectInvalid(
      'EventStream',
      { ...stream, [field]: value },
      `spec.${field}: Unsupported value: "${value}"`,
      supported,
    );
  });

  it.each([0, 6])('rejects replicas %d (1..5)', async (replicas) => {
    await expectInvalid(
      'EventStream',
      { ...stream, replicas },
      'spec.replicas',
      replicas === 0 ? 'greater than or equal to 1' : 'less than or equal to 5',
    );
  });

  it('accepts replicas 5', async () => {
    await expectValid('EventStream', { ...stream, replicas: 5 });
  });

  it.each(['maxAge', 'duplicateWindow'])('rejects a malformed %s duration', async (field) => {
    await expectInvalid(
      'EventStream',
      { ...stream, [field]: '7d' },
      `spec.${field}`,
      'must be a Go duration string such as 500ms',
    );
  });

  it('accepts Go durations', async () => {
    await expectValid('EventStream', { ...stream, maxAge: '1h30m', duplicateWindow: '1.5s' });
  });

  it.each(['maxBytes', 'maxMsgs', 'maxMsgSize'])('rejects %s 0 (at least 1)', async (field) => {
    await expectInvalid(
      'EventStream',
      { ...stream, [field]: 0 },
      `spec.${field}`,
      'greater than or equal to 1',
    );
  });

  it('accepts limits', async () => {
    await expectValid('EventStream', {
      ...stream,
      maxBytes: 1 << 30,
      maxMsgs: 1_000_000,
      maxMsgSize: 1 << 20,
    });
  });

  it('rejects an allowedNamespaces entry that is not a namespace name', async () => {
    await expectInvalid(
      'EventStream',
      { ...stream, allowedNamespaces: ['team-a', 'Team_B'] },
      'spec.allowedNamespaces[1]',
      'allowedNamespaces entries must be a namespace name',
    );
  });

  it('accepts allowedNamespaces names', async () => {
    await expectValid('EventStream', { ...stream, allowedNamespaces: ['team-a', 'shop'] });
  });

  it('rejects an unknown field (strict field validation)', async () => {
    await expectUnknownField('EventStream', { ...stream, subjects: ['x'] }, 'spec.subjects');
  });
});

describe('EventSubscription sink', () => {
  it('requires sink', async () => {
    await expectInvalid('EventSubscription', { startFrom: 'new' }, 'spec.sink: Required value');
  });

  it('needs ref or uri', async () => {
    await expectInvalid('EventSubscription', sub({ sink: {} }), 'spec.sink', 'sink needs ref');
  });

  it('rejects an absolute uri together with ref', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ sink: { ...serviceSink, uri: 'http://elsewhere/events' } }),
      'spec.sink.uri',
      "with sink.ref set, sink.uri must be a path starting with '/'",
    );
  });

  it('accepts a path together with ref', async () => {
    await expectValid('EventSubscription', sub({ sink: { ...serviceSink, uri: '/events' } }));
  });

  it.each(['/events', 'ftp://host/x', 'http://', 'hooks.example.com/events'])(
    'rejects the uri %j without ref',
    async (uri) => {
      await expectInvalid(
        'EventSubscription',
        sub({ sink: { uri } }),
        'spec.sink.uri',
        'without sink.ref, sink.uri must be an absolute http:// or https:// URI',
      );
    },
  );

  it.each(['https://hooks.example.com/events?x=1', 'http://10.0.0.1:8080'])(
    'accepts the absolute uri %j without ref',
    async (uri) => {
      await expectValid('EventSubscription', sub({ sink: { uri } }));
    },
  );

  it('rejects a ref kind other than Service or Deployment', async () => {
    await expectInvalid(
      'EventSubscription',
      withRef({ kind: 'ConfigMap' }),
      'spec.sink.ref.kind: Unsupported value: "ConfigMap"',
      '"Service", "Deployment"',
    );
  });

  it.each([
    ['Service', 'apps/v1'],
    ['Deployment', 'v1'],
  ])('rejects kind %s with apiVersion %s', async (kind, apiVersion) => {
    await expectInvalid(
      'EventSubscription',
      withRef({ kind, apiVersion }),
      'spec.sink.ref.apiVersion',
      'sink.ref.apiVersion must be v1 for kind Service and apps/v1 for kind Deployment',
    );
  });

  it('accepts a Deployment ref with a named port', async () => {
    await expectValid(
      'EventSubscription',
      withRef({ kind: 'Deployment', apiVersion: 'apps/v1', port: 'http' }),
    );
  });

  it('requires the ref name', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ sink: { ref: { apiVersion: 'v1', kind: 'Service' } } }),
      'spec.sink.ref.name: Required value',
    );
  });

  it('rejects a ref to another namespace, even without strict field validation', async () => {
    const { code, message } = await rejection(
      'EventSubscription',
      withRef({ namespace: 'other' }),
      'Ignore',
    );
    expect(code).toBe(422);
    expect(message).toContain('spec.sink.ref.namespace');
    expect(message).toContain("a sink must be in the subscription's own namespace");
  });

  it('rejects unknown ref fields (strict field validation)', async () => {
    await expectUnknownField(
      'EventSubscription',
      withRef({ cluster: 'x' }),
      'spec.sink.ref.cluster',
    );
  });

  it.each([0, 65536, 'HTTP', 'http_port', 'a-very-long-port-name', '8080'])(
    'rejects the port %j',
    async (port) => {
      await expectInvalid(
        'EventSubscription',
        withRef({ port }),
        'spec.sink.ref.port',
        'sink.ref.port must be a port number from 1 to 65535 or a port name',
      );
    },
  );

  it.each([1, 8080, 65535, 'http', 'grpc-web'])('accepts the port %j', async (port) => {
    await expectValid('EventSubscription', withRef({ port }));
  });
});

describe('EventSubscription start position', () => {
  it('rejects an unknown startFrom', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ startFrom: 'latest' }),
      'spec.startFrom: Unsupported value: "latest"',
      '"new", "all", "time"',
    );
  });

  it('rejects startTime without startFrom: time', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ startFrom: 'all', startTime: '2025-01-31T00:00:00Z' }),
      'spec.startTime',
      'startTime is only allowed with startFrom: time',
    );
  });

  it('requires startTime with startFrom: time', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ startFrom: 'time' }),
      'spec.startTime',
      'startTime is required when startFrom is time',
    );
  });

  it('rejects a startTime that is not a date-time', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ startFrom: 'time', startTime: 'yesterday' }),
      'spec.startTime',
      'date-time',
    );
  });

  it('accepts startFrom: time with startTime', async () => {
    await expectValid(
      'EventSubscription',
      sub({ startFrom: 'time', startTime: '2025-01-31T00:00:00Z' }),
    );
  });
});

describe('EventSubscription delivery', () => {
  it('fills in the documented defaults when delivery is omitted', async () => {
    const created = (await expectValid('EventSubscription', sub())) as {
      spec: Record<string, unknown>;
    };
    expect(created.spec.startFrom).toBe('new');
    expect(created.spec.delivery).toEqual({
      format: 'binary',
      timeout: '30s',
      retry: 10,
      backoffPolicy: 'exponential',
      backoffDelay: '1s',
      backoffMax: '5m',
      retryAfterMax: '1m',
      maxInFlight: 32,
      ordering: 'none',
    });
  });

  it('rejects retry < 0', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ retry: -1 }),
      'spec.delivery.retry',
      'greater than or equal to 0',
    );
  });

  it('accepts retry 0', async () => {
    await expectValid('EventSubscription', withDelivery({ retry: 0 }));
  });

  it('rejects maxInFlight < 1', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ maxInFlight: 0 }),
      'spec.delivery.maxInFlight',
      'greater than or equal to 1',
    );
  });

  it.each([
    ['format', 'cloudevents', '"binary", "structured"'],
    ['backoffPolicy', 'constant', '"exponential", "linear"'],
    ['ordering', 'fifo', '"none", "key", "strict"'],
  ])('rejects delivery.%s %j (enum)', async (field, value, supported) => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ [field]: value }),
      `spec.delivery.${field}: Unsupported value: "${value}"`,
      supported,
    );
  });

  it.each([
    ['timeout', '30'],
    ['timeout', '30 s'],
    ['backoffDelay', '1sec'],
    ['backoffMax', '5min'],
    ['retryAfterMax', '-1s'],
    ['backoffMax', 'P5M'],
  ])('rejects delivery.%s %j (Go duration)', async (field, value) => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ [field]: value }),
      `spec.delivery.${field}`,
      'must be a Go duration string such as 500ms, 30s, 5m or 1h30m',
    );
  });

  it('accepts Go durations', async () => {
    await expectValid(
      'EventSubscription',
      withDelivery({
        timeout: '500ms',
        backoffDelay: '1.5s',
        backoffMax: '1h30m',
        retryAfterMax: '0s',
      }),
    );
  });

  it.each([
    ['timeout', '600h'],
    ['retryAfterMax', '10000h'],
    ['backoffMax', '168h1ns'],
    ['backoffDelay', '604801s'],
    ['timeout', '99999999999999999999h'],
    ['timeout', '1h9999999999999999999m'],
    ['retryAfterMax', '10081m'],
  ])('rejects delivery.%s %j (longer than 168h)', async (field, value) => {
    // Node's timers cannot wait longer than about 24.8 days; the cap keeps every timer exact
    await expectInvalid(
      'EventSubscription',
      withDelivery({ [field]: value }),
      `spec.delivery.${field}`,
      'must be at most 168h (7 days)',
    );
  });

  it('accepts delivery durations up to 168h, written any way', async () => {
    await expectValid(
      'EventSubscription',
      withDelivery({
        timeout: '168h',
        backoffDelay: '10080m',
        backoffMax: '604800000ms',
        retryAfterMax: '0000001h',
      }),
    );
  });

  it('rejects orderingKey without ordering: key', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ ordering: 'strict', orderingKey: 'partitionkey' }),
      'spec.delivery.orderingKey',
      'orderingKey is only allowed with ordering: key',
    );
  });

  it('requires orderingKey with ordering: key', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ ordering: 'key' }),
      'spec.delivery.orderingKey',
      'orderingKey is required with ordering: key',
    );
  });

  it('rejects an orderingKey that is not a CloudEvents attribute name', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ ordering: 'key', orderingKey: 'Partition-Key' }),
      'spec.delivery.orderingKey',
      'should match',
    );
  });

  it('accepts ordering: key with orderingKey', async () => {
    await expectValid(
      'EventSubscription',
      withDelivery({ ordering: 'key', orderingKey: 'partitionkey' }),
    );
  });

  it.each([
    ['neither', {}],
    ['both', { subject: 'shop.dlq', sink: { uri: 'https://dlq.example.com' } }],
  ])('rejects a deadLetter with %s of subject and sink', async (_, deadLetter) => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ deadLetter }),
      'spec.delivery.deadLetter',
      'delivery.deadLetter must set exactly one of subject',
    );
  });

  it('rejects a deadLetter subject with a wildcard', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ deadLetter: { subject: 'shop.dlq.>' } }),
      'spec.delivery.deadLetter.subject',
      'deadLetter.subject must be dot-separated tokens',
    );
  });

  it('applies the sink rules to the deadLetter sink', async () => {
    await expectInvalid(
      'EventSubscription',
      withDelivery({ deadLetter: { sink: { uri: '/dlq' } } }),
      'spec.delivery.deadLetter.sink.uri',
      'without sink.ref, sink.uri must be an absolute http:// or https:// URI',
    );
  });

  it('accepts a deadLetter sink ref', async () => {
    await expectValid(
      'EventSubscription',
      withDelivery({
        deadLetter: {
          sink: { ref: { apiVersion: 'v1', kind: 'Service', name: 'dlq' }, uri: '/dlq' },
        },
      }),
    );
  });

  it('requires reply.stream', async () => {
    await expectInvalid(
      'EventSubscription',
      sub({ reply: {} }),
      'spec.reply.stream: Required value',
    );
  });
});

describe('EventSubscription filters', () => {
  it('rejects a filter with two dialects', async () => {
    await expectInvalid(
      'EventSubscription',
      withFilters({ exact: { type: 'a' }, prefix: { source: '/shop' } }),
      'spec.filters[0]',
      'a filter must set exactly one of exact, prefix, suffix, cel, all, any or not',
    );
  });

  it('rejects an empty filter', async () => {
    await expectInvalid(
      'EventSubscription',
      withFilters({ exact: { type: 'a' } }, {}),
      'spec.filters[1]',
      'a filter must set exactly one of',
    );
  });

  it('rejects two dialects in a nested filter', async () => {
    await expectInvalid(
      'EventSubscription',
      withFilters({ not: { exact: { type: 'a' }, cel: 'true' } }),
      'spec.filters[0].not',
      'a filter must set exactly one of',
    );
  });

  it.each(['exact', 'prefix', 'suffix'])('rejects an empty %s map', async (dialect) => {
    await expectInvalid(
      'EventSubscription',
      withFilters({ [dialect]: {} }),
      `spec.filters[0].${dialect}`,
      'should have at least 1 properties',
    );
  });

  it('rejects a key that is not a CloudEvents attribute name', async () => {
    await expectInvalid(
      'EventSubscription',
      withFilters({ any: [{ prefix: { Source: '/shop' } }] }),
      'spec.filters[0].any[0].prefix',
      'filter keys must be CloudEvents attribute names',
    );
  });

  it('rejects an empty any list', async () => {
    await expectInvalid(
      'EventSubscription',
      withFilters({ any: [] }),
      'spec.filters[0].any',
      'should have at least 1 items',
    );
  });

  const deepest = { any: [{ all: [{ not: { suffix: { type: '.created' } } }] }] };

  it('accepts filters nested three levels deep', async () => {
    await expectValid(
      'EventSubscription',
      withFilters(deepest, { exact: { type: 'a', source: '/b' } }, { cel: 'event.type == "a"' }),
    );
  });

  it('rejects a fourth nesting level (strict field validation)', async () => {
    await expectUnknownField(
      'EventSubscription',
      withFilters({ any: [{ all: [{ not: { any: [{ exact: { type: 'a' } }] } }] }] }),
      'spec.filters[0].any[0].all[0].not.any',
    );
  });

  it('rejects a fourth nesting level without strict field validation', async () => {
    const { code, message } = await rejection(
      'EventSubscription',
      withFilters({ any: [{ all: [{ not: { any: [{ exact: { type: 'a' } }] } }] }] }),
      'Ignore',
    );
    expect(code).toBe(422);
    expect(message).toContain('spec.filters[0].any[0].all[0].not');
    expect(message).toContain('a filter nested three levels deep must set exactly one of');
  });
});

describe('status subresource', () => {
  it('keeps status out of spec writes and shows it in the printer columns', async () => {
    const created = (await create('EventSubscription', sub())) as {
      metadata: { name: string; resourceVersion: string };
    };
    const name = created.metadata.name;
    const status = {
      observedGeneration: 1,
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'SinkNotFound',
          message: 'Service handler not found; create it',
          lastTransitionTime: '2025-01-31T00:00:00Z',
          observedGeneration: 1,
        },
      ],
      sinkUri: 'http://handler.crd-validation.svc.cluster.local/',
      consumer: { stream: 'SHOP', name: 'c1', filterSubjects: ['shop.>'], ackFloor: 7 },
      stats: { pending: 42, ackPending: 0, redelivered: 0, deadLettered: 0 },
    };
    const withStatus = (await custom.replaceNamespacedCustomObjectStatus({
      group,
      version,
      namespace,
      plural: plural.EventSubscription,
      name,
      fieldValidation: 'Strict',
      body: { ...created, status },
    })) as { status: unknown };
    expect(withStatus.status).toEqual(status);
    const row = await kubectl('get', 'evsub', name, '-n', namespace, '--no-headers');
    expect(row.split(/\s+/).slice(0, 6)).toEqual([
      name,
      'False',
      'SinkNotFound',
      'SHOP',
      status.sinkUri,
      '42',
    ]);
  });

  it('rejects a condition status other than True, False or Unknown', async () => {
    const created = (await create('EventStream', stream)) as { metadata: { name: string } };
    const err: unknown = await custom
      .replaceNamespacedCustomObjectStatus({
        group,
        version,
        namespace,
        plural: plural.EventStream,
        name: created.metadata.name,
        body: {
          ...created,
          status: {
            conditions: [
              {
                type: 'Ready',
                status: 'Yes',
                reason: 'Ok',
                message: '',
                lastTransitionTime: '2025-01-31T00:00:00Z',
              },
            ],
          },
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiException);
    const apiErr = err as ApiException<string>;
    expect(apiErr.code).toBe(422);
    expect(apiErr.body).toContain('status.conditions[0].status: Unsupported value: \\"Yes\\"');
  });
});

describe('kubectl', () => {
  it('explains fields with their descriptions', async () => {
    const out = await kubectl('explain', 'evsub.spec.delivery.retry');
    expect(out).toContain('How many times a failed delivery is retried after the first attempt');
    const stream = await kubectl('explain', 'evstream.spec.deletionPolicy');
    expect(stream).toContain('What happens to the JetStream stream');
  });

  it('lists both kinds with the eventwire category and printer columns', async () => {
    await waitFor(
      'kubectl get eventwire to list both kinds',
      async () => {
        const out = await kubectl('get', 'eventwire', '-n', namespace);
        return (
          out.includes('eventstream.eventwire.io/') &&
          out.includes('eventsubscription.eventwire.io/')
        );
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    const subs = await kubectl('get', 'evsub', '-n', namespace);
    expect(subs.split('\n')[0]?.split(/\s+/)).toEqual([
      'NAME',
      'READY',
      'REASON',
      'STREAM',
      'SINK',
      'LAG',
      'AGE',
    ]);
    const streams = await kubectl('get', 'evstream', '-n', namespace);
    expect(streams.split('\n')[0]?.split(/\s+/)).toEqual([
      'NAME',
      'READY',
      'REASON',
      'STREAM',
      'MESSAGES',
      'AGE',
    ]);
  });

  it('reads the CRD files, YAML aliases included (server-side dry run)', async () => {
    const out = await kubectl('apply', '--dry-run=server', '-f', crdDir);
    expect(out).toContain(
      'customresourcedefinition.apiextensions.k8s.io/eventsubscriptions.eventwire.io',
    );
  });

  it('applies the examples with strict validation (server-side dry run)', async () => {
    // the examples live in namespace shop; this file's namespace stands in for it
    const dir = await mkdtemp(join(tmpdir(), 'eventwire-examples-'));
    for (const file of ['eventstream.yaml', 'eventsubscription.yaml']) {
      const text = await readFile(join(examplesDir, file), 'utf8');
      await writeFile(
        join(dir, file),
        text.replace('namespace: shop\n', `namespace: ${namespace}\n`),
      );
    }
    const out = await kubectl('apply', '--dry-run=server', '--validate=strict', '-f', dir);
    expect(out).toContain('eventstream.eventwire.io/shop');
    expect(out).toContain('eventsubscription.eventwire.io/order-created');
    await rm(dir, { recursive: true });
  });
});
