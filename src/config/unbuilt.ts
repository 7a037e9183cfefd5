// Keys of SPEC §3 that configure a feature this version does not have. Each
// row accepts exactly one value, the key's schema default (so `{}` and the file
// `quorate init` writes load); any other value is refused at load, naming the
// key, rather than accepted and silently ignored (an operator who asks for
// manual failover must not get automatic failover). The schema keeps the full
// SPEC enums, so a typo is still "must be one of ..." and a real but unbuilt
// value gets the message below.
//
// The issue that builds a feature removes its rows, and adds back the cross-key
// rules the feature needs (noted per group below), which are left out while
// every config that could break them is refused here.
import type { ConfigIssue } from './errors.js';
import type { RawConfig } from './schema.js';

type Value = string | number | boolean;

export interface UnbuiltKey {
  /** Dotted key path, e.g. "cluster.failover". */
  readonly path: string;
  /** The one value accepted in this version: the schema default. */
  readonly allowed: Value;
  /** What a refused value would (not) do: the end of the message, after "—". */
  readonly why: string | ((value: Value) => string);
  /** Other values already built (the rest of the key's enum is still refused). */
  readonly alsoBuilt?: readonly Value[];
  /** Do not echo the value (it may hold a password). */
  readonly secret?: boolean;
}

export const UNBUILT: readonly UnbuiltKey[] = [
  // Empty: cluster.coordination "redis" and database.mode "external-shared"
  // are built (src/coord, src/external; their rules: ./redis-rules.ts,
  // ./external-rules.ts). A feature not built yet adds its rows here.
];

/** One issue per key of `table` whose value (after defaults and env overrides) is not the allowed one. */
export function unbuiltIssues(c: RawConfig, table: readonly UnbuiltKey[] = UNBUILT): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const row of table) {
    const value = valueAt(c, row.path);
    if (value === undefined || value === row.allowed || row.alsoBuilt?.includes(value as Value) === true) continue;
    const allowed = [row.allowed, ...(row.alsoBuilt ?? [])].map((v) => JSON.stringify(v)).join(' or ');
    const got = row.secret === true ? 'the value (not shown: it may hold a password)' : show(value);
    const why = typeof row.why === 'string' ? row.why : row.why(value as Value);
    issues.push({ path: row.path, message: `${got} is not available in this version (only ${allowed}); remove the key or set it to ${allowed} — ${why}` });
  }
  return issues;
}

function valueAt(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const p of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return String(v);
}
