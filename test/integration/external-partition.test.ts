// quorate-test: serial (network namespaces with fixed names and addresses; see scripts/run-tests.mjs)
// The Raft-led external-shared mode (cluster.coordination "raft",
// database.mode "external-shared"; src/external/README.md "Raft-led") under a
// real network partition. Three nodes, each in its own network namespace
// (./netns.ts, a family of its own: `qxp-*`), a private PostgreSQL in a fourth
// namespace on the same bridge, clients in a fifth. The leader is cut off from
// the two other nodes only (blackhole routes both ways between their
// addresses); PostgreSQL and the clients still reach it. The majority elects a
// new leader with a higher fencing token, which raises the fence row and
// writes; the old leader steps down (CheckQuorum), and nothing it may still
// append lands after the newer token's entries; healed, it follows. Every
// acknowledged write is read back on every node, and the KV history (reads and
// writes through every node, before, during and after the partition) is
// checked with the linearizability checker.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { checkHistory, type HistoryEntry, type KvOp, type KvOutput } from '../sim/linearizability.js';
import { TestPostgres } from '../support/pg-server.js';
import { sleep, waitFor } from './harness.js';
import { NsClient, NsCluster, SUBNET, assertTestDestination, attachNamespace, createNetwork, netnsUnavailable, nodeIp, removeLeftovers } from './netns.js';

const skip = netnsUnavailable();
if (skip) console.log(`# external partition tests skipped: ${skip}`);

const P = 'qxp';
const PG_NS = `${P}-pg`;
const PG_IP = `${SUBNET}.60`;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let db: TestPostgres | undefined;
let cluster: NsCluster | undefined;
let client: NsClient | undefined;

before(async () => {
  if (skip) return;
  createNetwork(3, P);
  attachNamespace(PG_NS, PG_IP, 'p9', P);
  db = await TestPostgres.start({ netns: PG_NS, host: PG_IP, trust: `${SUBNET}.0/24` });
  assertTestDestination(`http://${db.host}:${db.port}`);
  cluster = new NsCluster({ virtualIp: '', vipInterface: '', coordination: 'raft' }, 3,
    { database: { mode: 'external-shared', external: { connectionString: db.connectionString } } }, P);
  for (let i = 0; i < 3; i++) cluster.start(i);
  client = new NsClient(`${P}-cl`);
});

after(async () => {
  client?.close();
  await cluster?.stop();
  await db?.stop();
  if (!skip) removeLeftovers(P);
  cluster?.cleanup();
});

/** Blackhole routes between node `i` and the others, both ways (`del` heals); PostgreSQL's and the clients' routes stay. */
function partition(c: NsCluster, i: number, op: 'add' | 'del'): void {
  for (let j = 0; j < c.nodes.length; j++) {
    if (j === i) continue;
    ip('-n', c.nodes[i]!.ns, 'route', op, 'blackhole', `${nodeIp(j)}/32`);
    ip('-n', c.nodes[j]!.ns, 'route', op, 'blackhole', `${nodeIp(i)}/32`);
  }
}

async function leaderAmong(c: NsCluster, cl: NsClient, among: number[]): Promise<number> {
  const gone = c.nodes.filter((n) => n.exited).map((n) => n.name);
  if (gone.length > 0) throw new Error(`${gone.join(', ')} exited:\n${logTails(c)}`);
  for (const i of among) if ((await cl.http(c.nodes[i]!.url, 'GET', '/system/health/leader')).status === 200) return i;
  return -1;
}

async function clusterStatus(c: NsCluster, cl: NsClient, i: number): Promise<Record<string, unknown>> {
  const r = await cl.http(c.nodes[i]!.url, 'GET', '/v1/cluster/status');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

/** The status, or undefined when the node did not answer (for conditions polled by waitFor). */
async function statusOrNone(c: NsCluster, cl: NsClient, i: number): Promise<Record<string, unknown> | undefined> {
  const r = await cl.http(c.nodes[i]!.url, 'GET', '/v1/cluster/status');
  return r.status === 200 ? r.body : undefined;
}

function logTails(c: NsCluster): string {
  return c.nodes.map((n, i) => `--- ${n.name}\n${c.log(i).split('\n').filter((l) => !l.includes('request failed')).slice(-25).join('\n')}`).join('\n');
}

test('the Raft leader cut off from the two other nodes (PostgreSQL still reachable): a newer token leads, the old leader\'s appends never follow it, healed it follows; nothing acknowledged is lost and the KV history is linearizable', { skip }, async () => {
  const c = cluster!;
  const cl = client!;
  const pg = db!;
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  let stop = false;
  const workers: Promise<void>[] = [];
  let cut = -1;
  try {
    let l = -1;
    await waitFor('a leader with a claimed token', async () => (l = await leaderAmong(c, cl, [0, 1, 2])) >= 0, 30_000);
    for (let i = 0; i < 3; i++) await waitFor(`${c.nodes[i]!.name} ready`, async () => (await cl.http(c.nodes[i]!.url, 'GET', '/system/health/ready')).status === 200, 30_000);
    const st0 = await clusterStatus(c, cl, l);
    const token0 = st0['fencingToken'] as number;
    const term0 = st0['raftTerm'] as number;
    assert.ok(token0 >= 1 && term0 >= 1, JSON.stringify(st0));

    // KV clients through every node (round robin), recorded for the checker; and one writer of unique keys per node.
    const history: HistoryEntry[] = [];
    let n = 0;
    for (let k = 0; k < 3; k++) {
      workers.push((async () => {
        for (let m = 0; !stop; m++) {
          const node = (k + m) % 3;
          const url = c.nodes[node]!.url;
          const key = `k${Math.floor(Math.random() * 3)}`;
          const invokeAt = now();
          if (Math.random() < 0.5) {
            const op: KvOp = { kind: 'read', key };
            const r = await cl.http(url, 'GET', `/v1/kv/${key}?consistency=linearizable`);
            const returnAt = now();
            if (r.status === 200) history.push({ client: k, op, output: { kind: 'read', value: r.body['value'] as string }, invokeAt, returnAt });
            else if (r.status === 404) history.push({ client: k, op, output: { kind: 'read', value: null }, invokeAt, returnAt });
            else await sleep(20);
          } else {
            const value = `v${n++}`;
            const op: KvOp = { kind: 'write', key, value };
            const r = await cl.http(url, 'PUT', `/v1/kv/${key}`, { value });
            const returnAt = now();
            const output: KvOutput | undefined = r.status === 200 ? { kind: 'ok' } : undefined;
            // A definite refusal (nothing appended) is left out; anything else but an acknowledgement is indeterminate.
            const refused = r.status === 503 && ['no_leader', 'not_leader', 'storage_failed'].includes(String(r.body['error']));
            if (!refused) history.push({ client: k, op, output, invokeAt, returnAt: output ? returnAt : undefined });
            if (output === undefined) await sleep(20);
          }
        }
      })());
    }
    const acked: { key: string; via: number; at: number }[] = [];
    const refusedBy: Record<string, number> = {};
    for (let node = 0; node < 3; node++) {
      workers.push((async () => {
        for (let m = 0; !stop; m++) {
          const key = `u${node}/${m}`;
          const r = await cl.http(c.nodes[node]!.url, 'PUT', `/v1/kv/${key}`, { value: key });
          if (r.status === 200) acked.push({ key, via: node, at: now() });
          else {
            const code = `${r.status} ${String(r.body['error'] ?? '')}`;
            refusedBy[code] = (refusedBy[code] ?? 0) + 1;
            await sleep(20);
          }
        }
      })());
    }
    await waitFor('writes acknowledged and KV operations recorded before the cut', () => acked.length >= 30 && history.length >= 60, 30_000);

    // The cut: the leader hears neither follower, they do not hear it; PostgreSQL and the clients reach all three.
    const cutAt = now();
    const cutWall = Date.now();
    const logFrom = c.log(l).length;
    const newLogFrom = [0, 1, 2].map((i) => c.log(i).length);
    partition(c, l, 'add');
    cut = l;
    const others = [0, 1, 2].filter((i) => i !== l);
    let l2 = -1;
    await waitFor('the majority elects a leader with a claimed token', async () => (l2 = await leaderAmong(c, cl, others)) >= 0, 30_000);
    await waitFor('the old leader steps down', async () => (await cl.http(c.nodes[l]!.url, 'GET', '/system/health/leader')).status === 503, 20_000);
    const st1 = await clusterStatus(c, cl, l2);
    const token1 = st1['fencingToken'] as number;
    assert.ok(token1 > token0, `the new leader's token ${token1} is above the cut-off leader's ${token0}`);
    assert.ok((st1['raftTerm'] as number) > term0, `a newer Raft term (${String(st1['raftTerm'])} > ${term0})`);
    await waitFor('writes through the majority after the cut', () => acked.filter((a) => a.at > cutAt && a.via !== l).length >= 20, 30_000);
    // The row holds the majority leader's token (or a later one's, should leadership move again on these busy cores).
    const fence = await pg.query<{ token: string; owner: string }>('SELECT token, owner FROM quorate_fence WHERE id = 1');
    assert.ok(Number(fence[0]!.token) >= token1, `the new leader raised the fence row to its token ${token1}: ${JSON.stringify(fence[0])}`);
    assert.ok(others.some((i) => fence[0]!.owner.startsWith(`${c.nodes[i]!.name}/`)), `the row names a node of the majority: ${fence[0]!.owner}`);
    const oldLog = c.log(l).slice(logFrom);
    // It stops leading either by CheckQuorum (no quorum heard within an election timeout) or, when the majority's
    // leader raised the fence row first (Raft leaders may overlap that briefly), because the row refused its append.
    const why = /stepped down as leader \(fencing token (\d+)\): ([^"]*)/.exec(oldLog);
    assert.ok(why !== null && Number(why[1]) === token0, `the cut-off leader logged no step-down of token ${token0}:\n${oldLog.slice(-3000)}`);
    const byQuorum = why[2] === `this node is no longer the Raft leader of term ${term0} (a newer term began, or it lost its quorum)`;
    const byFence = why[2] === `the fencing row in PostgreSQL holds a newer token than this node's (${token0}): another node took over`;
    assert.ok(byQuorum || byFence, `stepped down for another reason: ${why[2]!}`);
    const refusals = (oldLog.match(/"event":"write_fenced"/g) ?? []).length;
    if (byFence) assert.match(oldLog, new RegExp(`Split-brain warning: this node \\(fencing token ${token0}\\) tried to write after a newer leader took over the PostgreSQL log; the fencing row refused it and nothing was written`));
    const at = (i: number, event: string, from: number) => {
      const line = c.log(i).slice(from).split('\n').find((x) => x.includes(`"event":"${event}"`));
      return line === undefined ? NaN : Date.parse((JSON.parse(line) as { time: string }).time) - cutWall;
    };
    // The cut-off node knows no leader: writes and linearizable reads are refused (nothing applied); it still tails
    // the log from PostgreSQL, so a stale read shows the new leader's writes.
    const w = await cl.http(c.nodes[l]!.url, 'PUT', '/v1/kv/from-the-cut-off-node', { value: 'x' });
    assert.equal(w.status, 503, JSON.stringify(w.body));
    assert.equal(w.body['error'], 'no_leader');
    const newKey = acked.find((a) => a.at > cutAt && a.via !== l)!.key;
    assert.equal((await cl.http(c.nodes[l]!.url, 'GET', `/v1/kv/${newKey}?consistency=linearizable`)).body['error'], 'no_leader');
    await waitFor('the cut-off node applies the new leader\'s writes from PostgreSQL', async () => (await cl.http(c.nodes[l]!.url, 'GET', `/v1/kv/${newKey}?consistency=stale`)).body['value'] === newKey, 15_000);
    console.log(`# cut-off ${c.nodes[l]!.name} (token ${token0}, Raft term ${term0}) stepped down ${at(l, 'lease_lost', logFrom)} ms after the cut ${byQuorum ? 'by CheckQuorum' : 'refused by the fencing row'}` +
      ` (${refusals} append batch(es) refused); ${c.nodes[l2]!.name} claimed token ${token1} (Raft term ${String(st1['raftTerm'])}) at ${at(l2, 'token_claimed', newLogFrom[l2]!)} ms and raised the row at ${at(l2, 'fence_raised', newLogFrom[l2]!)} ms`);
    await waitFor('KV operations recorded during the cut', () => history.filter((h) => h.invokeAt > cutAt && h.output !== undefined).length >= 60, 30_000);

    assert.equal((await cl.http(c.nodes[l]!.url, 'GET', '/system/health/leader')).status, 503, 'the cut-off node did not lead again without a quorum');
    // Healed: the old leader follows the new one (its token, its writes), and the clients go on through all three.
    const healAt = now();
    partition(c, l, 'del');
    cut = -1;
    await waitFor('the old leader follows the leader of the majority', async () => {
      const s = await statusOrNone(c, cl, l);
      const li = others.find((i) => c.nodes[i]!.name === s?.['leader']);
      const ls = li === undefined ? undefined : await statusOrNone(c, cl, li);
      return ls !== undefined && ls['leader'] === c.nodes[li!]!.name && s!['fencingToken'] === ls['fencingToken'] && (ls['fencingToken'] as number) >= token1;
    }, 30_000);
    await waitFor('KV operations after the heal on the old leader too', () => history.filter((h) => h.invokeAt > healAt && h.output !== undefined).length >= 40
      && acked.some((a) => a.at > healAt && a.via === l), 30_000);
    stop = true;
    await Promise.all(workers.splice(0));

    const check = checkHistory(history);
    assert.equal(check.result, 'linearizable', JSON.stringify(check).slice(0, 3000));
    console.log(`# KV history: ${history.length} ops (${history.filter((h) => h.op.kind === 'write' && h.output !== undefined).length} acknowledged writes, ${history.filter((h) => h.output === undefined).length} indeterminate), linearizable; unique writes acknowledged ${acked.length}, not acknowledged ${JSON.stringify(refusedBy)}`);
    // Every acknowledged write, on every node.
    for (let i = 0; i < 3; i++) {
      for (let b = 0; b < acked.length; b += 16) {
        await Promise.all(acked.slice(b, b + 16).map(async (a) => {
          const r = await cl.http(c.nodes[i]!.url, 'GET', `/v1/kv/${a.key}?consistency=linearizable`);
          assert.equal(r.body['value'], a.key, `${a.key} (acknowledged through ${c.nodes[a.via]!.name}) is missing on ${c.nodes[i]!.name}: ${r.status} ${JSON.stringify(r.body)}`);
        }));
      }
    }
    // The log: contiguous, and no entry of an older token after one of a newer token (the old leader's late appends, if any, were refused).
    const bad = await pg.query<{ n: string }>('SELECT count(*) AS n FROM quorate_log a JOIN quorate_log b ON a.idx < b.idx AND a.token > b.token');
    assert.equal(bad[0]!.n, '0', 'an entry of an older fencing token landed after an entry of a newer one');
    const cnt = await pg.query<{ n: string; m: string }>('SELECT count(*) AS n, coalesce(max(idx), 0) AS m FROM quorate_log');
    assert.equal(cnt[0]!.n, cnt[0]!.m, 'the log is contiguous');
    const tokens = await pg.query<{ token: string }>('SELECT DISTINCT token FROM quorate_log ORDER BY token');
    assert.ok(tokens.some((t) => Number(t.token) >= token1), `entries of the new token ${token1} (or a later one) are in the log: ${JSON.stringify(tokens)}`);
  } catch (e) {
    console.log(logTails(c));
    throw e;
  } finally {
    stop = true;
    await Promise.all(workers);
    if (cut >= 0) partition(c, cut, 'del');
  }
});
