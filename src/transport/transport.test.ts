import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Message } from '../raft/types.js';
import { decodeRefusal, encodeFrame, encodeHelloAck, encodeMessages, FrameDecoder } from './codec.js';
import { connected, mesh, msg, rawClient, startNode, until } from './test-helpers.js';
import type { Node, RawClient } from './test-helpers.js';

async function closeAll(...nodes: Node[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.t.close()));
}

function refusalOf(c: RawClient): string {
  const f = c.frames.find((x) => x.type === 'refuse');
  assert.ok(f, `expected a refuse frame, got ${c.frames.map((x) => x.type).join(',') || 'none'}`);
  return decodeRefusal(f.payload, f.offset).reason;
}

describe('PeerTransport messages', () => {
  it('delivers a batch sent in one tick as one frame, in order, in both directions', async () => {
    const a = await startNode(1);
    const b = await startNode(2);
    try {
      mesh([a, b]);
      await connected(a, b);
      await connected(b, a);
      const batch: Message[] = [
        msg({ from: 1, to: 2, type: 'app', term: 2, index: 1, logTerm: 1, commit: 1, entries: [{ term: 2, index: 2, type: 'normal', data: new Uint8Array([1, 2, 3]) }] }),
        msg({ from: 1, to: 2, type: 'heartbeat', term: 2, context: 1 }),
        msg({ from: 1, to: 2, type: 'vote', term: 3, index: 2, logTerm: 2 }),
      ];
      a.t.send(batch.slice(0, 2));
      a.t.send(batch.slice(2));
      await until(() => b.received.length === 3, 'three messages at node 2');
      assert.equal(b.batches.length, 1, 'one frame per flush');
      assert.deepStrictEqual(b.received, batch);
      const s = a.t.stats().get(2)!;
      assert.equal(s.msgsSent, 3);
      assert.ok(s.bytesSent > 0);
      b.t.send([msg({ from: 2, to: 1, type: 'voteResp', term: 3 })]);
      await until(() => a.received.length === 1, 'the reply at node 1');
      assert.equal(a.received[0]!.type, 'voteResp');
    } finally {
      await closeAll(a, b);
    }
  });

  it('drops messages for an unconnected peer and counts them', async () => {
    const a = await startNode(1);
    try {
      a.t.setPeers(new Map([[2, { host: '127.0.0.1', port: 1 }]])); // nothing listens on port 1
      a.t.send([msg({ from: 1, to: 2 }), msg({ from: 1, to: 2 })]);
      assert.equal(a.t.stats().get(2)!.dropped, 2);
    } finally {
      await closeAll(a);
    }
  });

  it('closes a connection that sends a garbage or oversize frame and keeps serving the others', async () => {
    const a = await startNode(1);
    const b = await startNode(2);
    try {
      mesh([a, b]);
      await connected(a, b);

      const oversize = await rawClient(b.port);
      oversize.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x04]));
      await until(() => oversize.closed, 'the oversize connection to close');
      assert.match(refusalOf(oversize), /byte offset 0: frame length 4294967295 exceeds/);

      const unknownType = await rawClient(b.port);
      unknownType.hello();
      unknownType.socket.write(Buffer.from([0, 0, 0, 0, 0x55]));
      await until(() => unknownType.closed, 'the unknown-type connection to close');
      assert.match(refusalOf(unknownType), /unknown frame type 0x55/);

      const garbage = await rawClient(b.port);
      garbage.hello();
      garbage.socket.write(encodeFrame('messages', Buffer.from([0x93, 0x01])));
      await until(() => garbage.closed, 'the garbage connection to close');
      assert.match(refusalOf(garbage), /undecodable messages payload/);

      const spoof = await rawClient(b.port);
      spoof.hello({ fromId: 77 });
      spoof.socket.write(encodeFrame('messages', encodeMessages([msg({ from: 1, to: 2 })])));
      await until(() => spoof.closed, 'the spoofing connection to close');
      assert.match(refusalOf(spoof), /messages\[0\]\.from 1 differs from the connection's node id 77/);

      const warned = b.log.lines.filter((l) => l.level === 'warn' && l.obj['event'] === 'peer_frame_invalid');
      assert.equal(warned.length, 4);
      assert.equal(warned[0]!.obj['offset'], 0);
      assert.deepStrictEqual(b.received, [], 'nothing from the bad connections was delivered');

      a.t.send([msg({ from: 1, to: 2, context: 5 })]);
      await until(() => b.received.length === 1, 'node 1 still served');
      assert.equal(b.disconnects.filter((d) => d.peer === 1).length, 0);
      assert.equal(a.t.stats().get(2)!.connected, true);
    } finally {
      await closeAll(a, b);
    }
  });

  it('bounds outbound bytes to a slow peer: drops and counts, never blocks the caller', async () => {
    // A peer that completes the handshake, then stops reading.
    const sockets: Socket[] = [];
    const slow: Server = createServer((s) => {
      sockets.push(s);
      const dec = new FrameDecoder();
      s.on('data', (d) => {
        if (dec.push(d).some((f) => f.type === 'hello')) {
          s.write(encodeFrame('helloAck', encodeHelloAck({ protocolVersion: 1, nodeId: 2, nodeName: 'slow', haId: 'test-ha' })));
          s.pause();
        }
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const port = (slow.address() as { port: number }).port;
    const maxPendingBytes = 256 * 1024;
    const a = await startNode(1, { maxPendingBytes });
    try {
      a.t.setPeers(new Map([[2, { host: '127.0.0.1', port }]]));
      await until(() => a.t.stats().get(2)?.connected === true, 'handshake with the slow peer');
      const data = new Uint8Array(64 * 1024);
      let slowestSendMs = 0;
      for (let i = 0; i < 400 && a.t.stats().get(2)!.dropped < 20; i++) {
        const t0 = performance.now();
        a.t.send([msg({ from: 1, to: 2, type: 'app', entries: [{ term: 1, index: i + 1, type: 'normal', data }] })]);
        slowestSendMs = Math.max(slowestSendMs, performance.now() - t0);
        await new Promise((r) => setImmediate(r));
      }
      const s = a.t.stats().get(2)!;
      assert.ok(s.dropped >= 20, `expected drops, got ${JSON.stringify(s)}`);
      assert.ok(s.msgsSent < 400);
      assert.ok(slowestSendMs < 50, `send took ${slowestSendMs} ms`);
      assert.ok(a.log.lines.some((l) => l.obj['event'] === 'peer_backpressure'));
    } finally {
      await closeAll(a);
      for (const s of sockets) s.destroy();
      slow.close();
    }
  });
});

describe('PeerTransport handshake', () => {
  it('refuses a dialer from another cluster; the dialer logs an error with the reason', async () => {
    const a = await startNode(1, { haId: 'alpha' });
    const b = await startNode(2, { haId: 'beta' });
    try {
      a.t.setPeers(new Map([[2, { host: '127.0.0.1', port: b.port }]]));
      await until(() => a.log.lines.some((l) => l.level === 'error' && l.obj['event'] === 'peer_refused'), 'the refusal at the dialer');
      const line = a.log.lines.find((l) => l.obj['event'] === 'peer_refused')!;
      assert.equal(line.obj['code'], 'cluster_mismatch');
      assert.match(String(line.obj['reason']), /peer belongs to cluster "alpha", this node to "beta"/);
      assert.match(line.msg, /peer 2 at 127\.0\.0\.1:\d+ refused the connection: peer belongs to cluster/);
      assert.ok(b.log.lines.some((l) => l.obj['event'] === 'peer_refused_inbound'));
      assert.equal(a.t.stats().get(2)!.connected, false);
    } finally {
      await closeAll(a, b);
    }
  });

  it('refuses an incompatible protocol version with a message naming the compatible versions', async () => {
    const b = await startNode(2);
    try {
      const c = await rawClient(b.port);
      c.hello({ protocolVersion: 7, minCompatibleVersion: 5 });
      await until(() => c.closed, 'the refused connection to close');
      assert.match(refusalOf(c), /protocol versions incompatible: node "raw" \(id 77\) speaks versions 5 to 7, this node "node2" speaks version 1 only/);
    } finally {
      await closeAll(b);
    }
  });

  it('refuses a dialer whose id is not in the allowlist and accepts a listed one', async () => {
    const a = await startNode(1);
    const b = await startNode(2, { allowedPeerIds: 'peers' });
    try {
      mesh([a, b]);
      await connected(a, b);
      const c = await rawClient(b.port);
      c.hello({ fromId: 9 });
      await until(() => c.closed, 'the unknown dialer to be closed');
      assert.match(refusalOf(c), /node "raw" \(id 9\) is not a known member of cluster "test-ha"/);
    } finally {
      await closeAll(a, b);
    }
  });

  it('closes a connection that never says hello', async () => {
    const b = await startNode(2, { handshakeTimeoutMs: 200 });
    try {
      const c = await rawClient(b.port);
      await until(() => c.closed, 'the silent connection to be closed', 3000);
    } finally {
      await closeAll(b);
    }
  });
});

describe('PeerTransport failure detection and reconnect', () => {
  it("reports 'reset' at once, and once, when the peer closes its connections", async () => {
    const a = await startNode(1);
    const b = await startNode(2);
    try {
      mesh([a, b]);
      await connected(a, b);
      await connected(b, a);
      const t0 = Date.now();
      await b.t.close();
      await until(() => a.disconnects.length > 0, 'onPeerDisconnected at node 1', 2000);
      assert.deepStrictEqual(a.disconnects.map((d) => [d.peer, d.reason]), [[2, 'reset']]);
      assert.ok(a.disconnects[0]!.atMs - t0 < 1000, 'detected well within an election timeout');
      await until(() => !a.t.stats().get(2)!.connected && !a.t.stats().get(2)!.inboundConnected, 'both connections gone');
      assert.equal(a.disconnects.length, 1, 'one report per outage');
      assert.deepStrictEqual(b.disconnects, [], 'no callbacks after close()');
    } finally {
      await closeAll(a, b);
    }
  });

  it('reconnects when the peer restarts on the same port', async () => {
    const a = await startNode(1, { backoff: { initialMs: 20, maxMs: 200 } });
    const b = await startNode(2);
    let b2: Node | undefined;
    try {
      mesh([a, b]);
      await connected(a, b);
      await b.t.close();
      await until(() => a.disconnects.length === 1, 'the outage report');
      a.t.send([msg({ from: 1, to: 2 })]); // dropped: peer down
      b2 = await startNode(2, { listenPort: b.port });
      b2.t.setPeers(new Map([[1, { host: '127.0.0.1', port: a.port }]]));
      await connected(a, b2);
      assert.ok(a.t.stats().get(2)!.reconnects >= 1);
      a.t.send([msg({ from: 1, to: 2, context: 99 })]);
      await until(() => b2!.received.length === 1, 'a message at the restarted peer');
      assert.equal(b2.received[0]!.context, 99);
      await until(() => a.t.stats().get(2)!.inboundConnected, 'the restarted peer dialing back');
    } finally {
      await closeAll(a, b, ...(b2 ? [b2] : []));
    }
  });

  it("reports 'timeout' when an inbound message connection goes silent past idleTimeoutMs", async () => {
    const b = await startNode(2, { idleTimeoutMs: 200 });
    try {
      const c = await rawClient(b.port);
      c.hello({ fromId: 77 });
      await until(() => b.disconnects.length === 1, 'the idle report', 3000);
      assert.deepStrictEqual(b.disconnects.map((d) => [d.peer, d.reason]), [[77, 'timeout']]);
      await until(() => c.closed, 'the idle connection to close');
    } finally {
      await closeAll(b);
    }
  });

  it('moves to a new address given by setPeers without reporting an outage', async () => {
    const a = await startNode(1);
    const b = await startNode(2);
    const b2 = await startNode(2);
    try {
      mesh([a, b]);
      await connected(a, b);
      a.t.setPeers(new Map([[2, { host: '127.0.0.1', port: b2.port }]]));
      await until(() => a.t.stats().get(2)!.connected && !b.t.stats().get(1)!.inboundConnected, 'the move to the new address');
      a.t.send([msg({ from: 1, to: 2, context: 7 })]);
      await until(() => b2.received.length === 1, 'a message at the new address');
      assert.deepStrictEqual(a.disconnects, []);
    } finally {
      await closeAll(a, b, b2);
    }
  });

  it('stops dialing a peer removed from the peer set', async () => {
    const a = await startNode(1);
    const b = await startNode(2);
    try {
      mesh([a, b]);
      await connected(a, b);
      a.t.setPeers(new Map());
      assert.equal(a.t.stats().size, 0);
      await until(() => !b.t.stats().get(1)!.inboundConnected, 'node 2 to see the connection go');
      assert.deepStrictEqual(a.disconnects, []);
    } finally {
      await closeAll(a, b);
    }
  });
});
