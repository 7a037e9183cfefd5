// The PostgreSQL log of the external-shared mode (src/external/pg-log.ts)
// against a private PostgreSQL: migrations are versioned and idempotent (two
// nodes migrating at once), the fencing row refuses an append under an older
// token whatever that writer believes, and a dead database answers a clear
// error, with appends resuming after its restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIGRATIONS, PgLog } from '../../src/external/pg-log.js';
import { NodeError } from '../../src/node/errors.js';
import { TestPostgres } from '../support/pg-server.js';
import { captureLogger } from '../support/log.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

test('migrations, the fencing row, and a database that dies and comes back', async () => {
  const db = await TestPostgres.start();
  const a = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info'), connectTimeoutMs: 1000 });
  const b = new PgLog({ connectionString: db.connectionString, logger: captureLogger('info'), connectTimeoutMs: 1000 });
  try {
    // Two nodes migrate at once: one applies, both end at the same version, nothing twice.
    const [va, vb] = await Promise.all([a.migrate(), b.migrate()]);
    assert.equal(va, MIGRATIONS.length);
    assert.equal(vb, MIGRATIONS.length);
    assert.equal(await a.migrate(), MIGRATIONS.length, 'idempotent');
    assert.deepEqual((await db.query<{ version: number }>('SELECT version FROM quorate_schema ORDER BY version')).map((r) => r.version), MIGRATIONS.map((_, i) => i + 1));
    assert.equal(await a.fenceToken(), 0);

    // a takes over with token 5 and appends.
    assert.deepEqual(await a.takeover(5, 'a/1'), { token: 5, owner: 'a/1' });
    assert.equal(await a.append(5, [enc('a1'), enc('a2')]), 1);
    // b takes over with a newer token: from then on a's appends are refused by the row, whatever a believes.
    assert.deepEqual(await b.takeover(7, 'b/1'), { token: 7, owner: 'b/1' });
    await assert.rejects(a.append(5, [enc('late')]), (e: unknown) => {
      assert.ok(e instanceof NodeError);
      assert.equal(e.code, 'no_leader');
      assert.match(e.message, /refused by the fencing row in PostgreSQL: it holds fencing token 7, this node's lease had token 5/);
      return true;
    });
    // An older token cannot take the row back.
    assert.deepEqual(await a.takeover(6, 'a/1'), { token: 7, owner: 'b/1' }, 'takeover with an older token leaves the newer one');
    // The same token from another owner (nodes on different Redis servers) does not take the row either.
    assert.deepEqual(await a.takeover(7, 'a/1'), { token: 7, owner: 'b/1' });
    await assert.rejects(a.append(6, [enc('late2')]), /fencing row/);
    assert.equal(await b.append(7, [enc('b1')]), 3);
    const rows = await b.read(0, 100);
    assert.deepEqual(rows.map((r) => [r.idx, r.token, dec(r.payload)]), [[1, 5, 'a1'], [2, 5, 'a2'], [3, 7, 'b1']], 'contiguous, no write of the fenced writer');
    assert.equal(await b.lastIndex(), 3);

    // The database dies: a clear error naming it, nothing written; after the restart appends go on.
    await db.kill();
    const t0 = performance.now();
    await assert.rejects(b.append(7, [enc('while down')]), (e: unknown) => {
      assert.ok(e instanceof NodeError);
      assert.equal(e.code, 'storage_failed');
      assert.match(e.message, new RegExp(`the external PostgreSQL database at 127\\.0\\.0\\.1:${db.port}/postgres is unavailable \\(.*\\); nothing was written`));
      return true;
    });
    console.log(`# append refused ${Math.round(performance.now() - t0)} ms after PostgreSQL was killed`);
    await assert.rejects(b.ping());
    await db.restart();
    let idx: number | undefined;
    for (let i = 0; i < 50 && idx === undefined; i++) {
      idx = await b.append(7, [enc('after restart')]).catch(() => undefined);
      if (idx === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(idx, 4, 'appends resume after the restart, right after the last committed entry');
    assert.equal(await a.fenceToken(), 7, 'the fence survived the restart');
  } finally {
    await a.close();
    await b.close();
    await db.stop();
  }
});
