// quorate sql: replicated SQL through /v1/db/query and /v1/db/execute.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { tokenize } from '../sql/statements.js';
import { UsageError, bool, str } from './args.js';
import { EXIT, cell, table, type Verb, type Context } from './command.js';

/** Splits SQL text into statements at top-level semicolons (not inside strings, quoted names or comments). */
export function splitStatements(text: string): string[] {
  const toks = tokenize(text);
  const out: string[] = [];
  let start = 0;
  for (const t of toks) {
    if (t.kind === 'punct' && t.text === ';') {
      const s = text.slice(start, t.at).trim();
      if (s !== '') out.push(s);
      start = t.at + 1;
    }
  }
  const last = text.slice(start).trim();
  if (last !== '' && tokenize(last).length > 0) out.push(last);
  return out;
}

function sqlInput(ctx: Context): string[] {
  const file = str(ctx.args, 'file');
  const pos = ctx.args.positionals;
  if (file !== undefined && pos.length > 0) throw new UsageError('give the SQL either as an argument or with --file, not both', 'sql');
  let text: string;
  if (file !== undefined) text = readFileSync(file === '-' ? 0 : resolve(ctx.io.cwd, file), 'utf8');
  else if (pos.length === 1 && pos[0] === '-') text = readFileSync(0, 'utf8');
  else if (pos.length === 1) text = pos[0]!;
  else throw new UsageError(`"quorate sql" takes one SQL argument ("-" or --file reads statements from stdin or a file), got ${pos.length}`, 'sql');
  let statements: string[];
  try {
    statements = splitStatements(text);
  } catch (e) {
    throw new UsageError(`cannot read the SQL: ${(e as Error).message}`, 'sql');
  }
  if (statements.length === 0) throw new UsageError('no SQL statement given', 'sql');
  return statements;
}

function paramsOf(ctx: Context): unknown[] {
  const raw = str(ctx.args, 'params');
  if (raw === undefined) return [];
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new UsageError(`--params must be a JSON array, e.g. '[1, "a", null]', got ${JSON.stringify(raw.slice(0, 60))}`, 'sql');
  }
  if (!Array.isArray(v)) throw new UsageError('--params must be a JSON array', 'sql');
  return v;
}

interface QueryBody { columns: string[]; rows: unknown[][] }
interface ExecuteBody { results: { rowsAffected: number; lastInsertId: number; columns?: string[]; rows?: unknown[][] }[] }

const sql: Verb = {
  name: 'sql',
  usage: '"SQL" | - | --file F [--execute] [--params JSON] [--stale] [--no-transaction]',
  description:
    'Without --execute: one read statement through POST /v1/db/query, printed as a table (linearizable unless --stale). With --execute: the statements (separated by ";") through POST /v1/db/execute, in one transaction unless --no-transaction; prints rows affected and last insert id per statement. "-" or --file - reads the SQL from stdin. Non-deterministic functions, PRAGMA, ATTACH and the rest refused are listed in docs/api.md "Replicated SQL".',
  flags: [
    { name: 'execute', type: 'boolean', help: 'write: send the statements through the log (POST /v1/db/execute)' },
    { name: 'file', type: 'string', value: 'FILE', help: 'read the SQL from FILE ("-" = stdin)' },
    { name: 'params', type: 'string', value: 'JSON', help: 'parameters of a single statement as a JSON array (blobs as {"base64": "…"})' },
    { name: 'stale', type: 'boolean', help: 'query this node\'s copy without a read barrier (may lag)' },
    { name: 'no-transaction', type: 'boolean', help: 'with --execute: run the statements one by one, stopping at the first that fails (earlier ones stay)' },
  ],
  examples: [
    'quorate sql "SELECT * FROM users WHERE id = ?" --params "[42]"',
    'quorate sql --execute "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"',
    'quorate sql --execute "INSERT INTO users (name) VALUES (?)" --params \'["ada"]\'',
    'quorate sql --execute --file schema.sql',
    'echo "SELECT count(*) FROM users" | quorate sql - --json',
  ],
  remote: true,
  async run(ctx) {
    const statements = sqlInput(ctx);
    const params = paramsOf(ctx);
    if (params.length > 0 && statements.length > 1) throw new UsageError('--params applies to a single statement; the input holds several', 'sql');
    const client = ctx.client();
    if (bool(ctx.args, 'execute')) {
      const body = { statements: statements.map((s) => [s, ...params]), transaction: !bool(ctx.args, 'no-transaction') };
      const r = (await client.request<ExecuteBody>('POST', '/v1/db/execute', { body, write: true })).body;
      ctx.print(r, () => {
        const withRows = r.results.find((x) => x.rows !== undefined && x.rows.length > 0);
        const summary = table(['#', 'rowsAffected', 'lastInsertId'], r.results.map((x, i) => [String(i), cell(x.rowsAffected), cell(x.lastInsertId)]));
        return withRows ? `${summary}\n\n${rowsTable(withRows.columns ?? [], withRows.rows ?? [])}` : summary;
      });
      return EXIT.ok;
    }
    if (statements.length > 1) throw new UsageError(`a query is one statement; the input holds ${statements.length} (use --execute to run several writes)`, 'sql');
    if (bool(ctx.args, 'no-transaction')) throw new UsageError('--no-transaction goes with --execute', 'sql');
    const body = { sql: statements[0], params, consistency: bool(ctx.args, 'stale') ? 'stale' : 'linearizable' };
    const r = (await client.request<QueryBody>('POST', '/v1/db/query', { body })).body;
    ctx.print(r, () => rowsTable(r.columns, r.rows));
    return EXIT.ok;
  },
};

function rowsTable(columns: readonly string[], rows: readonly (readonly unknown[])[]): string {
  const text = (v: unknown): string => (v === null ? 'NULL' : typeof v === 'object' ? JSON.stringify(v) : cell(v));
  return `${table(columns, rows.map((r) => r.map(text)))}\n(${rows.length} row${rows.length === 1 ? '' : 's'})`;
}

export const sqlCommands: readonly Verb[] = [sql];
