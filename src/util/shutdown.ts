// Stopping within a bound. A stop is a sequence of steps (stop leading, stop the informers,
// close NATS, ...); any of them can wait on a service that is gone. Each step gets its own
// time limit: a step that fails or overruns is logged with its name and the stop goes on
// with the next one, so a stop always ends, and the log says what was left unfinished.
import type { Logger } from '../observability/logger.ts';

export interface StopStep {
  /** what the step does, for the log: "release the lease", "close the NATS connection" */
  readonly name: string;
  readonly timeoutMs: number;
  readonly run: () => Promise<unknown>;
}

export type Settled<T> =
  | { readonly kind: 'done'; readonly value: T }
  | { readonly kind: 'failed'; readonly err: unknown }
  | { readonly kind: 'timeout' };

/** How `promise` settles within `ms`; the timer is cleared as soon as it does. */
export function settleWithin<T>(promise: Promise<T>, ms: number): Promise<Settled<T>> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      resolve({ kind: 'timeout' });
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve({ kind: 'done', value });
      },
      (err: unknown) => {
        clearTimeout(timer);
        resolve({ kind: 'failed', err });
      },
    );
  });
}

/**
 * Runs the steps in order, each within its limit. Returns the names of the steps that failed
 * or overran (each also logged at warn level); an empty list is a clean stop.
 */
export async function runStopSteps(steps: readonly StopStep[], log: Logger): Promise<string[]> {
  const unfinished: string[] = [];
  for (const step of steps) {
    let result: Settled<unknown>;
    try {
      result = await settleWithin(step.run(), step.timeoutMs);
    } catch (err) {
      // run() threw before returning a promise
      result = { kind: 'failed', err };
    }
    if (result.kind === 'timeout') {
      log.warn({ step: step.name, timeoutMs: step.timeoutMs }, 'shutdown step timed out');
      unfinished.push(step.name);
    } else if (result.kind === 'failed') {
      log.warn({ step: step.name, err: result.err }, 'shutdown step failed');
      unfinished.push(step.name);
    }
  }
  return unfinished;
}
