// Cluster generations at the handshake (src/node/generation.ts): nodes of
// one generation talk; a node of another is refused before any message, and
// an older one is told it was superseded.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeHello } from './handshake.js';
import { connected, mesh, msg, startNode, until } from '../../test/support/transport.js';
import type { Node } from '../../test/support/transport.js';

async function closeAll(...nodes: Node[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.t.close()));
}

describe('cluster generations in the peer handshake', () => {
  it('judgeHello refuses a dialer of an older generation as superseded and one of a newer generation, naming both', () => {
    const hello = { protocolVersion: 5, minCompatibleVersion: 2, haId: 'h', fromId: 1, fromName: 'n1', toId: 2, channel: 'messages' as const, apiUrl: '', role: '' as const, incarnation: '' };
    const me = { nodeId: 2, nodeName: 'n2', haId: 'h', protocolVersion: 5, minCompatibleVersion: 2 };
    assert.deepEqual(judgeHello(hello, me), { ok: true, version: 5 });
    const old = judgeHello(hello, { ...me, generation: 2 });
    assert.equal(old.ok, false);
    assert.equal(!old.ok && old.code, 'generation_superseded');
    assert.match(!old.ok ? old.reason : '', /is of cluster generation 0, this cluster is at generation 2/);
    const newer = judgeHello({ ...hello, generation: 3 }, { ...me, generation: 2 });
    assert.equal(!newer.ok && newer.code, 'generation_newer');
    assert.deepEqual(judgeHello({ ...hello, generation: 2 }, { ...me, generation: 2 }), { ok: true, version: 5 });
  });

  it('two nodes of generation 1 exchange messages', async () => {
    const a = await startNode(1, { generation: 1 });
    const b = await startNode(2, { generation: 1 });
    try {
      mesh([a, b]);
      await connected(a, b);
      a.t.send([msg({ from: 1, to: 2, type: 'heartbeat', term: 5 })]);
      await until(() => b.received.length === 1, 'the message at node 2');
    } finally {
      await closeAll(a, b);
    }
  });

  it('an old-generation node is refused, told it was superseded, and none of its messages is delivered', async () => {
    const superseded: string[] = [];
    const old = await startNode(1, { onSupersededByPeer: (_p, reason) => superseded.push(reason) });
    const promoted = await startNode(2, { generation: 1 });
    try {
      old.t.setPeers(new Map([[2, { host: '127.0.0.1', port: promoted.port }]]));
      promoted.t.setPeers(new Map([[1, { host: '127.0.0.1', port: old.port }]]));
      await until(() => superseded.length > 0, 'the old node hears it was superseded');
      assert.match(superseded[0]!, /generation 0, this cluster is at generation 1/);
      assert.ok(promoted.log.lines.some((l) => l['event'] === 'peer_refused_generation' && l['code'] === 'generation_superseded'));
      // The promoted node dialing the old one is refused too (generation_newer), and is not told it was superseded.
      await until(() => old.log.lines.some((l) => l['event'] === 'peer_refused_generation' && l['code'] === 'generation_newer'), 'the old node refusing the new generation');
      for (let i = 0; i < 5; i++) old.t.send([msg({ from: 1, to: 2, type: 'app', term: 99, index: 1, logTerm: 1, commit: 1 })]);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(promoted.received.length, 0, 'no message of another generation is delivered');
      assert.equal(old.received.length, 0);
      assert.equal(old.t.stats().get(2)!.connected, false);
    } finally {
      await closeAll(old, promoted);
    }
  });
});
