// `/v1/db/*` in external-shared mode: PostgreSQL's own SQL, run on the shared
// database directly, in the schema `database.external.sqlSchema` (created at
// start; every statement runs with `search_path` set to it). The same
// SqlService port (src/api/ports.ts) as the replicated SQLite machine, so
// the request and response shapes do not change; the dialect does
// (docs/external-shared.md "SQL in this mode").
//
// - execute: the leader only (the API forwards it there), ONE transaction:
//   the statements (each in a SAVEPOINT when `transaction` is false), the
//   request's idempotency record, then the fence row read `FOR SHARE` and
//   compared with this node's fencing token, then COMMIT. A deposed leader
//   (its lease expired while it was paused, whatever it believes) is refused
//   by the row and nothing of its request is kept. The fence is read last so
//   that a long application transaction never holds up a takeover.
// - query: any node, a READ ONLY transaction with statement_timeout =
//   queryTimeoutMs; PostgreSQL is one primary, so a query sees every execute
//   acknowledged before it began, on every node (readBarrier is immediate).
// - Connections come from a pool of their own and are cleaned with DISCARD
//   ALL after each request: whatever a statement changed in its session
//   (set_config, prepared statements, temp tables) does not outlive it.
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import type { ProposeOptions, SqlExecuteRequest, SqlParamValue, SqlService, SqlServiceLimits } from '../api/ports.js';
import { NodeError } from '../node/errors.js';
import { SqlError } from '../sql/errors.js';
import { SQL_OUTBOX_TABLE } from '../sql/statements.js';
import type { ApplyResult, SqlExecResult, SqlStatementResult } from '../state/index.js';
import { checkout, databaseUnavailable, describeTarget, isConnectionError } from './pg-log.js';

/** Rows an execute statement may return (as the SQLite machine). */
const EXECUTE_ROWS_MAX = 1000;
/** Idempotency records are kept this long (then a retry with the same key runs again). */
const IDEMPOTENCY_KEEP = '24 hours';
/** Transaction control is the request's `transaction` flag; these would break it. */
const TX_WORDS = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release', 'prepare']);
/** quorate's own tables (in the connection's schema): never touched through /v1/db. */
const OWN_TABLES = /\bquorate_(log|fence|schema|snapshot|snapshot_chunk|sql_request)\b/i;

export interface PgSqlOptions {
  readonly connectionString: string;
  /** The schema application statements run in (database.external.sqlSchema). */
  readonly schema: string;
  readonly limits: SqlServiceLimits;
  readonly logger: Logger;
  readonly poolSize?: number;
  readonly statementTimeoutMs?: number;
  readonly lockTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** This node's write permission now: leading with the fence raised, and the token it raised. */
  readonly fence: () => { readonly writable: boolean; readonly token: number };
  /** The fence row refused this node's token: step down (Split-brain warning). */
  readonly fenced: (token: number, message: string) => void;
  readonly notLeader: () => NodeError;
  /** The node's applied index (dump: the checksum is named with it). */
  readonly appliedIndex: () => number;
  /** Tests only (QUORATE_TEST_APPEND_DELAY_MS): a delay between accepting an execute and running it. */
  readonly testDelayMs?: number;
}

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** A value as JSON: bytea as {"base64"}, timestamps as ISO text, int8 as a number when exact (else text). */
function jsonValue(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { base64: v.toString('base64') };
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? String(v) : v.toISOString();
  return v;
}

const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    // int8 (20): a number when it is exact; text otherwise (node-postgres's default is always text).
    if (oid === 20) return (s: string) => { const n = Number(s); return Number.isSafeInteger(n) ? n : s; };
    return pg.types.getTypeParser(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

interface PgErr { code?: string; message: string; position?: string }

function firstWord(sql: string): string {
  // Skips leading whitespace, `--` comments and `/* */` comments.
  const s = sql.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/)+/, '');
  return (/^[A-Za-z]+/.exec(s)?.[0] ?? '').toLowerCase();
}

/** Statement-level refusals (sql_refused, naming the statement). */
export function checkPgStatement(sql: string, statement: number, where: '/v1/db/execute' | '/v1/db/query'): void {
  const w = firstWord(sql);
  if (TX_WORDS.has(w)) throw new SqlError('sql_refused', `statement ${statement}: ${w.toUpperCase()} is refused in ${where}: transactions are set by the request's "transaction" flag`, { statement });
  if (OWN_TABLES.test(sql)) throw new SqlError('sql_refused', `statement ${statement}: quorate's own tables (quorate_log, quorate_fence, quorate_snapshot…) are refused in ${where}: they hold the replicated log; use the KV and cluster APIs`, { statement });
  if ((w === 'drop' || w === 'alter' || w === 'truncate') && new RegExp(`\\b${SQL_OUTBOX_TABLE}\\b`, 'i').test(sql)) {
    throw new SqlError('sql_refused', `statement ${statement}: ${w.toUpperCase()} of ${SQL_OUTBOX_TABLE} is refused: it is quorate's outbox table (rows inserted there are delivered to outbox.webhookUrl); insert, update and delete its rows instead`, { statement });
  }
}

/** Advisory lock key serializing the creation of the SQL schema and its outbox table across nodes. */
const PREPARE_LOCK = 0x71_73_71_6c; // 'qsql'

export class PgSqlService implements SqlService {
  readonly limits: SqlServiceLimits;
  readonly dialect = 'postgresql' as const;
  readonly pool: pg.Pool;
  readonly target: string;
  readonly #o: PgSqlOptions;
  readonly #schema: string;
  /** The schema quorate's own tables are in (the connection's current_schema()). */
  #home = 'public';
  #lastPurge = 0;

  constructor(o: PgSqlOptions) {
    this.#o = o;
    this.limits = o.limits;
    this.#schema = quoteIdent(o.schema);
    this.target = describeTarget(o.connectionString);
    this.pool = new pg.Pool({
      connectionString: o.connectionString, max: o.poolSize ?? 4, statement_timeout: o.statementTimeoutMs ?? 5000,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 3000, idleTimeoutMillis: 10_000, application_name: 'quorate-sql', types,
    });
    this.pool.on('error', (e) => o.logger.warn({ event: 'pg_idle_error', target: this.target, err: e.message }, `a PostgreSQL connection to ${this.target} failed while idle: ${e.message}`));
  }

  /** Create the schema and its outbox table (idempotent; run by every node at start, after the migrations). */
  async prepare(): Promise<void> {
    const r = await this.pool.query<{ s: string }>('SELECT current_schema() AS s');
    this.#home = r.rows[0]?.s ?? 'public';
    // Nodes starting together would race on CREATE … IF NOT EXISTS (it is not atomic: the loser fails with
    // 23505, 42P06, 42P07 or 42710 depending on the moment), so creation is serialized by an advisory lock.
    const c = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (e: Error) => { broken = e; };
    c.on('error', onError);
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1)', [PREPARE_LOCK]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.#schema}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.#schema}.${SQL_OUTBOX_TABLE} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL,
        content_type text NOT NULL DEFAULT 'application/json' CHECK (length(content_type) BETWEEN 1 AND 128 AND content_type ~ '^[ -~]+$'),
        created_at timestamptz NOT NULL DEFAULT now())`);
      await c.query('COMMIT');
    } catch (e) {
      if (isConnectionError(e)) broken = e as Error;
      else await c.query('ROLLBACK').catch((err: Error) => { broken = err; });
      throw e;
    } finally {
      c.removeListener('error', onError);
      c.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  async execute(req: SqlExecuteRequest, options: ProposeOptions = {}): Promise<ApplyResult> {
    req.statements.forEach((s, i) => checkPgStatement(s.sql, i, '/v1/db/execute'));
    const f = this.#o.fence();
    if (!f.writable) throw this.#o.notLeader();
    if (this.#o.testDelayMs) await new Promise((r) => setTimeout(r, this.#o.testDelayMs));
    const key = options.idempotencyKey;
    const fingerprint = createHash('sha256').update(JSON.stringify([req.transaction, req.statements.map((s) => [s.sql, s.params.map((p) => (p instanceof Uint8Array ? { b: Buffer.from(p).toString('base64') } : p))])])).digest();
    return this.#withClient(async (c, state) => {
      await c.query('BEGIN');
      await c.query(`SET LOCAL search_path TO ${this.#schema}`);
      if (key !== undefined) {
        const ins = await c.query(`INSERT INTO ${quoteIdent(this.#home)}.quorate_sql_request (key, fingerprint) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING key`, [key, fingerprint]);
        if (ins.rowCount === 0) {
          const prev = await c.query<{ fingerprint: Buffer; result: SqlExecResult | null }>(`SELECT fingerprint, result FROM ${quoteIdent(this.#home)}.quorate_sql_request WHERE key = $1`, [key]);
          await c.query('ROLLBACK');
          const row = prev.rows[0];
          if (row !== undefined && !row.fingerprint.equals(fingerprint)) {
            return { error: 'idempotency_key_reused', message: `the Idempotency-Key ${JSON.stringify(key)} was used within the last ${IDEMPOTENCY_KEEP} for a different request; use a new key for a new request` };
          }
          if (row?.result) return row.result;
          // Only when the record was purged between the two statements: nothing ran, the client retries.
          throw new NodeError('overloaded', `the earlier request with Idempotency-Key ${JSON.stringify(key)} was just forgotten; retry`, { retryAfterMs: 100 });
        }
      }
      const results: SqlStatementResult[] = [];
      let failed: SqlExecResult['failed'];
      for (const [i, s] of req.statements.entries()) {
        if (!req.transaction) await c.query('SAVEPOINT quorate_stmt');
        try {
          const r = await c.query({ text: s.sql, values: s.params.map(toPg), rowMode: 'array', queryMode: 'extended' } as pg.QueryConfig);
          results.push(statementResult(r, i));
          if (!req.transaction) await c.query('RELEASE SAVEPOINT quorate_stmt');
        } catch (e) {
          if (isConnectionError(e) || !(e instanceof Error) || (e as PgErr).code === undefined) throw e;
          const err = e as PgErr;
          failed = { statement: i, sqliteCode: null, sqlState: err.code!, message: `statement ${i}: ${err.message}${err.position ? ` (at character ${err.position})` : ''}` };
          if (req.transaction) {
            await c.query('ROLLBACK');
            return { sql: [], failed };
          }
          await c.query('ROLLBACK TO SAVEPOINT quorate_stmt');
          break;
        }
      }
      const result: SqlExecResult = failed ? { sql: results, failed } : { sql: results };
      if (key !== undefined) await c.query(`UPDATE ${quoteIdent(this.#home)}.quorate_sql_request SET result = $2 WHERE key = $1`, [key, JSON.stringify(result)]);
      await this.#purge(c);
      // The fence, last: refused unless the row still holds this node's token; nothing above is kept then.
      await c.query(`SET LOCAL lock_timeout = ${Math.floor(this.#o.lockTimeoutMs ?? 2000)}`);
      const fr = await c.query<{ token: number }>(`SELECT token FROM ${quoteIdent(this.#home)}.quorate_fence WHERE id = 1 FOR SHARE`);
      const fence = Number(fr.rows[0]?.token ?? -1);
      if (fence !== f.token) {
        await c.query('ROLLBACK');
        const msg = `this node's SQL transaction was refused by the fencing row in PostgreSQL: it holds fencing token ${fence}, this node's lease had token ${f.token} (a newer leader took over); nothing of this request was kept, retry on the current leader`;
        this.#o.fenced(f.token, msg);
        throw new NodeError('no_leader', msg);
      }
      state.committing = true;
      await c.query('COMMIT');
      return result;
    });
  }

  async query(text: string, params: readonly SqlParamValue[]): Promise<{ columns: string[]; rows: unknown[][] }> {
    checkPgStatement(text, 0, '/v1/db/query');
    return this.#withClient(async (c) => {
      await c.query('BEGIN READ ONLY');
      await c.query(`SET LOCAL search_path TO ${this.#schema}`);
      await c.query(`SET LOCAL statement_timeout = ${Math.floor(this.limits.queryTimeoutMs)}`);
      let r: pg.QueryResult<unknown[]>;
      try {
        r = await c.query({ text, values: params.map(toPg), rowMode: 'array', queryMode: 'extended' } as pg.QueryConfig);
      } catch (e) {
        const err = e as PgErr;
        if (isConnectionError(e) || err.code === undefined) throw e;
        await c.query('ROLLBACK');
        if (err.code === '57014') throw new SqlError('sql_query_timeout', `the query ran longer than ${this.limits.queryTimeoutMs} ms and was cancelled; narrow it (WHERE, LIMIT) or add an index`, { limit: `${this.limits.queryTimeoutMs} ms` });
        if (err.code === '25006') throw new SqlError('sql_refused', `a query cannot write (${err.message}): use /v1/db/execute`, { statement: 0 });
        throw new SqlError('sql_error', `${err.message}${err.position ? ` (at character ${err.position})` : ''}`, { statement: 0, sqlState: err.code });
      }
      await c.query('COMMIT');
      if (r.rows.length > this.limits.queryRows) throw new SqlError('sql_result_too_large', `the query returned more than ${this.limits.queryRows} rows; add a LIMIT (and page with OFFSET or a key)`, { limit: `${this.limits.queryRows} rows` });
      const rows = r.rows.map((row) => row.map(jsonValue));
      const bytes = Buffer.byteLength(JSON.stringify(rows));
      if (bytes > this.limits.queryBytes) throw new SqlError('sql_result_too_large', `the result is ${bytes} bytes; the limit is ${this.limits.queryBytes} bytes: select fewer columns or rows`, { limit: `${this.limits.queryBytes} bytes` });
      return { columns: r.fields.map((fd) => fd.name), rows };
    });
  }

  /** PostgreSQL is one primary: a query on any node sees every execute acknowledged before it began. */
  async readBarrier(): Promise<void> {
    // Nothing to wait for.
  }

  /** A content checksum of every table in the schema (md5 of each row's text, sorted), named with this node's applied index. */
  async checksum(): Promise<{ appliedIndex: number; checksum: string }> {
    const appliedIndex = this.#o.appliedIndex();
    const h = createHash('sha256');
    await this.#withClient(async (c) => {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const t = await c.query<{ name: string }>('SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [this.#o.schema]);
      for (const { name } of t.rows) {
        const r = await c.query<{ m: string }>(`SELECT md5(coalesce(string_agg(md5(x::text), ',' ORDER BY md5(x::text)), '')) AS m FROM ${this.#schema}.${quoteIdent(name)} x`);
        h.update(`${name}:${r.rows[0]!.m};`);
      }
      await c.query('COMMIT');
    });
    return { appliedIndex, checksum: h.digest('hex') };
  }

  /** Idempotency records older than IDEMPOTENCY_KEEP, at most once a minute. */
  async #purge(c: pg.PoolClient): Promise<void> {
    if (Date.now() - this.#lastPurge < 60_000) return;
    this.#lastPurge = Date.now();
    await c.query(`DELETE FROM ${quoteIdent(this.#home)}.quorate_sql_request WHERE created_at < now() - interval '${IDEMPOTENCY_KEEP}'`);
  }

  /** A pooled connection for one request; cleaned (DISCARD ALL) after, or dropped when broken. */
  async #withClient<T>(use: (c: pg.PoolClient, state: { committing: boolean }) => Promise<T>): Promise<T> {
    const c = await checkout(this.pool, this.target);
    let broken: Error | undefined;
    const onError = (e: Error) => { broken = e; };
    c.on('error', onError);
    const state = { committing: false };
    try {
      const r = await use(c, state);
      await c.query('DISCARD ALL').catch((e: Error) => { broken = e; });
      return r;
    } catch (e) {
      if (e instanceof NodeError || e instanceof SqlError) {
        await c.query('ROLLBACK').then(() => c.query('DISCARD ALL')).catch((err: Error) => { broken = err; });
        throw e;
      }
      if (isConnectionError(e)) broken = e as Error;
      else await c.query('ROLLBACK').then(() => c.query('DISCARD ALL')).catch((err: Error) => { broken = err; });
      if (state.committing && broken) {
        throw new NodeError('commit_unknown', `the connection to PostgreSQL at ${this.target} failed during COMMIT (${(e as Error).message}); the SQL may or may not have been applied: read it back before retrying a non-idempotent request`);
      }
      throw databaseUnavailable(this.target, e);
    } finally {
      c.removeListener('error', onError);
      c.release(broken ?? false);
    }
  }
}

function toPg(p: SqlParamValue): unknown {
  return p instanceof Uint8Array ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p;
}

function statementResult(r: pg.QueryResult<unknown[]>, i: number): SqlStatementResult {
  const writes = r.command === 'INSERT' || r.command === 'UPDATE' || r.command === 'DELETE' || r.command === 'MERGE';
  const base = { rowsAffected: writes ? (r.rowCount ?? 0) : 0, lastInsertId: 0 };
  if (!r.fields || r.fields.length === 0) return base;
  if (r.rows.length > EXECUTE_ROWS_MAX) {
    throw Object.assign(new Error(`statement ${i} returned ${r.rows.length} rows; an execute statement returns at most ${EXECUTE_ROWS_MAX} (read with /v1/db/query)`), { code: '54000' });
  }
  return { ...base, columns: r.fields.map((f) => f.name), rows: r.rows.map((row) => row.map(jsonValue)) };
}
