// `eventwire controller`: parse the configuration, run until SIGTERM or lost leadership.
import { once } from 'node:events';
import { parseControllerConfig } from '../controller/config.ts';
import { startController } from '../controller/controller.ts';

export async function runController(env: NodeJS.ProcessEnv): Promise<number> {
  const cfg = parseControllerConfig(env);
  const controller = await startController(cfg);
  const ended = await Promise.race([
    once(process, 'SIGTERM').then(() => 'signal' as const),
    once(process, 'SIGINT').then(() => 'signal' as const),
    controller.lostLeadership.then(() => 'lost' as const),
  ]);
  await controller.stop();
  // a replica that lost its lease exits so that it restarts clean as a candidate
  return ended === 'lost' ? 1 : 0;
}
