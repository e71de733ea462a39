// The API constants and the defaults generated from the CRDs.
import { describe, expect, it } from 'vitest';
import { loadCrdFiles, repoRoot } from '../../../scripts/gen-api-types.ts';
import {
  API_GROUP,
  API_VERSION,
  DELIVERY_DEFAULTS,
  EVENTSTREAM_DEFAULTS,
  EVENTSTREAM_PLURAL,
  EVENTSUBSCRIPTION_DEFAULTS,
  EVENTSUBSCRIPTION_PLURAL,
  type EventSubscription,
  type Filter,
} from '../../../src/api/types.ts';

describe('src/api/types', () => {
  it('names the API as the CRDs do', async () => {
    const crds = (await loadCrdFiles(repoRoot)).map(({ crd }) => crd.metadata.name);
    expect(crds).toEqual([
      `${EVENTSTREAM_PLURAL}.${API_GROUP}`,
      `${EVENTSUBSCRIPTION_PLURAL}.${API_GROUP}`,
    ]);
    expect(API_VERSION).toBe('v1alpha1');
  });

  it('carries the spec example delivery defaults', () => {
    expect(DELIVERY_DEFAULTS).toEqual({
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
    expect(EVENTSUBSCRIPTION_DEFAULTS).toEqual({ startFrom: 'new' });
    expect(EVENTSTREAM_DEFAULTS).toMatchObject({
      storage: 'file',
      replicas: 1,
      retention: 'limits',
      deletionPolicy: 'Retain',
    });
  });

  it('types the spec example (compile-time check)', () => {
    const nested: Filter = { any: [{ exact: { type: 'a' } }, { suffix: { type: '.b' } }] };
    const sub: EventSubscription = {
      apiVersion: `${API_GROUP}/${API_VERSION}`,
      kind: 'EventSubscription',
      metadata: { name: 'order-created', namespace: 'shop' },
      spec: {
        filters: [nested, { not: { exact: { subject: 'test' } } }, { cel: 'true' }],
        sink: { ref: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'h', port: 8080 } },
        delivery: { ordering: 'key', orderingKey: 'partitionkey', deadLetter: { subject: 'x' } },
      },
    };
    expect(sub.spec.filters).toHaveLength(3);
  });
});
