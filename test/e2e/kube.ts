// Reading the cluster in the e2e suite.
import { setTimeout as sleep } from 'node:timers/promises';
import { kubectl, kubectlJson } from './shell.ts';

export interface PodInfo {
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly spec: { readonly containers: readonly { image: string; imagePullPolicy?: string }[] };
  readonly status: {
    readonly phase?: string;
    readonly conditions?: readonly { type: string; status: string }[];
  };
}

export async function podsOf(namespace: string, selector?: string): Promise<PodInfo[]> {
  const args = ['-n', namespace, 'get', 'pods', ...(selector ? ['-l', selector] : [])];
  return (await kubectlJson<{ items: PodInfo[] }>(args)).items;
}

export const isReady = (p: PodInfo): boolean =>
  p.status.phase === 'Running' &&
  (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** Poll `probe` until it returns a value other than undefined; fail with `what` and the last error. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 2_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: last });
    }
    await sleep(intervalMs);
  }
}

/** GET a path of a Pod's own HTTP server on 127.0.0.1:8080, through kubectl exec and Node. */
export async function getFromPod(namespace: string, target: string, path: string): Promise<string> {
  return kubectl([
    '-n',
    namespace,
    'exec',
    target,
    '--',
    'node',
    '-e',
    `fetch('http://127.0.0.1:8080${path}').then(async (r) => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); })`,
  ]);
}
