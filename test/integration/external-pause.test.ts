// A leader paused (SIGSTOP) between accepting writes and writing them, past
// its lease TTL, then resumed (SIGCONT): the other node took the lease and
// raised the fencing row meanwhile, so the paused leader's late append is
// refused by PostgreSQL, whatever the resumed process believes; nothing of it
// lands after the new leader's first entry. QUORATE_TEST_APPEND_DELAY_MS
// (tests only) holds every append batch 800 ms after it was taken, so that the
// pause lands in that window (where no timeout on the leader can help). The
// same holds for /v1/db/execute (PostgreSQL's SQL, outside the log): the
// resumed leader runs its statements, the fencing row read in the same
// transaction refuses them, and none is in PostgreSQL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { http, sleep, waitFor, TOKEN } from './harness.js';
import { startExternalCluster } from './external-cluster.js';

test('a leader paused with writes accepted but not yet appended: its late append is refused by the fencing row', async () => {
  const x = await startExternalCluster({ ttlSeconds: 3, renewSeconds: 1, env: { QUORATE_TEST_APPEND_DELAY_MS: '800' } });
  const { c, db } = x;
  try {
    const a = await c.waitLeader(30_000);
    const b = 1 - a;
    await c.waitReady(b, 20_000);
    const ok = await http(c.nodes[a]!.url, 'PUT', '/v1/kv/before', { token: TOKEN, body: { value: '1' } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const table = await http(c.nodes[a]!.url, 'POST', '/v1/db/execute', { token: TOKEN, body: { statements: [['CREATE TABLE late (v text)']] } });
    assert.equal(table.status, 200, JSON.stringify(table.body));
    // Writes accepted by the leader (its lease is valid), then the pause inside the append window.
    const late = Array.from({ length: 5 }, (_, i) => http(c.nodes[a]!.url, 'PUT', `/v1/kv/late-${i}`, { token: TOKEN, body: { value: String(i) } })
      .catch((e: Error) => ({ status: 0, body: { error: 'fetch_failed', message: e.message } as Record<string, unknown>, headers: new Headers() })));
    const lateSql = Array.from({ length: 3 }, (_, i) => http(c.nodes[a]!.url, 'POST', '/v1/db/execute', { token: TOKEN, body: { statements: [['INSERT INTO late (v) VALUES ($1)', `sql-${i}`]] } })
      .catch((e: Error) => ({ status: 0, body: { error: 'fetch_failed', message: e.message } as Record<string, unknown>, headers: new Headers() })));
    await sleep(200);
    c.kill(a, 'SIGSTOP');
    const pausedAt = Date.now();
    await c.waitLeader(20_000, [a]);
    const first = await http(c.nodes[b]!.url, 'PUT', '/v1/kv/new-leader', { token: TOKEN, body: { value: 'b' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    console.log(`# ${c.nodes[b]!.name} took over and wrote ${Date.now() - pausedAt} ms after the pause`);
    const logFrom = c.log(a).length;
    c.kill(a, 'SIGCONT');
    const answers = await Promise.all(late);
    await waitFor('the resumed leader\'s append is refused by the fencing row', () => /refused by the fencing row in PostgreSQL/.test(c.log(a).slice(logFrom)), 10_000);
    const sqlAnswers = await Promise.all(lateSql);
    for (const r of sqlAnswers) assert.notEqual(r.status, 200, `no late SQL execute of the paused leader was acknowledged: ${JSON.stringify(r.body)}`);
    await waitFor('the resumed leader\'s SQL transaction is refused by the fencing row', () => /SQL transaction was refused by the fencing row in PostgreSQL/.test(c.log(a).slice(logFrom)), 10_000);
    const sqlSeen = sqlAnswers.map((r) => `${r.status} ${String(r.body['error'] ?? '')}`);
    console.log(`# the paused leader's late SQL executes answered: ${[...new Set(sqlSeen)].map((k) => `${k} ×${sqlSeen.filter((x2) => x2 === k).length}`).join(', ')}`);
    assert.equal((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_sql.late'))[0]!.n, '0', 'a late SQL execute of the paused leader reached PostgreSQL');
    const after = c.log(a).slice(logFrom);
    assert.match(after, /Split-brain warning: this node \(fencing token (\d+)\) tried to write after a newer leader took over the PostgreSQL log; the fencing row refused it and nothing was written/);
    const seen = answers.map((r) => `${r.status} ${String(r.body['error'] ?? '')}`);
    console.log(`# the paused leader's late writes answered: ${[...new Set(seen)].map((k) => `${k} ×${seen.filter((s) => s === k).length}`).join(', ')}`);
    for (const r of answers) assert.notEqual(r.status, 200, 'no late write of the paused leader was acknowledged');
    // Checked in PostgreSQL: none of the late writes landed, and no entry of the old token follows the new leader's.
    const landed = await db.query<{ n: string }>("SELECT count(*) AS n FROM quorate_log WHERE position('late-'::bytea in payload) > 0");
    assert.equal(landed[0]!.n, '0', 'a late write of the paused leader reached the log');
    const bad = await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_log x JOIN quorate_log y ON x.idx < y.idx AND x.token > y.token');
    assert.equal(bad[0]!.n, '0');
  } finally {
    await x.stop();
  }
});
