// The quickstart's clean-up, as written: the shop deleted, `helm uninstall`, the release
// namespace deleted. Nothing may be left but the CRDs (kept) and the users' own resources, and
// no namespace may hang Terminating on an eventwire finalizer: not the release's, and not a
// user's namespace deleted after the operator is gone.
import { describe, expect, it } from 'vitest';
import { quickstartBlocks } from '../docs.ts';
import { bash, kubectl, kubectlJson, suiteEnv } from '../shell.ts';

const namespaceGone = async (ns: string): Promise<boolean> =>
  (await bash(`kubectl get namespace ${ns}`, suiteEnv(), 30_000)).code !== 0;

export function uninstallSuite(): void {
  describe('helm uninstall', () => {
    it('runs the quickstart clean-up as written, and no namespace is left Terminating', async () => {
      const blocks = quickstartBlocks('cleanup');
      expect(blocks).toHaveLength(1);
      for (const block of blocks) {
        // a namespace stuck on a finalizer makes `kubectl delete namespace` wait for ever
        const res = await bash(block.text, suiteEnv(), 300_000);
        expect(res.code, res.output).toBe(0);
      }
      expect(await namespaceGone('eventwire-system')).toBe(true);
      expect(await namespaceGone('shop')).toBe(true);
    });

    it('leaves the CRDs and no release objects, and a user namespace with eventwire resources can still be deleted', async () => {
      await kubectl(['get', 'crd', 'eventsubscriptions.eventwire.io', 'eventstreams.eventwire.io']);
      expect(
        (
          await kubectl([
            'get',
            'clusterroles,clusterrolebindings',
            '-l',
            'app.kubernetes.io/instance=eventwire',
            '-o',
            'name',
          ])
        ).trim(),
      ).toBe('');
      // e2e-faults holds a user's EventStream and EventSubscription, reconciled while the
      // controller ran (so they carry its finalizer); the controller is gone now
      const subs = await kubectlJson<{ items: { metadata: { finalizers?: string[] } }[] }>([
        '-n',
        'e2e-faults',
        'get',
        'eventsubscriptions,eventstreams',
      ]);
      expect(subs.items).toHaveLength(2);
      for (const item of subs.items) expect(item.metadata.finalizers ?? []).toEqual([]);
      await kubectl(['delete', 'namespace', 'e2e-faults', '--timeout=120s'], 150_000);
      expect(await namespaceGone('e2e-faults')).toBe(true);
    });
  });
}
