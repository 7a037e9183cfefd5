// What an operator sees when a quorum is missing: the exact log messages,
// health answers, and 504 commit_unknown for a write that cannot commit.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, TestCluster, http, sleep } from './harness.js';

async function waitForLog(c: TestCluster, i: number, re: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = c.log(i).split('\n').find((l) => re.test(l));
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no log line matching ${re} on ${c.nodes[i]!.name} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

describe('missing quorum', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('writeQuorum 3 of 3 with a voter down: "Quorum not met", leader health 503, a write answers 504 commit_unknown', async () => {
    c = await TestCluster.start({ nodes: 3, writeQuorum: 3 });
    const leader = await c.waitLeader();
    await c.client().kvPut('q/before', '1');
    const down = (leader + 1) % 3;
    c.kill(down);
    const line = await waitForLog(c, leader, /Quorum not met: 2 of 3 voters reachable \(writes need 3\)/, 10_000);
    assert.match(line, /"event":"quorum_not_met"/);
    assert.equal((await http(c.nodes[leader]!.url, 'GET', '/system/health/leader')).status, 503);
    const w = await http(c.nodes[leader]!.url, 'PUT', '/v1/kv/q/after', { token: TOKEN, body: { value: '2' } });
    assert.equal(w.status, 504);
    assert.equal(w.body['error'], 'commit_unknown');
    const cl = await http(c.nodes[leader]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal(cl.body['quorumMet'], false);
    assert.equal(cl.body['clusterHealthy'], false);
  });

  test('a node alone: "Leader election failed" names the voters reachable; ready answers 503', async () => {
    assert.ok(c);
    const alive = [0, 1, 2].filter((i) => c!.nodes[i]!.exitCode === undefined);
    const lone = alive[0]!;
    for (const i of alive.slice(1)) c.kill(i);
    const line = await waitForLog(c, lone, /Leader election failed: no leader for \d+ ms in term \d+; 1 of 3 voters reachable, an election needs 2/, 15_000);
    assert.match(line, /"event":"election_failed"/);
    assert.equal((await http(c.nodes[lone]!.url, 'GET', '/system/health/ready')).status, 503);
    const w = await http(c.nodes[lone]!.url, 'PUT', '/v1/kv/q/x', { token: TOKEN, body: { value: '1' } });
    assert.equal(w.status, 503);
    assert.equal(w.body['error'], 'no_leader');
  });
});
