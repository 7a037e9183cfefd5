// Membership operations through real processes: a cluster started from one
// node grows online by enroll (join tokens, the sealed cluster secret) while
// a client writes, then shrinks by removing the leader; a removed node serves
// no data; an incompatible joiner and wrong / reused tokens are refused.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER_SECRET, TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';
import { FEATURE_LEVEL } from '../../src/node/features.js';

interface PeerView { nodeName: string; role: string; matchIndex: number }

/** Adds a node that waits to be enrolled (no cluster secret, no peers) and starts it with `env`. */


async function peers(url: string): Promise<PeerView[]> {
  const r = await http(url, 'GET', '/v1/cluster/status', { token: TOKEN });
  return (r.body['peers'] as PeerView[] | undefined) ?? [];
}

async function newToken(url: string): Promise<string> {
  const r = await http(url, 'POST', '/v1/cluster/join-tokens', { token: TOKEN, body: {} });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body['token'] as string;
}

async function enroll(url: string, joiner: string, role = 'voter', force = false): Promise<{ status: number; body: Record<string, unknown> }> {
  const info = await http(joiner, 'GET', '/v1/cluster/join-info');
  // An enrollment moves the joiner's data dir aside and runs the join exchange (the leader commits the new
  // member): seconds on a busy 2-core machine, more than the helper's default 10 s deadline at worst.
  return http(url, 'POST', '/v1/cluster/enroll', { token: TOKEN, body: { apiUrl: joiner, peerUrl: info.body['peerUrl'], role, force }, timeoutMs: 60_000 });
}

describe('membership: enroll and remove online', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('one node serves at once; grows to 3 voters by enroll while a client writes; removing the leader keeps every acknowledged write', async () => {
    c = await TestCluster.start({ nodes: 1 });
    await c.waitLeader(10_000);
    const client = c.client({ urls: [c.nodes[0]!.url] });
    await client.kvPut('first', 'one-node');
    const secretHex = readFileSync(join(c.nodes[0]!.dir, 'cluster.secret'), 'utf8').trim();
    assert.equal(secretHex, CLUSTER_SECRET);

    // A client writes all along.
    const acked: string[] = [];
    let writing = true;
    // Bounded: if an assertion below fails, the writer must not keep the test process alive.
    const writerDeadline = Date.now() + 180_000;
    const writer = (async () => {
      for (let n = 0; writing && Date.now() < writerDeadline; n++) {
        try {
          await client.kvPut(`w/${n}`, `v${n}`);
          acked.push(`w/${n}`);
        } catch { /* not acknowledged: not counted */ }
        await sleep(5);
      }
    })();

    const httpBodies: string[] = [];
    for (const name of ['node2', 'node3']) {
      const token = await newToken(c.nodes[0]!.url);
      const j = await c.addJoiner(name, { QUORATE_JOIN_TOKEN: token });
      const leaderIdx = await c.waitLeader(10_000);
      const r = await enroll(c.nodes[leaderIdx]!.url, c.nodes[j]!.url);
      httpBodies.push(JSON.stringify(r.body));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body['nodeName'], name);
      assert.equal(r.body['backupDir'], null);
      if (name === 'node2') assert.match(String((r.body['warnings'] as string[])[0]), /failure tolerance does not grow/);
      await waitFor(`${name} is promoted to voter`, async () => (await peers(c!.nodes[0]!.url)).some((p) => p.nodeName === name && (p.role === 'standby' || p.role === 'primary')), 30_000);
      // The secret reached the joiner, never through HTTP.
      assert.equal(readFileSync(join(c.nodes[j]!.dir, 'cluster.secret'), 'utf8').trim(), secretHex);
    }
    for (const b of httpBodies) assert.ok(!b.includes(secretHex), 'the cluster secret appears in an HTTP body');
    // Ids are allocated by the leader, never reused: 1, 2, 3.
    const st = await http(c.nodes[2]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
    assert.deepEqual((st.body['peers'] as { id: number }[]).map((p) => p.id).sort(), [1, 2, 3]);

    // Remove the leader: it hands over first.
    const leader = await c.waitLeader(10_000);
    const leaderName = c.nodes[leader]!.name;
    const other = (leader + 1) % 3;
    // Sent to a follower: forwarded to the leader, which hands over and
    // forwards it once more to the new leader, which removes it. One call.
    const rm = await http(c.nodes[other]!.url, 'POST', '/v1/cluster/remove', { token: TOKEN, body: { nodeName: leaderName }, timeoutMs: 60_000 });
    assert.equal(rm.status, 200, JSON.stringify(rm.body));
    writing = false;
    await writer;
    const rest = [0, 1, 2].filter((i) => i !== leader);
    await waitFor(`${leaderName} answers removed`, async () => (await http(c!.nodes[leader]!.url, 'GET', '/system/health/ping')).body['role'] === 'removed', 15_000);
    // A removed node never serves a read.
    const read = await http(c.nodes[leader]!.url, 'GET', '/v1/kv/first?consistency=stale', { token: TOKEN });
    assert.equal(read.status, 503);
    assert.equal(read.body['error'], 'removed');
    const lin = await http(c.nodes[leader]!.url, 'GET', '/v1/kv/first', { token: TOKEN });
    assert.equal(lin.status, 503);

    // Every acknowledged write is on both remaining nodes, and their states agree.
    assert.ok(acked.length > 20, `only ${acked.length} writes were acknowledged`);
    const c2 = c.client({ urls: rest.map((i) => c!.nodes[i]!.url) });
    await c2.kvPut('after-remove', 'x');
    for (const i of rest) {
      await waitFor(`${c.nodes[i]!.name} applied every write`, async () => (await c2.kvGet('after-remove', { consistency: 'stale' }).catch(() => undefined)) !== undefined);
      const cl = c.client({ urls: [c.nodes[i]!.url] });
      await waitFor(`${c.nodes[i]!.name} holds all ${acked.length} acknowledged writes`, async () => {
        const list = await cl.kvList('w/', 10_000, { consistency: 'stale' });
        const keys = new Set(list.items.map((x) => x.key));
        return acked.every((k) => keys.has(k));
      }, 10_000);
    }
    const sums = await Promise.all(rest.map(async (i) => {
      const d = await http(c!.nodes[i]!.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN });
      return { applied: d.body['appliedIndex'], checksum: d.body['checksum'] };
    }));
    await waitFor('both remaining nodes reach the same applied index', async () => {
      const a = await Promise.all(rest.map(async (i) => (await http(c!.nodes[i]!.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN })).body));
      return a[0]!['appliedIndex'] === a[1]!['appliedIndex'] && a[0]!['checksum'] === a[1]!['checksum'];
    }, 10_000);
    assert.equal(sums.length, 2);
  });

  test('refusals: wrong token, a token used twice, an incompatible version, the quorum arithmetic of remove', async () => {
    assert.ok(c);
    const leader = await c.waitLeader(10_000);
    const lurl = c.nodes[leader]!.url;
    // Wrong token: the joiner's join is refused; nothing changes.
    await newToken(lurl);
    const wrong = await c.addJoiner('node4', { QUORATE_JOIN_TOKEN: `qjt-${'0'.repeat(64)}` });
    const r1 = await enroll(lurl, c.nodes[wrong]!.url);
    assert.equal(r1.status, 409, JSON.stringify(r1.body));
    assert.match(String(r1.body['message']), /unknown or expired|create a new one with `quorate join-token create`/);
    // Incompatible version: refused with what to upgrade.
    const token = await newToken(lurl);
    const old = await c.addJoiner('node5', { QUORATE_JOIN_TOKEN: token, QUORATE_TEST_FEATURE_LEVEL: '1' }, 'observer');
    const r2 = await enroll(lurl, c.nodes[old]!.url, 'observer');
    assert.equal(r2.status, 409, JSON.stringify(r2.body));
    assert.match(String(r2.body['message']), new RegExp(`feature level 1.*needs feature level ${FEATURE_LEVEL}.*upgrade node5 to quorate`));
    // The same token, used by a compatible joiner: accepted once...
    c.kill(old);
    await c.waitExit(old);
    c.startNode(old, { QUORATE_JOIN_TOKEN: token });
    await waitFor('node5 restarted', async () => (await http(c!.nodes[old]!.url, 'GET', '/v1/cluster/join-info').catch(() => ({ status: 0 }))).status === 200);
    const r3 = await enroll(lurl, c.nodes[old]!.url, 'observer');
    assert.equal(r3.status, 200, JSON.stringify(r3.body));
    // ...and never again (node4 presents it now).
    c.kill(wrong);
    await c.waitExit(wrong);
    c.startNode(wrong, { QUORATE_JOIN_TOKEN: token });
    await waitFor('node4 restarted', async () => (await http(c!.nodes[wrong]!.url, 'GET', '/v1/cluster/join-info').catch(() => ({ status: 0 }))).status === 200);
    const r4 = await enroll(lurl, c.nodes[wrong]!.url);
    assert.equal(r4.status, 409, JSON.stringify(r4.body));
    // Quorum arithmetic: with one of the two voters stopped, removing the other is refused.
    await waitFor('node5 is an observer', async () => (await peers(lurl)).some((p) => p.nodeName === 'node5' && p.role === 'observer'), 30_000);
    const voters = (await peers(lurl)).filter((p) => p.role === 'standby');
    assert.ok(voters.length >= 1);
    const follower = c.nodes.findIndex((n) => n.name === voters[0]!.nodeName);
    c.kill(old); // node5, an observer (a voter for quorum), is stopped
    await c.waitExit(old);
    await sleep(1500);
    const r5 = await http(lurl, 'POST', '/v1/cluster/remove', { token: TOKEN, body: { nodeName: c.nodes[follower]!.name }, timeoutMs: 60_000 });
    assert.equal(r5.status, 409, JSON.stringify(r5.body));
    assert.equal(r5.body['error'], 'removal_unsafe');
    assert.match(String(r5.body['message']), /would leave 2 voters \(write quorum 2\) of which only 1 is reachable/);
  });
});
