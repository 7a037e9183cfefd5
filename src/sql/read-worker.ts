// A read worker of the "sql" machine: a child process with one read-only
// connection (query_only) to the node's SQLite file, answering one query at
// a time over IPC. The pool (./read-pool.ts) kills a worker whose query runs
// past the time limit: better-sqlite3 cannot interrupt a statement, and a
// worker *thread* cannot be stopped while SQLite runs in native code
// (Worker.terminate() only takes effect when JavaScript runs), so a process
// is the unit of cancellation. The connection is reopened when the file was
// replaced (a snapshot was restored): `generation` in each request says so.
// The worker exits when its parent goes away (the IPC channel closes).
import Database from 'better-sqlite3';
import type { SqlParam } from './command.js';
import { jsonValue } from './values.js';

export interface ReadRequest {
  readonly id: number;
  readonly generation: number;
  readonly sql: string;
  readonly params: readonly SqlParam[];
  readonly maxRows: number;
  readonly maxBytes: number;
}

export type ReadAnswer =
  | { readonly id: number; readonly ok: true; readonly columns: string[]; readonly rows: unknown[][] }
  | { readonly id: number; readonly ok: false; readonly code: 'sql_error' | 'sql_refused' | 'sql_result_too_large'; readonly message: string; readonly sqliteCode: string | null; readonly limit?: string };

const file = process.argv[2]!;
const send = (m: unknown): void => {
  process.send!(m);
};
let db: Database.Database | undefined;
let generation = -1;
/** Prepared statements by SQL text (most recently used last), for this connection; at most STATEMENT_CACHE. */
const statements = new Map<string, Database.Statement>();
const STATEMENT_CACHE = 256;

function connect(gen: number): Database.Database {
  if (db === undefined || gen !== generation) {
    statements.clear();
    db?.close();
    db = new Database(file, { fileMustExist: true });
    db.pragma('query_only = ON');
    generation = gen;
  }
  return db;
}

/** A prepared statement for `sql`, reused while the connection lasts (a schema change makes SQLite re-prepare it itself). */
function prepare(d: Database.Database, sql: string): Database.Statement {
  const hit = statements.get(sql);
  if (hit !== undefined) {
    statements.delete(sql);
    statements.set(sql, hit);
    return hit;
  }
  const st = d.prepare(sql);
  statements.set(sql, st);
  if (statements.size > STATEMENT_CACHE) statements.delete(statements.keys().next().value!);
  return st;
}

function answer(r: ReadRequest): ReadAnswer {
  const d = connect(r.generation);
  let st: Database.Statement;
  try {
    st = prepare(d, r.sql);
  } catch (e) {
    return { id: r.id, ok: false, code: 'sql_error', message: (e as Error).message, sqliteCode: (e as { code?: string }).code ?? null };
  }
  if (!st.readonly) return { id: r.id, ok: false, code: 'sql_refused', message: 'write statements are refused in /v1/db/query: send them to /v1/db/execute', sqliteCode: null };
  const params = r.params.map((p) => (p instanceof Uint8Array ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
  if (!st.reader) {
    st.run(...params);
    return { id: r.id, ok: true, columns: [], rows: [] };
  }
  st.raw(true).safeIntegers(true);
  const columns = st.columns().map((c) => c.name);
  const rows: unknown[][] = [];
  let bytes = 0;
  try {
    for (const raw of st.iterate(...params) as Iterable<unknown[]>) {
      const row = raw.map(jsonValue);
      bytes += JSON.stringify(row).length + 1;
      if (rows.length >= r.maxRows || bytes > r.maxBytes) {
        const limit = rows.length >= r.maxRows ? `${r.maxRows} rows` : `${r.maxBytes} bytes`;
        return { id: r.id, ok: false, code: 'sql_result_too_large', limit, message: `the answer would hold more than ${limit} (the limit of one /v1/db/query answer); page with LIMIT/OFFSET or a WHERE on a key (e.g. WHERE id > ? ORDER BY id LIMIT n)`, sqliteCode: null };
      }
      rows.push(row);
    }
  } catch (e) {
    return { id: r.id, ok: false, code: 'sql_error', message: (e as Error).message, sqliteCode: (e as { code?: string }).code ?? null };
  }
  return { id: r.id, ok: true, columns, rows };
}

process.on('disconnect', () => process.exit(0));
send({ ready: true });
process.on('message', (r: ReadRequest) => {
  let a: ReadAnswer;
  try {
    a = answer(r);
  } catch (e) {
    a = { id: r.id, ok: false, code: 'sql_error', message: (e as Error).message, sqliteCode: (e as { code?: string }).code ?? null };
  }
  send(a);
});
