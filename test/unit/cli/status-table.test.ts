// `eventwire status` shows lag and loss: the rows and the table as a person reads them.
import { describe, expect, it } from 'vitest';
import type { EventSubscription } from '../../../src/api/types.ts';
import { rowOf, table } from '../../../src/cli/status.ts';

const sub = (name: string, stats: NonNullable<EventSubscription['status']>['stats']) =>
  ({
    apiVersion: 'eventwire.io/v1alpha1',
    kind: 'EventSubscription',
    metadata: { name, namespace: 'shop' },
    spec: { sink: { uri: 'http://h/e' } },
    status: {
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Ready',
          message: 'ok',
          lastTransitionTime: '2026-12-02T00:00:00Z',
        },
      ],
      consumer: { stream: 'SHOP', name: 'c' },
      ...(stats ? { stats } : {}),
    },
  }) as EventSubscription;

describe('eventwire status', () => {
  it('shows the events dead-lettered, and those a stream discarded before the subscription read them', () => {
    const lossy = rowOf(
      sub('lossy', { pending: 3, ackPending: 1, deadLettered: 2, discardedUnread: 20 }),
    );
    expect(lossy).toMatchObject({ pending: 3, ackPending: 1, discardedUnread: 20 });
    const clean = rowOf(sub('clean', { pending: 0, ackPending: 0 }));
    expect(clean.discardedUnread).toBeNull();
    const lines = table([lossy, clean], false).trimEnd().split('\n');
    expect(lines[0]).toMatch(/PENDING\s+ACK-PENDING\s+DEAD-LETTERED\s+DISCARDED$/);
    expect(lines[1]).toMatch(/^lossy\s.*\s3\s+1\s+2\s+20$/);
    expect(lines[2]).toMatch(/^clean\s.*\s0\s+0\s+0\s+0$/);
  });
});
