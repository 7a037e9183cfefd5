// Hand-written argv parsing: `--flag value`, `--flag=value`, boolean flags,
// `--` ends flags, `-h` is `--help`. Every unknown flag is a UsageError naming it.

export type FlagType = 'string' | 'boolean' | 'int' | 'duration';

export interface FlagSpec {
  readonly name: string;
  readonly type: FlagType;
  readonly value?: string; // placeholder in help, e.g. "URL"
  readonly help: string;
}

export interface ParsedArgs {
  readonly flags: ReadonlyMap<string, string | boolean>;
  readonly positionals: readonly string[];
}

export class UsageError extends Error {
  readonly code = 'usage' as const;
  /** The verb whose --help to suggest ("" = top level). */
  readonly verb: string;
  constructor(message: string, verb = '') {
    super(message);
    this.name = 'UsageError';
    this.verb = verb;
  }
}

export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'url', type: 'string', value: 'URL[,URL]', help: 'node API URL(s), comma-separated; default $QUORATE_URL or http://127.0.0.1:7101' },
  { name: 'token', type: 'string', value: 'TOKEN', help: 'bearer token; default $QUORATE_TOKEN, else <data-dir>/admin.token' },
  { name: 'token-file', type: 'string', value: 'FILE', help: 'read the bearer token from FILE' },
  { name: 'data-dir', type: 'string', value: 'DIR', help: 'data dir holding admin.token (default ./data, or the one in ./quorate.json)' },
  { name: 'ca', type: 'string', value: 'FILE', help: 'trust the CA certificates in FILE (PEM) for https URLs: the cluster CA from `quorate ca export` (default $QUORATE_CA)' },
  { name: 'timeout', type: 'duration', value: 'DURATION', help: 'deadline per request including retries (default 10s)' },
  { name: 'json', type: 'boolean', help: 'print raw JSON instead of tables' },
  { name: 'help', type: 'boolean', help: 'show help' },
];

/** Finds the verb words (e.g. ["kv", "put"]) and the remaining tokens. */
export function splitVerb(argv: readonly string[], groups: ReadonlySet<string>): { verb: string[]; rest: string[] } {
  const verb: string[] = [];
  const rest: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { rest.push(...argv.slice(i)); return { verb, rest }; }
    if (a.startsWith('-') && a !== '-') {
      rest.push(a);
      const spec = GLOBAL_FLAGS.find((f) => `--${f.name}` === a);
      if (spec && spec.type !== 'boolean' && i + 1 < argv.length) rest.push(argv[++i]!);
      continue;
    }
    if (verb.length === 0 || (verb.length === 1 && groups.has(verb[0]!))) { verb.push(a); continue; }
    rest.push(a);
  }
  return { verb, rest };
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], verb: string): ParsedArgs {
  const flags = new Map<string, string | boolean>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    // -o is --out for the verbs that have it (backup create, diagnostics).
    const a = argv[i] === '-o' && specs.some((s) => s.name === 'out') ? '--out' : argv[i]!;
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (a === '-h') { flags.set('help', true); continue; }
    if (!a.startsWith('-') || a === '-') { positionals.push(a); continue; }
    if (!a.startsWith('--')) throw new UsageError(`unknown flag ${a}${verb ? ` for "quorate ${verb}"` : ''}`, verb);
    const eq = a.indexOf('=');
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    const spec = specs.find((s) => s.name === name);
    if (!spec) {
      const near = specs.find((s) => s.name.replace(/-/g, '') === name.replace(/-/g, '').toLowerCase());
      throw new UsageError(`unknown flag --${name}${verb ? ` for "quorate ${verb}"` : ''}${near ? ` (did you mean --${near.name}?)` : ''}`, verb);
    }
    if (spec.type === 'boolean') {
      if (eq >= 0) {
        const v = a.slice(eq + 1);
        if (v !== 'true' && v !== 'false') throw new UsageError(`--${name} takes no value (or =true/=false), got ${JSON.stringify(v)}`, verb);
        flags.set(name, v === 'true');
      } else flags.set(name, true);
      continue;
    }
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) throw new UsageError(`--${name} needs a value (${spec.value ?? spec.type})`, verb);
      value = next;
      i++;
    }
    if (spec.type === 'int' && !/^\d+$/.test(value)) throw new UsageError(`--${name} needs a whole number, got ${JSON.stringify(value)}`, verb);
    if (spec.type === 'duration' && parseDurationMs(value) === undefined) throw new UsageError(`--${name} needs a duration such as 500ms, 5s or 2m, got ${JSON.stringify(value)}`, verb);
    flags.set(name, value);
  }
  return { flags, positionals };
}

/** "500ms", "5s", "2m", "1h", "1.5s"; a bare number means seconds. */
export function parseDurationMs(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const mult = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(n * mult);
}

export function str(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function bool(args: ParsedArgs, name: string): boolean {
  return args.flags.get(name) === true;
}

export function int(args: ParsedArgs, name: string): number | undefined {
  const v = str(args, name);
  return v === undefined ? undefined : Number(v);
}

export function duration(args: ParsedArgs, name: string): number | undefined {
  const v = str(args, name);
  return v === undefined ? undefined : parseDurationMs(v);
}
