// Go-style duration strings ("500ms", "30s", "5m", "1h30m", "168h"), as in core Kubernetes.

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

const WHOLE = /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/;
const PART = /([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g;

export class DurationError extends Error {
  readonly field: string;

  constructor(field: string, value: string) {
    super(
      `${field}: "${value}" is not a duration; write a number with a unit, such as 500ms, 30s, 5m or 168h`,
    );
    this.name = 'DurationError';
    this.field = field;
  }
}

/** Milliseconds in a Go duration string; "0" and "0s" are zero. Throws DurationError. */
export function parseDuration(value: string, field = 'duration'): number {
  if (value === '0') return 0;
  if (!WHOLE.test(value)) throw new DurationError(field, value);
  let total = 0;
  for (const m of value.matchAll(PART)) {
    total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  }
  return total;
}

/** Milliseconds to nanoseconds, as JetStream's API counts time. */
export function msToNanos(ms: number): number {
  return Math.round(ms * 1_000_000);
}

/** The shortest Go duration string for whole milliseconds (e.g. 90_000 -> "1m30s"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}
