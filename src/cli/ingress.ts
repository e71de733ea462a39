// `eventwire ingress`: parse the configuration, serve until SIGTERM or SIGINT. The stop ends
// within the publish timeout + INGRESS_STOP_MARGIN_MS even when NATS or the API server is gone.
import { parseIngressConfig } from '../ingress/config.ts';
import { startIngress } from '../ingress/server.ts';
import { createLogger } from '../observability/logger.ts';
import { StopSignals, logStopEvents } from './signals.ts';

/** After the first SIGTERM the process exits within the publish timeout + this. */
export const INGRESS_STOP_MARGIN_MS = 10_000;

export async function runIngress(env: NodeJS.ProcessEnv): Promise<number> {
  const cfg = parseIngressConfig(env);
  const log = createLogger({ component: 'ingress', level: cfg.logLevel });
  // a signal during start-up stops once started (or at the deadline, naming the start-up)
  let phase = 'start-up';
  const signals = new StopSignals({
    report: logStopEvents(log),
    pending: () => [phase],
    deadlineMs: cfg.publishTimeoutMs + INGRESS_STOP_MARGIN_MS,
  });
  try {
    const ingress = await startIngress(cfg, { log });
    phase = 'the graceful stop (its steps are logged above)';
    await signals.received;
    await ingress.close();
    return 0;
  } finally {
    signals.dispose();
  }
}
