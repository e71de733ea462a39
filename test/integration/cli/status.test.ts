// `eventwire status` against the real control plane, controller and nats-server: one Ready
// subscription and one whose sink is missing, with the lag the controller reports and the
// dead letters the dispatcher wrote; the table, --json, -A, and exit 2 for wrong arguments.
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EventSubscription } from '../../../src/api/types.ts';
import { runPublish } from '../../../src/cli/publish.ts';
import { runStatus, type SubscriptionRow } from '../../../src/cli/status.ts';
import type { ControllerHandle } from '../../../src/controller/controller.ts';
import { DeadLetterStats, kubeSubscriptionStatusApi } from '../../../src/dispatcher/stats-flush.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import {
  Resources,
  ensureNamespace,
  scoped,
  startTestController,
  waitForCondition,
} from '../../harness/controller.ts';
import { installCrds } from '../../harness/crds.ts';
import { waitFor } from '../../harness/index.ts';
import { capture, runCli, unique } from './helpers.ts';

const scope = 'cli-status';
const ns = unique('cli-status');
const prefix = ns.replace('-', '.');

function sub(name: string, sink: EventSubscription['spec']['sink']): EventSubscription {
  return scoped(
    {
      apiVersion: 'eventwire.io/v1alpha1',
      kind: 'EventSubscription',
      metadata: { name, namespace: ns },
      spec: { stream: { name: 'events' }, sink },
    },
    scope,
  );
}

describe('eventwire status', () => {
  const kc = new KubeConfig();
  let controller: ControllerHandle;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    await installCrds(kc);
    await ensureNamespace(kc, ns);
    controller = await startTestController({
      kubeconfigPath: inject('kubeconfigPath'),
      natsUrl: inject('natsUrl'),
      scope,
    });
    const res = new Resources(kc);
    await res.createStream(
      scoped(
        {
          apiVersion: 'eventwire.io/v1alpha1',
          kind: 'EventStream',
          metadata: { name: 'events', namespace: ns },
          spec: { subjectPrefix: prefix, storage: 'memory', deletionPolicy: 'Delete' },
        },
        scope,
      ),
    );
    await waitForCondition('EventStream', () => res.getStream(ns, 'events'), 'Ready', 'True');
    // no dispatcher runs here: the events stay pending, which is the lag status shows
    await res.createSub(sub('ready', { uri: 'http://127.0.0.1:9/events' }));
    await res.createSub(
      sub('no-sink', { ref: { apiVersion: 'v1', kind: 'Service', name: 'missing', port: 80 } }),
    );
    await waitForCondition('ready', () => res.getSub(ns, 'ready'), 'Ready', 'True');
    await waitForCondition('no-sink', () => res.getSub(ns, 'no-sink'), 'SinkResolved', 'False');
    // two dead letters of 'ready', written to its status as the dispatcher writes them
    const deadLettered = new DeadLetterStats({
      api: kubeSubscriptionStatusApi(kc),
      intervalMs: 60_000,
      log: silentLogger(),
    });
    const uid = (await res.getSub(ns, 'ready')).metadata?.uid;
    deadLettered.add(`${ns}/ready`, uid);
    deadLettered.add(`${ns}/ready`, uid);
    await deadLettered.stop();
    for (const id of ['a', 'b', 'c']) {
      const { out } = capture();
      const args = ['--nats', '--nats-url', inject('natsUrl'), '--subject-prefix', prefix];
      expect(
        await runPublish([...args, '--source', '/s', '--type', 't', '--id', id], {}, out),
      ).toBe(0);
    }
    env = { KUBECONFIG: inject('kubeconfigPath') };
  });
  afterAll(async () => {
    const res = new Resources(kc);
    await res.deleteSub(ns, 'ready');
    await res.deleteSub(ns, 'no-sink');
    await res.deleteStream(ns, 'events');
    await controller.stop();
  });

  it('lists the subscriptions of a namespace with readiness, reason, sink, lag and dead letters', async () => {
    let rows: SubscriptionRow[] = [];
    await waitFor(
      'the controller to report the lag',
      async () => {
        const r = await runCli(runStatus, ['-n', ns, '--json'], env);
        expect(r.code).toBe(0);
        rows = JSON.parse(r.out) as SubscriptionRow[];
        return rows.every((row) => row.pending === 3);
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(rows.map((r) => [r.name, r.ready, r.reason])).toEqual([
      ['no-sink', 'False', 'SinkNotFound'],
      ['ready', 'True', 'Ready'],
    ]);
    // the controller wrote the lag after the dead letters were counted, and kept the count
    expect(rows[1]).toMatchObject({
      sink: 'http://127.0.0.1:9/events',
      ackPending: 0,
      deadLettered: 2,
    });
    expect(rows[0]?.deadLettered).toBeNull();
    const streamName = (await new Resources(kc).getStream(ns, 'events')).status?.streamName;
    expect(rows[1]?.stream).toBe(streamName);

    const table = await runCli(runStatus, ['--namespace', ns], env);
    expect(table.code).toBe(0);
    const lines = table.out.trim().split('\n');
    // the header as printed: the columns in this order, two spaces or more apart
    expect(lines[0]).toMatch(
      /^NAME {2,}READY {2,}REASON {2,}STREAM {2,}SINK {2,}PENDING {2,}ACK-PENDING {2,}DEAD-LETTERED {2,}DISCARDED$/,
    );
    expect(lines[2]?.split(/\s{2,}/)).toEqual([
      'ready',
      'True',
      'Ready',
      rows[1]?.stream,
      'http://127.0.0.1:9/events',
      '3',
      '0',
      '2',
      '0',
    ]);
    expect(lines[1]?.split(/\s{2,}/).slice(-2)).toEqual(['0', '0']); // no-sink: none counted
  });

  it('lists every namespace with -A', async () => {
    const r = await runCli(runStatus, ['-A'], env);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[0]).toMatch(/^NAMESPACE\s+NAME\s+READY/);
    expect(r.out).toMatch(new RegExp(`^${ns}\\s+no-sink\\s+False\\s+SinkNotFound`, 'm'));
  });

  it('says so when a namespace has no subscriptions', async () => {
    const r = await runCli(runStatus, ['-n', 'kube-public'], env);
    expect(r.code).toBe(0);
    expect(r.out).toBe('');
    expect(r.err).toBe('No EventSubscriptions found.\n');
  });

  it('refuses wrong arguments with exit 2, naming them', async () => {
    const cases: [string[], string][] = [
      [['-n', ns, '-A'], 'use one of --namespace and --all-namespaces'],
      [['-n', 'Not_A_Namespace'], '--namespace Not_A_Namespace is not a namespace name'],
      [['ready'], "Unexpected argument 'ready'"],
      [['--watch'], "Unknown option '--watch'"],
      [['--kubeconfig', '/nonexistent/kubeconfig'], 'cannot read the kubeconfig'],
    ];
    for (const [argv, message] of cases) {
      const r = await runCli(runStatus, argv, env);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err).toContain(message);
    }
    const help = await runCli(runStatus, ['-h'], env);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: eventwire status');
  });
});
