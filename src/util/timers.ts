// Timers safe for any duration. Node's setTimeout and setInterval take at most 2^31-1 ms
// (about 24.8 days): a longer delay prints a TimeoutOverflowWarning and fires after 1 ms.
// Durations that come from configuration (delivery.timeout, retryAfterMax, ack_wait) can be
// longer, so long timeouts are chained in parts and intervals are clamped.

/** The longest delay Node's timers accept, in ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay Node can time: negative and NaN become 0, anything past the limit the limit. */
export function clampTimerMs(ms: number): number {
  if (Number.isNaN(ms) || ms <= 0) return 0;
  return Math.min(ms, MAX_TIMER_MS);
}

export interface LongTimeout {
  clear(): void;
}

/**
 * Calls `fn` once after `ms`, for any `ms` (chained timers of at most MAX_TIMER_MS each).
 * The timers are unref'ed only when `unref` is set.
 */
export function setLongTimeout(
  fn: () => void,
  ms: number,
  opts: { unref?: boolean } = {},
): LongTimeout {
  const deadline = Date.now() + Math.max(0, ms);
  let remaining = Math.max(0, Number.isNaN(ms) ? 0 : ms);
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const part = clampTimerMs(remaining);
    timer = setTimeout(() => {
      remaining = part === remaining ? 0 : deadline - Date.now();
      if (remaining > 0) arm();
      else fn();
    }, part);
    if (opts.unref === true) timer.unref();
  };
  arm();
  return {
    clear: () => {
      clearTimeout(timer);
    },
  };
}

/** Waits `ms` (any duration); resolves false at once when `signal` aborts, true otherwise. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted === true) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      timer.clear();
      resolve(false);
    };
    const timer = setLongTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
