// How the long-running commands (controller, dispatcher, ingress, dev) end. The first SIGINT
// or SIGTERM starts a graceful stop and arms a hard deadline; when the deadline passes, the
// process logs what was still pending and exits 1. A second SIGINT or SIGTERM exits at once
// with 128 + the signal's number (130, 143), as a shell reports a command it interrupted.
// Either early exit runs the command's emergency clean-up first (kill children, remove files).
import type { Logger } from '../observability/logger.ts';

export type StopSignal = 'SIGINT' | 'SIGTERM';
/** why a stop began: a signal, or (stopWhenOrphaned) the parent process exited */
export type StopReason = StopSignal | 'parent-exited';

const SIGNAL_NUMBERS: Readonly<Record<StopSignal, number>> = { SIGINT: 2, SIGTERM: 15 };

/** The exit code of a process that ends because of `signal`. */
export function exitCodeFor(signal: StopSignal): number {
  return 128 + SIGNAL_NUMBERS[signal];
}

/** What happened, for the command's output. */
export type StopEvent =
  | { readonly kind: 'stopping'; readonly reason: StopReason; readonly deadlineMs: number }
  | { readonly kind: 'second-signal'; readonly signal: StopSignal; readonly pending: string[] }
  | { readonly kind: 'deadline'; readonly deadlineMs: number; readonly pending: string[] }
  | { readonly kind: 'emergency-failed'; readonly err: unknown };

/** Reports stop events as structured log lines (the components' JSON logs). */
export function logStopEvents(log: Logger): (e: StopEvent) => void {
  return (e) => {
    switch (e.kind) {
      case 'stopping':
        log.info({ reason: e.reason, deadlineMs: e.deadlineMs }, 'stopping');
        break;
      case 'second-signal':
        log.warn({ signal: e.signal, pending: e.pending }, 'second signal; exiting now');
        break;
      case 'deadline':
        log.error(
          { deadlineMs: e.deadlineMs, pending: e.pending },
          'stop deadline passed; exiting',
        );
        break;
      case 'emergency-failed':
        log.error({ err: e.err }, 'emergency clean-up failed');
        break;
    }
  };
}

export interface StopSignalsOptions {
  readonly report: (e: StopEvent) => void;
  /** from the first signal (or beginStop) to the forced exit */
  readonly deadlineMs: number;
  /** what the stop still waits for, named in the log when the deadline passes */
  readonly pending?: () => readonly string[];
  /** synchronous last-ditch clean-up before an early exit */
  readonly emergency?: () => void;
  /** process.exit; replaced in tests */
  readonly exit?: (code: number) => void;
}

export class StopSignals {
  /** resolves with the first signal (or the parent's exit) */
  readonly received: Promise<StopReason>;
  readonly #opts: StopSignalsOptions;
  readonly #listeners: [StopSignal, () => void][];
  #resolve: (reason: StopReason) => void = () => undefined;
  #first: StopReason | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #orphanCheck: NodeJS.Timeout | undefined;

  /** Listens from now on: a signal during start-up is handled too. */
  constructor(opts: StopSignalsOptions) {
    this.#opts = opts;
    this.received = new Promise((resolve) => {
      this.#resolve = resolve;
    });
    this.#listeners = (['SIGINT', 'SIGTERM'] as const).map((signal) => {
      const listener = () => {
        this.#onStop(signal);
      };
      process.on(signal, listener);
      return [signal, listener];
    });
  }

  /** Arms the deadline for a stop that began without a signal (e.g. lost leadership). */
  beginStop(): void {
    if (this.#deadline !== undefined) return;
    const { deadlineMs } = this.#opts;
    this.#deadline = setTimeout(() => {
      this.#opts.report({ kind: 'deadline', deadlineMs, pending: this.#pending() });
      this.#exitNow(1);
    }, deadlineMs);
  }

  /**
   * Also stops when the parent process exits. `npm run dev` runs node under a shell; a
   * SIGTERM to npm reaches that shell, which dies without passing it on, and node, orphaned,
   * would run on unseen: it notices that its parent changed instead.
   */
  stopWhenOrphaned(intervalMs = 500): void {
    const parent = process.ppid;
    this.#orphanCheck = setInterval(() => {
      if (process.ppid !== parent) this.#onStop('parent-exited');
    }, intervalMs);
    this.#orphanCheck.unref();
  }

  /** The stop ended: no deadline, no listeners. */
  dispose(): void {
    clearTimeout(this.#deadline);
    clearInterval(this.#orphanCheck);
    for (const [signal, listener] of this.#listeners) process.off(signal, listener);
  }

  #onStop(reason: StopReason): void {
    if (this.#first === undefined) {
      this.#first = reason;
      clearInterval(this.#orphanCheck);
      this.#opts.report({ kind: 'stopping', reason, deadlineMs: this.#opts.deadlineMs });
      this.beginStop();
      this.#resolve(reason);
      return;
    }
    if (reason === 'parent-exited') return;
    this.#opts.report({ kind: 'second-signal', signal: reason, pending: this.#pending() });
    this.#exitNow(exitCodeFor(reason));
  }

  #pending(): string[] {
    return [...(this.#opts.pending?.() ?? ['the graceful stop'])];
  }

  #exitNow(code: number): void {
    try {
      this.#opts.emergency?.();
    } catch (err) {
      this.#opts.report({ kind: 'emergency-failed', err });
    }
    this.dispose();
    (this.#opts.exit ?? process.exit)(code);
  }
}
