// External-shared mode end to end: two real node processes on a private
// PostgreSQL, led by the Redis lease (TTL 3 s, renewed every 1 s) in a private
// redis-server. kill -9 of the leader under writes: the other node takes the
// lease and writes resume (time printed), no acknowledged write lost; then
// PostgreSQL killed: writes fail with an error naming the database, health
// says why, and writes resume after its restart; then Redis killed: the
// leader steps down, and Redis back empty → a leader again, its fencing token
// above PostgreSQL's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { http, status, waitFor, TOKEN } from './harness.js';
import { startExternalCluster, Writer } from './external-cluster.js';

test('two nodes + Redis + PostgreSQL: kill -9 the leader under writes, kill PostgreSQL, kill Redis', async () => {
  const x = await startExternalCluster({ ttlSeconds: 3, renewSeconds: 1, extra: { health: { checks: [{ name: 'db', builtin: 'database', intervalMs: 200, failuresBeforeUnhealthy: 1 }] } } });
  const { c, db } = x;
  let writer: Writer | undefined;
  try {
    const l = await c.waitLeader(30_000);
    const other = 1 - l;
    await c.waitReady(other, 20_000);
    // Reads on the standby see the leader's writes (it applies the log from PostgreSQL).
    const put = await http(c.nodes[l]!.url, 'PUT', '/v1/kv/hello', { token: TOKEN, body: { value: 'world' } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const viaStandby = await http(c.nodes[other]!.url, 'PUT', '/v1/kv/forwarded', { token: TOKEN, body: { value: 'yes' } });
    assert.equal(viaStandby.status, 200, `a write to the standby is forwarded to the leader: ${JSON.stringify(viaStandby.body)}`);
    const read = await http(c.nodes[other]!.url, 'GET', '/v1/kv/hello?consistency=linearizable', { token: TOKEN });
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.equal(read.body['value'], 'world');

    writer = new Writer(() => [c.nodes[l]!.url, c.nodes[other]!.url].filter((_, i) => c.nodes[i === 0 ? l : other]!.exitCode === undefined), 4);
    await waitFor('some writes acknowledged', () => writer!.acked.size >= 40, 20_000);
    const killedAt = Date.now();
    c.kill(l, 'SIGKILL');
    await c.waitExit(l);
    await waitFor('writes resume on the other node', () => writer!.firstAckAfter(killedAt) !== undefined, 30_000);
    const resumedMs = writer.firstAckAfter(killedAt)!.at - killedAt;
    console.log(`# kill -9 of the leader: writes resumed after ${resumedMs} ms (lease TTL 3000 ms)`);
    assert.equal(await status(c.nodes[other]!.url, '/system/health/leader'), 200, 'the other node leads');
    await waitFor('more writes after the failover', () => writer!.outcomes.filter((o) => o.status === 200 && o.at > killedAt).length >= 20, 20_000);
    await writer.stop();
    const unknown = writer.outcomes.filter((o) => o.code === 'commit_unknown').length;
    const acked = [...writer.acked];
    // No acknowledged write lost: every one is there, on the survivor and in PostgreSQL.
    for (const [key, value] of acked) {
      const r = await http(c.nodes[other]!.url, 'GET', `/v1/kv/${encodeURIComponent(key)}`, { token: TOKEN });
      assert.equal(r.status, 200, `${key} was acknowledged and is lost: ${JSON.stringify(r.body)}`);
      assert.equal(r.body['value'], value);
    }
    const tokens = await db.query<{ token: string; n: string }>('SELECT token, count(*) AS n FROM quorate_log GROUP BY token ORDER BY token');
    assert.ok(tokens.length >= 2, `entries under two fencing tokens: ${JSON.stringify(tokens)}`);
    const gaps = await db.query<{ n: string; m: string }>('SELECT count(*) AS n, max(idx) AS m FROM quorate_log');
    assert.equal(gaps[0]!.n, gaps[0]!.m, 'the log is contiguous');
    console.log(`# ${acked.length} writes acknowledged, none lost; ${unknown} answered commit_unknown`);

    // PostgreSQL dies under writes: writes fail with a clear error, readiness says why; after the restart writes resume.
    writer = new Writer(() => [c.nodes[other]!.url], 4, 'k');
    await waitFor('writes before PostgreSQL dies', () => writer!.acked.size >= 20, 20_000);
    await db.kill();
    const down = await http(c.nodes[other]!.url, 'PUT', '/v1/kv/while-down', { token: TOKEN, body: { value: 'x' } });
    assert.ok(down.status === 503 || down.status === 504, `status ${down.status}`);
    const err = { code: down.body['error'] as string, message: down.body['message'] as string };
    assert.ok(['storage_failed', 'commit_unknown'].includes(err.code), JSON.stringify(err));
    assert.match(err.message, new RegExp(`PostgreSQL (database )?at 127\\.0\\.0\\.1:${db.port}/postgres`));
    await waitFor('readiness fails naming the database', async () => {
      const r = await http(c.nodes[other]!.url, 'GET', '/system/health/ready');
      return r.status === 503 && /external PostgreSQL database at .* is unavailable/.test(JSON.stringify(r.body));
    }, 15_000);
    await waitFor('the database check fails naming PostgreSQL', async () => {
      const r = await http(c.nodes[other]!.url, 'GET', '/v1/checks', { token: TOKEN });
      const db1 = (r.body['checks'] as { name: string; healthy: boolean; lastError: string | null }[] | undefined)?.find((k) => k.name === 'db');
      return db1?.healthy === false && /the external PostgreSQL database \(SELECT 1\) (failed|did not answer)/.test(db1.lastError ?? '');
    }, 15_000);
    const restartedAt = Date.now();
    await db.restart();
    await waitFor('writes resume after PostgreSQL restarted', async () => (await http(c.nodes[other]!.url, 'PUT', '/v1/kv/after-restart', { token: TOKEN, body: { value: 'ok' } })).status === 200, 30_000);
    console.log(`# PostgreSQL restarted: writes resumed ${Date.now() - restartedAt} ms after the restart began`);
    await waitFor('ready again', async () => (await status(c.nodes[other]!.url, '/system/health/ready')) === 200, 15_000);
    await waitFor('the database check passes again', async () => ((await http(c.nodes[other]!.url, 'GET', '/v1/checks', { token: TOKEN })).body['failing'] as string[] | undefined)?.length === 0, 15_000);
    const restarted = Date.now();
    await waitFor('the writer goes on after the restart', () => writer!.outcomes.filter((o) => o.status === 200 && o.at > restarted).length >= 10, 20_000);
    await writer.stop();
    const failed = writer.outcomes.filter((o) => o.status !== 200);
    const codes = [...new Set(failed.map((o) => o.code))].sort();
    for (const code of codes) assert.ok(['storage_failed', 'commit_unknown', 'no_leader'].includes(code ?? ''), `unexpected error ${code}: ${failed.find((o) => o.code === code)?.message}`);
    for (const [key, value] of writer.acked) {
      const r = await http(c.nodes[other]!.url, 'GET', `/v1/kv/${encodeURIComponent(key)}`, { token: TOKEN });
      assert.equal(r.body['value'], value, `${key} was acknowledged before/after the PostgreSQL restart and is lost`);
    }
    console.log(`# PostgreSQL killed under writes: ${writer.acked.size} acknowledged, none lost; refused: ${codes.map((k) => `${k} ×${failed.filter((o) => o.code === k).length}`).join(', ')}`);
    const got = await http(c.nodes[other]!.url, 'GET', '/v1/kv/hello', { token: TOKEN });
    assert.equal(got.body['value'], 'world');

    // Redis dies: the leader steps down (no renewal), health says Redis is not connected; Redis back (empty) → a leader
    // again, with a fencing token above every one recorded in PostgreSQL.
    const before = Number((await db.query<{ token: string }>('SELECT token FROM quorate_fence'))[0]!.token);
    await x.redis.kill();
    const redisKilledAt = Date.now();
    await waitFor('the leader steps down without Redis', async () => (await status(c.nodes[other]!.url, '/system/health/leader')) === 503, 15_000);
    console.log(`# Redis killed: the leader stepped down after ${Date.now() - redisKilledAt} ms (TTL 3000 ms)`);
    const health = await http(c.nodes[other]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal(health.body['redisConnected'], false, JSON.stringify(health.body));
    await waitFor('the log names the failure', () => /Leader election failed: Redis unreachable at 127\.0\.0\.1:\d+/.test(c.log(other)), 10_000);
    const refused = await http(c.nodes[other]!.url, 'PUT', '/v1/kv/no-redis', { token: TOKEN, body: { value: 'x' } });
    assert.equal(refused.status, 503);
    await x.redis.restart();
    await c.waitLeader(20_000);
    const after = Number((await db.query<{ token: string }>('SELECT token FROM quorate_fence'))[0]!.token);
    assert.ok(after > before, `the fencing token went on from PostgreSQL's ${before} after Redis lost its data (now ${after})`);
    const again = await http(c.nodes[other]!.url, 'PUT', '/v1/kv/redis-back', { token: TOKEN, body: { value: 'ok' } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
  } finally {
    await writer?.stop();
    await x.stop();
  }
});
