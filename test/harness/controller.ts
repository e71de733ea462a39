// Runs the real controller in-process against the shared control plane and nats-server.
// Each test file passes its own `scope`: the controller only reconciles EventStreams and
// EventSubscriptions labelled eventwire.io/test-scope=<scope>, so test files running in
// parallel never reconcile each other's resources.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';
import type { EventStream, EventSubscription } from '../../src/api/types.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { startController, type ControllerHandle } from '../../src/controller/controller.ts';
import { createLogger, silentLogger } from '../../src/observability/logger.ts';
import { waitFor } from '../../src/devenv/processes.ts';
import { harnessTools } from './tools.ts';

const execFileAsync = promisify(execFile);
export const SCOPE_LABEL = 'eventwire.io/test-scope';

export interface TestControllerOptions {
  readonly kubeconfigPath: string;
  readonly natsUrl: string;
  readonly scope: string;
  readonly env?: Readonly<Record<string, string>>;
}

export async function startTestController(opts: TestControllerOptions): Promise<ControllerHandle> {
  const cfg = parseControllerConfig({
    EVENTWIRE_NATS_URL: opts.natsUrl,
    KUBECONFIG: opts.kubeconfigPath,
    EVENTWIRE_OPS_HOST: '127.0.0.1',
    EVENTWIRE_OPS_PORT: '0',
    EVENTWIRE_RESYNC_PERIOD: '2s',
    EVENTWIRE_LEADER_ELECT: 'false',
    EVENTWIRE_RESOURCE_SELECTOR: `${SCOPE_LABEL}=${opts.scope}`,
    ...opts.env,
  });
  const log = process.env.EVENTWIRE_TEST_LOGS
    ? createLogger({
        component: `controller-${opts.scope}`,
        level: 'debug',
        destination: process.stderr,
      })
    : silentLogger();
  return startController(cfg, { log });
}

/** A scoped EventStream manifest. */
export function eventStream(
  scope: string,
  at: { readonly namespace: string; readonly name: string },
  spec: EventStream['spec'],
): EventStream {
  return scoped(
    { apiVersion: 'eventwire.io/v1alpha1', kind: 'EventStream', metadata: { ...at }, spec },
    scope,
  );
}

/** A scoped EventSubscription manifest. */
export function eventSubscription(
  scope: string,
  at: { readonly namespace: string; readonly name: string },
  spec: EventSubscription['spec'],
): EventSubscription {
  return scoped(
    { apiVersion: 'eventwire.io/v1alpha1', kind: 'EventSubscription', metadata: { ...at }, spec },
    scope,
  );
}

/** Adds the scope label to a manifest's metadata. */
export function scoped<T extends KubernetesObject>(obj: T, scope: string): T {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      labels: { ...(obj.metadata?.labels ?? {}), [SCOPE_LABEL]: scope },
    },
  };
}

/** `kubectl apply -f -` with the manifests, as a user would. */
export async function kubectlApply(
  kubeconfigPath: string,
  manifests: readonly object[],
): Promise<string> {
  const tools = await harnessTools();
  const input = manifests.map((m) => stringify(m)).join('---\n');
  const child = execFileAsync(tools.kubectl.path, [
    '--kubeconfig',
    kubeconfigPath,
    'apply',
    '-f',
    '-',
  ]);
  child.child.stdin?.end(input);
  return (await child).stdout;
}

export async function ensureNamespace(kc: KubeConfig, name: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    await core.createNamespace({ body: { metadata: { name } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
}

/** Typed access to one custom resource kind, with read-modify-write retried on conflicts. */
class Kind<T extends KubernetesObject> {
  private readonly api: CustomObjectsApi;
  private readonly plural: string;

  constructor(api: CustomObjectsApi, plural: string) {
    this.api = api;
    this.plural = plural;
  }

  private p(namespace: string) {
    return { group: 'eventwire.io', version: 'v1alpha1', plural: this.plural, namespace };
  }

  async get(ns: string, name: string): Promise<T> {
    return (await this.api.getNamespacedCustomObject({ ...this.p(ns), name })) as T;
  }

  async create(obj: T): Promise<T> {
    const ns = obj.metadata?.namespace ?? '';
    return (await this.api.createNamespacedCustomObject({ ...this.p(ns), body: obj })) as T;
  }

  async update(ns: string, name: string, change: (obj: T) => void): Promise<T> {
    for (let i = 0; ; i += 1) {
      const cur = await this.get(ns, name);
      change(cur);
      try {
        return (await this.api.replaceNamespacedCustomObject({
          ...this.p(ns),
          name,
          body: cur,
        })) as T;
      } catch (err) {
        if ((err as { code?: number }).code !== 409 || i > 5) throw err;
      }
    }
  }

  async delete(ns: string, name: string): Promise<void> {
    await this.api.deleteNamespacedCustomObject({ ...this.p(ns), name });
  }

  async gone(ns: string, name: string): Promise<boolean> {
    try {
      await this.get(ns, name);
      return false;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return true;
      throw err;
    }
  }
}

export class Resources {
  readonly streams: Kind<EventStream>;
  readonly subs: Kind<EventSubscription>;

  constructor(kc: KubeConfig) {
    const api = kc.makeApiClient(CustomObjectsApi);
    this.streams = new Kind<EventStream>(api, 'eventstreams');
    this.subs = new Kind<EventSubscription>(api, 'eventsubscriptions');
  }

  getStream = (ns: string, name: string) => this.streams.get(ns, name);
  getSub = (ns: string, name: string) => this.subs.get(ns, name);
  createStream = (obj: EventStream) => this.streams.create(obj);
  createSub = (obj: EventSubscription) => this.subs.create(obj);
  updateStream = (ns: string, name: string, change: (s: EventStream) => void) =>
    this.streams.update(ns, name, change);
  updateSub = (ns: string, name: string, change: (s: EventSubscription) => void) =>
    this.subs.update(ns, name, change);
  deleteStream = (ns: string, name: string) => this.streams.delete(ns, name);
  deleteSub = (ns: string, name: string) => this.subs.delete(ns, name);
  streamGone = (ns: string, name: string) => this.streams.gone(ns, name);
  subGone = (ns: string, name: string) => this.subs.gone(ns, name);
}

interface WithConditions {
  status?: {
    conditions?: { type: string; status: string; reason: string; observedGeneration?: number }[];
  };
}

export function condition(obj: WithConditions, type: string) {
  return obj.status?.conditions?.find((c) => c.type === type);
}

/** Wait until `read()` has condition `type` with `status` (and `reason`, if given). */
export async function waitForCondition<T extends WithConditions>(
  what: string,
  read: () => Promise<T>,
  type: string,
  status: 'True' | 'False',
  reason?: string,
): Promise<T> {
  const timeoutMs = 20_000;
  let last: T | undefined;
  try {
    await waitFor(
      `${what} ${type}=${status}${reason ? ` (${reason})` : ''}`,
      async () => {
        last = await read();
        const c = condition(last, type);
        return c?.status === status && (reason === undefined || c.reason === reason);
      },
      { timeoutMs, intervalMs: 200 },
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}; last conditions: ${JSON.stringify(last?.status?.conditions)}`,
      {
        cause: err,
      },
    );
  }
  if (!last) throw new Error('unreachable: waitFor returned without a read');
  return last;
}
