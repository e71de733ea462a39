// The README's example: `eventwire dev --example shop` brings up the whole system, runs the
// four shop handlers as local processes, applies the example's streams and subscriptions, and
// delivers the shop's events end to end: filters, ordering by cart id, a dead letter and the
// reply chain cart.updated -> order.placed -> inventory.reserved.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShopStates } from '../../../examples/shop/scenario.ts';

const main = join(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');

interface Done {
  seconds: number;
  handlers: Record<'product' | 'cart' | 'inventory' | 'order', string>;
}

async function states(h: Done['handlers']): Promise<ShopStates> {
  const get = async (url: string): Promise<unknown> => (await fetch(`${url}/state`)).json();
  return {
    product: await get(h.product),
    cart: await get(h.cart),
    inventory: await get(h.inventory),
    order: await get(h.order),
  } as ShopStates;
}

describe('eventwire dev --example shop', () => {
  let child: ChildProcess;
  let done: Done;
  let output = '';
  let startedAt = 0;

  beforeAll(async () => {
    startedAt = Date.now();
    child = spawn(process.execPath, [main, 'dev', '--example', 'shop'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    done = await new Promise<Done>((resolveDone, reject) => {
      child.stdout?.on('data', (c: Buffer) => {
        output += c.toString();
        const m = /EVENTWIRE_SHOP_DONE (.*)\n/.exec(output);
        if (m?.[1]) resolveDone(JSON.parse(m[1]) as Done);
      });
      child.on('exit', (code) => {
        reject(new Error(`eventwire dev --example shop exited with ${code}:\n${output}`));
      });
    });
    process.stdout.write(
      `[shop-example] the run command to every handler done: ${Date.now() - startedAt} ms\n`,
    );
  }, 120_000);
  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  it('delivers to every handler, in order per cart, with a dead letter and a reply chain', async () => {
    const s = await states(done.handlers);
    // product.added (filter exact type) reached the product handler and the inventory
    expect(s.product.products.map((p) => p.sku).sort()).toEqual(['kettle', 'mug', 'tea']);
    expect(s.inventory.received['product.added']).toBe(3);
    expect(s.inventory.stock).toEqual({ tea: 7, mug: 2, kettle: 0 });
    // cart.updated, ordered by the cartid extension: every version in order
    expect(s.cart.carts).toEqual({
      'c-100': { version: 4, checkedOut: true },
      'c-200': { version: 3, checkedOut: true },
      'c-300': { version: 2, checkedOut: true },
    });
    expect(s.cart.outOfOrder).toEqual([]);
    expect([...s.cart.ordersPlaced].sort()).toEqual(['order-c-100', 'order-c-200', 'order-c-300']);
    // the reply chain: cart -> order.placed (reply) -> inventory -> inventory.reserved (reply)
    expect([...s.inventory.reserved].sort()).toEqual(['order-c-100', 'order-c-200']);
    const orders = new Map(s.order.orders.map((o) => [o.orderId, o]));
    for (const id of ['order-c-100', 'order-c-200']) {
      expect(orders.get(id)).toMatchObject({
        placed: true,
        reserved: true,
        status: 'confirmed',
        replyHops: '2',
      });
    }
    expect(orders.get('order-c-100')?.total).toBe(25.5);
    // the dead letter: 422 from the inventory, delivered from the dead-letter stream
    expect(s.inventory.refused).toEqual(['order-c-300']);
    expect(orders.get('order-c-300')).toMatchObject({
      reserved: false,
      status: 'rejected',
      rejected: { reason: 'non-retryable-status', code: '422', detail: 'out of stock: kettle' },
    });
    // each delivery is shown as it happens
    expect(output).toMatch(/\[shop\] order +<- inventory\.reserved +id=reserved-order-c-100/);
    expect(output).toMatch(/\[shop\] inventory <- order\.placed +id=order-c-300 cart=c-300 -> 422/);
    expect(output).toContain('[shop] done: every handler got its events');
  });

  it('stops the handlers and cleans up on Ctrl-C', async () => {
    child.kill('SIGINT');
    const stopping = Date.now();
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    process.stdout.write(`[shop-example] Ctrl-C to exit: ${Date.now() - stopping} ms\n`);
    expect(code, output).toBe(0);
    for (const url of Object.values(done.handlers)) {
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    }
  });
});
