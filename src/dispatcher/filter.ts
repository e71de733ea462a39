// Subscription filters, compiled once and evaluated per event by the dispatcher. The dialect
// (exact / prefix / suffix / all / any / not / cel) is checked in src/cloudevents/filter-dialect.ts.
//
// CEL environment (@bufbuild/cel, with the `strings` extension): one variable, `event`, a map
// holding every attribute present (specversion, id, source, type, subject, time,
// datacontenttype, dataschema and each extension, all strings; `time` too: compare with
// `timestamp(event.time)`) and `data`:
//   - datacontenttype JSON (application/json, text/json, */*+json): the parsed JSON value;
//   - datacontenttype absent: the parsed JSON value when the payload is JSON, else bytes;
//   - textual types (text/*, xml, form): a string;
//   - anything else: bytes. Absent when the event has no data or JSON data does not parse.
// Missing attributes are absent keys: test them with `has(event.subject)`. A runtime error
// (a missing key, a bad regex, a type mismatch) and a result that is not a boolean count as
// "no match"; `onCelError` reports them. Identifiers other than `event` and functions the
// environment lacks are compile errors.
import { celEnv, isCelError, parse, plan, type CelError } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import {
  attributesOf,
  attributeValue,
  isJsonMediaType,
  isTextMediaType,
  type CloudEvent,
} from '../cloudevents/event.ts';
import { validateFilters, type CheckedFilter, type Filter } from '../cloudevents/filter-dialect.ts';

export interface CompiledFilter {
  /** True when the event passes every top-level filter. */
  matches(event: CloudEvent): boolean;
  /** Number of CEL programs compiled (for metrics and tests). */
  readonly celPrograms: number;
}

export type CompileResult =
  { ok: true; filter: CompiledFilter } | { ok: false; path: string; message: string };

export interface CompileOptions {
  /** Called when a CEL expression fails at run time for an event (it then does not match). */
  readonly onCelError?: ((path: string, error: CelError, event: CloudEvent) => void) | undefined;
}

type Expr = ReturnType<typeof parse>['expr'];
type Program = ReturnType<typeof plan>;

const env = celEnv({ funcs: strings });
/** Identifiers CEL resolves besides `event`: type names. */
const TYPE_IDENTS = new Set([
  'int',
  'uint',
  'double',
  'bool',
  'string',
  'bytes',
  'list',
  'map',
  'null_type',
  'type',
  'dyn',
]);

/** Per-evaluation state: the CEL view of the event is built at most once per event. */
interface Ctx {
  readonly event: CloudEvent;
  cel: Record<string, unknown> | undefined;
}
type Predicate = (ctx: Ctx) => boolean;

// ---- CEL ------------------------------------------------------------------------------

function undeclared(expr: Expr | undefined, scope: ReadonlySet<string>): string | undefined {
  if (expr === undefined) return undefined;
  const kind = expr.exprKind;
  switch (kind.case) {
    case 'identExpr':
      return scope.has(kind.value.name) || TYPE_IDENTS.has(kind.value.name)
        ? undefined
        : `undeclared reference to '${kind.value.name}' (the only variable is event)`;
    case 'selectExpr':
      return undeclared(kind.value.operand, scope);
    case 'callExpr': {
      const fn = kind.value.function;
      if (/^[A-Za-z]/.test(fn) && env.funcs.find(fn) === undefined)
        return `undeclared function '${fn}'`;
      return firstOf([kind.value.target, ...kind.value.args], scope);
    }
    case 'listExpr':
      return firstOf(kind.value.elements, scope);
    case 'structExpr':
      return firstOf(
        kind.value.entries.flatMap((e) => [
          e.keyKind.case === 'mapKey' ? e.keyKind.value : undefined,
          e.value,
        ]),
        scope,
      );
    case 'comprehensionExpr': {
      const c = kind.value;
      const inner = new Set([...scope, c.iterVar, c.iterVar2, c.accuVar]);
      return (
        firstOf([c.iterRange, c.accuInit], scope) ??
        firstOf([c.loopCondition, c.loopStep, c.result], inner)
      );
    }
    default:
      return undefined;
  }
}

function firstOf(
  exprs: readonly (Expr | undefined)[],
  scope: ReadonlySet<string>,
): string | undefined {
  for (const e of exprs) {
    const found = undeclared(e, scope);
    if (found !== undefined) return found;
  }
  return undefined;
}

function compileCel(
  expression: string,
): { ok: true; program: Program } | { ok: false; message: string } {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(expression);
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  const problem = undeclared(parsed.expr, new Set(['event']));
  if (problem !== undefined) return { ok: false, message: problem };
  try {
    return { ok: true, program: plan(env, parsed) };
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function parseJson(data: Uint8Array): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(strictUtf8.decode(data)) as unknown };
  } catch {
    return undefined; // not JSON: the caller falls back (absent or bytes), as documented
  }
}

/** `event.data` as CEL sees it (see the header comment). */
export function celData(event: CloudEvent): unknown {
  const data = event.data;
  if (data === undefined || data.length === 0) return undefined;
  const ct = event.datacontenttype;
  if (isJsonMediaType(ct)) return parseJson(data)?.value;
  if (ct === undefined) return parseJson(data)?.value ?? data;
  if (isTextMediaType(ct)) {
    try {
      return strictUtf8.decode(data);
    } catch {
      return data; // not UTF-8 text after all: bytes
    }
  }
  return data;
}

/** The `event` variable of CEL filters. */
export function celEvent(event: CloudEvent): Record<string, unknown> {
  const out: Record<string, unknown> = Object.fromEntries(attributesOf(event));
  const data = celData(event);
  if (data !== undefined) out.data = data;
  return out;
}

function celPredicate(program: Program, path: string, options: CompileOptions): Predicate {
  return (ctx) => {
    ctx.cel ??= celEvent(ctx.event);
    const result = program({ event: ctx.cel } as Parameters<Program>[0]);
    if (isCelError(result)) {
      options.onCelError?.(path, result, ctx.event);
      return false;
    }
    return result === true;
  };
}

// ---- dialects -------------------------------------------------------------------------

type Built =
  { ok: true; predicate: Predicate; cel: number } | { ok: false; path: string; message: string };

function stringPredicate(filter: Extract<CheckedFilter, { attributes: unknown }>): Predicate {
  const test =
    filter.dialect === 'exact'
      ? (value: string, want: string) => value === want
      : filter.dialect === 'prefix'
        ? (value: string, want: string) => value.startsWith(want)
        : (value: string, want: string) => value.endsWith(want);
  const attributes = filter.attributes;
  return ({ event }) =>
    attributes.every(([name, want]) => {
      const value = attributeValue(event, name);
      return value !== undefined && test(value, want);
    });
}

function buildList(
  filters: readonly CheckedFilter[],
  options: CompileOptions,
):
  | { ok: true; predicates: Predicate[]; cel: number }
  | { ok: false; path: string; message: string } {
  const predicates: Predicate[] = [];
  let cel = 0;
  for (const f of filters) {
    const built = build(f, options);
    if (!built.ok) return built;
    predicates.push(built.predicate);
    cel += built.cel;
  }
  return { ok: true, predicates, cel };
}

function build(filter: CheckedFilter, options: CompileOptions): Built {
  switch (filter.dialect) {
    case 'exact':
    case 'prefix':
    case 'suffix':
      return { ok: true, predicate: stringPredicate(filter), cel: 0 };
    case 'all':
    case 'any': {
      const list = buildList(filter.filters, options);
      if (!list.ok) return list;
      const ps = list.predicates;
      const predicate: Predicate =
        filter.dialect === 'all'
          ? (ctx) => ps.every((p) => p(ctx))
          : (ctx) => ps.some((p) => p(ctx));
      return { ok: true, predicate, cel: list.cel };
    }
    case 'not': {
      const inner = build(filter.filter, options);
      if (!inner.ok) return inner;
      const p = inner.predicate;
      return { ok: true, predicate: (ctx) => !p(ctx), cel: inner.cel };
    }
    case 'cel': {
      const compiled = compileCel(filter.expression);
      if (!compiled.ok) return { ok: false, path: filter.path, message: compiled.message };
      return { ok: true, predicate: celPredicate(compiled.program, filter.path, options), cel: 1 };
    }
  }
}

/**
 * Compiles a subscription's filters (absent or empty: everything matches). The first
 * problem is reported with its path (`filters[4].cel`) and message; the controller turns it
 * into the condition reason InvalidFilter.
 */
export function compileFilters(
  filters: readonly Filter[] | undefined,
  options: CompileOptions = {},
): CompileResult {
  const checked = validateFilters(filters);
  if (!checked.ok) return { ok: false, ...checked.problem };
  const list = buildList(checked.value, options);
  if (!list.ok) return list;
  const predicates = list.predicates;
  const filter: CompiledFilter = {
    celPrograms: list.cel,
    matches: (event) => {
      const ctx: Ctx = { event, cel: undefined };
      return predicates.every((p) => p(ctx));
    },
  };
  return { ok: true, filter };
}
