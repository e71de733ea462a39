// `eventwire uninstall-cleanup`: what the chart's uninstall hooks run, so that uninstalling
// eventwire strands no finalizer (docs/adr/0010-uninstall-releases-finalizers.md).
//
// pre-delete (the controller still runs): the release's own EventStreams and
// EventSubscriptions (its namespace, its labels) are deleted, and the controller's finalizer
// cleans up after them as for any deletion. When the controller is known not to run (its
// Lease is free or expired), or after the timeout, eventwire.io/finalizer is removed from
// those left. The Pod `helm test` keeps for `--logs` is deleted.
// post-delete (Helm has deleted the controller): once the controller's Lease is no longer
// held (at most the timeout), eventwire.io/finalizer is removed from every EventStream and
// EventSubscription left in the cluster (within --scope), so their namespaces can be deleted.
// A running controller would add it back at once, hence after its deletion; a later install
// adds it back on its first reconcile.
//
// `plan` decides from what was observed; `runPhase` observes, acts and repeats until done.
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { DurationError, parseDuration } from '../api/duration.ts';
import {
  API_GROUP,
  API_VERSION,
  EVENTSTREAM_KIND,
  EVENTSTREAM_PLURAL,
  EVENTSUBSCRIPTION_KIND,
  EVENTSUBSCRIPTION_PLURAL,
} from '../api/types.ts';
import { str } from '../config/env.ts';
import { FINALIZER } from '../controller/reconcile-common.ts';
import { isConflict, isNotFound, isTransient } from '../k8s/errors.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { UsageError, loadKubeConfig } from './kube.ts';

export const UNINSTALL_CLEANUP_USAGE = `Usage: eventwire uninstall-cleanup --namespace NS --selector LABELS [options]

What the chart's uninstall hooks run (helm uninstall), so that no EventStream or
EventSubscription keeps the controller's finalizer eventwire.io/finalizer once the
controller is gone (docs/install.md#uninstall):

  --stage pre-delete    while the controller runs: deletes the release's own EventStreams and
                        EventSubscriptions (in NS, matching LABELS) and waits until the
                        controller has finalized them; when the controller does not run (its
                        Lease is free or expired) or after --timeout, removes the finalizer
                        from those left. Deletes the Pod helm test kept (--test-pod).
  --stage post-delete   after the controller was deleted: waits until its Lease is no longer
                        held (at most --timeout), then removes the finalizer from every
                        EventStream and EventSubscription in the cluster (matching --scope).
  --stage all           both, in order (the default): to run by hand after a failed hook.

The API is reached through KUBECONFIG, else in-cluster. Logs are JSON lines on stdout.

Options:
  -n, --namespace NS          the release namespace (required)
  -l, --selector LABELS       the labels of the release's own resources (required), e.g.
                              app.kubernetes.io/instance=eventwire,app.kubernetes.io/managed-by=Helm
  --stage STAGE               pre-delete, post-delete or all (default all)
  --controller-lease NAME     the controller's Lease in NS; without it the controller counts as
                              running until --timeout (pre-delete) and as stopped (post-delete)
  --scope LABELS              only resources matching these labels (the controller's
                              EVENTWIRE_RESOURCE_SELECTOR, when it has one)
  --test-pod NAME             the helm test Pod to delete in NS (pre-delete)
  --timeout DURATION          how long to wait for the controller (default 60s)
  --kubeconfig PATH           (overrides KUBECONFIG)
  -h, --help                  show this help
`;

const OPTIONS = {
  namespace: { type: 'string', short: 'n' },
  selector: { type: 'string', short: 'l' },
  stage: { type: 'string' },
  'controller-lease': { type: 'string' },
  scope: { type: 'string' },
  'test-pod': { type: 'string' },
  timeout: { type: 'string' },
  kubeconfig: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type Phase = 'pre-delete' | 'post-delete';
export type Stage = Phase | 'all';
const STAGES: readonly Stage[] = ['pre-delete', 'post-delete', 'all'];

export interface UninstallCleanupConfig {
  readonly stage: Stage;
  readonly namespace: string;
  readonly selector: string;
  readonly controllerLease?: string;
  readonly scope?: string;
  readonly testPod?: string;
  readonly timeoutMs: number;
  readonly kubeconfig?: string;
  readonly logLevel: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
/** Extra time after --timeout for retries of transient API errors before giving up. */
const GRACE_MS = 15_000;
const POLL_MS = 500;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; strict: true }>>['values'];

/** A name flag: checked against `pattern` when given; required when `required`. */
function nameFlag(values: Values, flag: 'namespace' | 'controller-lease' | 'test-pod') {
  const v = values[flag];
  if (v === undefined || v === '') return undefined;
  const pattern = flag === 'namespace' ? DNS_LABEL : DNS_NAME;
  if (!pattern.test(v)) throw new UsageError(`--${flag} ${v} is not a name`);
  return v;
}

function stageFlag(values: Values): Stage {
  const stage = (values.stage ?? 'all') as Stage;
  if (!STAGES.includes(stage)) {
    throw new UsageError(`--stage ${values.stage ?? ''} is not one of ${STAGES.join(', ')}`);
  }
  return stage;
}

function timeoutFlag(values: Values): number {
  try {
    return parseDuration(values.timeout ?? '60s', '--timeout');
  } catch (e) {
    if (e instanceof DurationError) throw new UsageError(e.message);
    throw e;
  }
}

/** The flags (and EVENTWIRE_LOG_LEVEL), parsed once; throws UsageError. */
export function parseUninstallCleanupConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): UninstallCleanupConfig | 'help' {
  let values: Values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help === true) return 'help';
  const namespace = nameFlag(values, 'namespace');
  if (namespace === undefined) throw new UsageError('--namespace is required');
  const selector = values.selector?.trim() ?? '';
  if (selector === '') {
    throw new UsageError('--selector is required: the labels of the release’s own resources');
  }
  const controllerLease = nameFlag(values, 'controller-lease');
  const testPod = nameFlag(values, 'test-pod');
  const scope = values.scope?.trim() ?? '';
  return {
    stage: stageFlag(values),
    namespace,
    selector,
    ...(controllerLease !== undefined ? { controllerLease } : {}),
    ...(scope !== '' ? { scope } : {}),
    ...(testPod !== undefined ? { testPod } : {}),
    timeoutMs: timeoutFlag(values),
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
    logLevel: str(env, 'EVENTWIRE_LOG_LEVEL', 'info'),
  };
}

// ---- the pure core ----

export type Kind = typeof EVENTSTREAM_KIND | typeof EVENTSUBSCRIPTION_KIND;

export interface Observed {
  readonly kind: Kind;
  readonly namespace: string;
  readonly name: string;
  readonly finalizers: readonly string[];
  /** has a deletionTimestamp */
  readonly deleting: boolean;
  /** created by the release: in its namespace, with its labels */
  readonly own: boolean;
}

/** running: the Lease is held; stopped: free, expired or absent; unknown: no Lease to ask. */
export type ControllerState = 'running' | 'stopped' | 'unknown';

export interface Step {
  readonly action: 'delete' | 'remove-finalizer';
  readonly kind: Kind;
  readonly namespace: string;
  readonly name: string;
}

export interface Plan {
  readonly steps: readonly Step[];
  /** nothing left to do in this phase */
  readonly done: boolean;
  /** resources waited for (the controller is expected to finalize them) */
  readonly waiting: readonly string[];
}

export interface PlanInput {
  readonly phase: Phase;
  readonly objects: readonly Observed[];
  readonly controller: ControllerState;
  /** the timeout has passed */
  readonly timedOut: boolean;
}

export const refOf = (o: Pick<Observed, 'kind' | 'namespace' | 'name'>): string =>
  `${o.kind} ${o.namespace}/${o.name}`;

const step = (action: Step['action'], o: Observed): Step => ({
  action,
  kind: o.kind,
  namespace: o.namespace,
  name: o.name,
});

/**
 * What to do next. pre-delete: delete the release's own resources; once the controller is
 * known to be stopped (or the timeout passed) remove the finalizer from those still held by
 * it. post-delete: remove the finalizer from every resource, once the controller is not known
 * to be running (or the timeout passed). Other finalizers are never touched nor waited for.
 */
export function plan(input: PlanInput): Plan {
  const held = (o: Observed) => o.finalizers.includes(FINALIZER);
  const steps: Step[] = [];
  const waiting: string[] = [];
  if (input.phase === 'pre-delete') {
    const mayRemove = input.controller === 'stopped' || input.timedOut;
    for (const o of input.objects.filter((x) => x.own)) {
      if (!o.deleting) {
        steps.push(step('delete', o));
        if (held(o)) waiting.push(refOf(o));
      } else if (held(o)) {
        if (mayRemove) steps.push(step('remove-finalizer', o));
        else waiting.push(refOf(o));
      }
    }
  } else {
    const mayRemove = input.controller !== 'running' || input.timedOut;
    for (const o of input.objects.filter(held)) {
      if (mayRemove) steps.push(step('remove-finalizer', o));
      else waiting.push(refOf(o));
    }
  }
  return { steps, done: steps.length === 0 && waiting.length === 0, waiting };
}

/** A Lease's spec as read: held while renewTime + leaseDurationSeconds is ahead of now. */
export function leaseState(
  spec: { holderIdentity?: string; renewTime?: Date | string; leaseDurationSeconds?: number },
  nowMs: number,
): ControllerState {
  if (spec.holderIdentity === undefined || spec.holderIdentity === '') return 'stopped';
  if (spec.renewTime === undefined) return 'stopped';
  const renewed = new Date(spec.renewTime).getTime();
  if (Number.isNaN(renewed)) return 'stopped';
  return renewed + (spec.leaseDurationSeconds ?? 0) * 1000 < nowMs ? 'stopped' : 'running';
}

// ---- the Kubernetes edges ----

export interface Cluster {
  /** the release's own resources (namespace + selector) or every one (within scope) */
  list(which: 'own' | 'all'): Promise<Observed[]>;
  controller(): Promise<ControllerState>;
  /** carries out one step; a resource already gone is no error */
  apply(s: Step): Promise<'done' | 'conflict'>;
  /** deletes the helm test Pod; false when there was none */
  deleteTestPod(): Promise<boolean>;
}

const PLURALS: Readonly<Record<Kind, string>> = {
  EventStream: EVENTSTREAM_PLURAL,
  EventSubscription: EVENTSUBSCRIPTION_PLURAL,
};

interface Listed {
  items: KubernetesObject[];
}

const gvr = (kind: Kind) => ({ group: API_GROUP, version: API_VERSION, plural: PLURALS[kind] });

/** Lists one kind; remembers the objects (with their resourceVersion) in `seen`. */
async function listKind(
  custom: CustomObjectsApi,
  cfg: UninstallCleanupConfig,
  seen: Map<string, KubernetesObject>,
  kind: Kind,
  which: 'own' | 'all',
): Promise<Observed[]> {
  let listed: Listed;
  try {
    listed = (
      which === 'own'
        ? await custom.listNamespacedCustomObject({
            ...gvr(kind),
            namespace: cfg.namespace,
            labelSelector: cfg.selector,
          })
        : await custom.listClusterCustomObject({
            ...gvr(kind),
            ...(cfg.scope !== undefined ? { labelSelector: cfg.scope } : {}),
          })
    ) as Listed;
  } catch (err) {
    // the CRD is gone (uninstalled with crds.keep=false): nothing of this kind is left
    if (isNotFound(err)) return [];
    throw new Error(`listing ${PLURALS[kind]} failed`, { cause: err });
  }
  return listed.items.map((item) => {
    const o: Observed = {
      kind,
      namespace: item.metadata?.namespace ?? '',
      name: item.metadata?.name ?? '',
      finalizers: item.metadata?.finalizers ?? [],
      deleting: item.metadata?.deletionTimestamp !== undefined,
      own: which === 'own',
    };
    seen.set(refOf(o), item);
    return o;
  });
}

async function readController(
  leases: CoordinationV1Api,
  cfg: UninstallCleanupConfig,
): Promise<ControllerState> {
  if (cfg.controllerLease === undefined) return 'unknown';
  try {
    const lease = await leases.readNamespacedLease({
      namespace: cfg.namespace,
      name: cfg.controllerLease,
    });
    return leaseState(lease.spec ?? {}, Date.now());
  } catch (err) {
    if (isNotFound(err)) return 'stopped';
    throw new Error(`reading the controller's Lease ${cfg.controllerLease} failed`, {
      cause: err,
    });
  }
}

async function applyStep(
  custom: CustomObjectsApi,
  seen: ReadonlyMap<string, KubernetesObject>,
  s: Step,
): Promise<'done' | 'conflict'> {
  const at = { ...gvr(s.kind), namespace: s.namespace, name: s.name };
  try {
    if (s.action === 'delete') {
      await custom.deleteNamespacedCustomObject(at);
      return 'done';
    }
    const obj = seen.get(refOf(s));
    if (obj === undefined) return 'conflict'; // not in the last list: look again
    const finalizers = (obj.metadata?.finalizers ?? []).filter((f) => f !== FINALIZER);
    // carries metadata.resourceVersion: a change since the list is a 409, seen next round
    await custom.replaceNamespacedCustomObject({
      ...at,
      body: { ...obj, metadata: { ...obj.metadata, finalizers } },
    });
    return 'done';
  } catch (err) {
    if (isNotFound(err)) return 'done';
    if (isConflict(err)) return 'conflict';
    throw new Error(`${s.action} on ${refOf(s)} failed`, { cause: err });
  }
}

async function deletePod(core: CoreV1Api, namespace: string, name: string): Promise<boolean> {
  try {
    await core.deleteNamespacedPod({ namespace, name });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw new Error(`deleting the helm test Pod ${name} failed`, { cause: err });
  }
}

export function kubeCluster(kc: KubeConfig, cfg: UninstallCleanupConfig): Cluster {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const leases = kc.makeApiClient(CoordinationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  // the objects of the last list, for updates (they carry the resourceVersion)
  const seen = new Map<string, KubernetesObject>();
  return {
    async list(which) {
      seen.clear();
      const [streams, subs] = await Promise.all([
        listKind(custom, cfg, seen, EVENTSTREAM_KIND, which),
        listKind(custom, cfg, seen, EVENTSUBSCRIPTION_KIND, which),
      ]);
      return [...subs, ...streams];
    },
    controller: () => readController(leases, cfg),
    apply: (s) => applyStep(custom, seen, s),
    deleteTestPod: async () =>
      cfg.testPod === undefined ? false : deletePod(core, cfg.namespace, cfg.testPod),
  };
}

export interface CleanupDeps {
  readonly cluster: Cluster;
  readonly log: Logger;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One round: observe, plan, act. Returns the plan it carried out. */
async function round(
  phase: Phase,
  timedOut: boolean,
  cluster: Cluster,
  log: Logger,
): Promise<{ result: Plan; controller: ControllerState }> {
  const [objects, controller] = await Promise.all([
    cluster.list(phase === 'pre-delete' ? 'own' : 'all'),
    cluster.controller(),
  ]);
  const result = plan({ phase, objects, controller, timedOut });
  const reason = controller === 'running' || timedOut ? 'timeout' : `controller ${controller}`;
  for (const s of result.steps) {
    const outcome = await cluster.apply(s);
    const fields = { kind: s.kind, namespace: s.namespace, name: s.name };
    if (outcome === 'conflict') log.debug(fields, 'changed meanwhile; looking again');
    else if (s.action === 'delete') log.info(fields, 'deleted a resource of the release');
    else log.info({ ...fields, reason }, 'removed the finalizer');
  }
  return { result, controller };
}

/** Logs what is waited for when it changes, and a held Lease at the timeout once. */
function progressLog(log: Logger, timeoutMs: number) {
  let lastWaiting = '';
  let warned = false;
  return (result: Plan, controller: ControllerState, timedOut: boolean): string => {
    if (timedOut && controller === 'running' && !warned) {
      warned = true;
      log.warn({ timeoutMs }, 'the controller still holds its Lease at the timeout');
    }
    const waiting = result.waiting.join(', ');
    if (waiting !== '' && waiting !== lastWaiting) {
      lastWaiting = waiting;
      log.info({ waitingFor: result.waiting, controller }, 'waiting for the controller');
    }
    return waiting;
  };
}

/** Observes, plans and acts until the phase is done; throws when it cannot finish. */
export async function runPhase(
  phase: Phase,
  cfg: Pick<UninstallCleanupConfig, 'timeoutMs'>,
  deps: CleanupDeps,
): Promise<void> {
  const now = Date.now;
  const log = deps.log.child({ stage: phase });
  const progress = progressLog(log, cfg.timeoutMs);
  const started = now();
  const deadline = started + cfg.timeoutMs;
  const giveUp = deadline + GRACE_MS;
  for (;;) {
    const timedOut = now() >= deadline;
    let outcome;
    try {
      outcome = await round(phase, timedOut, deps.cluster, log);
    } catch (err) {
      if (!isTransient(err) || now() >= giveUp) throw err;
      log.warn({ err }, 'API request failed; retrying');
      await sleep(POLL_MS);
      continue;
    }
    if (outcome.result.done) {
      log.info({ ms: now() - started }, 'stage done');
      return;
    }
    const waiting = progress(outcome.result, outcome.controller, timedOut);
    if (now() >= giveUp) {
      const s = Math.round((cfg.timeoutMs + GRACE_MS) / 1000);
      throw new Error(`gave up after ${String(s)}s: ${waiting || 'resources keep changing'}`);
    }
    await sleep(POLL_MS);
  }
}

/** Runs the configured stage(s). */
export async function runCleanup(cfg: UninstallCleanupConfig, deps: CleanupDeps): Promise<void> {
  deps.log.info(
    {
      stage: cfg.stage,
      namespace: cfg.namespace,
      selector: cfg.selector,
      scope: cfg.scope,
      controllerLease: cfg.controllerLease,
      timeoutMs: cfg.timeoutMs,
    },
    'uninstall cleanup started',
  );
  if (cfg.stage !== 'post-delete') {
    await runPhase('pre-delete', cfg, deps);
    if (await deps.cluster.deleteTestPod()) {
      deps.log.info({ pod: cfg.testPod }, 'deleted the helm test Pod');
    }
  }
  if (cfg.stage !== 'pre-delete') await runPhase('post-delete', cfg, deps);
}

export async function runUninstallCleanup(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
): Promise<number> {
  let cfg: UninstallCleanupConfig | 'help';
  let kc: KubeConfig;
  try {
    cfg = parseUninstallCleanupConfig(argv, env);
    if (cfg === 'help') {
      out.write(UNINSTALL_CLEANUP_USAGE);
      return 0;
    }
    kc = loadKubeConfig(cfg.kubeconfig, env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(
      `eventwire uninstall-cleanup: ${e.message}\nRun eventwire uninstall-cleanup --help for the options.\n`,
    );
    return 2;
  }
  const log = createLogger({
    component: 'uninstall-cleanup',
    level: cfg.logLevel,
    destination: out,
  });
  try {
    await runCleanup(cfg, { cluster: kubeCluster(kc, cfg), log });
    return 0;
  } catch (e) {
    log.error({ err: e }, 'uninstall cleanup failed');
    return 1;
  }
}
