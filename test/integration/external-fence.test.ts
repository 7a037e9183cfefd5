// The fencing row of the external-shared mode with real node processes:
// 1. the leader is paused (SIGSTOP) under writes past its lease TTL and
//    resumed: the other node took over, and no entry of the paused leader
//    lands in PostgreSQL after the new leader's first entry (checked there);
// 2. the lease is taken away behind the leader's back (the key deleted in
//    Redis right after a renewal, as a Redis that lost its data would): the
//    standby takes the lease with a newer token while the old leader still
//    believes it leads, and the old leader's writes are refused by the
//    fencing row (the rejection is asserted: the client's error, the log's
//    `Split-brain warning`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { sleep, status, waitFor } from './harness.js';
import { startExternalCluster, Writer } from './external-cluster.js';

async function tokensOrdered(query: (sql: string) => Promise<Record<string, string>[]>): Promise<void> {
  const bad = await query('SELECT count(*) AS n FROM quorate_log a JOIN quorate_log b ON a.idx < b.idx AND a.token > b.token');
  assert.equal(bad[0]!['n'], '0', 'an entry of an older fencing token landed after an entry of a newer one');
  const c = await query('SELECT count(*) AS n, coalesce(max(idx), 0) AS m FROM quorate_log');
  assert.equal(c[0]!['n'], c[0]!['m'], 'the log is contiguous');
}

test('a paused leader cannot write after the new leader took over; a leader whose lease was taken away is refused by the fencing row', async () => {
  // Renewal every 2 s (TTL 3 s): a standby polls every 1 s, so in case 2 it takes the lease before the old leader's next renewal.
  const x = await startExternalCluster({ ttlSeconds: 3, renewSeconds: 2 });
  const { c, db, redis } = x;
  const q = (sql: string) => db.query<Record<string, string>>(sql);
  const r = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  let writer: Writer | undefined;
  try {
    await r.connect();
    const a = await c.waitLeader(30_000);
    const b = 1 - a;
    await c.waitReady(b, 20_000);
    writer = new Writer(() => [c.nodes[a]!.url], 8, 'p');
    await waitFor('writes acknowledged by the leader', () => writer!.acked.size >= 30, 20_000);
    // 1. SIGSTOP past the TTL.
    c.kill(a, 'SIGSTOP');
    const stoppedAt = Date.now();
    await c.waitLeader(20_000, [a]);
    console.log(`# paused leader: ${c.nodes[b]!.name} took over ${Date.now() - stoppedAt} ms after the pause (TTL 3000 ms)`);
    const w2 = new Writer(() => [c.nodes[b]!.url], 2, 'q');
    await waitFor('the new leader writes', () => w2.acked.size >= 5, 20_000);
    c.kill(a, 'SIGCONT');
    await waitFor('the resumed node no longer leads', async () => (await status(c.nodes[a]!.url, '/system/health/leader')) === 503, 15_000);
    await sleep(1500);
    await writer.stop();
    await w2.stop();
    await tokensOrdered(q);
    const log = c.log(a);
    assert.match(log, /stepped down as leader|refused by the fencing row/, 'the resumed node stepped down or was fenced');
    console.log(`# resumed leader: ${/refused by the fencing row/.test(log) ? 'its in-flight batch was refused by the fencing row' : 'it stepped down before writing (lease deadline)'}`);

    // 2. The lease taken away behind the leader's back (now b leads, a is the standby).
    assert.equal(await status(c.nodes[b]!.url, '/system/health/leader'), 200);
    writer = new Writer(() => [c.nodes[b]!.url], 8, 'f');
    await waitFor('writes acknowledged', () => writer!.acked.size >= 10, 20_000);
    // Right after a renewal (the key's TTL back near 3000 ms), delete it.
    await waitFor('a renewal', async () => (await r.pttl('quorate:leader')) > 2850, 10_000);
    await r.del('quorate:leader');
    const deletedAt = Date.now();
    await waitFor('the old leader\'s writes are refused by the fencing row', () => writer!.outcomes.some((o) => o.at > deletedAt && o.code === 'no_leader' && /refused by the fencing row in PostgreSQL/.test(o.message ?? '')), 15_000);
    await c.waitLeader(15_000, [b]);
    console.log(`# lease deleted in Redis: ${c.nodes[a]!.name} took over; ${c.nodes[b]!.name}'s writes refused by the fencing row`);
    await writer.stop();
    assert.match(c.log(b), /Split-brain warning: this node \(fencing token \d+\) tried to write after a newer leader took over the PostgreSQL log; the fencing row refused it/);
    await tokensOrdered(q);
    // Every acknowledged write is in the log.
    for (const [key, value] of writer.acked) {
      const rows = await q(`SELECT 1 FROM quorate_log WHERE position('${value}'::bytea in payload) > 0 AND position('${key}'::bytea in payload) > 0`);
      assert.ok(rows.length > 0, `${key} acknowledged but not in PostgreSQL`);
    }
  } catch (e) {
    const seen = new Map<string, number>();
    for (const o of writer?.outcomes ?? []) if (o.status !== 200) seen.set(`${o.status} ${o.code} ${o.message}`, (seen.get(`${o.status} ${o.code} ${o.message}`) ?? 0) + 1);
    console.log([...seen].map(([k, n]) => `${n} × ${k}`).join('\n'));
    for (const n of c.nodes) console.log(`--- ${n.name}\n${c.log(c.nodes.indexOf(n)).split('\n').filter((l) => !l.includes("request failed")).slice(-25).join('\n')}`);
    throw e;
  } finally {
    await writer?.stop();
    r.disconnect();
    await x.stop();
  }
});
