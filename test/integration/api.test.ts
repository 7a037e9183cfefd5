// A real three-node cluster (child processes, loopback, real data dirs):
// replication, forwarding, idempotency, linearizable reads and the HTTP error
// paths of SPEC §4.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OPERATOR_TOKEN, READER_TOKEN, TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

describe('three-node cluster over HTTP', () => {
  let c: TestCluster;
  let leader: number;
  let follower: number;

  before(async () => {
    c = await TestCluster.start({ nodes: 3 });
    leader = await c.waitLeader();
    follower = (leader + 1) % 3;
    for (let i = 0; i < 3; i++) await c.waitReady(i);
  });
  after(async () => {
    await c.stop();
  });

  test('a write on the leader is readable on every node, and revisions grow', async () => {
    const r1 = await http(c.nodes[leader]!.url, 'PUT', '/v1/kv/app/config', { token: TOKEN, body: { value: 'v1' } });
    assert.equal(r1.status, 200);
    const r2 = await http(c.nodes[leader]!.url, 'PUT', '/v1/kv/app/config', { token: TOKEN, body: { value: 'v2' } });
    assert.ok((r2.body['revision'] as number) > (r1.body['revision'] as number));
    for (const n of c.nodes) {
      const g = await http(n.url, 'GET', '/v1/kv/app/config', { token: TOKEN });
      assert.equal(g.status, 200);
      assert.equal(g.body['value'], 'v2', `linearizable read on ${n.name}`);
    }
  });

  test('a key written with ttlMs is expired by the leader-only TTL service, on every node', async () => {
    const r = await http(c.nodes[leader]!.url, 'PUT', '/v1/kv/ttl/session', { token: TOKEN, body: { value: 'x', ttlMs: 300 } });
    assert.equal(r.status, 200);
    await waitFor('the key to expire', async () => (await http(c.nodes[leader]!.url, 'GET', '/v1/kv/ttl/session', { token: TOKEN })).status === 404, 10_000);
    for (const n of c.nodes) assert.equal((await http(n.url, 'GET', '/v1/kv/ttl/session', { token: TOKEN })).status, 404, `expired on ${n.name}`);
    assert.match(c.log(leader), /"event":"leader_service_started".*"service":"ttl-expiry"/);
  });

  test('a follower forwards writes to the leader and says who served it', async () => {
    const r = await http(c.nodes[follower]!.url, 'PUT', '/v1/kv/fwd', { token: TOKEN, body: { value: 'x' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-quorate-served-by'), c.nodes[leader]!.name);
    const stale = await http(c.nodes[follower]!.url, 'GET', '/v1/kv/fwd?consistency=stale', { token: TOKEN });
    assert.equal(stale.headers.get('x-quorate-served-by'), c.nodes[follower]!.name);
  });

  test('a retried write with the same Idempotency-Key is applied once', async () => {
    const headers = { 'idempotency-key': 'retry-1' };
    const a = await http(c.nodes[follower]!.url, 'PUT', '/v1/kv/counter', { token: TOKEN, body: { value: '1' }, headers });
    const b = await http(c.nodes[leader]!.url, 'PUT', '/v1/kv/counter', { token: TOKEN, body: { value: '1' }, headers });
    assert.equal(a.status, 200);
    assert.deepEqual(b.body, a.body, 'the retry returns the original result');
    const g = await http(c.nodes[leader]!.url, 'GET', '/v1/kv/counter', { token: TOKEN });
    assert.equal(g.body['revision'], a.body['revision'], 'no second application');
  });

  test('compare-and-set: ifRevision 0 creates once; a stale revision gets 409 with the current one', async () => {
    const url = c.nodes[leader]!.url;
    const created = await http(url, 'PUT', '/v1/kv/lock', { token: TOKEN, body: { value: 'a', ifRevision: 0 } });
    assert.equal(created.status, 200);
    const again = await http(url, 'PUT', '/v1/kv/lock', { token: TOKEN, body: { value: 'b', ifRevision: 0 } });
    assert.equal(again.status, 409);
    assert.equal(again.body['error'], 'revision_mismatch');
    assert.equal(again.body['currentRevision'], created.body['revision']);
  });

  test('auth: 401 without or with a wrong token, 403 for a reader writing, 200 for an operator', async () => {
    const url = c.nodes[leader]!.url;
    assert.equal((await http(url, 'GET', '/v1/kv/x')).status, 401);
    assert.equal((await http(url, 'GET', '/v1/kv/x', { token: 'nope' })).status, 401);
    const ro = await http(url, 'PUT', '/v1/kv/x', { token: READER_TOKEN, body: { value: '1' } });
    assert.equal(ro.status, 403);
    assert.equal((await http(url, 'PUT', '/v1/kv/x', { token: OPERATOR_TOKEN, body: { value: '1' } })).status, 200);
    assert.equal((await http(url, 'GET', '/system/health/cluster')).status, 401);
  });

  test('bad input: 400 names the field, 404 for a missing key, 413 for an oversized value', async () => {
    const url = c.nodes[leader]!.url;
    const bad = await http(url, 'PUT', '/v1/kv/y', { token: TOKEN, body: { value: 5 } });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body['message']), /value/);
    const badJson = await http(url, 'PUT', '/v1/kv/y', { token: TOKEN, rawBody: '{"value":' });
    assert.equal(badJson.status, 400);
    assert.equal((await http(url, 'GET', '/v1/kv/does-not-exist', { token: TOKEN })).status, 404);
    const big = await http(url, 'PUT', '/v1/kv/y', { token: TOKEN, body: { value: 'x'.repeat(1024 * 1024 + 1) } });
    assert.equal(big.status, 413);
  });

  test('health endpoints: exactly one leader; standbys healthy; cluster body has the SPEC shape', async () => {
    const codes = await Promise.all(c.nodes.map((n) => http(n.url, 'GET', '/system/health/leader')));
    assert.deepEqual(codes.map((r) => r.status).filter((s) => s === 200).length, 1);
    assert.equal((await http(c.nodes[follower]!.url, 'GET', '/system/health/standby')).status, 200);
    const ping = await http(c.nodes[follower]!.url, 'GET', '/system/health/ping');
    assert.equal(ping.body['status'], 'healthy');
    const cl = await http(c.nodes[follower]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal(cl.status, 200);
    for (const k of ['clusterHealthy', 'leaderNode', 'term', 'nodes', 'writeQuorum', 'quorumMet', 'failoverSafe', 'failureTolerance']) {
      assert.ok(k in cl.body, `cluster body has ${k}`);
    }
    assert.equal(cl.body['leaderNode'], c.nodes[leader]!.name);
    assert.equal((cl.body['nodes'] as unknown[]).length, 3);
  });

  test('every node applies the same log to the same state (matching dump checksums)', async () => {
    for (let i = 0; i < 20; i++) await http(c.nodes[leader]!.url, 'PUT', `/v1/kv/sum/${i}`, { token: TOKEN, body: { value: String(i) } });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const dumps = await Promise.all(c.nodes.map((n) => http(n.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN })));
      const sums = new Set(dumps.map((d) => `${d.body['appliedIndex']}/${d.body['checksum']}`));
      if (sums.size === 1) break;
      assert.ok(Date.now() < deadline, `checksums converge: ${[...sums].join(' ')}`);
      await sleep(50);
    }
  });

  test('planned switchover moves leadership to another voter without losing a write', async () => {
    const before = await http(c.nodes[leader]!.url, 'PUT', '/v1/kv/switch', { token: TOKEN, body: { value: 'before' } });
    assert.equal(before.status, 200);
    const r = await http(c.nodes[follower]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const newLeader = await c.waitLeader(10_000);
    assert.notEqual(newLeader, leader);
    const g = await http(c.nodes[newLeader]!.url, 'GET', '/v1/kv/switch', { token: TOKEN });
    assert.equal(g.body['value'], 'before');
    leader = newLeader;
    follower = (leader + 1) % 3;
  });
});
