// Cluster history with real processes: the startup election, the election
// after a kill -9 of the leader, a switchover; the restarted node shows the
// same records as the others, and `quorate history` prints them.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAIN, TOKEN, READER_TOKEN, TestCluster, http, waitFor } from './harness.js';

type Rec = Record<string, unknown>;

async function leaderRecords(url: string): Promise<Rec[]> {
  const r = await http(url, 'GET', '/v1/cluster/history', { token: READER_TOKEN });
  assert.equal(r.status, 200);
  return (r.body['records'] as Rec[]).filter((x) => x['kind'] === 'leader');
}

describe('cluster history', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('startup election, election after kill -9, switchover: replicated, kept by a restarted node', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const first = await c.waitLeader();
    const name = (i: number) => c.nodes[i]!.name;
    let recs: Rec[] = [];
    await waitFor('the startup election recorded', async () => (recs = await leaderRecords(c.nodes[first]!.url)).length === 1, 10_000);
    assert.equal(recs[0]!['reason'], 'startup');
    assert.equal(recs[0]!['leaderName'], name(first));
    assert.equal(recs[0]!['previousLeaderName'], null);
    const t1 = recs[0]!['term'] as number;

    c.kill(first);
    const second = await c.waitLeader(10_000, [first]);
    await waitFor('the election after the crash recorded', async () => (recs = await leaderRecords(c.nodes[second]!.url)).length === 2, 10_000);
    assert.equal(recs[1]!['leaderName'], name(second));
    assert.equal(recs[1]!['previousLeaderName'], name(first));
    // The leader's connection reset when its process died: the survivors pre-voted at once.
    assert.equal(recs[1]!['reason'], 'leader-unreachable');
    assert.ok((recs[1]!['term'] as number) > t1);
    await c.waitExit(first);

    const third = [0, 1, 2].find((i) => i !== first && i !== second)!;
    const sw = await http(c.nodes[second]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { to: name(third) } });
    assert.equal(sw.status, 200, JSON.stringify(sw.body));
    await waitFor('the switchover recorded', async () => (recs = await leaderRecords(c.nodes[third]!.url)).length === 3, 10_000);
    assert.deepStrictEqual([recs[2]!['reason'], recs[2]!['previousLeaderName'], recs[2]!['leaderName']], ['switchover', name(second), name(third)]);

    c.startNode(first);
    await c.waitReady(first);
    const all = async (i: number) => (await http(c.nodes[i]!.url, 'GET', '/v1/cluster/history', { token: READER_TOKEN })).body['records'];
    await waitFor('every node holds the same history', async () => {
      const [a, b, d] = await Promise.all([all(0), all(1), all(2)]);
      return JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(b) === JSON.stringify(d);
    }, 10_000);
    const restarted = await leaderRecords(c.nodes[first]!.url);
    assert.deepStrictEqual(restarted.map((r) => r['reason']), ['startup', 'leader-unreachable', 'switchover']);
    const limited = await http(c.nodes[first]!.url, 'GET', '/v1/cluster/history?limit=1', { token: READER_TOKEN });
    assert.equal((limited.body['records'] as Rec[]).length, 1);

    const out = await promisify(execFile)(process.execPath, [MAIN, 'history', '--url', c.nodes[first]!.url, '--token', READER_TOKEN]);
    assert.match(out.stdout, /TIME\s+KIND\s+TERM\s+FROM → TO\s+REASON/);
    assert.match(out.stdout, new RegExp(`${name(second)} → ${name(third)}\\s+switchover`));
    process.stdout.write(`# quorate history:\n${out.stdout.replace(/^/gm, '# ')}\n`);
  });
});
