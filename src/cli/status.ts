// `eventwire status`: the EventSubscriptions of a namespace (or all) with readiness, the
// stream, the sink and the lag, from their status.
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CustomObjectsApi } from '@kubernetes/client-node';
import type { EventSubscription, EventSubscriptionList } from '../api/types.ts';
import { API_GROUP, API_VERSION, EVENTSUBSCRIPTION_PLURAL } from '../api/types.ts';
import { UsageError, contextNamespace, loadKubeConfig } from './kube.ts';

export const STATUS_USAGE = `Usage: eventwire status [-n NAMESPACE | -A] [--json]

Lists EventSubscriptions with readiness, the reason when not Ready, the JetStream stream,
the resolved sink and the lag (status.stats, refreshed by the controller every resync):
PENDING events not yet delivered, ACK-PENDING deliveries in flight; DEAD-LETTERED events sent
to the dead letter (written by the dispatcher a few seconds after), DISCARDED stream messages
discarded before the subscription read them. The API is reached through KUBECONFIG.
Troubleshooting by reason: docs/troubleshooting.md.

Options:
  -n, --namespace NS   the namespace (default: the kubeconfig context's, else default)
  -A, --all-namespaces every namespace
  --json               a JSON array instead of the table
  --kubeconfig PATH    (overrides KUBECONFIG)
  -h, --help           show this help
`;

const OPTIONS = {
  namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  json: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface SubscriptionRow {
  readonly namespace: string;
  readonly name: string;
  readonly ready: string;
  readonly reason: string;
  readonly message: string;
  readonly stream: string;
  readonly sink: string;
  readonly pending: number | null;
  readonly ackPending: number | null;
  readonly redelivered: number | null;
  readonly deadLettered: number | null;
  /** stream messages discarded before the subscription read them (an upper bound) */
  readonly discardedUnread: number | null;
}

function streamOf(sub: EventSubscription): string {
  const fromStatus = sub.status?.consumer?.stream;
  if (fromStatus !== undefined) return fromStatus;
  const ref = sub.spec.stream;
  if (ref === undefined) return '(default)';
  return ref.namespace === undefined ? ref.name : `${ref.namespace}/${ref.name}`;
}

function readyOf(sub: EventSubscription): Pick<SubscriptionRow, 'ready' | 'reason' | 'message'> {
  const c = sub.status?.conditions?.find((x) => x.type === 'Ready');
  if (c === undefined) return { ready: 'Unknown', reason: '', message: '' };
  return { ready: c.status, reason: c.reason, message: c.message };
}

export function rowOf(sub: EventSubscription): SubscriptionRow {
  const stats = sub.status?.stats ?? {};
  return {
    namespace: sub.metadata?.namespace ?? '',
    name: sub.metadata?.name ?? '',
    ...readyOf(sub),
    stream: streamOf(sub),
    sink: sub.status?.sinkUri ?? sub.spec.sink.uri ?? '',
    pending: stats.pending ?? null,
    ackPending: stats.ackPending ?? null,
    redelivered: stats.redelivered ?? null,
    deadLettered: stats.deadLettered ?? null,
    discardedUnread: stats.discardedUnread ?? null,
  };
}

/** Columns padded to their widest cell, as kubectl prints them. */
export function table(rows: readonly SubscriptionRow[], withNamespace: boolean): string {
  const head = [
    'NAME',
    'READY',
    'REASON',
    'STREAM',
    'SINK',
    'PENDING',
    'ACK-PENDING',
    'DEAD-LETTERED',
    'DISCARDED',
  ];
  const cells = rows.map((r) => [
    r.name,
    r.ready,
    r.reason,
    r.stream,
    r.sink,
    String(r.pending ?? '-'),
    String(r.ackPending ?? '-'),
    String(r.deadLettered ?? 0),
    String(r.discardedUnread ?? 0),
  ]);
  const all = withNamespace
    ? [['NAMESPACE', ...head], ...cells.map((c, i) => [rows[i]?.namespace ?? '', ...c])]
    : [head, ...cells];
  const widths = all[0]?.map((_, col) => Math.max(...all.map((line) => (line[col] ?? '').length)));
  return all
    .map((line) =>
      line
        .map((cell, col) => (col === line.length - 1 ? cell : cell.padEnd(widths?.[col] ?? 0)))
        .join('   '),
    )
    .join('\n')
    .concat('\n');
}

export async function runStatus(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: Writable,
  err: Writable,
): Promise<number> {
  try {
    let values;
    try {
      ({ values } = parseArgs({
        args: [...argv],
        options: OPTIONS,
        strict: true,
        allowPositionals: false,
      }));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (values.help === true) {
      out.write(STATUS_USAGE);
      return 0;
    }
    if (values.namespace !== undefined && values['all-namespaces'] === true) {
      throw new UsageError('use one of --namespace and --all-namespaces');
    }
    if (
      values.namespace !== undefined &&
      !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(values.namespace)
    ) {
      throw new UsageError(`--namespace ${values.namespace} is not a namespace name`);
    }
    const kc = loadKubeConfig(values.kubeconfig, env);
    const api = kc.makeApiClient(CustomObjectsApi);
    const all = values['all-namespaces'] === true;
    const group = { group: API_GROUP, version: API_VERSION, plural: EVENTSUBSCRIPTION_PLURAL };
    const list = (
      all
        ? await api.listClusterCustomObject(group)
        : await api.listNamespacedCustomObject({
            ...group,
            namespace: values.namespace ?? contextNamespace(kc),
          })
    ) as EventSubscriptionList;
    const rows = list.items
      .map(rowOf)
      .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
    if (values.json === true) out.write(`${JSON.stringify(rows, null, 2)}\n`);
    else if (rows.length === 0) err.write('No EventSubscriptions found.\n');
    else out.write(table(rows, all));
    return 0;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`eventwire status: ${e.message}\nRun eventwire status --help for the options.\n`);
    return 2;
  }
}
