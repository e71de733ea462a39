// Typed readers over environment variables. Entry points parse their configuration once
// with these; nothing else reads process.env. Every error names the variable and the fix.
import { parseDuration } from '../api/duration.ts';

export class ConfigError extends Error {
  readonly variable: string;

  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
}

export function optionalStr(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

export function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(name, `"${v}" is not a whole number from ${min} to ${max}`);
  }
  return n;
}

export function bool(env: Env, name: string, fallback: boolean): boolean {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new ConfigError(name, `"${v}" is not a boolean; use true or false`);
}

/** A duration variable, in milliseconds. */
export function durationMs(env: Env, name: string, fallback: string): number {
  const v = str(env, name, fallback);
  try {
    return parseDuration(v, name);
  } catch {
    throw new ConfigError(
      name,
      `"${v}" is not a duration; write a number with a unit, such as 500ms, 30s or 5m`,
    );
  }
}

/** "namespace/name" */
export function namespacedName(
  env: Env,
  name: string,
): { namespace: string; name: string } | undefined {
  const v = optionalStr(env, name);
  if (v === undefined) return undefined;
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(v);
  if (!m?.[1] || !m[3]) {
    throw new ConfigError(name, `"${v}" is not namespace/name, for example eventwire/default`);
  }
  return { namespace: m[1], name: m[3] };
}
