// Two data nodes and a private Redis witness (appendonly yes, appendfsync
// always) as real processes (src/coord/WITNESS.md): kill -9 of the leader
// under writes. With inSyncDegrade the standby takes the lease, shrinks the
// dead node out of the in-sync set and writes resume at once; by default it
// leads but writes wait for both nodes, and resume when the old leader is
// back. Every client history is checked for linearizability (so no
// acknowledged write is lost). Times are printed; bounds are generous.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';
import { TestRedis } from '../support/redis-server.js';
import { checkHistory, type HistoryEntry, type KvOp, type KvOutput } from '../sim/linearizability.js';
import { QuorateHttpError } from '../../src/api/client.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const f of cleanups.reverse()) await f().catch(() => undefined); });

async function start(degrade: boolean): Promise<{ c: TestCluster; redis: TestRedis }> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-witness-redis-'));
  const redis = await TestRedis.start({ persistDir: dir });
  cleanups.push(async () => { await redis.stop(); rmSync(dir, { recursive: true, force: true }); });
  const c = await TestCluster.start({
    nodes: 2,
    cluster: { coordination: 'redis', leaderLockTtlSeconds: 2, leaderRenewalIntervalSeconds: 1 },
    redis: { enabled: true, connectionString: redis.address, keyPrefix: 'wt:' },
    database: degrade ? { inSyncDegrade: true } : {},
  });
  cleanups.push(() => c.stop());
  return { c, redis };
}

/** The index of the node that says it leads (by its own health body), or -1. */
async function leaderOf(c: TestCluster, alive: number[]): Promise<number> {
  for (const i of alive) {
    const r = await http(c.nodes[i]!.url, 'GET', '/system/health/leader').catch(() => undefined);
    if (r && r.body['leader'] === c.nodes[i]!.name) return i;
  }
  return -1;
}

function writers(c: TestCluster, n: number) {
  const history: HistoryEntry[] = [];
  let stop = false;
  let lastOkAt = 0;
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const worker = async (id: number) => {
    const client = c.client({ timeoutMs: 3000 });
    let k = 0;
    // Bounded: a failed assertion leaves `stop` false, and the loop must not keep the test process alive.
    const until = Date.now() + 300_000;
    while (!stop && Date.now() < until) {
      const key = `k${(id + k) % 3}`;
      const value = `c${id}-${k++}`;
      const op: KvOp = k % 3 === 0 ? { kind: 'read', key } : { kind: 'write', key, value };
      const invokeAt = now();
      try {
        let output: KvOutput;
        if (op.kind === 'write') { await client.kvPut(key, value); output = { kind: 'ok' }; }
        else { const r = await client.kvGet(key); output = { kind: 'read', value: r ? r.value : null }; }
        history.push({ client: id, op, output, invokeAt, returnAt: now() });
        lastOkAt = now();
      } catch (e) {
        if (!(e instanceof Error)) throw e;
        const definite = e instanceof QuorateHttpError || op.kind === 'read';
        if (!definite) history.push({ client: id, op, output: undefined, invokeAt, returnAt: undefined });
        await sleep(20);
      }
    }
  };
  const done = Promise.all(Array.from({ length: n }, (_, i) => worker(i)));
  return { history, now, lastOkAt: () => lastOkAt, stop: async () => { stop = true; await done; } };
}

/** Starts `n` writers on the leader the witness appointed, waits for `flowing` acknowledged writes, kills the leader with -9 and waits for the standby to lead. */
async function killLeaderUnderWrites(c: TestCluster, n: number, flowing: number): Promise<{ w: ReturnType<typeof writers>; leader: number; standby: number; killedAt: number; ledAt: number }> {
  let leader = -1;
  await waitFor('a leader appointed through the witness', async () => (leader = await leaderOf(c, [0, 1])) >= 0, 30_000);
  const w = writers(c, n);
  await waitFor('writes flow', () => w.history.filter((h) => h.output?.kind === 'ok').length > flowing, 20_000);
  const standby = 1 - leader;
  const killedAt = w.now();
  c.kill(leader);
  await c.waitExit(leader);
  await waitFor('the standby leads', async () => (await leaderOf(c, [standby])) === standby, 20_000);
  return { w, leader, standby, killedAt, ledAt: w.now() };
}

/** Stops the writers and checks their whole history with the linearizability checker. */
async function stopLinearizable(w: ReturnType<typeof writers>): Promise<void> {
  await w.stop();
  const lin = checkHistory(w.history);
  assert.equal(lin.result, 'linearizable', JSON.stringify(lin).slice(0, 2000));
}

test('inSyncDegrade: kill -9 of the leader under writes: the standby takes the lease, shrinks the set and writes resume; the old leader rejoins the set', async () => {
  const { c } = await start(true);
  const { w, leader, standby, killedAt, ledAt } = await killLeaderUnderWrites(c, 3, 30);
  await waitFor('writes resume with the leader alone', () => w.lastOkAt() > ledAt + 100, 20_000);
  const resumedAt = w.lastOkAt();
  console.log(`# witness failover (kill -9, inSyncDegrade): standby leads after ${Math.round(ledAt - killedAt)} ms, writes resume after ${Math.round(resumedAt - killedAt)} ms (lease TTL 2000 ms)`);
  await waitFor('the standby removed the dead node from the in-sync set by the CAS', () => /"event":"witness_shrink"/.test(c.log(standby)), 10_000);
  c.startNode(leader);
  await waitFor('the old leader rejoins the in-sync set', () => /"event":"witness_grow"/.test(c.log(standby)), 30_000);
  await sleep(500);
  await stopLinearizable(w);
  const acked = w.history.filter((h) => h.output !== undefined && h.op.kind === 'write').length;
  console.log(`# ${w.history.length} ops (${acked} acknowledged writes), linearizable`);
});

test('default (no inSyncDegrade): kill -9 of the leader: the standby leads, writes wait for both nodes but linearizable reads go on; writes resume when the old leader is back', async () => {
  const { c } = await start(false);
  const { w, leader, standby, killedAt, ledAt } = await killLeaderUnderWrites(c, 2, 20);
  await sleep(1500);
  const writesWhileAlone = w.history.filter((h) => h.op.kind === 'write' && h.output !== undefined && h.returnAt! > ledAt).length;
  assert.equal(writesWhileAlone, 0, 'no write is acknowledged with one node');
  await waitFor('the leader says why writes wait (quorum not met)', async () => {
    const health = await http(c.nodes[standby]!.url, 'GET', '/system/health/leader');
    return health.status === 503 && /quorum not met/.test(JSON.stringify(health.body['reasons']));
  }, 10_000);
  // Linearizable reads go on on the survivor once it shrank the witness's in-sync set to itself (by the CAS;
  // the commit set keeps both nodes, so writes still wait); the writers' reads are in the checked history.
  await waitFor('the survivor shrank the in-sync set to itself', async () => JSON.stringify((await witnessOf(c, standby))?.['inSync']) === `[${await idOf(c, standby)}]`, 10_000);
  const readsFrom = w.now();
  await waitFor('linearizable reads answered with one node down', () => w.history.some((h) => h.op.kind === 'read' && h.output !== undefined && h.invokeAt > readsFrom), 20_000);
  const lin = await http(c.nodes[standby]!.url, 'GET', '/v1/kv/k0?consistency=linearizable', { token: TOKEN });
  assert.ok(lin.status === 200 || lin.status === 404, JSON.stringify(lin.body));
  c.startNode(leader);
  const restartedAt = w.now();
  await waitFor('writes resume with both nodes', () => w.history.some((h) => h.op.kind === 'write' && h.output !== undefined && h.returnAt! > restartedAt), 30_000);
  const resumedAt = w.history.filter((h) => h.op.kind === 'write' && h.output !== undefined && h.returnAt! > restartedAt)[0]!.returnAt!;
  console.log(`# witness failover (kill -9, default): standby leads after ${Math.round(ledAt - killedAt)} ms; writes resume ${Math.round(resumedAt - restartedAt)} ms after the old leader was restarted`);
  await stopLinearizable(w);
  assert.equal((await http(c.nodes[standby]!.url, 'GET', '/v1/kv/k0', { token: TOKEN })).status, 200);
});

async function idOf(c: TestCluster, i: number): Promise<number> {
  return (await http(c.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['id'] as number;
}

async function witnessOf(c: TestCluster, i: number): Promise<Record<string, unknown> | undefined> {
  const r = await http(c.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN }).catch(() => undefined);
  return r?.body['witness'] as Record<string, unknown> | undefined;
}

test('inSyncDegrade: the standby dies, the leader writes alone; then the leader dies: the standby (out of the set) does not lead and says why; the old leader comes back and leads with everything', async () => {
  const { c } = await start(true);
  let leader = -1;
  await waitFor('a leader appointed through the witness', async () => (leader = await leaderOf(c, [0, 1])) >= 0, 30_000);
  const standby = 1 - leader;
  const client = c.client({ timeoutMs: 3000 });
  await waitFor('both nodes in the in-sync set', async () => JSON.stringify((await witnessOf(c, leader))?.['inSync']) === '[1,2]', 20_000);
  await client.kvPut('before', 'both');
  c.kill(standby);
  await c.waitExit(standby);
  const t0 = performance.now();
  await client.kvPut('alone', 'leader-only');
  console.log(`# a write with the standby dead took ${Math.round(performance.now() - t0)} ms (it waited for the shrink)`);
  const leaderId = await idOf(c, leader);
  await waitFor('the leader shrank the in-sync set', async () => JSON.stringify((await witnessOf(c, leader))?.['inSync']) === `[${leaderId}]`, 10_000);
  assert.match(c.log(leader), /"event":"witness_shrink"/);
  for (let i = 0; i < 20; i++) await client.kvPut(`alone/${i}`, `v${i}`);
  c.kill(leader);
  await c.waitExit(leader);
  c.startNode(standby);
  await waitFor('the standby says why it does not lead', async () => /not in the in-sync set/.test(String((await witnessOf(c, standby))?.['waiting'] ?? '')), 20_000);
  await sleep(3000);
  assert.equal(await leaderOf(c, [standby]), -1, 'a node outside the in-sync set never promotes itself');
  await waitFor('the standby logs why it waits', () => /"event":"witness_waiting".*not in the in-sync set/.test(c.log(standby)), 10_000);
  c.startNode(leader);
  await waitFor('the old leader leads again', async () => (await leaderOf(c, [leader])) === leader, 30_000);
  assert.equal((await client.kvGet('alone'))?.value, 'leader-only');
  assert.equal((await client.kvGet('alone/19'))?.value, 'v19', 'every write acknowledged while alone is there');
  await waitFor('the standby is back in the in-sync set', async () => JSON.stringify((await witnessOf(c, leader))?.['inSync']) === '[1,2]', 30_000);
  const r = await http(c.nodes[standby]!.url, 'GET', '/v1/kv/alone/19?consistency=stale', { token: TOKEN });
  assert.equal(r.body['value'], 'v19', 'the standby caught up before it rejoined the set');
});

test('Redis restarted without its data: no node leads until an operator confirms; with its data but a new run_id: the same; confirm on the last leader restores writes', async () => {
  const { c, redis } = await start(false);
  let leader = -1;
  await waitFor('a leader appointed through the witness', async () => (leader = await leaderOf(c, [0, 1])) >= 0, 30_000);
  const client = c.client({ timeoutMs: 3000 });
  await client.kvPut('x', '1');
  await redis.kill();
  rmSync(join(redis.persistDir!, 'appendonlydir'), { recursive: true, force: true });
  await redis.restart();
  await waitFor('the leader stepped down', async () => (await leaderOf(c, [0, 1])) === -1, 20_000);
  await waitFor('both nodes say an operator must confirm', async () => {
    const ws = await Promise.all([witnessOf(c, 0), witnessOf(c, 1)]);
    return ws.every((w) => /quorate witness confirm/.test(String(w?.['waiting'] ?? '')));
  }, 20_000);
  await sleep(2500);
  assert.equal(await leaderOf(c, [0, 1]), -1, 'no promotion without the operator');
  const refused = await http(c.nodes[leader]!.url, 'POST', '/v1/cluster/witness/confirm', { token: TOKEN, body: {} });
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  const ok = await http(c.nodes[leader]!.url, 'POST', '/v1/cluster/witness/confirm', { token: TOKEN, body: { confirm: true, minEpoch: 50 } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body['inSync'], [await idOf(c, leader)]);
  // The confirming node asked the other node for its term itself.
  const peers = ok.body['peers'] as { nodeName: string; term?: number }[];
  assert.equal(peers.length, 1, JSON.stringify(ok.body));
  assert.equal(peers[0]!.nodeName, c.nodes[1 - leader]!.name);
  assert.ok(typeof peers[0]!.term === 'number' && (ok.body['floor'] as number) >= peers[0]!.term, JSON.stringify(ok.body));
  await waitFor('the confirmed node leads', async () => (await leaderOf(c, [leader])) === leader, 20_000);
  assert.equal((await witnessOf(c, leader))?.['epoch'], 51, 'the epoch is above --min-epoch');
  await client.kvPut('y', '2');
  assert.equal((await client.kvGet('x'))?.value, '1');
  await waitFor('the other node rejoins the in-sync set', async () => JSON.stringify((await witnessOf(c, leader))?.['inSync']) === '[1,2]', 20_000);
  // A restart with the data (appendfsync always): the record is intact but written by another run_id.
  await redis.kill();
  await redis.restart();
  await waitFor('no leader after the restart', async () => (await leaderOf(c, [0, 1])) === -1, 20_000);
  await waitFor('an operator must confirm', async () => /another Redis instance/.test(String((await witnessOf(c, 1 - leader))?.['waiting'] ?? '')), 20_000);
  // The other node is down: confirm cannot ask it for its term and refuses, saying what to check.
  const lastTerm = (await http(c.nodes[leader]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['term'] as number;
  c.kill(leader);
  await c.waitExit(leader);
  const unasked = await http(c.nodes[1 - leader]!.url, 'POST', '/v1/cluster/witness/confirm', { token: TOKEN, body: { confirm: true } });
  assert.equal(unasked.status, 409, JSON.stringify(unasked.body));
  assert.equal(unasked.body['error'], 'witness_peer_unreachable');
  assert.match(String(unasked.body['message']), new RegExp(`could not ask ${c.nodes[leader]!.name} for its term.*--min-epoch N`));
  // The operator's override: at least the down node's last term.
  const forced = await http(c.nodes[1 - leader]!.url, 'POST', '/v1/cluster/witness/confirm', { token: TOKEN, body: { confirm: true, minEpoch: lastTerm } });
  assert.equal(forced.status, 200, JSON.stringify(forced.body));
  assert.ok((forced.body['floor'] as number) >= lastTerm, JSON.stringify(forced.body));
  await waitFor('a leader again', async () => (await leaderOf(c, [1 - leader])) === 1 - leader, 20_000);
  assert.ok(((await witnessOf(c, 1 - leader))?.['epoch'] as number) > lastTerm, 'the new epoch is above the down node\'s term');
  c.startNode(leader);
  // Default mode: writes wait until the restarted node is back in the commit set.
  await waitFor('writes resume once both nodes are up', async () => client.kvPut('z', '3').then(() => true, () => false), 40_000);
  assert.equal((await client.kvGet('y'))?.value, '2');
});
