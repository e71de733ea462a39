// The product handler: keeps the catalog from product.added events.
import { main, type Answer, type ShopEvent } from './cloudevents.ts';
import { TYPES, isObject, type ProductAdded } from './model.ts';

export interface ProductState {
  readonly received: number;
  readonly products: readonly ProductAdded[];
}

const catalog = new Map<string, ProductAdded>();
let received = 0;

function handle(_path: string, event: ShopEvent): Answer {
  received += 1;
  const p = event.data;
  if (event.type !== TYPES.productAdded || !isObject(p) || typeof p.sku !== 'string') {
    return { status: 400, text: 'expected product.added with a sku' };
  }
  catalog.set(p.sku, p as unknown as ProductAdded);
  return { status: 200, note: `catalog: ${catalog.size} products` };
}

function state(): ProductState {
  return { received, products: [...catalog.values()] };
}

await main('product', handle, state);
