import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { call, harness, leaderAndFollower, type Harness } from '../../test/support/api.js';
import { signedForward } from '../../test/support/fake-node.js';

let leader: Harness;
let follower: Harness;
let pair: Awaited<ReturnType<typeof leaderAndFollower>>;
before(async () => {
  pair = await leaderAndFollower();
  ({ leader, follower } = pair);
});
after(() => pair.close());

function pointFollowerAt(url: string | undefined, name: string | undefined = 'node1'): void {
  follower.node.leaderUrl = url;
  follower.node.leaderName = name;
}

/** A server that accepts a request, reads it, then drops the connection without answering. */
async function blackHole(): Promise<{ url: string; server: Server; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req) => {
    req.resume();
    req.on('end', () => {
      seen.push(`${req.method} ${req.url}`);
      req.socket.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen };
}

describe('forwarded requests must come from a current member', () => {
  test('a request claiming to be forwarded without a valid signature is refused with 403, before anything is applied (a removed or isolated node cannot pose as a member)', async () => {
    const before = leader.node.proposals.length;
    const cases: [string, Record<string, string>][] = [
      ['unsigned', { 'x-quorate-forwarded': '1', 'x-quorate-forwarded-for': '10.9.9.9' }],
      ['signed with the old secret (isolated node)', signedForward('node3', 'PUT', '/v1/kv/fwd/evil', { secret: new Uint8Array(32).fill(9) })],
      ['signed for another request line', signedForward('node2', 'PUT', '/v1/kv/fwd/other')],
      ['a made-up client address', { ...signedForward('node2', 'PUT', '/v1/kv/fwd/evil'), 'x-quorate-forwarded-for': '10.9.9.9' }],
      ['sent more than 5 minutes ago', signedForward('node2', 'PUT', '/v1/kv/fwd/evil', { sentAt: Date.now() - 6 * 60_000 })],
    ];
    for (const [what, headers] of cases) {
      const r = await call(leader.url, 'PUT', '/v1/kv/fwd/evil', { body: { value: 'x' }, headers });
      assert.equal(r.status, 403, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body['error'], 'forbidden');
      assert.match(String(r.body['message']), /not signed with this cluster's secret.*removed or isolated node/);
    }
    assert.equal(leader.node.proposals.length, before, 'nothing was applied');
    assert.equal(leader.node.kv.get('fwd/evil'), undefined);
  });

  test('a request signed by a member is served, with the client address it forwarded', async () => {
    const r = await call(leader.url, 'PUT', '/v1/kv/fwd/signed', { body: { value: 'ok' }, headers: signedForward('node2', 'PUT', '/v1/kv/fwd/signed') });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(leader.node.kv.get('fwd/signed')?.value, 'ok');
  });
});

describe('forwarding from a follower to the leader', () => {
  test('a write is forwarded: the leader applies it and answers with its own X-Quorate-Served-By', async () => {
    pointFollowerAt(leader.url);
    const r = await call(follower.url, 'PUT', '/v1/kv/fwd/a', { token: 'operator', body: { value: 'hello' }, headers: { 'idempotency-key': 'fwd-1' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-quorate-served-by'), 'node1');
    assert.equal(r.headers.get('x-quorate-forwarded-by'), 'node2');
    assert.equal(leader.node.kv.get('fwd/a')?.value, 'hello');
    assert.equal(leader.node.proposals.at(-1)?.idempotencyKey, 'fwd-1');
  });

  test('a linearizable read is forwarded; a stale read is served by the follower', async () => {
    pointFollowerAt(leader.url);
    await call(leader.url, 'PUT', '/v1/kv/fwd/read', { body: { value: 'on-leader' } });
    const lin = await call(follower.url, 'GET', '/v1/kv/fwd/read', { token: 'reader' });
    assert.equal(lin.status, 200);
    assert.equal(lin.body['value'], 'on-leader');
    assert.equal(lin.headers.get('x-quorate-served-by'), 'node1');
    const stale = await call(follower.url, 'GET', '/v1/kv/fwd/read?consistency=stale', { token: 'reader' });
    assert.equal(stale.status, 404); // the fake follower's own copy never got the write
    assert.equal(stale.headers.get('x-quorate-served-by'), 'node2');
    const list = await call(follower.url, 'GET', '/v1/kv?prefix=fwd/', { token: 'reader' });
    assert.ok((list.body['items'] as unknown[]).length >= 1);
    assert.equal(list.headers.get('x-quorate-served-by'), 'node1');
  });

  test("the leader's errors come back unchanged (409 with currentRevision)", async () => {
    pointFollowerAt(leader.url);
    const first = await call(follower.url, 'PUT', '/v1/kv/fwd/cas', { body: { value: '1', ifRevision: 0 } });
    const r = await call(follower.url, 'PUT', '/v1/kv/fwd/cas', { body: { value: '2', ifRevision: 0 } });
    assert.equal(r.status, 409);
    assert.equal(r.body['currentRevision'], first.body['revision']);
    assert.equal(r.headers.get('x-quorate-served-by'), 'node1');
  });

  test('bad input is rejected by the follower before forwarding', async () => {
    pointFollowerAt(leader.url);
    const before = leader.node.proposals.length;
    const r = await call(follower.url, 'PUT', '/v1/kv/fwd/x', { body: { valeu: 'typo' } });
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('x-quorate-served-by'), 'node2');
    assert.equal(leader.node.proposals.length, before);
  });

  test('a forwarded request that reaches a non-leader is not forwarded again (503 no_leader)', async () => {
    pointFollowerAt(leader.url);
    const r = await call(follower.url, 'PUT', '/v1/kv/loop', { body: { value: 'x' }, headers: signedForward('node3', 'PUT', '/v1/kv/loop') });
    assert.equal(r.status, 503);
    assert.equal(r.body['error'], 'no_leader');
    assert.match(String(r.body['message']), /already forwarded/);
    // Two followers pointing at each other: answered, not looped.
    const other = await harness({ nodeName: 'node3', nodeId: 3, leader: false });
    try {
      other.node.leaderName = 'node2';
      other.node.leaderUrl = follower.url;
      pointFollowerAt(other.url, 'node3');
      const looped = await call(other.url, 'PUT', '/v1/kv/loop', { body: { value: 'x' } });
      assert.equal(looped.status, 503);
      assert.equal(looped.body['error'], 'no_leader');
      assert.equal(looped.headers.get('x-quorate-served-by'), 'node2');
    } finally {
      await other.close();
    }
  });

  test('no known leader: 503 no_leader saying to retry and check quorate status', async () => {
    pointFollowerAt(undefined, undefined);
    const r = await call(follower.url, 'DELETE', '/v1/kv/x');
    assert.equal(r.status, 503);
    assert.equal(r.body['error'], 'no_leader');
    assert.match(String(r.body['message']), /Retry in a moment and check `quorate status`/);
  });

  test('leader refuses the connection: 503 no_leader (nothing was sent)', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise<void>((r) => dead.close(() => r()));
    pointFollowerAt(url);
    const r = await call(follower.url, 'PUT', '/v1/kv/x', { body: { value: 'x' } });
    assert.equal(r.status, 503);
    assert.equal(r.body['error'], 'no_leader');
    assert.match(String(r.body['message']), /ECONNREFUSED/);
  });

  test('leader drops the connection after a write was sent: 504 commit_unknown; a read gets 503', async () => {
    const hole = await blackHole();
    try {
      pointFollowerAt(hole.url);
      const w = await call(follower.url, 'PUT', '/v1/kv/x', { body: { value: 'x' } });
      assert.equal(w.status, 504);
      assert.equal(w.body['error'], 'commit_unknown');
      assert.match(String(w.body['message']), /may or may not have been applied/);
      assert.deepEqual(hole.seen, ['PUT /v1/kv/x']);
      const rd = await call(follower.url, 'GET', '/v1/kv/x');
      assert.equal(rd.status, 503);
      assert.equal(rd.body['error'], 'no_leader');
    } finally {
      hole.server.closeAllConnections();
      await new Promise<void>((r) => hole.server.close(() => r()));
    }
  });

  test('switchover and failover-safe asked on a follower are answered by the leader', async () => {
    pointFollowerAt(leader.url);
    const fs = await call(follower.url, 'GET', '/v1/cluster/failover-safe', { token: 'reader' });
    assert.equal(fs.status, 200);
    assert.equal(fs.body['failoverSafe'], true);
    assert.equal(fs.headers.get('x-quorate-served-by'), 'node1');
    const sw = await call(follower.url, 'POST', '/v1/cluster/switchover', { body: { to: 'node2' } });
    assert.equal(sw.status, 200);
    assert.equal(sw.body['from'], 'node1');
  });

  test("cluster health on a follower is the leader's view, or the local one when the leader is unreachable", async () => {
    pointFollowerAt(leader.url);
    const viaLeader = await call(follower.url, 'GET', '/system/health/cluster', { token: 'reader' });
    assert.equal(viaLeader.status, 200);
    assert.equal(viaLeader.headers.get('x-quorate-served-by'), 'node1');
    assert.equal(viaLeader.body['failoverSafe'], true);
    pointFollowerAt('http://127.0.0.1:1');
    const local = await call(follower.url, 'GET', '/system/health/cluster', { token: 'reader' });
    assert.equal(local.status, 200);
    assert.equal(local.headers.get('x-quorate-served-by'), 'node2');
    assert.equal(local.body['leaderNode'], 'node1');
    assert.equal(local.body['failoverSafe'], false);
  });

  test('auth is checked by the follower too (401 is not forwarded)', async () => {
    pointFollowerAt(leader.url);
    const r = await call(follower.url, 'PUT', '/v1/kv/x', { token: null, body: { value: 'x' } });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('x-quorate-served-by'), 'node2');
  });
});
