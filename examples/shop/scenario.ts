// The shop scenario: three products, three carts whose updates interleave, and three checkouts.
// Two orders are reserved (the reply chain cart.updated -> order.placed -> inventory.reserved
// completes); the third asks for a product that is out of stock and comes back through the
// dead letter. Used by the local runner and by drive.ts against a real cluster.
import type { CartState } from './handlers/cart.ts';
import type { OutEvent } from './handlers/cloudevents.ts';
import type { InventoryState } from './handlers/inventory.ts';
import { TYPES, type CartItem, type CartUpdated, type ProductAdded } from './handlers/model.ts';
import type { OrderState } from './handlers/order.ts';
import type { ProductState } from './handlers/product.ts';

export const PRODUCTS: readonly ProductAdded[] = [
  { sku: 'tea', name: 'Green tea, 100 g', price: 4.5, stock: 10 },
  { sku: 'mug', name: 'Stoneware mug', price: 12, stock: 5 },
  { sku: 'kettle', name: 'Copper kettle', price: 30, stock: 0 },
];

const price = (sku: string): number => PRODUCTS.find((p) => p.sku === sku)?.price ?? 0;
const items = (list: Record<string, number>): CartItem[] =>
  Object.entries(list).map(([sku, qty]) => ({ sku, qty, price: price(sku) }));

/** Each cart's successive contents; the last one checks out. */
export const CARTS: Readonly<Record<string, readonly Record<string, number>[]>> = {
  'c-100': [{ tea: 1 }, { tea: 2 }, { tea: 2, mug: 1 }, { tea: 3, mug: 1 }],
  'c-200': [{ mug: 1 }, { mug: 2 }, { mug: 2 }],
  'c-300': [{ kettle: 1 }, { kettle: 1 }],
};

/** Orders the inventory reserves, and the one it refuses (kettle is out of stock). */
export const EXPECTED = { confirmed: ['order-c-100', 'order-c-200'], rejected: ['order-c-300'] };

function productEvent(p: ProductAdded): OutEvent {
  return { id: `product-${p.sku}`, source: '/shop/catalog', type: TYPES.productAdded, data: p };
}

function cartEvent(cartId: string, version: number, checkout: boolean): OutEvent {
  const contents = CARTS[cartId]?.[version - 1] ?? {};
  const data: CartUpdated = { cartId, version, items: items(contents), checkout };
  return {
    id: `${cartId}-v${version}`,
    source: '/shop/web',
    type: TYPES.cartUpdated,
    extensions: { cartid: cartId },
    data,
  };
}

/** The products first, then the carts' updates interleaved: c-100 v1, c-200 v1, c-300 v1, ... */
export function scenarioEvents(): { products: OutEvent[]; carts: OutEvent[] } {
  const carts: OutEvent[] = [];
  const longest = Math.max(...Object.values(CARTS).map((v) => v.length));
  for (let v = 1; v <= longest; v += 1) {
    for (const [cartId, versions] of Object.entries(CARTS)) {
      if (v <= versions.length) carts.push(cartEvent(cartId, v, v === versions.length));
    }
  }
  return { products: PRODUCTS.map(productEvent), carts };
}

/**
 * POSTs one event in binary mode to an ingress stream URL; retries 404/503 (stream not yet
 * known) and a refused connection (a port-forward still starting) until timeoutMs.
 */
export async function publish(url: string, event: OutEvent, timeoutMs = 15_000): Promise<void> {
  const headers: Record<string, string> = {
    'ce-specversion': '1.0',
    'ce-id': event.id,
    'ce-source': event.source,
    'ce-type': event.type,
    'content-type': 'application/json',
  };
  for (const [k, v] of Object.entries(event.extensions ?? {})) headers[`ce-${k}`] = v;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(event.data),
    }).catch((err: unknown) => {
      if (Date.now() > deadline)
        throw new Error(`publishing ${event.id} to ${url}`, { cause: err });
      return undefined;
    });
    if (res === undefined) {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    const text = await res.text();
    if (res.status === 202) return;
    if ((res.status !== 503 && res.status !== 404) || Date.now() > deadline) {
      throw new Error(`publishing ${event.type} ${event.id} to ${url}: ${res.status} ${text}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface ShopStates {
  readonly product: ProductState;
  readonly cart: CartState;
  readonly inventory: InventoryState;
  readonly order: OrderState;
}

/** What is still missing before the scenario is complete; empty when it is. */
export function missing(s: ShopStates): string[] {
  const out: string[] = [];
  if (s.product.products.length < PRODUCTS.length) out.push('product: catalog incomplete');
  if ((s.inventory.received[TYPES.productAdded] ?? 0) < PRODUCTS.length) {
    out.push('inventory: product.added not all received');
  }
  for (const [cartId, versions] of Object.entries(CARTS)) {
    if (s.cart.carts[cartId]?.version !== versions.length) out.push(`cart: ${cartId} not final`);
  }
  const status = new Map(s.order.orders.map((o) => [o.orderId, o]));
  for (const id of EXPECTED.confirmed) {
    if (status.get(id)?.status !== 'confirmed') out.push(`order: ${id} not confirmed`);
    else if (status.get(id)?.placed !== true) out.push(`order: ${id} order.placed not received`);
  }
  for (const id of EXPECTED.rejected) {
    if (status.get(id)?.status !== 'rejected') out.push(`order: ${id} not rejected`);
  }
  return out;
}
