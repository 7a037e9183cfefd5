// The apply worker of the "sql" machine: a worker thread that owns the
// node's SQLite file and applies the machine's commands in log order, so
// that SQLite work never runs on the event loop that carries heartbeats.
// Messages are handled one at a time, in the order they were posted (a
// backup holds the queue until it is done, so it is the state exactly at the
// index it was asked at).
//
// Determinism: the connection is set up identically on every open (WAL,
// foreign keys on), and the functions whose value SQLite would take from the
// node (its clock, its random source) are replaced on this connection by
// deterministic ones fed from the entry: 'now' (CURRENT_TIMESTAMP,
// CURRENT_DATE, CURRENT_TIME, date()/time()/datetime()/julianday()/
// unixepoch()/strftime()/timediff() of 'now' or of no time value) is the
// entry's leader-stamped time; random() and randomblob() come from the
// entry's seed. The 'localtime' and 'utc' modifiers depend on the node's
// time zone and fail the statement. Each entry starts by setting
// last_insert_rowid() to 0, so it does not depend on what the connection did
// before (a node that restored a snapshot has a fresh connection).
//
// Every entry runs in one SQLite transaction. `transaction: true`: a failed
// statement rolls back all of them; `false`: each statement is its own
// savepoint, a failure rolls back that one and stops. The client-session
// record (Idempotency-Key) is written in the same transaction, so a snapshot
// holds exactly the sessions of the state it holds.
import { createHash } from 'node:crypto';
import { renameSync, rmSync, statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { SqlExecResult, SqlFailure, SqlStatementResult } from '../state/results.js';
import { isFatalSqliteCode, type ApplyWorkerData, type FromApplyWorker, type SqlCommand, type SqlStatement, type ToApplyWorker } from './command.js';
import { REFUSED_FUNCTIONS, SQL_OUTBOX_TABLE, SqlRefusedError, checkExecuteStatement } from './statements.js';
import { contentChecksum, jsonValue } from './values.js';

const { file, limits } = workerData as ApplyWorkerData;
const port = parentPort!;
const post = (m: FromApplyWorker): void => port.postMessage(m);

/** Built-in date functions, evaluated on a connection where they are not replaced. */
const builtins = new Database(':memory:');
const builtinCalls = new Map<string, Database.Statement>();
function builtin(name: string, args: unknown[]): unknown {
  const k = `${name}/${args.length}`;
  let st = builtinCalls.get(k);
  if (st === undefined) {
    st = builtins.prepare(`SELECT ${name}(${args.map(() => '?').join(',')})`).pluck();
    builtinCalls.set(k, st);
  }
  return st.get(...args);
}

/** What the entry being applied fixes: its time and its random seed. */
const entry = { at: 0, seed: Buffer.alloc(16), counter: 0 };

function nowText(): string {
  return new Date(entry.at).toISOString().replace('T', ' ').replace('Z', '');
}

function randomBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += 32) {
    const c = Buffer.alloc(8);
    c.writeBigUInt64BE(BigInt(entry.counter++));
    createHash('sha256').update(entry.seed).update(c).digest().copy(out, off, 0, Math.min(32, n - off));
  }
  return out;
}

const DATE_FUNCTIONS = ['date', 'time', 'datetime', 'julianday', 'unixepoch', 'strftime', 'timediff'];
const MAX_RANDOMBLOB = 16 * 1024 * 1024;

function installFunctions(d: Database.Database): void {
  d.function('current_timestamp', () => nowText().slice(0, 19));
  d.function('current_date', () => nowText().slice(0, 10));
  d.function('current_time', () => nowText().slice(11, 19));
  for (const name of DATE_FUNCTIONS) {
    d.function(name, { varargs: true }, (...raw: unknown[]) => {
      const args = raw.map((a) => (typeof a === 'string' && a.trim().toLowerCase() === 'now' ? nowText() : a));
      for (const a of args) {
        if (typeof a === 'string' && /^\s*(localtime|utc)\s*$/i.test(a)) {
          throw new Error(`${name}(): the '${a.trim()}' modifier is refused in replicated SQL: it depends on each node's time zone`);
        }
      }
      if (args.length === (name === 'strftime' ? 1 : 0)) args.push(nowText());
      return builtin(name, args);
    });
  }
  d.function('random', () => randomBytes(8).readBigInt64BE());
  d.function('randomblob', (n: unknown) => {
    const k = Math.max(1, Math.trunc(Number(n) || 0));
    if (k > MAX_RANDOMBLOB) throw new Error(`randomblob(${k}): at most ${MAX_RANDOMBLOB} bytes in replicated SQL`);
    return randomBytes(k);
  });
  for (const [name, why] of REFUSED_FUNCTIONS) {
    d.function(name, { varargs: true }, () => {
      throw new Error(`${name}() is refused in replicated SQL: ${why}`);
    });
  }
}

interface Prepared {
  readonly lookup: Database.Statement;
  readonly record: Database.Statement;
  readonly expire: Database.Statement;
  readonly cap: Database.Statement;
  readonly resetIns: Database.Statement;
  readonly resetDel: Database.Statement;
  readonly counts: Database.Statement;
}

let db: Database.Database;
let q: Prepared;

function open(): void {
  db = new Database(file);
  db.pragma('journal_mode = WAL');
  // The file is rebuilt from the snapshot and the log at every start (the
  // log is the durable record), so SQLite need not fsync.
  db.pragma('synchronous = OFF');
  db.pragma('foreign_keys = ON');
  db.exec(`CREATE TABLE IF NOT EXISTS _quorate_sessions (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL, fingerprint TEXT, result TEXT NOT NULL);
           CREATE INDEX IF NOT EXISTS _quorate_sessions_seq ON _quorate_sessions(seq);
           CREATE INDEX IF NOT EXISTS _quorate_sessions_at ON _quorate_sessions(at);
           CREATE TABLE IF NOT EXISTS _quorate_reset (id INTEGER PRIMARY KEY);`);
  // The transactional outbox (src/node/sql-outbox.ts): part of every database from its
  // first open, so equal on every node; it cannot be dropped or altered (./statements.ts).
  // AUTOINCREMENT: the id of a delivered (deleted) row is never reused. content_type is an
  // HTTP header value: 1-128 printable ASCII characters (a row the webhook request could
  // not carry would hold up every later row).
  db.exec(`CREATE TABLE IF NOT EXISTS ${SQL_OUTBOX_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,
           content_type TEXT NOT NULL DEFAULT 'application/json' CHECK (length(content_type) BETWEEN 1 AND 128 AND content_type NOT GLOB '*[^ -~]*'),
           created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)`);
  installFunctions(db);
  q = {
    lookup: db.prepare('SELECT fingerprint, result FROM _quorate_sessions WHERE key = ?'),
    record: db.prepare('INSERT OR IGNORE INTO _quorate_sessions(key, seq, at, fingerprint, result) VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM _quorate_sessions), ?, ?, ?)'),
    expire: db.prepare('DELETE FROM _quorate_sessions WHERE at + ? <= ?'),
    cap: db.prepare('DELETE FROM _quorate_sessions WHERE seq <= (SELECT max(seq) FROM _quorate_sessions) - ?'),
    resetIns: db.prepare('INSERT INTO _quorate_reset(id) VALUES (0)'),
    resetDel: db.prepare('DELETE FROM _quorate_reset'),
    counts: db.prepare('SELECT changes(), last_insert_rowid()').raw(true),
  };
}

function removeFiles(): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
}

class Fatal extends Error {
  constructor(
    message: string,
    readonly code: string | null,
  ) {
    super(message);
  }
}

function codeOf(e: unknown): string | null {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'string' ? c : null;
}

/** A non-deterministic failure becomes Fatal; anything else is the statement's (deterministic) failure. */
function classify(e: unknown, statement: number): SqlFailure {
  const code = codeOf(e);
  if (isFatalSqliteCode(code)) throw new Fatal((e as Error).message, code);
  if (e instanceof SqlRefusedError) return { statement, sqliteCode: null, message: e.message };
  return { statement, sqliteCode: code, message: `statement ${statement}: ${(e as Error).message}` };
}

function runOne(s: SqlStatement, i: number): SqlStatementResult {
  checkExecuteStatement(s.sql, i);
  const st = db.prepare(s.sql);
  const params = s.params.map((p) => (p instanceof Uint8Array ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
  if (!st.reader) {
    const r = st.run(...params);
    return { rowsAffected: r.changes, lastInsertId: Number(r.lastInsertRowid) };
  }
  st.raw(true);
  const columns = st.columns().map((c) => c.name);
  const rows: unknown[][] = [];
  for (const row of st.iterate(...params) as Iterable<unknown[]>) {
    if (rows.length >= limits.executeRows) throw new Error(`statement ${i} returns more than ${limits.executeRows} rows (the limit for statements of /v1/db/execute; read with /v1/db/query)`);
    rows.push(row.map(jsonValue));
  }
  const [changes, lastId] = q.counts.get() as [number, number | bigint];
  return { rowsAffected: changes, lastInsertId: Number(lastId), columns, rows };
}

function apply(m: Extract<ToApplyWorker, { t: 'apply' }>): SqlExecResult | { error: 'idempotency_key_reused'; message: string } {
  entry.at = m.at;
  entry.seed = Buffer.from(m.cmd.seed);
  entry.counter = 0;
  db.exec('BEGIN IMMEDIATE');
  try {
    q.expire.run(m.sessionTtlMs, m.clockMs);
    if (m.ik !== null) {
      const prev = q.lookup.get(m.ik) as { fingerprint: string | null; result: string } | undefined;
      if (prev !== undefined) {
        db.exec('COMMIT');
        if (prev.fingerprint !== null && prev.fingerprint !== m.fp) {
          return {
            error: 'idempotency_key_reused',
            message: `Idempotency-Key ${JSON.stringify(m.ik.slice(0, 64))} was already used for a different request (other statements or parameters); nothing was changed. Send a new Idempotency-Key for a new request`,
          };
        }
        return JSON.parse(prev.result) as SqlExecResult;
      }
    }
    q.resetIns.run();
    q.resetDel.run();
    const result = runAll(m.cmd);
    if (m.ik !== null) {
      q.record.run(m.ik, m.at, m.fp, JSON.stringify(result));
      q.cap.run(m.sessionMax);
    }
    db.exec('COMMIT');
    return result;
  } catch (e) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw e instanceof Fatal ? e : new Fatal((e as Error).message, codeOf(e));
  }
}

function runAll(cmd: SqlCommand): SqlExecResult {
  const results: SqlStatementResult[] = [];
  if (cmd.transaction) db.exec('SAVEPOINT q_entry');
  for (const [i, s] of cmd.statements.entries()) {
    if (!cmd.transaction) db.exec('SAVEPOINT q_stmt');
    try {
      results.push(runOne(s, i));
      if (!cmd.transaction) db.exec('RELEASE q_stmt');
    } catch (e) {
      const failed = classify(e, i);
      db.exec(cmd.transaction ? 'ROLLBACK TO q_entry; RELEASE q_entry' : 'ROLLBACK TO q_stmt; RELEASE q_stmt');
      return { sql: cmd.transaction ? [] : results, failed };
    }
  }
  if (cmd.transaction) db.exec('RELEASE q_entry');
  return { sql: results };
}

async function handle(m: ToApplyWorker): Promise<void> {
  switch (m.t) {
    case 'apply':
      post({ t: 'done', seq: m.seq, result: apply(m) as SqlExecResult });
      return;
    case 'backup': {
      await db.backup(m.path);
      post({ t: 'done', seq: m.seq, bytes: statSync(m.path).size });
      return;
    }
    case 'restore':
      db.close();
      removeFiles();
      if (m.path !== null) renameSync(m.path, file);
      open();
      post({ t: 'done', seq: m.seq });
      return;
    case 'checksum':
      post({ t: 'done', seq: m.seq, checksum: contentChecksum(db) });
      return;
    case 'close':
      db.close();
      post({ t: 'done', seq: m.seq });
      return;
  }
}

const queue: ToApplyWorker[] = [];
let draining = false;
let failed = false;

async function drain(): Promise<void> {
  draining = true;
  while (queue.length > 0 && !failed) {
    const m = queue.shift()!;
    try {
      await handle(m);
    } catch (e) {
      // Not a function of the log (I/O error, disk full, a corrupt file):
      // report it and do nothing more; the node stops.
      failed = true;
      post({ t: 'fatal', seq: m.seq, message: (e as Error).message, code: codeOf(e) });
    }
  }
  draining = false;
}

try {
  // The file is rebuilt from the snapshot and the log at every start.
  removeFiles();
  open();
  port.on('message', (m: ToApplyWorker) => {
    queue.push(m);
    if (!draining) void drain();
  });
  post({ t: 'ready' });
} catch (e) {
  failed = true;
  post({ t: 'fatal', seq: 0, message: `opening ${file} failed: ${(e as Error).message}`, code: codeOf(e) });
}
