// `eventwire dispatcher`: parse the configuration, deliver until SIGTERM/SIGINT, then drain
// (stop pulling, finish deliveries in flight within the grace period, nak the rest).
import { once } from 'node:events';
import { parseDispatcherConfig } from '../dispatcher/config.ts';
import { startDispatcher } from '../dispatcher/dispatcher.ts';

export async function runDispatcher(env: NodeJS.ProcessEnv): Promise<number> {
  const cfg = parseDispatcherConfig(env);
  const dispatcher = await startDispatcher(cfg);
  await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')]);
  await dispatcher.stop(cfg.gracePeriodMs);
  return 0;
}
