// The cart handler: applies cart.updated events in order per cart (the subscription orders by
// the `cartid` extension) and answers a checkout with an order.placed reply.
import { setTimeout as sleep } from 'node:timers/promises';
import { main, type Answer, type ShopEvent } from './cloudevents.ts';
import { TYPES, isObject, type CartUpdated, type OrderPlaced } from './model.ts';

export interface CartState {
  readonly received: number;
  readonly carts: Readonly<Record<string, { version: number; checkedOut: boolean }>>;
  /** cart updates that arrived before an earlier version of the same cart (none expected) */
  readonly outOfOrder: readonly string[];
  readonly duplicates: number;
  readonly ordersPlaced: readonly string[];
}

const carts = new Map<string, { version: number; checkedOut: boolean }>();
const outOfOrder: string[] = [];
const ordersPlaced = new Set<string>();
let received = 0;
let duplicates = 0;

function orderFor(cart: CartUpdated): OrderPlaced {
  const total = cart.items.reduce((sum, i) => sum + i.qty * i.price, 0);
  return {
    orderId: `order-${cart.cartId}`,
    cartId: cart.cartId,
    items: cart.items,
    total: Math.round(total * 100) / 100,
  };
}

function checkout(cart: CartUpdated): Answer {
  const order = orderFor(cart);
  ordersPlaced.add(order.orderId);
  return {
    status: 200,
    note: `checkout, total ${order.total}`,
    reply: {
      id: order.orderId,
      source: '/shop/cart',
      type: TYPES.orderPlaced,
      extensions: { cartid: cart.cartId },
      data: order,
    },
  };
}

async function handle(_path: string, event: ShopEvent): Promise<Answer> {
  received += 1;
  const c = event.data;
  if (event.type !== TYPES.cartUpdated || !isObject(c) || typeof c.cartId !== 'string') {
    return { status: 400, text: 'expected cart.updated with a cartId' };
  }
  const cart = c as unknown as CartUpdated;
  // a little work, so that updates of different carts overlap while each cart stays in order
  await sleep(Math.floor(Math.random() * 20));
  const last = carts.get(cart.cartId)?.version ?? 0;
  if (cart.version <= last) {
    duplicates += 1; // at-least-once: a redelivery; answer it the same way again
    return cart.checkout === true ? checkout(cart) : { status: 200, note: 'duplicate' };
  }
  if (cart.version !== last + 1) outOfOrder.push(`${cart.cartId}@${cart.version} after ${last}`);
  carts.set(cart.cartId, { version: cart.version, checkedOut: cart.checkout === true });
  if (cart.checkout === true) return checkout(cart);
  return { status: 200, note: `version ${cart.version}, ${cart.items.length} items` };
}

function state(): CartState {
  return {
    received,
    carts: Object.fromEntries(carts),
    outOfOrder,
    duplicates,
    ordersPlaced: [...ordersPlaced],
  };
}

await main('cart', handle, state);
