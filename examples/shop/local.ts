// The shop example on this machine, for `eventwire dev --example shop`: the four handlers run
// as child processes on free loopback ports, and the example's own manifests are applied with
// each subscription's sink.ref replaced by the URI of the local handler. Then the scenario is
// published through the ingress and the handlers' state is watched until it is complete.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CustomObjectsApi,
  KubernetesObjectApi,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { missing, publish, scenarioEvents, type ShopStates } from './scenario.ts';

export const HANDLERS = ['product', 'cart', 'inventory', 'order'] as const;
export type HandlerName = (typeof HANDLERS)[number];

/** Where the example keeps its manifests: namespace, streams, handlers, subscriptions. */
export const manifestDir = join(import.meta.dirname, 'k8s');
const handlerDir = join(import.meta.dirname, 'handlers');
// run from source (node, type stripping) or from a build (dist/, compiled to .js)
const ext = import.meta.filename.endsWith('.ts') ? '.ts' : '.js';

export interface ShopOptions {
  readonly kubeConfig: KubeConfig;
  /** the dev ingress, http://127.0.0.1:<port> */
  readonly ingressBase: string;
  /** one line of progress output */
  readonly say: (line: string) => void;
}

export interface ShopSummary {
  /** from the first publish until every handler had its events */
  readonly seconds: number;
  readonly states: ShopStates;
}

export interface Shop {
  /** http://127.0.0.1:<port> of each handler (GET /state shows what it received) */
  readonly handlers: Readonly<Record<HandlerName, string>>;
  /** publishes the scenario and waits until it is complete */
  run(timeoutMs?: number): Promise<ShopSummary>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  server.close();
  if (addr === null || typeof addr === 'string') throw new Error('no address for a probe socket');
  return addr.port;
}

async function startHandler(
  name: HandlerName,
  say: (line: string) => void,
): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(handlerDir, `${name}${ext}`)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), EXIT_WITH_PARENT: '1' },
  });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      say(`[shop] ${line}`);
    });
  }
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the ${name} handler exited (${child.exitCode})`);
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { child, url };
    if (Date.now() > deadline) throw new Error(`the ${name} handler did not start on ${url}`);
    await sleep(50);
  }
}

/** The example's manifests for this machine: no Deployments or Services, sinks are local URIs. */
export async function localManifests(
  handlers: Readonly<Record<string, string>>,
): Promise<KubernetesObject[]> {
  const out: KubernetesObject[] = [];
  for (const file of ['namespace.yaml', 'streams.yaml', 'subscriptions.yaml']) {
    const text = await readFile(join(manifestDir, file), 'utf8');
    for (const doc of parseAllDocuments(text)) {
      const obj = doc.toJS() as KubernetesObject & { spec?: { sink?: SinkLike } };
      const sink = obj.spec?.sink;
      if (sink?.ref !== undefined) {
        const base = handlers[sink.ref.name.replace(/-handler$/, '')];
        if (base === undefined) throw new Error(`no local handler for ${sink.ref.name}`);
        obj.spec = { ...obj.spec, sink: { uri: `${base}${sink.uri ?? '/'}` } };
      }
      out.push(obj);
    }
  }
  return out;
}

interface SinkLike {
  ref?: { name: string };
  uri?: string;
}

async function apply(kc: KubeConfig, objects: readonly KubernetesObject[]): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  for (const obj of objects) {
    try {
      await client.create(obj);
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      await client.patch(
        obj,
        undefined,
        undefined,
        'eventwire-dev',
        true,
        'application/apply-patch+yaml',
      );
    }
  }
}

interface Conditioned {
  metadata?: { name?: string };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

function readyOf(obj: Conditioned): { ready: boolean; why: string } {
  const c = obj.status?.conditions?.find((x) => x.type === 'Ready');
  if (c === undefined) return { ready: false, why: 'no status yet' };
  return { ready: c.status === 'True', why: `${c.reason ?? ''} ${c.message ?? ''}` };
}

async function waitReady(kc: KubeConfig, objects: readonly KubernetesObject[]): Promise<void> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const deadline = Date.now() + 60_000;
  const resources = objects.filter((o) => o.apiVersion === 'eventwire.io/v1alpha1');
  for (const obj of resources) {
    const ref = {
      group: 'eventwire.io',
      version: 'v1alpha1',
      plural: obj.kind === 'EventStream' ? 'eventstreams' : 'eventsubscriptions',
      namespace: obj.metadata?.namespace ?? 'default',
      name: obj.metadata?.name ?? '',
    };
    for (;;) {
      const state = readyOf((await api.getNamespacedCustomObject(ref)) as Conditioned);
      if (state.ready) break;
      if (Date.now() > deadline) {
        throw new Error(`${obj.kind} ${ref.namespace}/${ref.name} is not Ready: ${state.why}`);
      }
      await sleep(100);
    }
  }
}

async function readStates(handlers: Readonly<Record<HandlerName, string>>): Promise<ShopStates> {
  const get = async (name: HandlerName): Promise<unknown> =>
    (await fetch(`${handlers[name]}/state`)).json();
  const [product, cart, inventory, order] = await Promise.all(HANDLERS.map(get));
  return { product, cart, inventory, order } as ShopStates;
}

/** Starts the handlers and applies the example's streams and subscriptions; Ready on return. */
export async function startShop(opts: ShopOptions): Promise<Shop> {
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = once(c, 'exit');
        c.kill('SIGTERM');
        const kill = setTimeout(() => c.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(kill);
      }),
    );
  };
  try {
    const handlers = {} as Record<HandlerName, string>;
    for (const name of HANDLERS) {
      const h = await startHandler(name, opts.say);
      children.push(h.child);
      handlers[name] = h.url;
    }
    opts.say(`[shop] handlers: ${HANDLERS.map((n) => `${n} ${handlers[n]}`).join(', ')}`);
    const objects = await localManifests(handlers);
    await apply(opts.kubeConfig, objects);
    await waitReady(opts.kubeConfig, objects);
    opts.say('[shop] namespace shop: 2 EventStreams and 6 EventSubscriptions are Ready');
    const run = async (timeoutMs = 60_000): Promise<ShopSummary> => {
      const url = `${opts.ingressBase}/shop/shop`;
      const started = Date.now();
      const { products, carts } = scenarioEvents();
      opts.say(
        `[shop] publishing ${products.length} product.added and ${carts.length} cart.updated to ${url}`,
      );
      for (const e of [...products, ...carts]) await publish(url, e);
      for (;;) {
        const states = await readStates(handlers);
        const left = missing(states);
        if (left.length === 0) return { seconds: (Date.now() - started) / 1000, states };
        if (Date.now() - started > timeoutMs) {
          throw new Error(
            `the shop example did not complete in ${timeoutMs} ms: ${left.join('; ')}`,
          );
        }
        await sleep(100);
      }
    };
    return { handlers, run, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The lines that tell a person what happened. */
export function describeSummary(s: ShopSummary): string[] {
  const orders = s.states.order.orders;
  const confirmed = orders.filter((o) => o.status === 'confirmed');
  const rejected = orders.filter((o) => o.status === 'rejected');
  const updates = Object.values(s.states.cart.carts).reduce((n, c) => n + c.version, 0);
  return [
    `[shop] done: every handler got its events ${s.seconds.toFixed(1)} s after the first publish`,
    `[shop]   product:   ${s.states.product.products.length} products in the catalog`,
    `[shop]   cart:      ${updates} cart updates, in order per cart (${s.states.cart.outOfOrder.length} out of order), ${s.states.cart.ordersPlaced.length} checkouts answered with order.placed`,
    `[shop]   inventory: reserved ${s.states.inventory.reserved.join(', ')}; refused ${s.states.inventory.refused.join(', ')}`,
    ...confirmed.map(
      (o) =>
        `[shop]   order:     ${o.orderId} confirmed (reply chain cart.updated -> order.placed -> inventory.reserved, ewhops ${o.replyHops ?? '?'})`,
    ),
    ...rejected.map(
      (o) =>
        `[shop]   order:     ${o.orderId} rejected via the dead letter (${o.rejected?.reason ?? ''}, HTTP ${o.rejected?.code ?? ''}: ${o.rejected?.detail ?? ''})`,
    ),
  ];
}
