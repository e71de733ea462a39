// The inventory handler: stock levels from product.added; answers order.placed with an
// inventory.reserved reply, or 422 when an item is out of stock (the subscription dead-letters
// the order at once), or 503 for a product it has not heard of yet (eventwire retries).
import { main, type Answer, type ShopEvent } from './cloudevents.ts';
import { TYPES, isObject, type OrderPlaced, type ProductAdded } from './model.ts';

export interface InventoryState {
  readonly received: Readonly<Record<string, number>>;
  readonly stock: Readonly<Record<string, number>>;
  readonly reserved: readonly string[];
  readonly refused: readonly string[];
}

const stock = new Map<string, number>();
const received: Record<string, number> = {};
const reserved = new Set<string>();
const refused = new Set<string>();

function reservedReply(order: OrderPlaced): Answer {
  return {
    status: 200,
    note: `reserved ${order.items.map((i) => `${i.qty}x${i.sku}`).join(', ')}`,
    reply: {
      id: `reserved-${order.orderId}`,
      source: '/shop/inventory',
      type: TYPES.inventoryReserved,
      extensions: { cartid: order.cartId },
      data: {
        orderId: order.orderId,
        cartId: order.cartId,
        items: order.items.map((i) => ({ sku: i.sku, qty: i.qty })),
      },
    },
  };
}

function reserve(order: OrderPlaced): Answer {
  if (reserved.has(order.orderId)) return reservedReply(order); // a redelivery
  const unknown = order.items.find((i) => !stock.has(i.sku));
  if (unknown !== undefined) {
    return { status: 503, text: `unknown product ${unknown.sku}; try again later` };
  }
  const short = order.items.find((i) => (stock.get(i.sku) ?? 0) < i.qty);
  if (short !== undefined) {
    refused.add(order.orderId);
    return { status: 422, text: `out of stock: ${short.sku}`, note: `out of stock: ${short.sku}` };
  }
  for (const i of order.items) stock.set(i.sku, (stock.get(i.sku) ?? 0) - i.qty);
  reserved.add(order.orderId);
  return reservedReply(order);
}

function handle(_path: string, event: ShopEvent): Answer {
  received[event.type] = (received[event.type] ?? 0) + 1;
  const d = event.data;
  if (!isObject(d)) return { status: 400, text: 'expected JSON data' };
  if (event.type === TYPES.productAdded) {
    const p = d as unknown as ProductAdded;
    stock.set(p.sku, p.stock);
    return { status: 200, note: `stock ${p.sku}=${p.stock}` };
  }
  if (event.type === TYPES.orderPlaced) return reserve(d as unknown as OrderPlaced);
  return { status: 400, text: `unexpected type ${event.type}` };
}

function state(): InventoryState {
  return {
    received,
    stock: Object.fromEntries(stock),
    reserved: [...reserved],
    refused: [...refused],
  };
}

await main('inventory', handle, state);
