import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { MANAGED_BY_LABEL, resolveSink, type SinkOptions } from './sink.ts';

const sub = { namespace: 'shop', name: 'order-created', uid: 'uid-1' };
const opts: SinkOptions = { clusterDomain: 'cluster.local', allowExternalUris: true };

const service = (
  ports: { name?: string; port: number }[],
  extra: Partial<V1Service> = {},
): V1Service => ({
  metadata: { name: 'order-handler', namespace: 'shop' },
  spec: { selector: { app: 'order-handler' }, ports },
  ...extra,
});

const deployment = (
  ports: { name?: string; containerPort: number }[],
  matchExpressions = false,
): V1Deployment => ({
  metadata: { name: 'order-handler', namespace: 'shop' },
  spec: {
    selector: matchExpressions
      ? { matchExpressions: [{ key: 'app', operator: 'In', values: ['x'] }] }
      : { matchLabels: { app: 'order-handler' } },
    template: { spec: { containers: [{ name: 'c', ports }] } },
  },
});

describe('resolveSink: Service refs', () => {
  it('resolves a port by number, by name, or the only port', () => {
    const svc = service([
      { name: 'http', port: 8080 },
      { name: 'admin', port: 9090 },
    ]);
    const ref = { kind: 'Service' as const, name: 'order-handler' };
    expect(
      resolveSink(sub, { ref: { ...ref, port: 8080 }, uri: '/events' }, { service: svc }, opts),
    ).toEqual({
      ok: true,
      uri: 'http://order-handler.shop.svc.cluster.local:8080/events',
    });
    expect(
      resolveSink(sub, { ref: { ...ref, port: 'admin' } }, { service: svc }, opts),
    ).toMatchObject({
      uri: 'http://order-handler.shop.svc.cluster.local:9090',
    });
    expect(resolveSink(sub, { ref }, { service: service([{ port: 80 }]) }, opts)).toMatchObject({
      ok: true,
    });
  });

  it('explains a missing Service or port', () => {
    const ref = { kind: 'Service' as const, name: 'order-handler', port: 'grpc' };
    expect(resolveSink(sub, { ref }, {}, opts)).toMatchObject({
      ok: false,
      reason: 'SinkNotFound',
    });
    const r = resolveSink(sub, { ref }, { service: service([{ name: 'http', port: 8080 }]) }, opts);
    expect(r).toMatchObject({ ok: false, reason: 'SinkPortNotFound' });
    if (!r.ok) expect(r.message).toContain('http/8080');
  });
});

describe('resolveSink: Deployment refs', () => {
  const ref = {
    kind: 'Deployment' as const,
    apiVersion: 'apps/v1',
    name: 'order-handler',
    port: 8080,
  };

  it('manages a Service named after the Deployment, owned by the subscription', () => {
    const r = resolveSink(
      sub,
      { ref, uri: '/events' },
      { deployment: deployment([{ containerPort: 8080 }]) },
      opts,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.uri).toBe('http://order-handler.shop.svc.cluster.local:8080/events');
    expect(r.managedService?.metadata?.labels?.[MANAGED_BY_LABEL]).toBe('eventwire');
    expect(r.managedService?.spec?.selector).toEqual({ app: 'order-handler' });
    expect(r.managedService?.metadata?.ownerReferences?.map((o) => o.uid)).toEqual(['uid-1']);
  });

  it('keeps other owners and ports of an existing managed Service', () => {
    const existing = service([{ name: 'http-9000', port: 9000 }], {});
    existing.metadata = {
      ...existing.metadata,
      labels: { [MANAGED_BY_LABEL]: 'eventwire' },
      ownerReferences: [
        {
          apiVersion: 'eventwire.io/v1alpha1',
          kind: 'EventSubscription',
          name: 'other',
          uid: 'uid-0',
        },
      ],
    };
    const r = resolveSink(sub, { ref }, { deployment: deployment([]), service: existing }, opts);
    if (!r.ok) throw new Error(r.message);
    expect(r.managedService?.spec?.ports?.map((p) => p.port)).toEqual([8080, 9000]);
    expect(r.managedService?.metadata?.ownerReferences?.map((o) => o.uid)).toEqual([
      'uid-0',
      'uid-1',
    ]);
  });

  it('uses a foreign Service that already fits and refuses one that does not', () => {
    const fits = service([{ port: 8080 }]);
    const ok = resolveSink(sub, { ref }, { deployment: deployment([]), service: fits }, opts);
    expect(ok).toMatchObject({ ok: true });
    if (ok.ok) expect(ok.managedService).toBeUndefined();
    const other = service([{ port: 80 }]);
    expect(
      resolveSink(sub, { ref }, { deployment: deployment([]), service: other }, opts),
    ).toMatchObject({
      ok: false,
      reason: 'ServiceNameConflict',
    });
  });

  it('explains selectors and ports it cannot serve', () => {
    expect(resolveSink(sub, { ref }, { deployment: deployment([], true) }, opts)).toMatchObject({
      reason: 'UnsupportedSelector',
    });
    const noPort = { ...ref, port: 'web' };
    expect(
      resolveSink(sub, { ref: noPort }, { deployment: deployment([{ containerPort: 1 }]) }, opts),
    ).toMatchObject({
      reason: 'SinkPortNotFound',
    });
    expect(resolveSink(sub, { ref }, {}, opts)).toMatchObject({ reason: 'SinkNotFound' });
  });
});

describe('resolveSink: URIs', () => {
  it('accepts an absolute URI unless external sinks are forbidden', () => {
    expect(resolveSink(sub, { uri: 'https://hooks.example.com/x' }, {}, opts)).toEqual({
      ok: true,
      uri: 'https://hooks.example.com/x',
    });
    expect(
      resolveSink(
        sub,
        { uri: 'https://hooks.example.com/x' },
        {},
        { ...opts, allowExternalUris: false },
      ),
    ).toMatchObject({ ok: false, reason: 'ExternalSinkForbidden' });
    expect(resolveSink(sub, { uri: '/relative' }, {}, opts)).toMatchObject({
      reason: 'InvalidSink',
    });
  });
});
