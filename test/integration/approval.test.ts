// Failover mode approval with real processes (src/node/approval.ts): kill -9
// of the leader elects nobody; both survivors poll each other and propose the
// same candidate and term; approving another name or term is refused with the
// proposal; approving the proposal elects that candidate.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';
import { renderHealth } from '../../src/cli/cluster.js';
import type { ClusterHealth } from '../../src/api/client.js';

const ELECTION_MS = 500;

interface Approval { candidate: string | null; term: number | null; since: string | null; command: string | null; reason?: string }

describe('failover mode approval', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('kill -9 of the leader: no leader; both survivors propose the same candidate and term; only that approval elects it', async () => {
    c = await TestCluster.start({ nodes: 3, electionTimeoutMs: ELECTION_MS, cluster: { failover: 'approval' } });
    const first = await c.waitLeader();
    await c.client().kvPut('a', '1');
    const alive = [0, 1, 2].filter((i) => i !== first);
    // A leader needs one follower: the other may still be starting (a loaded machine).
    for (const i of alive) await c.waitReady(i);
    const before = await http(c.nodes[alive[0]!]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
    assert.equal(before.body['failoverMode'], 'approval');
    assert.equal(before.body['autoFailover'], false);
    assert.equal(before.body['approval'], undefined, 'no proposal while a leader is known');
    // The probe is for members only.
    const probe = await http(c.nodes[alive[0]!]!.url, 'GET', '/v1/cluster/approval-probe', { token: TOKEN });
    assert.equal(probe.status, 401, 'an API token is not a cluster member\'s proof');

    c.kill(first);
    await c.waitExit(first);
    await sleep(3 * ELECTION_MS + 300);
    for (const i of alive) assert.notEqual((await http(c.nodes[i]!.url, 'GET', '/system/health/leader')).status, 200, 'no node campaigned by itself');

    // Both survivors announce the same candidate and term.
    const proposals: Approval[] = [];
    await waitFor('the same proposal on both survivors', async () => {
      proposals.length = 0;
      for (const i of alive) proposals.push((await http(c.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['approval'] as Approval);
      return proposals.every((p) => p?.candidate != null) && proposals[0]!.candidate === proposals[1]!.candidate && proposals[0]!.term === proposals[1]!.term;
    }, 30_000); // each survivor must have probed the other (1 s probe deadline): several polls on a busy 2-core machine
    const { candidate, term } = proposals[0]! as { candidate: string; term: number };
    assert.ok(alive.some((i) => c.nodes[i]!.name === candidate), 'the candidate is a survivor');
    assert.equal(proposals[0]!.command, `quorate failover --approve ${candidate} --term ${term}`);
    const health = await http(c.nodes[alive[1]!]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal((health.body['approval'] as Approval).candidate, candidate);
    const text = renderHealth(health.body as unknown as ClusterHealth);
    assert.match(text, new RegExp(`approval: +candidate ${candidate}, term ${term} \\(since `));
    assert.match(text, new RegExp(`approve it with \`quorate failover --approve ${candidate} --term ${term}\``));

    // Another name, or another term: refused with the proposal; nobody campaigns.
    const other = alive.map((i) => c.nodes[i]!.name).find((n) => n !== candidate)!;
    for (const body of [{ approve: other, term }, { approve: c.nodes[first]!.name, term }, { approve: candidate, term: term + 1 }]) {
      const r = await http(c.nodes[alive[0]!]!.url, 'POST', '/v1/cluster/failover', { token: TOKEN, body });
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.equal(r.body['error'], 'approval_mismatch');
      assert.equal(r.body['candidate'], candidate);
      assert.equal(r.body['term'], term);
      assert.match(String(r.body['message']), new RegExp(`quorate failover --approve ${candidate} --term ${term}`));
    }
    for (const i of alive) assert.notEqual((await http(c.nodes[i]!.url, 'GET', '/system/health/leader')).status, 200, 'a refused approval elects nobody');

    // The proposal, sent to the survivor that is not the candidate: forwarded, the candidate is elected.
    const via = alive.find((i) => c.nodes[i]!.name !== candidate)!;
    const r = await http(c.nodes[via]!.url, 'POST', '/v1/cluster/failover', { token: TOKEN, body: { approve: candidate, term } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body['elected'], true);
    assert.equal(r.body['leader'], candidate);
    assert.equal(r.body['term'], term, 'elected in the proposed term');
    const second = await c.waitLeader(5000, [first]);
    assert.equal(c.nodes[second]!.name, candidate);
    await waitFor('the proposal is gone once a leader is known', async () => (await http(c.nodes[via]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['approval'] === undefined, 5000);
    await c.client().kvPut('b', '2');
    // `quorate config set failover …`: the settings machine takes approval.
    for (const failover of ['manual', 'approval']) {
      const set = await http(c.nodes[via]!.url, 'POST', '/v1/cluster/settings', { token: TOKEN, body: { failover } });
      assert.equal(set.status, 200, JSON.stringify(set.body));
      assert.equal(set.body['failoverMode'], failover);
    }
  });
});
