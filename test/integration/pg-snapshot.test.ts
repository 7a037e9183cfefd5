// Compaction of the PostgreSQL log (src/external/pg-snapshot.ts) against a
// private PostgreSQL: a snapshot and the deletion of the log below it commit
// together or not at all (a writer that fails mid-stream, a backend killed
// mid-transaction), a deposed leader's snapshot is refused by the fencing row
// and deletes nothing, the row at the snapshot's index is kept (so the log's
// end is still max(idx)), and a reader of a snapshot keeps reading it while a
// newer one replaces it. Listeners hear of each stored snapshot (NOTIFY
// `snapshot:<idx>`, sent at its COMMIT), never of one rolled back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog } from '../../src/external/pg-log.js';
import { NodeError } from '../../src/node/errors.js';
import { TestPostgres } from '../support/pg-server.js';
import { captureLogger } from '../support/log.js';
import { sleep } from './harness.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function* stream(parts: string[], opts: { failAfter?: number; stallAfter?: number; stall?: Promise<void> } = {}): AsyncGenerator<Uint8Array> {
  for (const [i, p] of parts.entries()) {
    if (opts.failAfter === i) throw new Error('the machines failed mid-stream');
    if (opts.stallAfter === i) await opts.stall;
    yield enc(p);
  }
}

async function collect(log: PgLog): Promise<{ idx: number; text: string } | undefined> {
  return log.withSnapshot(async (info, chunks) => {
    let text = '';
    for await (const c of chunks) text += dec(c);
    return { idx: info.idx, text };
  });
}

test('snapshot + compaction: one fenced transaction, crash safe, readers undisturbed', async () => {
  const db = await TestPostgres.start();
  const a = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info'), connectTimeoutMs: 1000 });
  const b = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info'), connectTimeoutMs: 1000 });
  const count = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_log'))[0]!.n);
  try {
    await a.migrate();
    const heard: string[] = [];
    await b.listen((payload) => heard.push(payload));
    const hears = async (payload: string) => {
      for (let i = 0; i < 200 && !heard.includes(payload); i++) await sleep(25);
      assert.ok(heard.includes(payload), `a listener heard ${payload} (heard ${JSON.stringify(heard.slice(-5))})`);
    };
    assert.deepEqual(await a.takeover(3, 'a/1'), { token: 3, owner: 'a/1' });
    for (let i = 0; i < 10; i++) await a.append(3, Array.from({ length: 10 }, (_, j) => enc(`e${i * 10 + j + 1}`)));
    assert.equal(await a.lastIndex(), 100);
    assert.equal(await a.latestSnapshot(), undefined);
    assert.equal(await collect(a), undefined);

    // The machines' stream fails mid-way: nothing stored, nothing deleted.
    await assert.rejects(a.writeSnapshot(3, 60, 50, stream(['x', 'y', 'z'], { failAfter: 2 })), /failed mid-stream/);
    assert.equal(await a.latestSnapshot(), undefined);
    assert.equal(await count(), 100);
    assert.equal(Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_snapshot_chunk'))[0]!.n), 0, 'no orphan chunk');

    // The writer's backend dies mid-transaction (a crash or kill -9 of the node): PostgreSQL rolls it all back.
    let release!: () => void;
    const stall = new Promise<void>((r) => { release = r; });
    const dying = a.writeSnapshot(3, 60, 50, stream(['x', 'y', 'z'], { stallAfter: 2, stall }));
    dying.catch(() => undefined);
    for (let i = 0; i < 100; i++) {
      const n = await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'quorate' AND state = 'idle in transaction'");
      if (Number(n[0]!.n) > 0) break;
      await sleep(50);
    }
    await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'quorate' AND state = 'idle in transaction'");
    release();
    await assert.rejects(dying);
    assert.equal(await a.latestSnapshot(), undefined, 'the killed transaction stored nothing');
    assert.equal(await count(), 100, 'and deleted nothing');

    // A good snapshot at 60: the log up to 50 goes in the same transaction, the rows after it stay.
    const s = await a.writeSnapshot(3, 60, 50, stream(['state', '-at-', '60']));
    assert.equal(s.idx, 60);
    assert.equal(s.deleted, 50);
    assert.equal(s.chunks, 3);
    assert.equal(await count(), 50);
    assert.deepEqual((await a.read(0, 1)).map((r) => r.idx), [51], 'the first row left is 51');
    assert.deepEqual(await collect(b), { idx: 60, text: 'state-at-60' });
    assert.equal(await a.firstIndex(), 51);
    await hears('snapshot:60');
    assert.ok(heard.includes('100'), 'appends notify with their last index');
    await assert.rejects(a.writeSnapshot(3, 100, 100, stream(['x'])), /must be below the snapshot's index/);

    // b takes over: a's snapshot (a deposed leader's) is refused by the row and deletes nothing.
    assert.deepEqual(await b.takeover(4, 'b/1'), { token: 4, owner: 'b/1' });
    await assert.rejects(a.writeSnapshot(3, 100, 99, stream(['stale'])), (e: unknown) => {
      assert.ok(e instanceof NodeError);
      assert.equal(e.code, 'no_leader');
      assert.match(e.message, /snapshot was refused by the fencing row in PostgreSQL: it holds fencing token 4, this node's lease had token 3/);
      return true;
    });
    assert.equal((await a.latestSnapshot())!.idx, 60);
    assert.equal(await count(), 50);

    // A reader of the snapshot at 60 that is mid-way keeps its snapshot while b stores one at 100 (deleting 60's).
    let resumeReader!: () => void;
    const readerGate = new Promise<void>((r) => { resumeReader = r; });
    let firstChunkRead!: () => void;
    const firstChunk = new Promise<void>((r) => { firstChunkRead = r; });
    const reading = a.withSnapshot(async (info, chunks) => {
      let text = '';
      for await (const c of chunks) {
        text += dec(c);
        if (text === 'state') { firstChunkRead(); await readerGate; }
      }
      return { idx: info.idx, text };
    });
    await firstChunk;
    const s2 = await b.writeSnapshot(4, 100, 99, stream(['state', '-at-', '100']));
    assert.equal(s2.deleted, 49);
    await hears('snapshot:100');
    assert.deepEqual(heard.filter((p) => p.startsWith('snapshot:')), ['snapshot:60', 'snapshot:100'], 'the failed, killed and refused snapshots sent no NOTIFY');
    resumeReader();
    assert.deepEqual(await reading, { idx: 60, text: 'state-at-60' }, 'the reader read the snapshot it opened, whole');
    assert.deepEqual(await collect(a), { idx: 100, text: 'state-at-100' });
    assert.equal(Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_snapshot'))[0]!.n), 1, 'older snapshots are deleted with their chunks');
    assert.equal(Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_snapshot_chunk'))[0]!.n), 3);

    // The row at the snapshot's index is kept: the log's end stays 100, and the next append is 101.
    assert.deepEqual((await b.read(0, 10)).map((r) => r.idx), [100]);
    assert.equal(await b.lastIndex(), 100);
    assert.equal(await b.append(4, [enc('e101')]), 101);
    // Even when every row is gone (the table emptied by hand), the end comes from the snapshot.
    await db.query('DELETE FROM quorate_log');
    assert.equal(await b.lastIndex(), 100);
    assert.equal(await b.append(4, [enc('again')]), 101);
  } finally {
    await a.close();
    await b.close();
    await db.stop();
  }
});
