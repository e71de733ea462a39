// The chart as `helm install` left it (dev --cluster, or the kind commands of the quickstart):
// every component Running and Ready on the image built from this commit, and `helm test`.
import { describe, expect, it } from 'vitest';
import { helm } from '../shell.ts';
import { isReady, podsOf, until } from '../kube.ts';

export const NS = 'eventwire-system';

export function installSuite(): void {
  describe('eventwire installed by helm', () => {
    it('runs the controller, dispatcher, ingress and bundled NATS, Running and Ready, on the image of this commit', async () => {
      const pods = await until(
        'every eventwire Pod Ready',
        async () => {
          const all = await podsOf(NS, 'app.kubernetes.io/instance=eventwire');
          return all.length > 0 && all.every(isReady) ? all : undefined;
        },
        180_000,
      );
      const components = new Set(
        pods.map((p) => p.metadata.labels?.['app.kubernetes.io/component']),
      );
      expect([...components].sort()).toEqual(['controller', 'dispatcher', 'ingress', 'nats']);
      for (const p of pods.filter(
        (x) => x.metadata.labels?.['app.kubernetes.io/component'] !== 'nats',
      )) {
        expect(p.spec.containers[0]?.image).toBe('ghcr.io/eventwire/eventwire:dev');
      }
    });

    it("passes helm test and shows the test Pod's logs (--logs)", async () => {
      const out = await helm(['test', 'eventwire', '-n', NS, '--logs', '--timeout', '5m']);
      expect(out).toMatch(/Phase:\s+Succeeded/);
      // the test Pod's own log, which helm can read only if the Pod still exists
      expect(out).toMatch(/POD LOGS: eventwire-test/);
      expect(out).toMatch(/PASS: event \S+ was published through the ingress and delivered/);
    });
  });
}
