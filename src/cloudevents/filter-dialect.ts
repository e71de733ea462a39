// The filter dialects of the CloudEvents Subscriptions API, as the EventSubscription CRD
// carries them: each filter object has exactly one of `exact`, `prefix`, `suffix` (attribute
// name → string, all entries must match), `all`, `any` (non-empty lists), `not` (a filter)
// or `cel` (an expression). A list of top-level filters must all match. The shape is loose
// (everything optional) so the CRD's generated type and raw JSON both fit; `validateFilters`
// checks it. Shared by the dispatcher (evaluation) and the controller (subject pushdown).
import { isValidAttributeName } from './event.ts';

export interface Filter {
  readonly exact?: Readonly<Record<string, string>> | undefined;
  readonly prefix?: Readonly<Record<string, string>> | undefined;
  readonly suffix?: Readonly<Record<string, string>> | undefined;
  readonly all?: readonly Filter[] | undefined;
  readonly any?: readonly Filter[] | undefined;
  readonly not?: Filter | undefined;
  readonly cel?: string | undefined;
}

export const DIALECTS = ['exact', 'prefix', 'suffix', 'all', 'any', 'not', 'cel'] as const;
export type Dialect = (typeof DIALECTS)[number];
export type StringDialect = 'exact' | 'prefix' | 'suffix';

/** A filter whose structure was checked, as a discriminated union. */
export type CheckedFilter =
  | { readonly dialect: StringDialect; readonly attributes: readonly (readonly [string, string])[] }
  | { readonly dialect: 'all' | 'any'; readonly filters: readonly CheckedFilter[] }
  | { readonly dialect: 'not'; readonly filter: CheckedFilter }
  | { readonly dialect: 'cel'; readonly expression: string; readonly path: string };

export interface FilterProblem {
  /** Where, e.g. `filters[2].any[0].exact`. */
  readonly path: string;
  readonly message: string;
}

type Checked<T> = { ok: true; value: T } | { ok: false; problem: FilterProblem };

const problem = (path: string, message: string): { ok: false; problem: FilterProblem } => ({
  ok: false,
  problem: { path, message },
});

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkAttributes(value: unknown, path: string): Checked<[string, string][]> {
  if (!isRecord(value)) return problem(path, 'must be a map of attribute name to string');
  const entries = Object.entries(value);
  if (entries.length === 0) return problem(path, 'must name at least one attribute');
  const out: [string, string][] = [];
  for (const [name, v] of entries) {
    if (!isValidAttributeName(name)) {
      return problem(
        `${path}.${name}`,
        `${JSON.stringify(name)} is not a CloudEvents attribute name (lower-case a-z and 0-9 only)`,
      );
    }
    if (typeof v !== 'string') return problem(`${path}.${name}`, 'must be a string');
    out.push([name, v]);
  }
  return { ok: true, value: out };
}

function checkList(value: unknown, path: string): Checked<CheckedFilter[]> {
  if (!Array.isArray(value) || value.length === 0)
    return problem(path, 'must be a non-empty list of filters');
  const out: CheckedFilter[] = [];
  for (const [i, item] of (value as unknown[]).entries()) {
    const checked = checkFilter(item, `${path}[${i}]`);
    if (!checked.ok) return checked;
    out.push(checked.value);
  }
  return { ok: true, value: out };
}

function dialectOf(value: Record<string, unknown>, path: string): Checked<Dialect> {
  const present = Object.keys(value).filter(
    (key) => value[key] !== undefined && value[key] !== null,
  );
  const unknown = present.find((key) => !(DIALECTS as readonly string[]).includes(key));
  if (unknown !== undefined)
    return problem(
      `${path}.${unknown}`,
      `unknown filter dialect ${JSON.stringify(unknown)} (use one of ${DIALECTS.join(', ')})`,
    );
  const [dialect, ...more] = present as Dialect[];
  if (dialect === undefined) return problem(path, `must set one of ${DIALECTS.join(', ')}`);
  if (more.length > 0)
    return problem(path, `must set exactly one dialect, found ${present.join(' and ')}`);
  return { ok: true, value: dialect };
}

/** Checks one filter object; `path` locates it in messages. */
export function checkFilter(value: unknown, path: string): Checked<CheckedFilter> {
  if (!isRecord(value)) return problem(path, 'must be a filter object');
  const dialect = dialectOf(value, path);
  if (!dialect.ok) return dialect;
  const d = dialect.value;
  const at = `${path}.${d}`;
  switch (d) {
    case 'exact':
    case 'prefix':
    case 'suffix': {
      const attrs = checkAttributes(value[d], at);
      return attrs.ok ? { ok: true, value: { dialect: d, attributes: attrs.value } } : attrs;
    }
    case 'all':
    case 'any': {
      const list = checkList(value[d], at);
      return list.ok ? { ok: true, value: { dialect: d, filters: list.value } } : list;
    }
    case 'not': {
      const inner = checkFilter(value.not, at);
      return inner.ok ? { ok: true, value: { dialect: 'not', filter: inner.value } } : inner;
    }
    case 'cel': {
      const expr = value.cel;
      if (typeof expr !== 'string' || expr.trim() === '')
        return problem(at, 'must be a non-empty CEL expression');
      return { ok: true, value: { dialect: 'cel', expression: expr, path: at } };
    }
  }
}

/** Checks a subscription's top-level filter list (absent means match everything). */
export function validateFilters(filters: unknown, path = 'filters'): Checked<CheckedFilter[]> {
  if (filters === undefined || filters === null) return { ok: true, value: [] };
  if (!Array.isArray(filters)) return problem(path, 'must be a list of filters');
  const out: CheckedFilter[] = [];
  for (const [i, item] of (filters as unknown[]).entries()) {
    const checked = checkFilter(item, `${path}[${i}]`);
    if (!checked.ok) return checked;
    out.push(checked.value);
  }
  return { ok: true, value: out };
}
