// `eventwire dispatcher`: parse the configuration, deliver until SIGTERM/SIGINT, then drain
// (stop pulling, finish deliveries in flight within the grace period, nak the rest). The stop
// ends within the grace period + DISPATCHER_STOP_MARGIN_MS even when NATS or the API server
// is gone.
import { parseDispatcherConfig } from '../dispatcher/config.ts';
import { startDispatcher } from '../dispatcher/dispatcher.ts';
import { createLogger } from '../observability/logger.ts';
import { StopSignals, logStopEvents } from './signals.ts';

/** After the first SIGTERM the process exits within the grace period + this. */
export const DISPATCHER_STOP_MARGIN_MS = 8_000;

export async function runDispatcher(env: NodeJS.ProcessEnv): Promise<number> {
  const cfg = parseDispatcherConfig(env);
  const log = createLogger({ component: 'dispatcher', level: cfg.logLevel });
  // a signal during start-up stops once started (or at the deadline, naming the start-up)
  let phase = 'start-up';
  const signals = new StopSignals({
    report: logStopEvents(log),
    pending: () => [phase],
    deadlineMs: cfg.gracePeriodMs + DISPATCHER_STOP_MARGIN_MS,
  });
  try {
    const dispatcher = await startDispatcher(cfg, { log });
    phase = 'the graceful stop (its steps are logged above)';
    await signals.received;
    await dispatcher.stop(cfg.gracePeriodMs);
    return 0;
  } finally {
    signals.dispose();
  }
}
