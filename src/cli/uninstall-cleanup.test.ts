import { describe, expect, it } from 'vitest';
import { UsageError } from './kube.ts';
import {
  leaseState,
  parseUninstallCleanupConfig,
  plan,
  type Observed,
  type PlanInput,
} from './uninstall-cleanup.ts';

const F = 'eventwire.io/finalizer';

function obj(name: string, over: Partial<Observed> = {}): Observed {
  return {
    kind: 'EventStream',
    namespace: 'ew',
    name,
    finalizers: [F],
    deleting: false,
    own: true,
    ...over,
  };
}

const input = (over: Partial<PlanInput>): PlanInput => ({
  phase: 'pre-delete',
  objects: [],
  controller: 'running',
  timedOut: false,
  ...over,
});

const actions = (p: ReturnType<typeof plan>) => p.steps.map((s) => `${s.action} ${s.name}`);

describe('plan, pre-delete', () => {
  it('deletes the release’s own resources and waits for the running controller to finalize them', () => {
    const p = plan(input({ objects: [obj('default'), obj('user', { own: false })] }));
    expect(actions(p)).toEqual(['delete default']);
    expect(p.waiting).toEqual(['EventStream ew/default']);
    expect(p.done).toBe(false);
    const deleting = plan(input({ objects: [obj('default', { deleting: true })] }));
    expect(deleting.steps).toEqual([]);
    expect(deleting.done).toBe(false);
  });

  it('removes the finalizer when the controller is stopped or the timeout passed, not before', () => {
    const objects = [obj('default', { deleting: true })];
    for (const [controller, timedOut, expected] of [
      ['running', false, []],
      ['unknown', false, []], // no Lease to ask: wait for the timeout
      ['stopped', false, ['remove-finalizer default']],
      ['running', true, ['remove-finalizer default']],
      ['unknown', true, ['remove-finalizer default']],
    ] as const) {
      expect(actions(plan(input({ objects, controller, timedOut }))), controller).toEqual(expected);
    }
  });

  it('is done when the own resources are gone or held only by other finalizers; never touches those', () => {
    expect(plan(input({ objects: [] })).done).toBe(true);
    const foreign = obj('default', { deleting: true, finalizers: ['example.com/keep'] });
    const p = plan(input({ objects: [foreign], controller: 'stopped' }));
    expect(p.steps).toEqual([]);
    expect(p.done).toBe(true);
    // an own resource without any finalizer is deleted, and nothing waits for it
    const bare = plan(input({ objects: [obj('bare', { finalizers: [] })] }));
    expect(actions(bare)).toEqual(['delete bare']);
    expect(bare.waiting).toEqual([]);
  });
});

describe('plan, post-delete', () => {
  const post = (over: Partial<PlanInput>) => plan(input({ phase: 'post-delete', ...over }));

  it('removes the finalizer from every resource once the controller is not running', () => {
    const objects = [
      obj('default'),
      obj('billing', { kind: 'EventSubscription', namespace: 'shop', own: false }),
      obj('other', { own: false, finalizers: ['example.com/keep'] }),
    ];
    for (const controller of ['stopped', 'unknown'] as const) {
      expect(actions(post({ objects, controller }))).toEqual([
        'remove-finalizer default',
        'remove-finalizer billing',
      ]);
    }
    // never deletes anything: the users' resources stay
    expect(post({ objects, controller: 'stopped' }).steps.map((s) => s.action)).not.toContain(
      'delete',
    );
  });

  it('waits while the controller holds its Lease (it would add the finalizer back), until the timeout', () => {
    const objects = [obj('billing', { own: false })];
    const waiting = post({ objects, controller: 'running' });
    expect(waiting.steps).toEqual([]);
    expect(waiting.done).toBe(false);
    expect(actions(post({ objects, controller: 'running', timedOut: true }))).toEqual([
      'remove-finalizer billing',
    ]);
    expect(post({ objects: [obj('x', { finalizers: [] })] }).done).toBe(true);
  });
});

describe('leaseState', () => {
  const now = Date.parse('2030-01-01T00:00:10Z');
  it('is running while the holder renews within the lease duration', () => {
    const spec = { holderIdentity: 'c-1', renewTime: '2030-01-01T00:00:00Z' };
    expect(leaseState({ ...spec, leaseDurationSeconds: 15 }, now)).toBe('running');
    expect(leaseState({ ...spec, leaseDurationSeconds: 5 }, now)).toBe('stopped');
    // released: no holder (what the controller writes on a graceful stop)
    expect(leaseState({ renewTime: spec.renewTime, leaseDurationSeconds: 15 }, now)).toBe(
      'stopped',
    );
    expect(leaseState({ holderIdentity: 'c-1' }, now)).toBe('stopped');
  });
});

describe('parseUninstallCleanupConfig', () => {
  const base = ['--namespace', 'ew', '--selector', 'app.kubernetes.io/instance=ew'];

  it('parses the flags the chart passes', () => {
    const cfg = parseUninstallCleanupConfig(
      [
        ...base,
        '--stage',
        'pre-delete',
        '--controller-lease',
        'ew-controller',
        '--scope',
        'team=a',
        '--test-pod',
        'ew-test',
        '--timeout',
        '90s',
      ],
      { EVENTWIRE_LOG_LEVEL: 'debug' },
    );
    expect(cfg).toEqual({
      stage: 'pre-delete',
      namespace: 'ew',
      selector: 'app.kubernetes.io/instance=ew',
      controllerLease: 'ew-controller',
      scope: 'team=a',
      testPod: 'ew-test',
      timeoutMs: 90_000,
      logLevel: 'debug',
    });
    expect(parseUninstallCleanupConfig(base, {})).toMatchObject({
      stage: 'all',
      timeoutMs: 60_000,
      logLevel: 'info',
    });
    expect(parseUninstallCleanupConfig([...base, '--scope', ''], {})).not.toHaveProperty('scope');
    expect(parseUninstallCleanupConfig(['-h'], {})).toBe('help');
  });

  it('refuses missing and wrong arguments with a usage error', () => {
    for (const [argv, message] of [
      [['--selector', 'a=b'], /--namespace is required/],
      [['--namespace', 'ew'], /--selector is required/],
      [[...base, '--stage', 'later'], /--stage later is not one of/],
      [[...base, '--timeout', 'soon'], /--timeout/],
      [[...base, '--test-pod', 'Not_A_Name'], /--test-pod/],
      [['--namespace', 'EW', '--selector', 'a=b'], /--namespace EW/],
      [[...base, 'extra'], /positional/],
    ] as const) {
      expect(() => parseUninstallCleanupConfig(argv, {}), argv.join(' ')).toThrow(UsageError);
      expect(() => parseUninstallCleanupConfig(argv, {}), argv.join(' ')).toThrow(message);
    }
  });
});
