// Failover mode manual, pause/resume and drain with real processes
// (src/node/modes.ts): kill -9 of the leader elects nobody until an operator
// runs failover; a paused cluster stays leaderless until failover + resume; a
// drained leader hands over and shows as drained.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

const ELECTION_MS = 500;

async function leaders(c: TestCluster, alive: number[]): Promise<number> {
  let n = 0;
  for (const i of alive) if ((await http(c.nodes[i]!.url, 'GET', '/system/health/leader')).status === 200) n++;
  return n;
}

describe('failover modes (manual, paused, drained)', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('manual: kill -9 of the leader elects nobody for 3 election timeouts; POST /v1/cluster/failover elects one', async () => {
    c = await TestCluster.start({ nodes: 3, electionTimeoutMs: ELECTION_MS, cluster: { failover: 'manual' } });
    const first = await c.waitLeader();
    await c.client().kvPut('a', '1');
    const alive = [0, 1, 2].filter((i) => i !== first);
    const h = await http(c.nodes[alive[0]!]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal(h.body['failoverMode'], 'manual');
    assert.equal(h.body['autoFailover'], false);
    assert.match(String(h.body['notice']), /quorate failover/);
    const ping = await http(c.nodes[alive[1]!]!.url, 'GET', '/system/health/ping');
    assert.match(String(ping.body['notice']), /automatic failover is disabled.*quorate failover/, 'every health endpoint says what to run');
    c.kill(first);
    await c.waitExit(first);
    await sleep(3 * ELECTION_MS + 300);
    assert.equal(await leaders(c, alive), 0, 'no node campaigned by itself');
    const r = await http(c.nodes[alive[0]!]!.url, 'POST', '/v1/cluster/failover', { token: TOKEN, body: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body['elected'], true);
    assert.ok(Array.isArray(r.body['candidates']), 'reports the candidates it chose from');
    const second = await c.waitLeader(5000, [first]);
    assert.equal(c.nodes[second]!.name, r.body['leader']);
    // The history records why: the operator's failover.
    await waitFor('the failover in the history', async () => {
      const hist = await http(c.nodes[second]!.url, 'GET', '/v1/cluster/history', { token: TOKEN });
      const last = (hist.body['records'] as { kind: string; reason?: string; leaderName?: string }[]).filter((x) => x.kind === 'leader').pop();
      return last?.reason === 'failover' && last.leaderName === c.nodes[second]!.name;
    }, 10_000);
    await c.client().kvPut('b', '2');
    c.startNode(first);
    await c.waitReady(first);
  });

  test('pause: the replicated flag wins; a leaderless paused cluster stays so until failover, then resume', async () => {
    const s = await http(c.nodes[0]!.url, 'POST', '/v1/cluster/settings', { token: TOKEN, body: { failover: 'automatic' } });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.equal(s.body['failoverMode'], 'automatic');
    const p = await http(c.nodes[1]!.url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: {} });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body['paused'], true);
    const lead = await c.waitLeader();
    const alive = [0, 1, 2].filter((i) => i !== lead);
    await waitFor('paused on every node', async () => {
      for (const i of [0, 1, 2]) if ((await http(c.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['paused'] !== true) return false;
      return true;
    }, 5000);
    c.kill(lead);
    await c.waitExit(lead);
    await sleep(3 * ELECTION_MS + 300);
    assert.equal(await leaders(c, alive), 0, 'paused: no automatic failover');
    const f = await http(c.nodes[alive[1]!]!.url, 'POST', '/v1/cluster/failover', { token: TOKEN, body: { to: c.nodes[alive[0]!]!.name } });
    assert.equal(f.status, 200, JSON.stringify(f.body));
    assert.equal(f.body['leader'], c.nodes[alive[0]!]!.name);
    const r = await http(c.nodes[alive[1]!]!.url, 'POST', '/v1/cluster/resume', { token: TOKEN, body: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body['paused'], false);
    c.startNode(lead);
    await c.waitReady(lead);
  });

  test('drain: a drained leader hands over; status shows peers[].drained', async () => {
    const lead = await c.waitLeader();
    const name = c.nodes[lead]!.name;
    const d = await http(c.nodes[lead]!.url, 'POST', '/v1/cluster/drain', { token: TOKEN, body: { nodeName: name, drained: true } });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.deepEqual(d.body['drained'], [name]);
    assert.notEqual(d.body['leader'], name, 'leadership moved away');
    const st = await http(c.nodes[lead]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
    const peer = (st.body['peers'] as { nodeName: string; drained: boolean }[]).find((x) => x.nodeName === name)!;
    assert.equal(peer.drained, true);
    const sw = await http(c.nodes[lead]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { to: name } });
    assert.equal(sw.status, 409, 'a drained node is never a switchover target');
    const u = await http(c.nodes[lead]!.url, 'POST', '/v1/cluster/drain', { token: TOKEN, body: { nodeName: name, drained: false } });
    assert.deepEqual(u.body['drained'], []);
  });
});
