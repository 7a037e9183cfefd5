// The `quorate_outbox` table of the "sql" machine: present in every database,
// written in the application's own transaction, ids never reused, equal on
// every node (also after a snapshot), and not droppable.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { encodeEnvelope } from '../state/envelope.js';
import { MachineRegistry } from '../state/machines.js';
import { KvStateMachine } from '../state/kv.js';
import type { SqlExecResult } from '../state/results.js';
import { SQL_MACHINE_ID, encodeSqlPayload, type SqlParam } from './command.js';
import { SqlStateMachine } from './machine.js';
import { SQL_OUTBOX_TABLE, SqlRefusedError, checkExecuteStatement } from './statements.js';

const dirs: string[] = [];
const machines: SqlStateMachine[] = [];
after(async () => {
  for (const m of machines) await m.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Replica { readonly registry: MachineRegistry; readonly sql: SqlStateMachine; index: number }

async function replica(): Promise<Replica> {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-sql-outbox-'));
  dirs.push(dir);
  const sql = await SqlStateMachine.open({ dir, logger: pino({ level: 'silent' }), onFatal: (e) => assert.fail(e), readers: 1 });
  machines.push(sql);
  const registry = new MachineRegistry();
  registry.register(new KvStateMachine());
  registry.register(sql);
  return { registry, sql, index: 0 };
}

type Stmt = readonly [string, ...SqlParam[]];
const AT = Date.UTC(2026, 10, 30, 3, 0, 0);

async function exec(r: Replica, statements: readonly Stmt[], transaction = true): Promise<SqlExecResult> {
  const payload = encodeSqlPayload({ transaction, seed: new Uint8Array(16).fill(3), statements: statements.map(([sql, ...params]) => ({ sql, params })) });
  return (await r.registry.apply(++r.index, encodeEnvelope({ machine: SQL_MACHINE_ID, at: AT, payload }))) as SqlExecResult;
}

const rows = async (r: Replica, sql: string): Promise<unknown[][]> => {
  await r.sql.caughtUp();
  return (await r.sql.query(sql, [])).rows;
};

describe('sql machine: the quorate_outbox table', () => {
  it('exists in a new database; a row is kept or rolled back with the business row of its transaction, with defaults from the entry', async () => {
    const r = await replica();
    assert.deepEqual(await rows(r, `SELECT count(*) FROM ${SQL_OUTBOX_TABLE}`), [[0]]);
    await exec(r, [['CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL UNIQUE)']]);
    const ok = await exec(r, [['INSERT INTO orders (item) VALUES (?)', 'disk'], [`INSERT INTO ${SQL_OUTBOX_TABLE} (body) VALUES (json_object('order', last_insert_rowid()))`]]);
    assert.equal(ok.failed, undefined);
    // The business row fails: the outbox row of the same transaction is not kept.
    const failed = await exec(r, [[`INSERT INTO ${SQL_OUTBOX_TABLE} (body, content_type) VALUES ('{"order":2}', 'application/vnd.x+json')`], ['INSERT INTO orders (item) VALUES (?)', 'disk']]);
    assert.equal(failed.failed?.statement, 1);
    assert.deepEqual(await rows(r, `SELECT id, body, content_type, created_at FROM ${SQL_OUTBOX_TABLE}`), [[1, '{"order":1}', 'application/json', '2026-11-30 03:00:00']]);
    // A content type the webhook request could not carry as a header is refused when inserted.
    for (const ct of ['text/plain\nX-Injected: 1', '', 'x'.repeat(129)]) {
      const bad = await exec(r, [[`INSERT INTO ${SQL_OUTBOX_TABLE} (body, content_type) VALUES ('{}', ?)`, ct]]);
      assert.equal(bad.failed?.sqliteCode, 'SQLITE_CONSTRAINT_CHECK', JSON.stringify(ct));
    }
  });

  it('never reuses the id of a removed row (AUTOINCREMENT), also after a snapshot restored on another node, whose checksum agrees', async () => {
    const a = await replica();
    for (let i = 0; i < 3; i++) await exec(a, [[`INSERT INTO ${SQL_OUTBOX_TABLE} (body) VALUES (?)`, `m${i}`]]);
    await exec(a, [[`DELETE FROM ${SQL_OUTBOX_TABLE} WHERE id = ?`, 3]]);
    const snap = a.registry.snapshot('composite');
    const chunks: Uint8Array[] = [];
    for await (const c of snap) chunks.push(Buffer.from(c));
    const b = await replica();
    async function* replay(): AsyncGenerator<Uint8Array> { yield* chunks; }
    await b.registry.restore(replay());
    b.index = a.index;
    for (const r of [a, b]) {
      const res = await exec(r, [[`INSERT INTO ${SQL_OUTBOX_TABLE} (body) VALUES ('m3') RETURNING id`]]);
      assert.deepEqual(res.sql[0]!.rows, [[4]]);
    }
    assert.equal((await b.registry.checksumAsync()).checksum, (await a.registry.checksumAsync()).checksum);
    // A fresh node and one that restored an empty state hold the same (empty) table.
    const c = await replica();
    const d = await replica();
    async function* none(): AsyncGenerator<Uint8Array> { /* an empty section */ }
    await d.sql.restore(none()).then((commit) => commit());
    assert.equal(await d.sql.checksum(), await c.sql.checksum());
    assert.deepEqual(await rows(d, `SELECT count(*) FROM ${SQL_OUTBOX_TABLE}`), [[0]]);
  });

  it('refuses DROP and ALTER of the table (it is recreated at every open), on the leader and when applying', async () => {
    for (const sql of [`DROP TABLE ${SQL_OUTBOX_TABLE}`, `DROP TABLE IF EXISTS main."${SQL_OUTBOX_TABLE}"`, `ALTER TABLE ${SQL_OUTBOX_TABLE} RENAME TO x`, `ALTER TABLE [Quorate_Outbox] ADD COLUMN y`]) {
      assert.throws(() => checkExecuteStatement(sql, 2), (e: unknown) => e instanceof SqlRefusedError && /of quorate_outbox is refused/.test(e.message) && e.message.startsWith('statement 2'), sql);
    }
    checkExecuteStatement(`DELETE FROM ${SQL_OUTBOX_TABLE} WHERE id = 1`, 0);
    checkExecuteStatement(`CREATE INDEX outbox_created ON ${SQL_OUTBOX_TABLE}(created_at)`, 0);
    const r = await replica();
    const res = await exec(r, [[`DROP TABLE ${SQL_OUTBOX_TABLE}`]]);
    assert.match(res.failed!.message, /DROP of quorate_outbox is refused/);
    assert.deepEqual(await rows(r, `SELECT count(*) FROM sqlite_schema WHERE name = '${SQL_OUTBOX_TABLE}'`), [[1]]);
  });
});
