import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { encodeEnvelope } from '../state/envelope.js';
import { MachineRegistry } from '../state/machines.js';
import { KvStateMachine } from '../state/kv.js';
import type { ApplyResult, SqlExecResult } from '../state/results.js';
import { collectSnapshot } from '../state/snapshot.js';
import { SQL_MACHINE_ID, encodeSqlPayload, type SqlParam } from './command.js';
import { SqlStateMachine } from './machine.js';
import { checkExecuteStatement, checkQueryStatement, SqlRefusedError } from './statements.js';

const dirs: string[] = [];
const machines: SqlStateMachine[] = [];
after(async () => {
  for (const m of machines) await m.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Replica {
  readonly registry: MachineRegistry;
  readonly sql: SqlStateMachine;
  index: number;
  fatal: Error[];
}

async function replica(limits: Partial<SqlStateMachine['limits']> = {}): Promise<Replica> {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-sql-'));
  dirs.push(dir);
  const fatal: Error[] = [];
  const sql = await SqlStateMachine.open({ dir, logger: pino({ level: 'silent' }), onFatal: (e) => fatal.push(e), limits, readers: 1 });
  machines.push(sql);
  const registry = new MachineRegistry();
  registry.register(new KvStateMachine());
  registry.register(sql);
  return { registry, sql, index: 0, fatal };
}

const SEED = new Uint8Array(16).fill(7);
type Stmt = readonly [string, ...SqlParam[]];

function entry(statements: readonly Stmt[], o: { at?: number; transaction?: boolean; ik?: string; seed?: Uint8Array } = {}): Uint8Array {
  const payload = encodeSqlPayload({ transaction: o.transaction ?? true, seed: o.seed ?? SEED, statements: statements.map(([sql, ...params]) => ({ sql, params })) });
  return encodeEnvelope({ machine: SQL_MACHINE_ID, at: o.at ?? 1_700_000_000_000, ...(o.ik !== undefined ? { idempotencyKey: o.ik } : {}), payload });
}

async function exec(r: Replica, statements: readonly Stmt[], o: Parameters<typeof entry>[1] = {}): Promise<ApplyResult> {
  const res = r.registry.apply(++r.index, entry(statements, o));
  assert.ok(res instanceof Promise, 'the sql machine answers with a promise');
  return res;
}

const rows = async (r: Replica, sql: string, params: SqlParam[] = []): Promise<unknown[][]> => {
  await r.sql.caughtUp();
  return (await r.sql.query(sql, params)).rows;
};

describe('sql machine: apply', () => {
  it('applies statements in log order and answers rows affected and last insert id per statement', async () => {
    const r = await replica();
    await exec(r, [['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)']]);
    const res = (await exec(r, [['INSERT INTO t (v) VALUES (?)', 'a'], ['INSERT INTO t (v) VALUES (?), (?)', 'b', 'c'], ['UPDATE t SET v = upper(v)']])) as SqlExecResult;
    assert.deepEqual(res.sql.map((s) => [s.rowsAffected, s.lastInsertId]), [[1, 1], [2, 3], [3, 3]]);
    assert.equal(res.failed, undefined);
    assert.deepEqual(await rows(r, 'SELECT id, v FROM t ORDER BY id'), [[1, 'A'], [2, 'B'], [3, 'C']]);
    const ret = (await exec(r, [['INSERT INTO t (v) VALUES (?) RETURNING id, v', 'd']])) as SqlExecResult;
    assert.deepEqual(ret.sql[0]!.columns, ['id', 'v']);
    assert.deepEqual(ret.sql[0]!.rows, [[4, 'd']]);
    assert.equal(r.registry.appliedIndex, r.index);
  });

  it('a constraint violation rolls the whole transaction back and is the answer; without a transaction the earlier statements stay', async () => {
    const r = await replica();
    await exec(r, [['CREATE TABLE u (k TEXT PRIMARY KEY)']]);
    const res = (await exec(r, [['INSERT INTO u VALUES (?)', 'x'], ['INSERT INTO u VALUES (?)', 'x']])) as SqlExecResult;
    assert.equal(res.failed?.statement, 1);
    assert.equal(res.failed?.sqliteCode, 'SQLITE_CONSTRAINT_PRIMARYKEY');
    assert.deepEqual(res.sql, []);
    assert.deepEqual(await rows(r, 'SELECT count(*) FROM u'), [[0]]);
    const loose = (await exec(r, [['INSERT INTO u VALUES (?)', 'y'], ['INSERT INTO u VALUES (?)', 'y'], ['INSERT INTO u VALUES (?)', 'z']], { transaction: false })) as SqlExecResult;
    assert.equal(loose.failed?.statement, 1);
    assert.equal(loose.sql.length, 1);
    assert.deepEqual(await rows(r, 'SELECT k FROM u ORDER BY k'), [['y']]);
    const syntax = (await exec(r, [['INSERT INTO nope VALUES (1)']])) as SqlExecResult;
    assert.match(syntax.failed!.message, /no such table: nope/);
    assert.deepEqual(r.fatal, []);
  });

  it('non-deterministic functions take their values from the entry: equal on two replicas, time = the entry time', async () => {
    const a = await replica();
    const b = await replica();
    const at = Date.UTC(2026, 10, 30, 1, 2, 3, 456);
    const stmts: Stmt[] = [
      ['CREATE TABLE n (r INTEGER, b BLOB, ts TEXT DEFAULT CURRENT_TIMESTAMP, d TEXT, j REAL, e INTEGER, lid INTEGER)'],
      ["INSERT INTO n (r, b, d, j, e, lid) VALUES (random(), randomblob(16), datetime('now'), julianday('NOW'), unixepoch(), last_insert_rowid())"],
    ];
    for (const r of [a, b]) await exec(r, stmts, { at });
    const ra = await rows(a, 'SELECT r, hex(b), ts, d, j, e, lid FROM n');
    assert.deepEqual(ra, await rows(b, 'SELECT r, hex(b), ts, d, j, e, lid FROM n'));
    const [row] = ra as [unknown[]];
    assert.equal(row[2], '2026-11-30 01:02:03');
    assert.equal(row[3], '2026-11-30 01:02:03');
    assert.equal(row[5], Math.floor(at / 1000));
    assert.equal(row[6], 0);
    // Another seed gives other random values.
    await exec(a, [['INSERT INTO n (r) VALUES (random())']], { seed: new Uint8Array(16).fill(1) });
    await exec(b, [['INSERT INTO n (r) VALUES (random())']], { seed: new Uint8Array(16).fill(2) });
    assert.notDeepEqual(await rows(a, 'SELECT r FROM n WHERE rowid = 2'), await rows(b, 'SELECT r FROM n WHERE rowid = 2'));
    const local = (await exec(a, [["SELECT datetime('now', 'localtime')"]])) as SqlExecResult;
    assert.match(local.failed!.message, /'localtime' modifier is refused/);
  });

  it('refuses what would diverge or escape the database, naming the statement and what is refused', async () => {
    const refused: [string, RegExp][] = [
      ['PRAGMA foreign_keys = OFF', /PRAGMA is refused/],
      ["ATTACH 'x.db' AS x", /ATTACH is refused/],
      ['BEGIN', /transactions are set by the request/],
      ["VACUUM INTO '/tmp/x.db'", /VACUUM INTO is refused/],
      ['CREATE TEMP TABLE t (a)', /CREATE TEMP is refused/],
      ["SELECT load_extension('x')", /load_extension\(\) is refused/],
      ['INSERT INTO t VALUES (total_changes())', /total_changes\(\) is refused/],
      ['INSERT INTO t VALUES (sqlite_version())', /sqlite_version\(\) is refused/],
      ['INSERT INTO _quorate_sessions VALUES (1)', /reserved/],
      ['INSERT INTO t VALUES (1); DROP TABLE t', /more than one SQL statement/],
    ];
    for (const [sql, re] of refused) assert.throws(() => checkExecuteStatement(sql, 3), (e: unknown) => e instanceof SqlRefusedError && re.test(e.message) && e.message.startsWith('statement 3'), sql);
    // Strings and comments are not looked into.
    checkExecuteStatement("INSERT INTO t VALUES ('PRAGMA x; total_changes()') -- ATTACH", 0);
    assert.throws(() => checkQueryStatement('PRAGMA journal_mode = DELETE'), /only reading these pragmas/);
    checkQueryStatement('PRAGMA table_info(t)');
    // The apply worker refuses the same (deterministically, on every node).
    const r = await replica();
    const res = (await exec(r, [['CREATE TABLE t (a)'], ['PRAGMA foreign_keys = OFF']])) as SqlExecResult;
    assert.match(res.failed!.message, /PRAGMA is refused/);
    assert.deepEqual(await rows(r, "SELECT count(*) FROM sqlite_schema WHERE name = 't'"), [[0]]);
  });

  it('an Idempotency-Key retry gets the first result; the key reused for other statements is refused', async () => {
    const r = await replica();
    await exec(r, [['CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER)'], ['INSERT INTO c VALUES (1, 0)']]);
    const first = await exec(r, [['UPDATE c SET n = n + 1 RETURNING n']], { ik: 'k1' });
    const again = await exec(r, [['UPDATE c SET n = n + 1 RETURNING n']], { ik: 'k1', seed: new Uint8Array(16).fill(9) });
    assert.deepEqual(again, first);
    assert.deepEqual(await rows(r, 'SELECT n FROM c'), [[1]]);
    const other = await exec(r, [['UPDATE c SET n = n + 5']], { ik: 'k1' });
    assert.equal((other as { error: string }).error, 'idempotency_key_reused');
  });
});

describe('sql machine: snapshot, restore, checksum', () => {
  it('a snapshot taken at index N holds the state at N while applies go on; restoring it elsewhere gives the same checksum', async () => {
    const a = await replica();
    await exec(a, [['CREATE TABLE s (id INTEGER PRIMARY KEY, v BLOB)']]);
    for (let i = 0; i < 50; i++) void exec(a, [['INSERT INTO s (v) VALUES (randomblob(1000))']]);
    const atN = a.registry.checksumAsync();
    const snap = a.registry.snapshot('composite');
    const it = snap[Symbol.asyncIterator]();
    // Applies go on while the snapshot is read.
    for (let i = 0; i < 20; i++) void exec(a, [['DELETE FROM s WHERE id = ?', i + 1]]);
    const chunks: Uint8Array[] = [];
    for (let r = await it.next(); r.done !== true; r = await it.next()) chunks.push(Buffer.from(r.value));
    const b = await replica();
    async function* replay(): AsyncGenerator<Uint8Array> {
      yield* chunks;
    }
    await b.registry.validate(replay());
    await b.registry.restore(replay());
    const expected = await atN;
    const got = await b.registry.checksumAsync();
    assert.equal(got.appliedIndex, expected.appliedIndex);
    assert.equal(got.checksum, expected.checksum);
    assert.deepEqual(await rows(b, 'SELECT count(*) FROM s'), [[50]]);
    // b applies the same later entries and agrees with a again.
    b.index = got.appliedIndex;
    for (let i = 0; i < 20; i++) await exec(b, [['DELETE FROM s WHERE id = ?', i + 1]]);
    assert.equal((await b.registry.checksumAsync()).checksum, (await a.registry.checksumAsync()).checksum);
    assert.deepEqual(await rows(b, 'SELECT count(*) FROM s'), [[30]]);
  });

  it('a section that is not an SQLite image is refused and changes nothing', async () => {
    const r = await replica();
    await exec(r, [['CREATE TABLE k (a)'], ['INSERT INTO k VALUES (1)']]);
    const before = await r.sql.checksum();
    async function* junk(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(4096, 1);
    }
    await assert.rejects(r.sql.validate(junk()), /not an SQLite database image/);
    await assert.rejects(r.sql.restore(junk()), /not an SQLite database image/);
    assert.equal(await r.sql.checksum(), before);
    const empty = await collectSnapshot((async function* () {})());
    assert.equal(empty.length, 0);
  });
});

describe('sql machine: reads', () => {
  it('refuses writes, bounds the answer, and ends a runaway query by terminating its worker', async () => {
    const r = await replica({ queryRows: 5, queryTimeoutMs: 300 });
    await exec(r, [['CREATE TABLE q (a)'], ['WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) INSERT INTO q SELECT x FROM c']]);
    await assert.rejects(r.sql.query('DELETE FROM q', []), (e: { code?: string }) => e.code === 'sql_refused');
    await assert.rejects(r.sql.query('SELECT a FROM q', []), (e: { code?: string; extra?: { limit?: string } }) => e.code === 'sql_result_too_large' && e.extra?.limit === '5 rows');
    assert.deepEqual((await r.sql.query('SELECT a FROM q ORDER BY a LIMIT 2', [])).rows, [[1], [2]]);
    const t0 = Date.now();
    await assert.rejects(
      r.sql.query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c', []),
      (e: { code?: string }) => e.code === 'sql_query_timeout',
    );
    assert.ok(Date.now() - t0 < 20_000);
    // The pool serves again with a fresh worker.
    assert.deepEqual((await r.sql.query('SELECT count(*) FROM q', [])).rows, [[10]]);
  });

  it('pipelines queries to its worker: the ones queued behind a runaway query are run again by the next worker, not failed', async () => {
    const r = await replica({ queryTimeoutMs: 300 });
    await exec(r, [['CREATE TABLE p (a)'], ['INSERT INTO p VALUES (1)'], ['INSERT INTO p VALUES (2)']]);
    // A statement reused from the worker's cache still sees new rows.
    assert.deepEqual((await r.sql.query('SELECT count(*) FROM p', [])).rows, [[2]]);
    await exec(r, [['INSERT INTO p VALUES (3)']]);
    assert.deepEqual((await r.sql.query('SELECT count(*) FROM p', [])).rows, [[3]]);
    const runaway = r.sql.query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c', []);
    const behind = Array.from({ length: 20 }, (_, i) => r.sql.query('SELECT a FROM p WHERE a = ?', [1 + (i % 3)]));
    await assert.rejects(runaway, (e: { code?: string }) => e.code === 'sql_query_timeout');
    const answers = await Promise.all(behind);
    answers.forEach((a, i) => assert.deepEqual(a.rows, [[1 + (i % 3)]], `query ${i}`));
    // A prepare error is answered per query and does not poison the cache.
    await assert.rejects(r.sql.query('SELECT nope FROM p', []), (e: { code?: string }) => e.code === 'sql_error');
    await exec(r, [['ALTER TABLE p ADD COLUMN nope']]);
    assert.deepEqual((await r.sql.query('SELECT nope FROM p WHERE a = 1', [])).rows, [[null]]);
  });
});

describe('sql machine: started at first use', () => {
  it('opens no database until the first SQL command; a snapshot without SQL restores without one', async () => {
    const r = await replica();
    const file = join(dirs.at(-1)!, 'db.sqlite');
    const exists = (): Promise<boolean> => stat(file).then(() => true, () => false);
    // A snapshot of a registry whose SQL machine is empty carries no SQL section: it restores to empty.
    const other = await replica();
    const chunks: Uint8Array[] = [];
    for await (const c of other.registry.snapshot('composite')) chunks.push(Buffer.from(c));
    async function* replay(): AsyncGenerator<Uint8Array> {
      yield* chunks;
    }
    await r.registry.restore(replay());
    assert.equal(r.sql.isEmpty(), true);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(await exists(), false, 'no SQLite database (and no thread) on a node that has run no SQL');
    await exec(r, [['CREATE TABLE t (a INTEGER)']]);
    await exec(r, [['INSERT INTO t VALUES (1)']]);
    assert.deepEqual(await rows(r, 'SELECT a FROM t'), [[1]]);
    assert.equal(await exists(), true);
  });

  it('a query before any command opens the (empty) database and answers', async () => {
    const r = await replica();
    assert.deepEqual((await r.sql.query('SELECT 1 + 1', [])).rows, [[2]]);
  });
});
