// `eventwire controller`: parse the configuration, run until SIGTERM or lost leadership.
// The stop ends within CONTROLLER_STOP_DEADLINE_MS even when the API server or NATS is gone.
import { parseControllerConfig } from '../controller/config.ts';
import { startController } from '../controller/controller.ts';
import { createLogger } from '../observability/logger.ts';
import { StopSignals, logStopEvents } from './signals.ts';

/** After the first SIGTERM (or lost leadership) the process exits within this. */
export const CONTROLLER_STOP_DEADLINE_MS = 15_000;

export async function runController(env: NodeJS.ProcessEnv): Promise<number> {
  const cfg = parseControllerConfig(env);
  const log = createLogger({ component: 'controller', level: cfg.logLevel });
  // a signal during start-up stops once started (or at the deadline, naming the start-up)
  let phase = 'start-up';
  const signals = new StopSignals({
    report: logStopEvents(log),
    pending: () => [phase],
    deadlineMs: CONTROLLER_STOP_DEADLINE_MS,
  });
  try {
    const controller = await startController(cfg, { log });
    phase = 'the graceful stop (its steps are logged above)';
    const ended = await Promise.race([
      signals.received.then(() => 'signal' as const),
      controller.lostLeadership.then(() => 'lost' as const),
    ]);
    signals.beginStop();
    await controller.stop();
    // a replica that lost its lease exits so that it restarts clean as a candidate
    return ended === 'lost' ? 1 : 0;
  } finally {
    signals.dispose();
  }
}
