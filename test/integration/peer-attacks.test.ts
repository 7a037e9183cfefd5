// The review's attacks on the peer port, replayed against three real node
// processes from a local process that does not hold the cluster secret:
// posing as the leader (forged append, forged snapshot), announcing a fake
// API URL and a `dr` role for a voter, and a msgpack payload that used to
// stall the event loop for seconds. Each must fail safely: refused with no
// disclosure, nothing committed, no role changed, the leader kept.
import { snapshotChunksOf } from '../../src/state/snapshot.js';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { encodeFrame, encodeMessages } from '../../src/transport/codec.js';
import { PeerTransport } from '../../src/transport/peer-transport.js';
import { captureLogger } from '../support/log.js';
import { rawClient, stallFrame, until, type RawClient } from '../support/transport.js';
import { CLUSTER_SECRET, TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

const HA = 'attack-test-cluster-name';

interface Status { id: number; nodeName: string; term: number; leader: string | null; leaderId: number; commitIndex: number; peers: { nodeName: string; role: string; apiUrl: string | null }[] }

async function clusterStatus(url: string): Promise<Status> {
  return (await http(url, 'GET', '/v1/cluster/status', { token: TOKEN })).body as unknown as Status;
}

/** Nothing the cluster would rather keep to itself crossed the wire to an unauthenticated dialer. */
function assertDisclosesNothing(c: RawClient, names: string[]): void {
  const bytes = Buffer.concat(c.frames.map((f) => Buffer.from(f.payload)));
  for (const s of [HA, ...names]) assert.ok(!bytes.includes(Buffer.from(s)), `the answer discloses ${JSON.stringify(s)}`);
  for (const f of c.frames) assert.ok(['challenge', 'refuse'].includes(f.type), `only a challenge or a refusal, got ${f.type}`);
}

function peerPort(c: TestCluster, i: number): number {
  const cfg = JSON.parse(readFileSync(c.nodes[i]!.configPath, 'utf8')) as { node: { peerAddress: string } };
  return Number(cfg.node.peerAddress.split(':').pop());
}

describe('peer port attacks from a process without the cluster secret', () => {
  let c: TestCluster | undefined;
  let trap: Server | undefined;
  after(async () => {
    await c?.stop();
    await new Promise((r) => (trap ? trap.close(r) : r(undefined)));
  });

  test('forged appends, snapshots, API URLs and roles are refused without disclosure; a stalling payload is refused at once; the leader is kept', async () => {
    c = await TestCluster.start({ nodes: 3, cluster: { haId: HA } });
    const leader = await c.waitLeader();
    const follower = (leader + 1) % 3;
    const client = c.client();
    await client.kvPut('before', '1');
    const before = await clusterStatus(c.nodes[leader]!.url);
    // Raft ids are not the index in c.nodes: ask the node.
    const followerId = (await clusterStatus(c.nodes[follower]!.url)).id;
    const names = c.nodes.map((n) => n.name);

    // A listener where a fake API URL would send forwarded client writes.
    let trapped = 0;
    trap = createServer((_req, res) => {
      trapped++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"revision":1}');
    });
    await new Promise<void>((r) => trap!.listen(0, '127.0.0.1', r));
    const trapUrl = `http://127.0.0.1:${(trap.address() as import('node:net').AddressInfo).port}`;

    const port = peerPort(c, follower);
    const wrong = randomBytes(32);
    // 1. Posing as the leader with the wrong secret, announcing a fake API URL and role dr.
    for (const channel of ['messages', 'snapshot'] as const) {
      const a = await rawClient(port);
      await a.hello({ haId: HA, fromId: before.leaderId, fromName: before.nodeName, toId: followerId, channel, apiUrl: trapUrl, role: 'dr', incarnation: 'forged' }, { secret: wrong });
      assert.notEqual(await a.answer(), 'helloAck');
      await until(() => a.closed, 'the refused connection to close', 5000);
      assertDisclosesNothing(a, names);
    }
    // 2. A forged append sent without any handshake: the connection is dropped, nothing applied.
    const forged = await rawClient(port);
    const entry = { term: before.term + 5, index: before.commitIndex + 1, type: 'normal' as const, data: new Uint8Array([1, 2, 3]) };
    forged.socket.write(encodeFrame('messages', encodeMessages([{
      type: 'app', from: before.leaderId, to: followerId, term: before.term + 5, logTerm: before.term, index: before.commitIndex, commit: before.commitIndex + 1,
      entries: [entry], reject: false, rejectHint: 0, context: 0,
    }])));
    await until(() => forged.closed, 'the forged append connection to close', 5000);
    assertDisclosesNothing(forged, names);
    // 3. The payload that stalled the event loop for seconds.
    const stall = await rawClient(peerPort(c, leader));
    const t0 = Date.now();
    stall.socket.write(stallFrame());
    await until(() => stall.closed, 'the stalling hello to be refused', 5000);
    assert.ok(Date.now() - t0 < 2000, `refused after ${Date.now() - t0} ms`);
    assertDisclosesNothing(stall, names);

    // Nothing changed: the same leader and term, no role changed, forwarding
    // goes to the recorded leader (never the trap), every node has every write.
    await sleep(500);
    const after = await clusterStatus(c.nodes[leader]!.url);
    assert.equal(after.leaderId, before.leaderId);
    assert.equal(after.term, before.term);
    assert.deepEqual(after.peers.map((p) => p.role).sort(), ['primary', 'standby', 'standby']);
    assert.ok(after.peers.every((p) => p.apiUrl === null || !p.apiUrl.startsWith(trapUrl)));
    const viaFollower = c.client({ urls: [c.nodes[follower]!.url] });
    for (let i = 0; i < 20; i++) await viaFollower.kvPut(`after/${i}`, `v${i}`);
    assert.equal(trapped, 0, 'no client write was forwarded to the fake API URL');
    for (const n of c.nodes) {
      let value: unknown;
      await waitFor(`${n.name} has the writes`, async () => {
        const r = await http(n.url, 'GET', '/v1/kv/after/19?consistency=stale', { token: TOKEN });
        value = r.body['value'];
        return r.status === 200;
      }, 10_000);
      assert.equal(value, 'v19');
      // The forged append (term + 5) would have moved this node's term.
      assert.equal((await clusterStatus(n.url)).term, before.term, `${n.name} kept term ${before.term}`);
    }
    assert.doesNotMatch(c.log(follower), /split_brain/);
  });
});

describe('a snapshot whose contents do not decode', () => {
  let c: TestCluster | undefined;
  let fake: PeerTransport | undefined;
  after(async () => {
    await fake?.close();
    await c?.stop();
  });

  test('is rejected before anything is persisted, even from a peer holding the secret; the node keeps serving and restarts', async () => {
    c = await TestCluster.start({ nodes: 3, cluster: { haId: HA } });
    const leader = await c.waitLeader();
    const victim = (leader + 1) % 3;
    const client = c.client();
    for (let i = 0; i < 10; i++) await client.kvPut(`keep/${i}`, `v${i}`);
    const st = await clusterStatus(c.nodes[leader]!.url);
    // A process with the cluster secret poses as the leader on the snapshot channel.
    fake = new PeerTransport({
      nodeId: st.leaderId, nodeName: 'impostor', haId: HA, listenHost: '127.0.0.1', listenPort: 0, tls: 'off',
      clusterSecret: Buffer.from(CLUSTER_SECRET, 'hex'), logger: captureLogger(),
      onMessages: () => undefined, onPeerDisconnected: () => undefined, onSnapshot: () => undefined,
    });
    // Raft ids are not the index in c.nodes: ask the node.
    const victimId = (await clusterStatus(c.nodes[victim]!.url)).id;
    fake.setPeers(new Map([[victimId, { host: '127.0.0.1', port: peerPort(c, victim) }]]));
    const garbage = randomBytes(4096);
    const meta = { index: st.commitIndex + 1000, term: st.term, membership: { members: [1, 2, 3].map((id) => ({ id, role: 'voter' as const })), removed: [] } };
    await fake.sendSnapshot(victimId, {
      type: 'snap', from: st.leaderId, to: victimId, term: st.term, logTerm: 0, index: 0, commit: 0, entries: [], reject: false, rejectHint: 0, context: 0, snapshot: meta,
    }, snapshotChunksOf(garbage), garbage.length).catch(() => undefined);
    await until(() => /snapshot_rejected/.test(c!.log(victim)), 'the victim to reject the snapshot', 10_000);
    assert.match(c.log(victim), /its contents do not decode .*nothing was changed/);
    await fake.close();
    fake = undefined;

    // Still serving, data intact; and nothing was persisted: it restarts.
    const r = await http(c.nodes[victim]!.url, 'GET', '/v1/kv/keep/9?consistency=stale', { token: TOKEN });
    assert.equal(r.body['value'], 'v9');
    c.kill(victim, 'SIGTERM');
    assert.equal(await c.waitExit(victim), 0);
    c.startNode(victim);
    await c.waitReady(victim);
    await client.kvPut('keep/after', 'x');
    await waitFor('the restarted node catches up', async () => (await http(c!.nodes[victim]!.url, 'GET', '/v1/kv/keep/after?consistency=stale', { token: TOKEN })).status === 200, 10_000);
  });
});
