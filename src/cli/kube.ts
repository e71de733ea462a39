// Shared by the CLI commands that read the API: the kubeconfig (--kubeconfig, else KUBECONFIG,
// else ~/.kube/config or in-cluster) and usage errors.
import { KubeConfig } from '@kubernetes/client-node';

/** A wrong argument: the command prints it with a pointer to --help and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function loadKubeConfig(path: string | undefined, env: NodeJS.ProcessEnv): KubeConfig {
  const kc = new KubeConfig();
  const file = path ?? env.KUBECONFIG;
  if (file !== undefined && file !== '') {
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw new UsageError(`cannot read the kubeconfig ${file}: ${(err as Error).message}`);
    }
  } else {
    kc.loadFromDefault();
  }
  return kc;
}

/** The namespace of the kubeconfig's current context, else default. */
export function contextNamespace(kc: KubeConfig): string {
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return ctx?.namespace ?? 'default';
}

/** An API error's HTTP status, when it has one. */
export function apiStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}
