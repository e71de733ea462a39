import { describe, expect, it } from 'vitest';
import { TOOL_SPECS, goBinaryName, parseSemVer, pinnedVersion } from './tools.ts';

describe('pinnedVersion', () => {
  const goMod = [
    'module eventwire.io/tools/kubernetes',
    '',
    'require k8s.io/kubernetes v1.37.2',
    '',
    'require (',
    '\tgo.etcd.io/etcd/server/v3 v3.7.3 // indirect',
    '\tk8s.io/kubernetes-extra v9.9.9',
    ')',
  ].join('\n');

  it('reads a single-line and a block require', () => {
    expect(pinnedVersion(goMod, 'k8s.io/kubernetes')).toBe('v1.37.2');
    expect(pinnedVersion(goMod, 'go.etcd.io/etcd/server/v3')).toBe('v3.7.3');
  });

  it('does not match a module that only shares a prefix', () => {
    expect(pinnedVersion(goMod, 'k8s.io/kube')).toBeUndefined();
  });
});

describe('parseSemVer', () => {
  it('reads the versions the tools print', () => {
    expect(parseSemVer('Kubernetes v1.37.2')).toEqual({ major: 1, minor: 37, patch: 2 });
    expect(parseSemVer('etcd Version: 3.7.3\nGit SHA: abc')).toEqual({
      major: 3,
      minor: 7,
      patch: 3,
    });
    expect(parseSemVer('nats-server: v2.15.3')).toEqual({ major: 2, minor: 15, patch: 3 });
    expect(parseSemVer('no version here')).toBeUndefined();
  });
});

describe('reuse rules', () => {
  const v = (s: string) => parseSemVer(s) ?? { major: 0, minor: 0, patch: 0 };

  it('reuses a kube-apiserver of the same minor only', () => {
    const accepts = TOOL_SPECS['kube-apiserver'].accepts;
    expect(accepts(v('1.37.0'), v('1.37.2'))).toBe(true);
    expect(accepts(v('1.36.9'), v('1.37.2'))).toBe(false);
  });

  it('reuses a kubectl within one minor of the API server', () => {
    const accepts = TOOL_SPECS.kubectl.accepts;
    expect(accepts(v('1.36.1'), v('1.37.2'))).toBe(true);
    expect(accepts(v('1.32.4'), v('1.37.2'))).toBe(false);
  });

  it('needs etcd 3.6+, nats-server 2.11+ and helm 3', () => {
    expect(TOOL_SPECS.etcd.accepts(v('3.5.21'), v('3.7.3'))).toBe(false);
    expect(TOOL_SPECS.etcd.accepts(v('3.6.0'), v('3.7.3'))).toBe(true);
    expect(TOOL_SPECS['nats-server'].accepts(v('2.10.29'), v('2.15.3'))).toBe(false);
    expect(TOOL_SPECS['nats-server'].accepts(v('2.11.0'), v('2.15.3'))).toBe(true);
    expect(TOOL_SPECS.helm.accepts(v('4.0.0'), v('3.22.0'))).toBe(false);
  });
});

describe('goBinaryName', () => {
  it('names a command after its last path element, skipping a major-version suffix', () => {
    expect(goBinaryName('k8s.io/kubernetes/cmd/kube-apiserver')).toBe('kube-apiserver');
    expect(goBinaryName('go.etcd.io/etcd/server/v3')).toBe('server');
    expect(goBinaryName('github.com/nats-io/nats-server/v2')).toBe('nats-server');
  });
});
