// A node whose data dir was wiped or replaced (an "amnesiac" node) comes back
// under an id the cluster knows, with term 0 and no memory of its votes. It
// must not vote or count toward any quorum until it holds what it may have
// acknowledged before: the leader sees its new incarnation in the
// authenticated handshake and records it as a gated learner through the log.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TOKEN, TestCluster, http, waitFor } from './harness.js';

interface PeerView { nodeName: string; role: string; status: string; apiUrl: string | null }

async function peersOf(c: TestCluster, i: number): Promise<PeerView[]> {
  const r = await http(c.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
  return (r.body['peers'] as PeerView[] | undefined) ?? [];
}

const KEEP = new Set(['quorate.json', 'admin.token', 'tokens.json', 'cluster.secret', 'node.log']);

describe('a node that comes back with a new data dir', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('rejoins as a non-voting learner, is promoted only after catching up, and every acknowledged write survives', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const leader = await c.waitLeader();
    const client = c.client();
    for (let i = 0; i < 40; i++) await client.kvPut(`amnesia/${i}`, `v${i}`);
    const victim = (leader + 1) % 3;
    const victimName = c.nodes[victim]!.name;
    // The leader records every member's identity (incarnation, API URL) through the log.
    await waitFor('the leader records every member\'s API URL', async () => (await peersOf(c!, leader)).every((p) => p.apiUrl !== null));

    c.kill(victim);
    await c.waitExit(victim);
    const dir = c.nodes[victim]!.dir;
    for (const f of readdirSync(dir)) if (!KEEP.has(f)) rmSync(join(dir, f), { recursive: true, force: true });
    c.startNode(victim);

    await waitFor('the leader notices the new incarnation', () => /member_rejoined/.test(c!.log(leader)));
    const rejoinLine = c.log(leader).split('\n').find((l) => l.includes('member_rejoined'))!;
    assert.match(rejoinLine, new RegExp(`${victimName} came back with a new data dir`));
    assert.match(rejoinLine, /non-voting learner until it has caught up to index \d+/);

    // Promoted back to a voter once caught up; its data is all there.
    await waitFor(`${victimName} is a healthy standby again`, async () => {
      const p = (await peersOf(c!, leader)).find((x) => x.nodeName === victimName);
      return p?.role === 'standby' && p.status === 'healthy';
    });
    assert.match(c.log(leader), /has caught up to index \d+/);
    // The node itself learned from its peers' handshakes that it is rejoining
    // and withheld its vote until the cluster recorded its new data dir.
    await waitFor('the rejoined node logs that the cluster recorded it', () => /"event":"rejoin_recorded"/.test(c!.log(victim)));
    assert.match(c.log(victim), /"event":"rejoining".*grants no vote and does not campaign/);
    // It holds every entry (match reached the gate); it applies them once it learns the commit index.
    let value: unknown;
    await waitFor(`${victimName} serves the writes made before its wipe`, async () => {
      const r = await http(c!.nodes[victim]!.url, 'GET', '/v1/kv/amnesia/39?consistency=stale', { token: TOKEN });
      value = r.body['value'];
      return r.status === 200;
    });
    assert.equal(value, 'v39');
    // The cluster still takes writes through the rejoined node.
    const viaVictim = c.client({ urls: [c.nodes[victim]!.url] });
    assert.ok((await viaVictim.kvPut('amnesia/after', 'ok')).revision > 0);
  });
});
