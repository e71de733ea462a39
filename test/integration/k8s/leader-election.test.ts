// Leader election on a real Lease: one leader among two candidates, takeover after the
// leader dies (stops renewing) once its lease expires, and a quick handover on release.
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { LeaderElector } from '../../../src/k8s/leader-election.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import { impersonating, waitFor } from '../../harness/index.ts';

const namespace = 'k8s-lease';
const timing = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };

const until = (what: string, cond: () => boolean, timeoutMs = 10_000) =>
  waitFor(what, () => Promise.resolve(cond()), { timeoutMs, intervalMs: 25 });

interface Candidate {
  readonly identity: string;
  readonly elector: LeaderElector;
  readonly events: string[];
  signal: AbortSignal | undefined;
}

describe('LeaderElector against a real API server', () => {
  const kc = new KubeConfig();
  let leases: CoordinationV1Api;
  const running: Candidate[] = [];

  function candidate(lease: string, identity: string, kubeConfig = kc): Candidate {
    const c: Candidate = {
      identity,
      events: [],
      signal: undefined,
      elector: new LeaderElector({
        kubeConfig,
        namespace,
        name: lease,
        identity,
        ...timing,
        logger: silentLogger(),
        onStartedLeading: (signal) => {
          c.signal = signal;
          c.events.push('started');
        },
        onStoppedLeading: () => {
          c.events.push('stopped');
        },
        onNewLeader: (leader) => {
          c.events.push(`leader:${leader}`);
        },
      }),
    };
    running.push(c);
    c.elector.start();
    return c;
  }

  const leaders = () => running.filter((c) => c.elector.isLeader());

  beforeAll(async () => {
    kc.loadFromFile(inject('kubeconfigPath'));
    leases = kc.makeApiClient(CoordinationV1Api);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.elector.stop({ release: true })));
  });

  it('elects exactly one of two candidates and records it on the Lease', async () => {
    const a = candidate('one-leader', 'a');
    const b = candidate('one-leader', 'b');
    await until('a leader', () => leaders().length === 1);
    const leader = leaders()[0];
    if (leader === undefined) throw new Error('no leader');
    // stays exactly one through several renewals
    const deadline = Date.now() + 2500;
    while (Date.now() < deadline) {
      expect(leaders()).toEqual([leader]);
      await new Promise((r) => setTimeout(r, 50));
    }
    const lease = await leases.readNamespacedLease({ name: 'one-leader', namespace });
    expect(lease.spec?.holderIdentity).toBe(leader.identity);
    expect(lease.spec?.leaseDurationSeconds).toBe(3);
    // microsecond RFC 3339 times, as client-go writes them
    const raw = lease.spec?.renewTime as unknown;
    const text = raw instanceof Date ? raw.toISOString() : String(raw);
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(leader.events).toEqual([`leader:${leader.identity}`, 'started']);
    const follower = leader === a ? b : a;
    expect(follower.events).toEqual([`leader:${leader.identity}`]);
    expect(follower.elector.observedLeader()).toBe(leader.identity);
  });

  it('takes over after the leader dies, once its lease has expired', async () => {
    candidate('takeover', 'a');
    candidate('takeover', 'b');
    await until('a leader', () => leaders().length === 1);
    const dead = leaders()[0];
    const other = running.find((c) => c !== dead);
    if (dead === undefined || other === undefined) throw new Error('no leader');
    // death: no more renewals, and no release
    const stoppedAt = Date.now();
    await dead.elector.stop();
    expect(dead.signal?.aborted).toBe(true);
    expect(dead.events.at(-1)).toBe('stopped');
    await until('the other candidate to lead', () => other.elector.isLeader(), 10_000);
    const tookMs = Date.now() - stoppedAt;
    // the last renewal was at most one retry period before the stop, so the lease outlives
    // the leader by at least leaseDuration - retryPeriod; then a jittered retry period
    expect(tookMs).toBeGreaterThanOrEqual(timing.leaseDurationMs - timing.retryPeriodMs - 100);
    expect(tookMs).toBeLessThan(timing.leaseDurationMs + 2.2 * timing.retryPeriodMs + 1000);
    const lease = await leases.readNamespacedLease({ name: 'takeover', namespace });
    expect(lease.spec?.holderIdentity).toBe(other.identity);
    expect(lease.spec?.leaseTransitions).toBe(1);
  });

  it('hands over at once when the leader stops and releases the lease', async () => {
    candidate('handover', 'a');
    candidate('handover', 'b');
    await until('a leader', () => leaders().length === 1);
    const first = leaders()[0];
    const other = running.find((c) => c !== first);
    if (first === undefined || other === undefined) throw new Error('no leader');
    const stoppedAt = Date.now();
    await first.elector.stop({ release: true });
    expect(first.elector.isLeader()).toBe(false);
    expect(first.events.at(-1)).toBe('stopped');
    await until('the other candidate to lead', () => other.elector.isLeader(), 10_000);
    // well within a lease duration: no waiting for expiry
    expect(Date.now() - stoppedAt).toBeLessThan((1 + 1.2) * timing.retryPeriodMs + 500);
  });

  it('becomes leader again after a restart when it is alone', async () => {
    const a = candidate('alone', 'a');
    await until('a to lead', () => a.elector.isLeader());
    await a.elector.stop({ release: true });
    running.splice(running.indexOf(a), 1);
    const again = candidate('alone', 'a');
    await until('a to lead again', () => again.elector.isLeader(), 5000);
    const lease = await leases.readNamespacedLease({ name: 'alone', namespace });
    expect(lease.spec?.holderIdentity).toBe('a');
  });

  it('stops leading when renewals fail past the renew deadline', async () => {
    // a candidate whose permission on leases is revoked while it leads: renewals get 403
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: {
        metadata: { name: 'lease-editor' },
        rules: [
          {
            apiGroups: ['coordination.k8s.io'],
            resources: ['leases'],
            verbs: ['get', 'create', 'update'],
          },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: 'elector-leases' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'lease-editor' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'elector' }],
      },
    });
    const c = candidate('deadline', 'restricted', impersonating(kc, 'elector'));
    await until('the restricted candidate to lead', () => c.elector.isLeader());
    await rbac.deleteNamespacedRoleBinding({ namespace, name: 'elector-leases' });
    const revokedAt = Date.now();
    await until('leadership to end', () => !c.elector.isLeader(), 10_000);
    const tookMs = Date.now() - revokedAt;
    expect(c.signal?.aborted).toBe(true);
    expect(c.events.at(-1)).toBe('stopped');
    // gives up after the renew deadline, before its lease (3 s) could expire for others
    expect(tookMs).toBeGreaterThanOrEqual(timing.renewDeadlineMs - timing.retryPeriodMs - 100);
    expect(tookMs).toBeLessThan(timing.leaseDurationMs);
    // and a release, which needs the revoked permission, fails loudly rather than silently
    running.splice(running.indexOf(c), 1);
    await expect(c.elector.stop({ release: true })).rejects.toThrow('release lease failed');
  });
});
