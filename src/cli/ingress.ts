// `eventwire ingress`: parse the configuration, serve until SIGTERM or SIGINT.
import { once } from 'node:events';
import { parseIngressConfig } from '../ingress/config.ts';
import { startIngress } from '../ingress/server.ts';

export async function runIngress(env: NodeJS.ProcessEnv): Promise<number> {
  const cfg = parseIngressConfig(env);
  const ingress = await startIngress(cfg);
  await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')]);
  await ingress.close();
  return 0;
}
