// The quickstart's shared commands, run as written (docs/quickstart-kind.md, marks "both"),
// then the shop example checked as `eventwire dev --example shop` checks it: every handler
// got its events, per cart in order, the reply chain completed, the out-of-stock order came
// back through the dead letter, and the dead letter is counted in the subscription's status.
import { describe, expect, it } from 'vitest';
import { missing, type ShopStates } from '../../../examples/shop/scenario.ts';
import { quickstartBlocks } from '../docs.ts';
import { getFromPod, until } from '../kube.ts';
import { kubectlJson, runDocBlock } from '../shell.ts';

const HANDLERS = ['product', 'cart', 'inventory', 'order'] as const;

async function shopStates(): Promise<ShopStates> {
  const entries = await Promise.all(
    HANDLERS.map(
      async (h) =>
        [h, JSON.parse(await getFromPod('shop', `deploy/${h}-handler`, '/state'))] as const,
    ),
  );
  return Object.fromEntries(entries) as unknown as ShopStates;
}

export function quickstartSuite(): void {
  describe('the quickstart, as written', () => {
    it('runs the commands shared by kind and the local node', async () => {
      const blocks = quickstartBlocks('both');
      expect(blocks.length).toBeGreaterThanOrEqual(4);
      for (const block of blocks) await runDocBlock(block);
    });

    it('delivers the shop scenario to every handler Deployment: per-cart order, the reply chain, the dead letter', async () => {
      const states = await until(
        'the shop scenario complete in every handler',
        async () => {
          const s = await shopStates();
          return missing(s).length === 0 ? s : undefined;
        },
        180_000,
      );
      expect(states.cart.outOfOrder).toEqual([]);
      expect(states.order.orders.find((o) => o.orderId === 'order-c-300')?.status).toBe('rejected');
    });

    it('counts the dead letter in the subscription status (status.stats.deadLettered)', async () => {
      const count = await until(
        'status.stats.deadLettered of shop/inventory',
        async () => {
          const sub = await kubectlJson<{ status?: { stats?: { deadLettered?: number } } }>([
            '-n',
            'shop',
            'get',
            'eventsubscription',
            'inventory',
          ]);
          const n = sub.status?.stats?.deadLettered ?? 0;
          return n >= 1 ? n : undefined;
        },
        120_000,
      );
      expect(count).toBe(1);
    });
  });
}
