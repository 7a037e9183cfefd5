// The replicated log of an external-shared cluster, in PostgreSQL: what the
// Raft log is in local-sync mode. Three tables, created and migrated by
// migrate() (versioned in `quorate_schema`, idempotent, under an advisory
// lock so two nodes starting together do not race):
//
// - quorate_log(idx bigint primary key, token bigint, payload bytea,
//   appended_at timestamptz): the entries, in order, contiguous from 1;
// - quorate_fence(id = 1, token bigint, owner text): the highest fencing
//   token that took over, and which process raised it. A new leader raises it
//   once (takeover: `UPDATE … SET token = $mine, owner = $me WHERE token <
//   $mine`; the same token raised by another owner is refused too: two nodes
//   on different Redis servers may draw the same token); every append transaction first reads it
//   `FOR SHARE` (under a lock_timeout) and aborts unless it still holds its own
//   token. A deposed leader whose lease expired while it was paused therefore
//   cannot append, whatever it believes (Kleppmann's fencing: the token is
//   checked where the writes land). FOR SHARE does not serialize appends of
//   the same leader with each other; it only orders them against a takeover
//   (the takeover's UPDATE waits for appends in flight, which then commit
//   before it, and sees every one of them);
// - quorate_schema(version int): the migrations applied.
//
// The index of an entry is max(idx) + 1 read inside the append transaction;
// only the holder of the fence appends, one batch at a time, so the log has
// no gaps (the reader checks it). Every append NOTIFYs `quorate_log` with the
// new last index, so followers tail it without waiting for their poll.
import type pg from 'pg';
import { pgModule } from '../lib/lazy-modules.js';
import type { Logger } from 'pino';
import { NodeError } from '../node/errors.js';
import { SNAPSHOT_MIGRATION, latestSnapshot, openSnapshot, writeSnapshot, type SnapshotInfo } from './pg-snapshot.js';

export const NOTIFY_CHANNEL = 'quorate_log';
/** An advisory lock key for migrations (any constant; "quorate" in ASCII). */
const MIGRATION_LOCK = 0x71756f72;

/** Migration 4: the idempotency records of /v1/db/execute in external-shared mode (./pg-sql.ts). */
const SQL_REQUEST_MIGRATION = `
  CREATE TABLE IF NOT EXISTS quorate_sql_request (
    key text PRIMARY KEY,
    fingerprint bytea NOT NULL,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX IF NOT EXISTS quorate_sql_request_created ON quorate_sql_request (created_at);`;

/** Versioned migrations: index i is version i + 1. Never edit one that shipped; append a new one. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS quorate_log (
     idx bigint PRIMARY KEY,
     token bigint NOT NULL,
     payload bytea NOT NULL,
     appended_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE IF NOT EXISTS quorate_fence (
     id int PRIMARY KEY CHECK (id = 1),
     token bigint NOT NULL
   );
   INSERT INTO quorate_fence (id, token) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;`,
  // Who raised the fence: two leaders holding the same token (nodes pointed at different Redis servers) cannot both take over.
  `ALTER TABLE quorate_fence ADD COLUMN IF NOT EXISTS owner text NOT NULL DEFAULT '';`,
  // Compaction: snapshots of the state machines, and the log below them deleted (./pg-snapshot.ts).
  SNAPSHOT_MIGRATION,
  // /v1/db/execute's idempotency records (./pg-sql.ts).
  SQL_REQUEST_MIGRATION,
];

/** The log's last index: its highest row, or the newest snapshot's index when compaction left no row above it. */
const LAST_INDEX_SQL = 'SELECT greatest((SELECT coalesce(max(idx), 0) FROM quorate_log), (SELECT coalesce(max(idx), 0) FROM quorate_snapshot)) AS m';

export interface LogEntry {
  readonly idx: number;
  readonly token: number;
  readonly payload: Uint8Array;
}

export interface PgLogOptions {
  readonly connectionString: string;
  readonly logger: Logger;
  /** Connections in the pool (default 4). */
  readonly poolSize?: number;
  /** statement_timeout of every connection, ms (default 5000). */
  readonly statementTimeoutMs?: number;
  /** lock_timeout of the fence check, ms (default 2000). */
  readonly lockTimeoutMs?: number;
  /** idle_in_transaction_session_timeout, ms (default 5000): a paused leader's open append transaction is ended by PostgreSQL. */
  readonly idleInTransactionTimeoutMs?: number;
  /** How long a new connection may take, ms (default 3000). */
  readonly connectTimeoutMs?: number;
}

/** Connection-level failures (the outcome of a COMMIT sent on such a connection is unknown). */
export function isConnectionError(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  const code = err?.code ?? '';
  if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code)) return true;
  // 08xxx connection exceptions, 57P01..57P03 admin shutdown / crash shutdown / cannot connect now.
  if (/^08/.test(code) || /^57P0[123]$/.test(code)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|timeout exceeded when trying to connect/i.test(err?.message ?? '');
}

/** Where the database is, for messages: host:port/db of the connection string, never the password. */
export function describeTarget(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    return `${u.hostname || 'localhost'}:${u.port || '5432'}${u.pathname}`;
  } catch {
    const host = /host=(\S+)/.exec(connectionString)?.[1] ?? 'localhost';
    const port = /port=(\d+)/.exec(connectionString)?.[1] ?? '5432';
    return `${host}:${port}`;
  }
}

/** The database refused or failed an append before COMMIT: nothing was written. */
/** A pooled connection, or `storage_failed` naming the database when none can be had. */
export async function checkout(pool: pg.Pool, target: string): Promise<pg.PoolClient> {
  try {
    return await pool.connect();
  } catch (e) {
    throw databaseUnavailable(target, e);
  }
}

export function databaseUnavailable(target: string, e: unknown): NodeError {
  return new NodeError('storage_failed', `the external PostgreSQL database at ${target} is unavailable (${(e as Error).message}); nothing was written: retry when it is back (database.external.connectionString)`);
}

export class PgLog {
  readonly pool: pg.Pool;
  readonly target: string;
  readonly #o: PgLogOptions;
  readonly #log: Logger;
  #listener: pg.Client | undefined;
  #closed = false;

  constructor(o: PgLogOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.target = describeTarget(o.connectionString);
    this.pool = new (pgModule().Pool)({
      connectionString: o.connectionString,
      max: o.poolSize ?? 4,
      statement_timeout: o.statementTimeoutMs ?? 5000,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 3000,
      idle_in_transaction_session_timeout: o.idleInTransactionTimeoutMs ?? 5000,
      idleTimeoutMillis: 10_000,
      application_name: 'quorate',
    });
    // An idle client that loses its connection emits on the pool; without a listener Node would crash.
    this.pool.on('error', (e) => this.#log.warn({ event: 'pg_idle_error', target: this.target, err: e.message }, `a PostgreSQL connection to ${this.target} failed while idle: ${e.message}`));
  }

  /** Apply the migrations not applied yet (idempotent; serialized across nodes by an advisory lock). Returns the schema version. */
  async migrate(): Promise<number> {
    const c = await this.pool.connect();
    const onError = () => undefined;
    c.on('error', onError);
    try {
      await c.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await c.query('CREATE TABLE IF NOT EXISTS quorate_schema (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
        const r = await c.query<{ v: number | null }>('SELECT max(version) AS v FROM quorate_schema');
        let version = r.rows[0]?.v ?? 0;
        for (let i = version; i < MIGRATIONS.length; i++) {
          await c.query('BEGIN');
          try {
            await c.query(MIGRATIONS[i]!);
            await c.query('INSERT INTO quorate_schema (version) VALUES ($1)', [i + 1]);
            await c.query('COMMIT');
          } catch (e) {
            await c.query('ROLLBACK').catch(() => undefined);
            throw e;
          }
          version = i + 1;
          this.#log.info({ event: 'pg_migrated', version }, `PostgreSQL schema migrated to version ${version}`);
        }
        if (version > MIGRATIONS.length) throw new Error(`the PostgreSQL schema is at version ${version}, newer than this build knows (${MIGRATIONS.length}): upgrade this node`);
        return version;
      } finally {
        await c.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      }
    } finally {
      c.removeListener('error', onError);
      c.release();
    }
  }

  /** The token in the fence row (the highest that took over). */
  async fenceToken(): Promise<number> {
    const r = await this.pool.query<{ token: string }>('SELECT token FROM quorate_fence WHERE id = 1');
    return Number(r.rows[0]?.token ?? 0);
  }

  /**
   * Raise the fence to `token` for `owner` (a new leader, once). Returns the
   * fence after: this token and owner when this leader took over (or already
   * had); a higher token, or the same token raised by another owner (two
   * leaders with one token: nodes on different Redis servers), when this one
   * must not write.
   */
  async takeover(token: number, owner: string): Promise<{ token: number; owner: string }> {
    const r = await this.pool.query<{ token: string; owner: string }>(
      `WITH up AS (UPDATE quorate_fence SET token = $1, owner = $2 WHERE id = 1 AND token < $1 RETURNING token, owner)
       SELECT token, owner FROM up UNION ALL SELECT token, owner FROM quorate_fence WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM up)`, [token, owner]);
    return { token: Number(r.rows[0]?.token ?? 0), owner: r.rows[0]?.owner ?? '' };
  }

  /**
   * Append `payloads` as the next entries, fenced by `token`, in one
   * transaction. Resolves with the first index. Rejects with
   * - `no_leader` naming the fencing row when the fence holds another token (a newer leader took over; this
 *   node does not know which, and the API does not forward it: the client retries),
   * - `storage_failed` when the database failed before COMMIT (nothing written),
   * - `commit_unknown` when the connection failed during COMMIT.
   */
  async append(token: number, payloads: readonly Uint8Array[]): Promise<number> {
    const c = await checkout(this.pool, this.target);
    let broken: Error | undefined;
    let committing = false;
    // A checked-out client whose connection fails emits 'error' (e.g. PostgreSQL ended an idle transaction of a
    // paused process): the failing query rejects too, which is where it is handled.
    const onError = (e: Error) => { broken = e; };
    c.on('error', onError);
    try {
      await c.query('BEGIN');
      await c.query(`SET LOCAL lock_timeout = ${Math.floor(this.#o.lockTimeoutMs ?? 2000)}`);
      const f = await c.query<{ token: string }>('SELECT token FROM quorate_fence WHERE id = 1 FOR SHARE');
      const fence = Number(f.rows[0]?.token ?? -1);
      if (fence !== token) {
        await c.query('ROLLBACK');
        throw new NodeError('no_leader', `this node's write was refused by the fencing row in PostgreSQL: it holds fencing token ${fence}, this node's lease had token ${token} (a newer leader took over); nothing was written, retry on the current leader`);
      }
      const m = await c.query<{ m: string }>(LAST_INDEX_SQL);
      const first = Number(m.rows[0]!.m) + 1;
      const idx = payloads.map((_, i) => first + i);
      await c.query('INSERT INTO quorate_log (idx, token, payload) SELECT i, $1, p FROM unnest($2::bigint[], $3::bytea[]) AS t(i, p)',
        [token, idx, payloads.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))]);
      await c.query('SELECT pg_notify($1, $2)', [NOTIFY_CHANNEL, String(first + payloads.length - 1)]);
      committing = true;
      await c.query('COMMIT');
      return first;
    } catch (e) {
      if (e instanceof NodeError) throw e;
      if (isConnectionError(e)) broken = e as Error;
      if (committing && broken) {
        throw new NodeError('commit_unknown', `the connection to PostgreSQL at ${this.target} failed during COMMIT (${(e as Error).message}); the write may or may not have been applied: read the key back before retrying a non-idempotent write`);
      }
      if (!broken) await c.query('ROLLBACK').catch(() => undefined);
      throw databaseUnavailable(this.target, e);
    } finally {
      c.removeListener('error', onError);
      c.release(broken);
    }
  }

  /** Entries after `after`, in order, at most `limit`. */
  async read(after: number, limit: number): Promise<LogEntry[]> {
    const r = await this.pool.query<{ idx: string; token: string; payload: Buffer }>('SELECT idx, token, payload FROM quorate_log WHERE idx > $1 ORDER BY idx LIMIT $2', [after, limit]);
    return r.rows.map((row) => ({ idx: Number(row.idx), token: Number(row.token), payload: new Uint8Array(row.payload.buffer, row.payload.byteOffset, row.payload.byteLength) }));
  }

  /** The last index in the log (0 when empty): a read barrier's target. */
  async lastIndex(): Promise<number> {
    const r = await this.pool.query<{ m: string }>(LAST_INDEX_SQL);
    return Number(r.rows[0]!.m);
  }

  /** The first index still in the log (0 when empty): entries below it are only in the newest snapshot. */
  async firstIndex(): Promise<number> {
    const r = await this.pool.query<{ m: string | null }>('SELECT min(idx) AS m FROM quorate_log');
    return Number(r.rows[0]?.m ?? 0);
  }

  /** The newest snapshot's row (undefined: none taken yet). */
  latestSnapshot(): Promise<SnapshotInfo | undefined> {
    return latestSnapshot(this.pool);
  }

  /**
   * Store a snapshot of the state as of `idx` and delete the log up to `compactTo`, in one transaction fenced by
   * `token` (refused with `no_leader` when the fence row holds another token). See ./pg-snapshot.ts.
   */
  async writeSnapshot(token: number, idx: number, compactTo: number, chunks: AsyncIterable<Uint8Array>): Promise<SnapshotInfo & { deleted: number }> {
    return this.#withConnection((c) => writeSnapshot(c, { token, idx, compactTo, chunks, lockTimeoutMs: this.#o.lockTimeoutMs ?? 2000, notifyChannel: NOTIFY_CHANNEL }));
  }

  /**
   * Read the newest snapshot with `use` (its chunks, checked against the row's size and SHA-256), in one
   * REPEATABLE READ transaction: a snapshot written meanwhile does not delete it under the reader.
   */
  async withSnapshot<T>(use: (info: SnapshotInfo, chunks: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T | undefined> {
    return this.#withConnection(async (c) => {
      const s = await openSnapshot(c);
      if (s === undefined) return undefined;
      try {
        return await use(s.info, s.chunks);
      } finally {
        await s.done();
      }
    });
  }

  /**
   * One pooled connection for `use`; a connection that failed (its 'error' event, or a connection error thrown
   * by `use`) is destroyed on release instead of going back to the pool.
   */
  async #withConnection<T>(use: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (e: Error) => { broken = e; };
    c.on('error', onError);
    try {
      return await use(c);
    } catch (e) {
      if (isConnectionError(e)) broken = e as Error;
      throw e;
    } finally {
      c.removeListener('error', onError);
      c.release(broken);
    }
  }

  /** A trivial round trip (the `database` health check). */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  /**
   * LISTEN for appends and snapshots on a dedicated connection; `onNotify` with each payload. When the
   * connection fails it is re-opened (the caller polls meanwhile).
   */
  async listen(onNotify: (payload: string) => void): Promise<void> {
    if (this.#closed || this.#listener) return;
    const c = new (pgModule().Client)({ connectionString: this.#o.connectionString, connectionTimeoutMillis: this.#o.connectTimeoutMs ?? 3000, application_name: 'quorate-listen' });
    this.#listener = c;
    const retry = () => {
      if (this.#listener !== c) return;
      this.#listener = undefined;
      void c.end().catch(() => undefined);
      if (!this.#closed) setTimeout(() => void this.listen(onNotify).catch(() => undefined), 1000).unref();
    };
    c.on('error', retry);
    c.on('end', retry);
    c.on('notification', (n) => onNotify(n.payload ?? ''));
    try {
      await c.connect();
      await c.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch {
      retry();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const l = this.#listener;
    this.#listener = undefined;
    await l?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}
