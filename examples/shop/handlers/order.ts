// The order handler: records order.placed (/orders), confirms an order when inventory.reserved
// arrives (/reserved, the end of the reply chain), and rejects it when the order comes back
// from the dead-letter stream (/dead-letters). The three arrive on separate subscriptions, so
// in any order.
import { main, type Answer, type ShopEvent } from './cloudevents.ts';
import { TYPES, isObject } from './model.ts';

export interface Order {
  readonly orderId: string;
  placed: boolean;
  reserved: boolean;
  total?: number;
  /** the ewhops extension of inventory.reserved: 2 after cart -> order -> inventory */
  replyHops?: string;
  /** from the dead letter: ewerrorreason, ewerrorcode and ewerrordata */
  rejected?: { reason: string; code: string; detail: string };
  status: 'pending' | 'confirmed' | 'rejected';
}

export interface OrderState {
  readonly received: Readonly<Record<string, number>>;
  readonly orders: readonly Order[];
}

const orders = new Map<string, Order>();
const received: Record<string, number> = {};

function orderOf(id: string): Order {
  let o = orders.get(id);
  if (o === undefined) {
    o = { orderId: id, placed: false, reserved: false, status: 'pending' };
    orders.set(id, o);
  }
  return o;
}

function settle(o: Order): void {
  if (o.rejected !== undefined) o.status = 'rejected';
  else if (o.reserved) o.status = 'confirmed';
}

function handle(path: string, event: ShopEvent): Answer {
  received[path] = (received[path] ?? 0) + 1;
  const d = event.data;
  if (!isObject(d) || typeof d.orderId !== 'string') {
    return { status: 400, text: 'expected an order with an orderId' };
  }
  const o = orderOf(d.orderId);
  const ext = event.extensions;
  if (path === '/orders' && event.type === TYPES.orderPlaced) {
    o.placed = true;
    if (typeof d.total === 'number') o.total = d.total;
  } else if (path === '/reserved' && event.type === TYPES.inventoryReserved) {
    o.reserved = true;
    if (ext.ewhops !== undefined) o.replyHops = ext.ewhops;
  } else if (path === '/dead-letters') {
    o.rejected = {
      reason: ext.ewerrorreason ?? '',
      code: ext.ewerrorcode ?? '',
      detail: ext.ewerrordata ?? '',
    };
  } else {
    return { status: 400, text: `unexpected ${event.type} on ${path}` };
  }
  settle(o);
  const via =
    o.rejected === undefined ? '' : ` (dead letter: HTTP ${o.rejected.code} ${o.rejected.detail})`;
  return { status: 200, note: `${path}: ${o.orderId} ${o.status}${via}` };
}

function state(): OrderState {
  return { received, orders: [...orders.values()] };
}

await main('order', handle, state);
