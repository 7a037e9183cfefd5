// `/v1/db/*` of the external-shared mode as PostgreSQL's SQL
// (src/external/pg-sql.ts) against a private PostgreSQL: two nodes' services
// on one database; statements in the operator's schema with $n parameters
// and PostgreSQL's types as JSON; transaction true/false; idempotency keys;
// the refusals; a query cannot write; the session is clean after a request;
// and the fence: a deposed leader's execute (it still believes it leads) is
// refused by the fencing row in the same transaction and keeps nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog } from '../../src/external/pg-log.js';
import { PgSqlService } from '../../src/external/pg-sql.js';
import { NodeError } from '../../src/node/errors.js';
import { SqlError } from '../../src/sql/errors.js';
import { SQL_LIMITS } from '../../src/sql/command.js';
import type { SqlExecResult } from '../../src/state/index.js';
import { TestPostgres } from '../support/pg-server.js';
import { captureLogger } from '../support/log.js';

const st = (sql: string, ...params: (string | number | null | Uint8Array)[]) => ({ sql, params });

test('PostgreSQL SQL for /v1/db: dialect, transactions, idempotency, refusals, and the fence', async () => {
  const db = await TestPostgres.start();
  const logA = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info') });
  const logB = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info') });
  let aFence = { writable: true, token: 5 };
  const fenced: string[] = [];
  const mk = (fence: () => { writable: boolean; token: number }) => new PgSqlService({
    connectionString: db.connectionString, schema: 'app', limits: { ...SQL_LIMITS, queryTimeoutMs: 500 }, logger: captureLogger('info'),
    fence, fenced: (_t, m) => fenced.push(m), notLeader: () => new NodeError('not_leader', 'not the leader'), appliedIndex: () => 0,
  });
  const a = mk(() => aFence);
  const b = mk(() => ({ writable: false, token: 0 }));
  try {
    await Promise.all([logA.migrate(), logB.migrate()]);
    await Promise.all([a.prepare(), b.prepare()]);
    assert.deepEqual(await logA.takeover(5, 'a/1'), { token: 5, owner: 'a/1' });

    const ex = async (svc: PgSqlService, stmts: ReturnType<typeof st>[], transaction = true, key?: string) =>
      (await svc.execute({ statements: stmts, transaction }, key !== undefined ? { idempotencyKey: key } : {})) as SqlExecResult;

    const r1 = await ex(a, [
      st('CREATE TABLE t (id bigserial PRIMARY KEY, v text UNIQUE, b bytea, n bigint, ts timestamptz, j jsonb)'),
      st('INSERT INTO t (v, b, n, ts, j) VALUES ($1, $2, $3, $4, $5) RETURNING id', 'one', new Uint8Array([1, 2, 3]), 42, '2026-01-02T03:04:05Z', '{"x":1}'),
    ]);
    assert.equal(r1.failed, undefined);
    assert.deepEqual(r1.sql[1], { rowsAffected: 1, lastInsertId: 0, columns: ['id'], rows: [[1]] });
    assert.equal(Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'app' AND tablename = 't'"))[0]!.n), 1, 'created in the schema of the config');

    // Any node reads it, with PostgreSQL's types as JSON.
    const q = await b.query('SELECT id, v, b, n, ts, j FROM t WHERE v = $1', ['one']);
    assert.deepEqual(q.columns, ['id', 'v', 'b', 'n', 'ts', 'j']);
    assert.deepEqual(q.rows, [[1, 'one', { base64: 'AQID' }, 42, '2026-01-02T03:04:05.000Z', { x: 1 }]]);

    // transaction true: a failing statement keeps nothing; false: the statements before it are kept.
    const f1 = await ex(a, [st("INSERT INTO t (v) VALUES ('two')"), st("INSERT INTO t (v) VALUES ('one')")]);
    assert.equal(f1.failed?.statement, 1);
    assert.equal(f1.failed?.sqlState, '23505');
    assert.match(f1.failed!.message, /^statement 1: duplicate key value violates unique constraint/);
    assert.deepEqual((await b.query("SELECT count(*) FROM t WHERE v = 'two'", [])).rows, [[0]]);
    const f2 = await ex(a, [st("INSERT INTO t (v) VALUES ('two')"), st('SELEC 1'), st("INSERT INTO t (v) VALUES ('three')")], false);
    assert.equal(f2.failed?.statement, 1);
    assert.equal(f2.failed?.sqlState, '42601');
    assert.equal(f2.sql.length, 1);
    assert.deepEqual((await b.query('SELECT v FROM t ORDER BY id', [])).rows.map((r) => r[0]), ['one', 'two']);

    // Idempotency: the same key and request answers the first result and runs once; another request is refused.
    const i1 = await ex(a, [st("INSERT INTO t (v) VALUES ('idem') RETURNING id")], true, 'k-1');
    const i2 = await ex(a, [st("INSERT INTO t (v) VALUES ('idem') RETURNING id")], true, 'k-1');
    assert.deepEqual(i2, i1);
    const reused = await a.execute({ statements: [st("INSERT INTO t (v) VALUES ('other')")], transaction: true }, { idempotencyKey: 'k-1' });
    assert.equal('error' in reused && reused.error, 'idempotency_key_reused');
    assert.deepEqual((await b.query("SELECT count(*) FROM t WHERE v IN ('idem', 'other')", [])).rows, [[1]]);

    // Refusals, before anything runs.
    const refused = async (p: Promise<unknown>, re: RegExp) => assert.rejects(p, (e: unknown) => { assert.ok(e instanceof SqlError, String(e)); assert.equal(e.code, 'sql_refused'); assert.match(e.message, re); return true; });
    await refused(ex(a, [st('BEGIN')]), /statement 0: BEGIN is refused in \/v1\/db\/execute: transactions are set by the request's "transaction" flag/);
    await refused(ex(a, [st('SELECT 1'), st('DELETE FROM public.quorate_log')]), /statement 1: quorate's own tables/);
    await refused(ex(a, [st('DROP TABLE quorate_outbox')]), /DROP of quorate_outbox is refused/);
    await refused(b.query("INSERT INTO t (v) VALUES ('q')", []), /a query cannot write/);
    await assert.rejects(b.query('SELECT pg_sleep(3)', []), (e: unknown) => e instanceof SqlError && e.code === 'sql_query_timeout');
    await assert.rejects(b.query('SELECT nope FROM t', []), (e: unknown) => e instanceof SqlError && e.code === 'sql_error' && e.extra.sqlState === '42703');
    // Not the leader: the API forwards on not_leader.
    await assert.rejects(ex(b, [st('SELECT 1')]), (e: unknown) => e instanceof NodeError && e.code === 'not_leader');

    // A session setting made by a statement does not outlive its request (DISCARD ALL).
    await Promise.all(Array.from({ length: 4 }, () => b.query("SELECT set_config('default_transaction_isolation', 'serializable', false)", [])));
    for (let i = 0; i < 4; i++) assert.deepEqual((await b.query('SHOW default_transaction_isolation', [])).rows, [['read committed']], 'a later request does not inherit the setting');
    assert.deepEqual((await b.query('SELECT count(*) FROM t', [])).rows, [[3]]);

    // The outbox table exists in the schema; its rows are PostgreSQL's.
    await ex(a, [st("INSERT INTO quorate_outbox (body) VALUES ($1)", '{"ok":true}')]);
    assert.deepEqual((await b.query('SELECT id, body, content_type FROM quorate_outbox', [])).rows, [[1, '{"ok":true}', 'application/json']]);

    // Both nodes compute the same checksum of the schema.
    assert.equal((await a.checksum()).checksum, (await b.checksum()).checksum);

    // The fence: another node takes over with token 7. a still believes it leads with 5: its execute runs, then the
    // fence row, read in the same transaction, refuses it: nothing is kept, and a is told to step down.
    assert.deepEqual(await logB.takeover(7, 'b/1'), { token: 7, owner: 'b/1' });
    await assert.rejects(ex(a, [st("INSERT INTO t (v) VALUES ('deposed')")]), (e: unknown) => {
      assert.ok(e instanceof NodeError);
      assert.equal(e.code, 'no_leader');
      assert.match(e.message, /SQL transaction was refused by the fencing row in PostgreSQL: it holds fencing token 7, this node's lease had token 5.*nothing of this request was kept/);
      return true;
    });
    assert.equal(fenced.length, 1);
    assert.deepEqual((await b.query("SELECT count(*) FROM t WHERE v = 'deposed'", [])).rows, [[0]], 'the deposed leader wrote nothing');
    // With its idempotency key too: the record is not kept either (a retry on the new leader runs it).
    await assert.rejects(ex(a, [st("INSERT INTO t (v) VALUES ('deposed')")], true, 'k-2'), /refused by the fencing row/);
    assert.equal((await db.query("SELECT key FROM quorate_sql_request WHERE key = 'k-2'")).length, 0);
    aFence = { writable: true, token: 7 };
    assert.equal((await ex(a, [st("INSERT INTO t (v) VALUES ('new leader')")])).failed, undefined, 'with the current token it writes');
  } finally {
    await a.close();
    await b.close();
    await logA.close();
    await logB.close();
    await db.stop();
  }
});
