// The shop's events. Every event is JSON; the cart id travels in the `cartid` extension too,
// so subscriptions can order by it (delivery.orderingKey: cartid).
export const TYPES = {
  productAdded: 'product.added',
  cartUpdated: 'cart.updated',
  orderPlaced: 'order.placed',
  inventoryReserved: 'inventory.reserved',
} as const;

/** product.added, from /shop/catalog */
export interface ProductAdded {
  readonly sku: string;
  readonly name: string;
  readonly price: number;
  readonly stock: number;
}

export interface CartItem {
  readonly sku: string;
  readonly qty: number;
  readonly price: number;
}

/** cart.updated, from /shop/web: the whole cart at `version` (1, 2, ...) */
export interface CartUpdated {
  readonly cartId: string;
  readonly version: number;
  readonly items: readonly CartItem[];
  readonly checkout?: boolean;
}

/** order.placed, the cart handler's reply to a checkout */
export interface OrderPlaced {
  readonly orderId: string;
  readonly cartId: string;
  readonly items: readonly CartItem[];
  readonly total: number;
}

/** inventory.reserved, the inventory handler's reply to order.placed */
export interface InventoryReserved {
  readonly orderId: string;
  readonly cartId: string;
  readonly items: readonly { readonly sku: string; readonly qty: number }[];
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
