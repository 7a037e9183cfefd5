// The external-shared mode led by Raft (cluster.coordination "raft",
// src/external/raft-lead.ts) with three real node processes on a private
// PostgreSQL:
// 1. the fencing row pre-seeded with a large token (a Redis-led era's
//    leftover): the Raft leader's token exceeds it; the status shows the
//    Raft term and the token; kill -9 of the leader under writes → a new
//    leader writes with a newer token, nothing acknowledged is lost, and the
//    KV history (reads and writes on every node) checked with the
//    linearizability checker; PostgreSQL killed → readiness fails naming it;
// 2. the leader paused (SIGSTOP) while an append batch is held
//    (QUORATE_TEST_APPEND_DELAY_MS, tests only): the other two elect a new
//    leader that writes; resumed (SIGCONT), the old leader's late append is
//    refused by the fencing row, and no entry of an older token follows one
//    of a newer token in quorate_log.
// 3. both followers frozen: the leader, which still reaches PostgreSQL, steps
//    down by CheckQuorum and appends nothing; with the quorum back a newer
//    token leads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { checkHistory, type HistoryEntry } from '../sim/linearizability.js';
import { http, sleep, status, waitFor, TOKEN } from './harness.js';
import { kvHistoryClients, startRaftExternalCluster, Writer, type RaftExternalCluster } from './external-cluster.js';
import { PgLog } from '../../src/external/pg-log.js';

const REDIS_ERA_TOKEN = 1_000_000;

async function tokensOrdered(x: RaftExternalCluster): Promise<void> {
  const bad = await x.db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_log a JOIN quorate_log b ON a.idx < b.idx AND a.token > b.token');
  assert.equal(bad[0]!.n, '0', 'an entry of an older fencing token landed after an entry of a newer one');
  const c = await x.db.query<{ n: string; m: string }>('SELECT count(*) AS n, coalesce(max(idx), 0) AS m FROM quorate_log');
  assert.equal(c[0]!.n, c[0]!.m, 'the log is contiguous');
}

async function clusterStatus(url: string): Promise<Record<string, unknown>> {
  const r = await http(url, 'GET', '/v1/cluster/status', { token: TOKEN });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

function dumpLogs(x: RaftExternalCluster): void {
  for (const n of x.c.nodes) console.log(`--- ${n.name}\n${x.c.log(x.c.nodes.indexOf(n)).split('\n').filter((l) => !l.includes('request failed')).slice(-30).join('\n')}`);
}

test('three nodes led by Raft on PostgreSQL: the token passes a Redis-era fence row, kill -9 of the leader loses nothing acknowledged, the KV history is linearizable', async () => {
  const x = await startRaftExternalCluster({
    // A fence row left by a Redis-led era: the migrations, then the row raised as that era's leader would have.
    beforeNodes: async (db) => {
      const pg = new PgLog({ connectionString: db.connectionString, logger: pino({ level: 'silent' }) });
      try {
        await pg.migrate();
      } finally {
        await pg.close();
      }
      await db.query(`UPDATE quorate_fence SET token = ${REDIS_ERA_TOKEN}, owner = 'redis-era/0000' WHERE id = 1`);
    },
  });
  const { c, db } = x;
  let writer: Writer | undefined;
  try {
    const l = await c.waitLeader(30_000);
    for (let i = 0; i < 3; i++) await c.waitReady(i, 20_000);
    const st = await clusterStatus(c.nodes[l]!.url);
    const token = st['fencingToken'] as number;
    assert.ok(token > REDIS_ERA_TOKEN, `the Raft leader's token ${token} exceeds the Redis-era fence row's ${REDIS_ERA_TOKEN}`);
    assert.ok((st['raftTerm'] as number) >= 1 && (st['raftTerm'] as number) < token, `the Raft term (${String(st['raftTerm'])}) is not the token`);
    assert.equal(st['term'], token);
    assert.equal(st['votersTotal'], 3);
    assert.equal(st['redisConnected'] ?? null, null, 'no Redis in this mode');
    const fence = await db.query<{ token: string; owner: string }>('SELECT token, owner FROM quorate_fence WHERE id = 1');
    assert.equal(Number(fence[0]!.token), token);
    assert.match(fence[0]!.owner, new RegExp(`^${c.nodes[l]!.name}/`));
    // A follower names the leader and the same token.
    const f = await clusterStatus(c.nodes[(l + 1) % 3]!.url);
    assert.equal(f['leader'], c.nodes[l]!.name);
    assert.equal(f['fencingToken'], token);
    const peers = f['peers'] as { id: number; nodeName: string; role: string; status: string; self: boolean }[];
    assert.deepEqual(peers.map((p) => p.nodeName).sort(), ['node1', 'node2', 'node3'], 'the status lists every member of the group');
    assert.equal(peers.find((p) => p.nodeName === c.nodes[l]!.name)?.role, 'primary');
    assert.ok(peers.every((p) => p.status === 'healthy'), JSON.stringify(peers));
    assert.equal(f['leaderId'], peers.find((p) => p.nodeName === c.nodes[l]!.name)!.id, 'leaderId is the leader\'s member id');
    console.log(`# Redis-era fence row ${REDIS_ERA_TOKEN}: ${c.nodes[l]!.name} leads Raft term ${String(st['raftTerm'])} with fencing token ${token}`);

    // Writes through any live node, and KV clients whose history goes to the checker, across a leader kill -9.
    const alive = () => c.nodes.filter((nd) => nd.exitCode === undefined);
    writer = new Writer(() => alive().map((n) => n.url), 4, 'w');
    const history: HistoryEntry[] = [];
    const t0 = performance.now();
    let stop = false;
    const clients = kvHistoryClients({ count: 4, urls: () => alive().map((nd) => nd.url), running: () => !stop, history, t0 });
    await waitFor('writes acknowledged and KV operations recorded before the kill', () => writer!.acked.size >= 30 && history.length >= 60, 30_000);
    const killedAt = Date.now();
    const killedAtPerf = performance.now() - t0;
    c.kill(l, 'SIGKILL');
    await c.waitExit(l);
    const l2 = await c.waitLeader(30_000, [l]);
    await waitFor('the new leader writes', () => writer!.firstAckAfter(killedAt) !== undefined, 30_000);
    console.log(`# kill -9 of the leader: writes resumed through ${c.nodes[l2]!.name} ${writer.firstAckAfter(killedAt)!.at - killedAt} ms after the kill`);
    await waitFor('more writes and KV operations after the kill', () => writer!.outcomes.filter((o) => o.status === 200 && o.sentAt > killedAt).length >= 20
      && history.filter((h) => h.invokeAt > killedAtPerf && h.output !== undefined).length >= 60, 30_000);
    stop = true;
    await Promise.all(clients);
    await writer.stop();
    const check = checkHistory(history);
    assert.equal(check.result, 'linearizable', JSON.stringify(check).slice(0, 2000));
    const acked = history.filter((h) => h.op.kind === 'write' && h.output !== undefined).length;
    console.log(`# KV history across the leader kill: ${history.length} ops (${acked} acknowledged writes), linearizable`);

    const st2 = await clusterStatus(c.nodes[l2]!.url);
    assert.ok((st2['fencingToken'] as number) > token, `the new leader's token ${String(st2['fencingToken'])} is above the killed leader's ${token}`);
    assert.ok((st2['raftTerm'] as number) > (st['raftTerm'] as number));
    // Nothing acknowledged is lost: on the survivors (linearizable reads) and in PostgreSQL.
    for (const i of [0, 1, 2].filter((j) => j !== l)) {
      for (const [key, value] of writer.acked) {
        const r = await http(c.nodes[i]!.url, 'GET', `/v1/kv/${encodeURIComponent(key)}?consistency=linearizable`, { token: TOKEN });
        assert.equal(r.body['value'], value, `${key} was acknowledged and is missing on ${c.nodes[i]!.name}`);
      }
    }
    await tokensOrdered(x);
    // The killed member shows as unreachable in the survivors' status.
    await waitFor('the killed member is unreachable in the status', async () => {
      const p = (await clusterStatus(c.nodes[l2]!.url))['peers'] as { nodeName: string; status: string }[];
      return p.find((q) => q.nodeName === c.nodes[l]!.name)?.status === 'unreachable';
    }, 15_000);

    // PostgreSQL killed: readiness and the leader check fail naming it; back: ready again.
    await db.kill();
    await waitFor('readiness fails naming PostgreSQL', async () => {
      const r = await http(c.nodes[l2]!.url, 'GET', '/system/health/ready');
      return r.status === 503 && /external PostgreSQL database at .* is unavailable/.test(JSON.stringify(r.body));
    }, 20_000);
    assert.equal(await status(c.nodes[l2]!.url, '/system/health/leader'), 503);
    await db.restart();
    await waitFor('writes resume after PostgreSQL restarted', async () => (await http(c.nodes[l2]!.url, 'PUT', '/v1/kv/after-restart', { token: TOKEN, body: { value: 'ok' } })).status === 200, 30_000);
    await waitFor('ready again', async () => (await status(c.nodes[l2]!.url, '/system/health/ready')) === 200, 15_000);
    // The killed node comes back (its Raft files in <dataDir>/lead-raft, its data from PostgreSQL) and follows.
    c.startNode(l);
    await c.waitReady(l, 30_000);
    await waitFor('the restarted node follows the new leader with its token', async () => {
      const r = await http(c.nodes[l]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
      return r.body['leader'] === c.nodes[l2]!.name && r.body['fencingToken'] === st2['fencingToken'];
    }, 20_000);
    const back = await http(c.nodes[l]!.url, 'GET', '/v1/kv/after-restart?consistency=linearizable', { token: TOKEN });
    assert.equal(back.body['value'], 'ok');
  } catch (e) {
    dumpLogs(x);
    throw e;
  } finally {
    await writer?.stop();
    await x.stop();
  }
});

test('a paused Raft leader\'s late append is refused by the fencing row after the new leader took over', async () => {
  // Every append batch is held 800 ms after it was taken (tests only): writes accepted by the leader, then the pause
  // lands inside that window, where nothing the leader could check helps.
  const x = await startRaftExternalCluster({ env: { QUORATE_TEST_APPEND_DELAY_MS: '800' } });
  const { c, db } = x;
  try {
    const a = await c.waitLeader(30_000);
    for (let i = 0; i < 3; i++) await c.waitReady(i, 20_000);
    const ok = await http(c.nodes[a]!.url, 'PUT', '/v1/kv/before', { token: TOKEN, body: { value: '1' } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const oldToken = (await clusterStatus(c.nodes[a]!.url))['fencingToken'] as number;
    const late = Array.from({ length: 5 }, (_, i) => http(c.nodes[a]!.url, 'PUT', `/v1/kv/late-${i}`, { token: TOKEN, body: { value: String(i) } })
      .catch((e: Error) => ({ status: 0, body: { error: 'fetch_failed', message: e.message } as Record<string, unknown>, headers: new Headers() })));
    await sleep(200);
    c.kill(a, 'SIGSTOP');
    const stoppedAt = Date.now();
    const b = await c.waitLeader(20_000, [a]);
    const first = await http(c.nodes[b]!.url, 'PUT', '/v1/kv/new-leader', { token: TOKEN, body: { value: 'b' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    console.log(`# paused leader: ${c.nodes[b]!.name} elected and wrote ${Date.now() - stoppedAt} ms after the pause`);
    const newToken = (await clusterStatus(c.nodes[b]!.url))['fencingToken'] as number;
    assert.ok(newToken > oldToken, `the new leader's token ${newToken} is above the paused one's ${oldToken}`);
    const logFrom = c.log(a).length;
    c.kill(a, 'SIGCONT');
    const answers = await Promise.all(late);
    await waitFor('the resumed leader\'s append is refused by the fencing row', () => /refused by the fencing row in PostgreSQL/.test(c.log(a).slice(logFrom)), 10_000);
    assert.match(c.log(a).slice(logFrom), /Split-brain warning: this node \(fencing token \d+\) tried to write after a newer leader took over the PostgreSQL log; the fencing row refused it and nothing was written/);
    const seen = answers.map((r) => `${r.status} ${String(r.body['error'] ?? '')}`);
    console.log(`# the paused leader's late writes answered: ${[...new Set(seen)].map((k) => `${k} ×${seen.filter((s2) => s2 === k).length}`).join(', ')}`);
    for (const r of answers) assert.notEqual(r.status, 200, 'no late write of the paused leader was acknowledged');
    const landed = await db.query<{ n: string }>("SELECT count(*) AS n FROM quorate_log WHERE position('late-'::bytea in payload) > 0");
    assert.equal(landed[0]!.n, '0', 'a late write of the paused leader reached the log');
    await tokensOrdered(x);
    // The resumed node follows the new leader: it does not lead, and reads what the new leader wrote.
    await waitFor('the resumed node no longer leads', async () => (await status(c.nodes[a]!.url, '/system/health/leader')) === 503, 15_000);
    await waitFor('the resumed node reads the new leader\'s write', async () => (await http(c.nodes[a]!.url, 'GET', '/v1/kv/new-leader?consistency=linearizable', { token: TOKEN })).body['value'] === 'b', 15_000);
  } catch (e) {
    dumpLogs(x);
    throw e;
  } finally {
    await x.stop();
  }
});

test('a Raft leader that loses its quorum stops writing although it still reaches PostgreSQL; with the quorum back a newer token leads', async () => {
  const x = await startRaftExternalCluster();
  const { c, db } = x;
  const others: number[] = [];
  try {
    const l = await c.waitLeader(30_000);
    for (let i = 0; i < 3; i++) await c.waitReady(i, 20_000);
    const put = (key: string) => http(c.nodes[l]!.url, 'PUT', `/v1/kv/${key}`, { token: TOKEN, body: { value: key } });
    assert.equal((await put('with-quorum')).status, 200);
    const oldToken = (await clusterStatus(c.nodes[l]!.url))['fencingToken'] as number;
    // Both followers frozen: the leader hears no quorum; CheckQuorum makes it step down (no election can happen).
    others.push(...[0, 1, 2].filter((i) => i !== l));
    for (const i of others) c.kill(i, 'SIGSTOP');
    await waitFor('the leader without a quorum steps down', async () => (await status(c.nodes[l]!.url, '/system/health/leader')) === 503, 20_000);
    assert.match(c.log(l), /stepped down as leader \(fencing token \d+\): this node is no longer the Raft leader of term \d+/);
    const rows = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_log'))[0]!.n);
    const before = await rows();
    const r = await put('without-quorum');
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal(r.body['error'], 'no_leader');
    assert.equal(await rows(), before, 'nothing was appended by the node without a quorum');
    for (const i of others.splice(0)) c.kill(i, 'SIGCONT');
    const l2 = await c.waitLeader(30_000);
    await waitFor('writes resume with the quorum back', async () => (await http(c.nodes[l2]!.url, 'PUT', '/v1/kv/quorum-back', { token: TOKEN, body: { value: '1' } })).status === 200, 20_000);
    const newToken = (await clusterStatus(c.nodes[l2]!.url))['fencingToken'] as number;
    assert.ok(newToken > oldToken, `the leader after the quorum came back holds a newer token (${newToken} > ${oldToken})`);
    console.log(`# quorum lost and back: ${c.nodes[l]!.name} stepped down (token ${oldToken}); ${c.nodes[l2]!.name} leads with token ${newToken}`);
    await tokensOrdered(x);
  } catch (e) {
    dumpLogs(x);
    throw e;
  } finally {
    for (const i of others) c.kill(i, 'SIGCONT');
    await x.stop();
  }
});
