// Failover with real processes: kill -9 of the leader, restart and catch-up,
// no acknowledged write lost across kills (checked for linearizability),
// SIGSTOP of the leader, and a five-node cluster losing two nodes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';
import { checkHistory, type HistoryEntry, type KvOp, type KvOutput } from '../sim/linearizability.js';
import { QuorateHttpError } from '../../src/api/client.js';

async function converge(c: TestCluster, alive: number[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dumps = await Promise.all(alive.map((i) => http(c.nodes[i]!.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined)));
    const sums = new Set(dumps.map((d) => (d ? `${d.body['appliedIndex']}/${d.body['checksum']}` : 'down')));
    if (sums.size === 1 && !sums.has('down')) return;
    if (Date.now() > deadline) throw new Error(`nodes did not converge: ${[...sums].join(' ')}`);
    await sleep(50);
  }
}

describe('failover (kill -9)', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('kill -9 of the leader: a new leader accepts writes; the old one rejoins as a follower and catches up', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const first = await c.waitLeader();
    const client = c.client();
    for (let i = 0; i < 50; i++) await client.kvPut(`pre/${i}`, `v${i}`);
    c.kill(first);
    const second = await c.waitLeader(10_000, [first]);
    assert.notEqual(second, first);
    await client.kvPut('after-kill', 'yes');
    for (let i = 0; i < 50; i++) await client.kvPut(`during/${i}`, `v${i}`);
    await c.waitExit(first);
    // With one of three voters down the cluster can lose no further node.
    await waitFor('failureTolerance 0 with a voter down', async () => (await http(c.nodes[second]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body['failureTolerance'] === 0, 10_000);
    c.startNode(first);
    await c.waitReady(first);
    await converge(c, [0, 1, 2]);
    const st = await http(c.nodes[first]!.url, 'GET', '/v1/kv/during/49?consistency=stale', { token: TOKEN });
    assert.equal(st.body['value'], 'v49', 'the restarted node caught up by log');
    assert.equal((await http(c.nodes[first]!.url, 'GET', '/system/health/leader')).status, 503, 'it rejoined as a follower');
  });

  test('no acknowledged write is lost across a sequence of leader kills, and the history is linearizable', async (t) => {
    const history: HistoryEntry[] = [];
    let indeterminate = 0;
    let stop = false;
    const t0 = performance.now();
    const now = () => performance.now() - t0;
    const keys = ['k0', 'k1', 'k2'];
    const worker = async (id: number) => {
      const client = c.client({ timeoutMs: 3000 });
      let n = 0;
      // Bounded: a failed assertion leaves `stop` false, and the loop must not keep the test process alive.
      const until = Date.now() + 300_000;
      while (!stop && Date.now() < until) {
        const key = keys[(id + n) % keys.length]!;
        const kind = n % 3;
        const value = `c${id}-${n++}`;
        let op: KvOp;
        if (kind === 0) op = { kind: 'write', key, value };
        else if (kind === 1) op = { kind: 'read', key };
        else op = { kind: 'cas', key, expected: null, value };
        const invokeAt = now();
        let output: KvOutput | undefined;
        try {
          if (op.kind === 'write') {
            await client.kvPut(key, value);
            output = { kind: 'ok' };
          } else if (op.kind === 'read') {
            const r = await client.kvGet(key);
            output = { kind: 'read', value: r ? r.value : null };
          } else {
            try {
              await client.kvPut(key, value, { ifRevision: 0 });
              output = { kind: 'ok' };
            } catch (e) {
              if (e instanceof QuorateHttpError && e.status === 409) output = { kind: 'fail' };
              else throw e;
            }
          }
          history.push({ client: id, op, output, invokeAt, returnAt: now() });
        } catch (e) {
          if (!(e instanceof Error)) throw e;
          // A definite failure (an HTTP error such as 503 no_leader: nothing was
          // applied) and any failed read changed nothing: as if never issued.
          // Everything else (CommitUnknownError, a lost connection) is
          // indeterminate: it may take effect at any point after its invoke, or never.
          const definite = e instanceof QuorateHttpError || op.kind === 'read';
          if (!definite) {
            indeterminate++;
            history.push({ client: id, op, output: undefined, invokeAt, returnAt: undefined });
          }
          await sleep(20);
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    for (let round = 0; round < 3; round++) {
      await sleep(700);
      const leader = await c.waitLeader(15_000);
      c.kill(leader);
      await c.waitLeader(15_000, [leader]);
      await c.waitExit(leader);
      c.startNode(leader);
      await c.waitReady(leader);
    }
    await sleep(500);
    stop = true;
    await Promise.all(workers);
    assert.ok(history.filter((h) => h.output !== undefined && h.op.kind === 'write').length > 20, 'enough acknowledged writes');
    const result = checkHistory(history);
    t.diagnostic(`history: ${history.length} ops, ${indeterminate} indeterminate; checker: ${result.result}, ${'states' in result ? result.states : 0} states`);
    assert.equal(result.result, 'linearizable', `${indeterminate} indeterminate of ${history.length}: ${JSON.stringify(result).slice(0, 2000)}`);
    // A lost acknowledged write would show as a read of an older value: a linearizability violation above.
    await converge(c, [0, 1, 2]);
    const client = c.client();
    for (const key of keys) {
      const r = await client.kvGet(key);
      assert.ok(r, `key ${key} exists`);
    }
  });
});

describe('paused leader (SIGSTOP)', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('a leader paused past the election timeout is replaced, and when resumed it steps down without serving a stale read', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const old = await c.waitLeader();
    const client = c.client();
    await client.kvPut('pause/k', 'old');
    c.kill(old, 'SIGSTOP');
    const fresh = await c.waitLeader(10_000, [old]);
    const others = c.nodes.map((n) => n.url).filter((_, i) => i !== old);
    await c.client({ urls: others }).kvPut('pause/k', 'new');
    c.kill(old, 'SIGCONT');
    // The resumed node must never answer a linearizable read with the old value.
    for (let i = 0; i < 20; i++) {
      const r = await http(c.nodes[old]!.url, 'GET', '/v1/kv/pause/k', { token: TOKEN });
      if (r.status === 200) assert.equal(r.body['value'], 'new', 'no stale read from the deposed leader');
      else assert.ok([503, 504].includes(r.status), `status ${r.status}`);
      await sleep(25);
    }
    const deadline = Date.now() + 10_000;
    while ((await http(c.nodes[old]!.url, 'GET', '/system/health/leader')).status === 200) {
      assert.ok(Date.now() < deadline, 'the resumed node stepped down');
      await sleep(25);
    }
    assert.equal(await c.waitLeader(), fresh);
  });
});

describe('five nodes', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('a five-node cluster keeps accepting writes after losing two nodes, including the leader', async () => {
    c = await TestCluster.start({ nodes: 5 });
    const leader = await c.waitLeader();
    const client = c.client();
    await client.kvPut('five/a', '1');
    const victim = (leader + 1) % 5;
    c.kill(leader);
    c.kill(victim);
    await c.waitLeader(15_000, [leader, victim]);
    await client.kvPut('five/b', '2');
    const alive = [0, 1, 2, 3, 4].filter((i) => i !== leader && i !== victim);
    await converge(c, alive);
    const r = await http(c.nodes[alive[0]!]!.url, 'GET', '/v1/kv/five/a', { token: TOKEN });
    assert.equal(r.body['value'], '1');
  });
});
