// Observers and DR nodes from each node's own config: the leader reconciles
// the membership to them; an observer votes but never leads, a DR node gets
// the data but neither votes nor counts toward quorum.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, TestCluster, http, sleep } from './harness.js';

async function rolesOf(c: TestCluster, via: number): Promise<Record<string, string>> {
  const r = await http(c.nodes[via]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
  const nodes = (r.body['nodes'] ?? []) as Array<{ nodeName: string; role: string }>;
  return Object.fromEntries(nodes.map((n) => [n.nodeName, n.role]));
}

async function waitRole(c: TestCluster, via: number, name: string, role: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const roles = await rolesOf(c, via).catch(() => ({}) as Record<string, string>);
    if (roles[name] === role) return;
    if (Date.now() > deadline) throw new Error(`${name} did not become ${role}: ${JSON.stringify(roles)}`);
    await sleep(50);
  }
}

describe('node roles from config', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('an observer votes but never leads, also when the leader is killed', async () => {
    c = await TestCluster.start({ nodes: 3, roles: ['voter', 'voter', 'observer'] });
    const first = await c.waitLeader();
    await waitRole(c, first, 'node3', 'observer');
    const leader = await c.waitLeader();
    assert.notEqual(leader, 2, 'the observer does not lead');
    await c.client().kvPut('obs/a', '1');
    // No wait for the other voter to catch up: if the leader dies with a write only the observer
    // holds, the observer stands in (src/raft: a last resort after three leaderless election
    // timeouts) and hands leadership to the voter at once.
    c.kill(leader);
    // One voter and the observer remain: a majority of the three voting members.
    const next = await c.waitLeader(15_000, [leader, 2]);
    assert.notEqual(next, 2, 'a voter leads after the failover (an observer only ever stands in)');
    await c.client({ urls: c.nodes.filter((_, i) => i !== leader).map((n) => n.url) }).kvPut('obs/b', '2');
    const g = await http(c.nodes[2]!.url, 'GET', '/v1/kv/obs/b', { token: TOKEN });
    assert.equal(g.body['value'], '2');
    await c.stop();
    c = undefined;
  });

  test('a DR node receives every write but does not count toward quorum', async () => {
    await c?.stop(); // the previous test's cluster, when it failed before stopping it
    c = await TestCluster.start({ nodes: 4, roles: ['voter', 'voter', 'voter', 'dr'] });
    await waitRole(c, await c.waitLeader(), 'node4', 'dr');
    // Bootstrap members start as voters, so node4 may have led at first and handed over.
    const leader = await c.waitLeader();
    assert.notEqual(leader, 3, 'the DR node does not lead');
    const client = c.client({ urls: c.nodes.slice(0, 3).map((n) => n.url) });
    await client.kvPut('dr/a', '1');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await http(c.nodes[3]!.url, 'GET', '/v1/kv/dr/a?consistency=stale', { token: TOKEN });
      if (r.body['value'] === '1') break;
      assert.ok(Date.now() < deadline, 'the DR node received the write');
      await sleep(50);
    }
    const cl = await http(c.nodes[leader]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal(cl.body['failureTolerance'], 1, 'three voters tolerate one failure; the DR node adds none');
    // Losing the DR node and one voter leaves two of three voters: writes go on.
    const voter = [0, 1, 2].find((i) => i !== leader)!;
    c.kill(3);
    c.kill(voter);
    await client.kvPut('dr/b', '2');
    const g = await http(c.nodes[leader]!.url, 'GET', '/v1/kv/dr/b', { token: TOKEN });
    assert.equal(g.body['value'], '2');
  });
});
