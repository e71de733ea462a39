// Kubernetes helpers for tests.
import { KubeConfig } from '@kubernetes/client-node';

/** A copy of `kc` whose requests impersonate `user` (the admin may impersonate anyone). */
export function impersonating(kc: KubeConfig, user: string): KubeConfig {
  const cluster = kc.getCurrentCluster();
  const current = kc.getCurrentUser();
  if (!cluster || !current) throw new Error('kubeconfig has no current cluster or user');
  const out = new KubeConfig();
  out.loadFromOptions({
    clusters: [cluster],
    users: [{ ...current, name: `as-${user}`, impersonateUser: user }],
    contexts: [{ name: `as-${user}`, cluster: cluster.name, user: `as-${user}` }],
    currentContext: `as-${user}`,
  });
  return out;
}
