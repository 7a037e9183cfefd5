// Compaction of the PostgreSQL log with real node processes (two nodes, a
// private PostgreSQL and redis-server): the fenced leader stores snapshots
// every cluster.snapshotEntries and deletes the log behind them; a standby
// frozen (SIGSTOP) while the entries it needs are deleted reloads the
// snapshot when it resumes; a node killed and restarted starts from the
// snapshot and the tail; every node ends with the same state (dump
// checksums); POST /v1/cluster/snapshot compacts now on the leader; after a
// leader kill the new leader's snapshots carry its own fencing token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { http, sleep, waitFor, TOKEN } from './harness.js';
import { startExternalCluster } from './external-cluster.js';

/** n acknowledged KV writes `${prefix}/i` through `url`, `concurrency` at a time (retried on a refusal). */
async function writeN(url: () => string, prefix: string, n: number, concurrency = 8): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        const r = await http(url(), 'PUT', `/v1/kv/${prefix}/${i}`, { token: TOKEN, body: { value: `${prefix}-${i}` } }).catch(() => undefined);
        if (r?.status === 200) break;
        if (attempt > 200) throw new Error(`write ${prefix}/${i} not acknowledged: ${JSON.stringify(r?.body)}`);
        await sleep(50);
      }
    }
  }));
}

test('external-shared compaction: snapshots in PostgreSQL, a lagging node reloads, a restarted node starts from the snapshot', async () => {
  const x = await startExternalCluster({ ttlSeconds: 3, renewSeconds: 1, cluster: { snapshotEntries: 100, snapshotTrailingEntries: 20 } });
  const { c, db } = x;
  const snap = async () => (await db.query<{ idx: string; token: string }>('SELECT idx, token FROM quorate_snapshot ORDER BY idx DESC LIMIT 1'))[0];
  const firstRow = async () => Number((await db.query<{ m: string | null }>('SELECT min(idx) AS m FROM quorate_log'))[0]!.m ?? 0);
  const dump = async (i: number) => http(c.nodes[i]!.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined);
  const sameState = async () => {
    const d = await Promise.all(c.nodes.map((_, i) => dump(i)));
    const sums = new Set(d.map((r) => (r?.status === 200 ? `${r.body['appliedIndex']}/${r.body['checksum']}` : 'down')));
    return sums.size === 1 && !sums.has('down');
  };
  try {
    const l = await c.waitLeader(30_000);
    const s = 1 - l;
    await c.waitReady(s, 20_000);

    await writeN(() => c.nodes[l]!.url, 'a', 350);
    await waitFor('a snapshot in PostgreSQL', async () => Number((await snap())?.idx ?? 0) >= 300, 20_000);
    const first = await firstRow();
    assert.ok(first > 1, `the log was compacted (first row ${first})`);
    const s1 = (await snap())!;
    assert.ok(first >= Number(s1.idx) - 20 + 1 && first <= Number(s1.idx), `the trailing entries before the snapshot are kept (first row ${first}, snapshot ${s1.idx})`);
    assert.match(c.log(l), /snapshot at index \d+ stored in PostgreSQL \(\d+ bytes in \d+ chunks, \d+ ms\); log entries up to \d+ deleted/);
    await waitFor('both nodes hold the same state', sameState, 20_000);
    // Both nodes' status names the newest snapshot (a standby reads its row every 10 s).
    await waitFor('the standby\'s status shows the snapshot', async () => Number((await http(c.nodes[s]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['snapshotIndex']) >= Number(s1.idx), 20_000);

    // The standby is frozen while the entries it would need are deleted; resumed, it reloads the snapshot.
    const before = Number((await dump(s))!.body['appliedIndex']);
    c.kill(s, 'SIGSTOP');
    await writeN(() => c.nodes[l]!.url, 'b', 250);
    await waitFor('the log compacted past the frozen standby', async () => (await firstRow()) > before + 1, 20_000);
    c.kill(s, 'SIGCONT');
    await waitFor('the standby caught up through the snapshot', sameState, 30_000);
    assert.match(c.log(s), /this node had applied up to \d+ but the log after it was compacted: loaded the snapshot at index \d+ from PostgreSQL/);
    const rb = await http(c.nodes[s]!.url, 'GET', '/v1/kv/b/249?consistency=linearizable', { token: TOKEN });
    assert.equal(rb.body['value'], 'b-249');

    // A manual snapshot on the leader; refused on the standby (not the leader).
    const man = await http(c.nodes[l]!.url, 'POST', '/v1/cluster/snapshot', { token: TOKEN, body: {} });
    assert.equal(man.status, 200, JSON.stringify(man.body));
    assert.equal(Number((await snap())!.idx), man.body['index']);
    const notHere = await http(c.nodes[s]!.url, 'POST', '/v1/cluster/snapshot', { token: TOKEN, body: {} });
    assert.notEqual(notHere.status, 200);
    assert.match(String(notHere.body['error']), /not_leader|no_leader/);

    // kill -9 and restart the standby: it starts from the newest snapshot and the log after it.
    c.kill(s, 'SIGKILL');
    await c.waitExit(s);
    await writeN(() => c.nodes[l]!.url, 'c', 30);
    const t0 = performance.now();
    c.startNode(s);
    await c.waitReady(s, 30_000);
    console.log(`# restarted standby ready after ${Math.round(performance.now() - t0)} ms (snapshot + tail)`);
    assert.match(c.log(s), /loaded the snapshot at index \d+ from PostgreSQL \(\d+ bytes, \d+ ms\); replaying the log after it/);
    await waitFor('the restarted node holds the same state', sameState, 20_000);
    for (const k of ['a/0', 'b/100', 'c/29']) {
      const r = await http(c.nodes[s]!.url, 'GET', `/v1/kv/${k}`, { token: TOKEN });
      assert.equal(r.status, 200, `${k} on the restarted node`);
    }

    // The leader is killed: the new leader compacts under its own, newer fencing token.
    const oldToken = Number((await snap())!.token);
    c.kill(l, 'SIGKILL');
    await c.waitExit(l);
    const l2 = await c.waitLeader(30_000, [l]);
    assert.equal(l2, s);
    await writeN(() => c.nodes[l2]!.url, 'd', 150);
    await waitFor('a snapshot by the new leader', async () => Number((await snap())?.token ?? 0) > oldToken, 20_000);
    c.startNode(l);
    await c.waitReady(l, 30_000);
    await waitFor('both nodes hold the same state again', sameState, 20_000);
  } finally {
    await x.stop();
  }
});
