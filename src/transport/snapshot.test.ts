import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Message } from '../raft/types.js';
import { encodeFrame, encodeSnapshotBegin, encodeSnapshotChunkHeader } from './codec.js';
import { PeerUnknown, SnapshotTransferFailed } from './errors.js';
import { SnapshotReceiver } from './snapshot.js';
import { connected, mesh, msg, rawClient, SNAP_META, startNode, until } from '../../test/support/transport.js';
import type { Node } from '../../test/support/transport.js';

const snapMsg: Message = msg({ from: 1, to: 2, type: 'snap', term: 3, snapshot: SNAP_META });

/** A TCP proxy that flips one bit at byte `flipAt` of every client→server stream that gets that far. */
async function corruptingProxy(targetPort: number, flipAt: number): Promise<{ port: number; close(): void }> {
  const sockets: Socket[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    sockets.push(client, upstream);
    let seen = 0;
    client.on('data', (d: Buffer) => {
      if (seen <= flipAt && flipAt < seen + d.length) {
        d = Buffer.from(d);
        d[flipAt - seen] = d[flipAt - seen]! ^ 0x10;
      }
      seen += d.length;
      upstream.write(d);
    });
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('PeerTransport snapshots', () => {
  it('streams a snapshot of a few MiB in chunks while heartbeats keep flowing on the message connection', async () => {
    let heartbeatsBeforeSnapshot = 0;
    let snapshotDelivered = false;
    const a = await startNode(1, { snapshotChunkBytes: 256 * 1024 });
    const b: Node = await startNode(2, {
      onMessages: (m) => {
        if (!snapshotDelivered) heartbeatsBeforeSnapshot += m.length;
      },
      onSnapshot: (from, meta, data, m) => {
        snapshotDelivered = true;
        b.snapshots.push({ from, meta, data, msg: m });
      },
    });
    try {
      mesh([a, b]);
      await connected(a, b);
      const data = new Uint8Array(randomBytes(6 * 1024 * 1024));
      const progress: [number, number][] = [];
      await a.t.sendSnapshot(2, snapMsg, data, (sent, total) => {
        progress.push([sent, total]);
        a.t.send([msg({ from: 1, to: 2, type: 'heartbeat', context: progress.length })]);
      });
      assert.equal(progress.length, 24);
      assert.deepStrictEqual(progress.at(-1), [data.length, data.length]);
      assert.equal(b.snapshots.length, 1);
      const got = b.snapshots[0]!;
      assert.equal(got.from, 1);
      assert.deepStrictEqual(got.meta, SNAP_META);
      assert.deepStrictEqual(got.msg, snapMsg);
      assert.ok(Buffer.from(got.data).equals(data), 'snapshot bytes intact');
      assert.ok(heartbeatsBeforeSnapshot >= 3, `heartbeats delivered during the stream: ${heartbeatsBeforeSnapshot}`);
      assert.equal(a.t.stats().get(2)!.snapshotsSent, 1);
      assert.equal(a.t.stats().get(2)!.snapshotBytesSent, data.length);
      assert.equal(a.t.stats().get(2)!.connected, true, 'message connection untouched');
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('rejects a snapshot corrupted in flight and never delivers it', async () => {
    const a = await startNode(1);
    const b = await startNode(2);
    const proxy = await corruptingProxy(b.port, 300_000);
    try {
      a.t.setPeers(new Map([[2, { host: '127.0.0.1', port: proxy.port }]]));
      await until(() => a.t.stats().get(2)?.connected === true, 'connection through the proxy');
      const data = new Uint8Array(randomBytes(2 * 1024 * 1024));
      await assert.rejects(a.t.sendSnapshot(2, snapMsg, data), (err: unknown) => {
        assert.ok(err instanceof SnapshotTransferFailed, String(err));
        assert.equal(err.code, 'snapshot_transfer_failed');
        assert.match(err.message, /snapshot transfer to peer 2 failed: peer refused: invalid frame at byte offset \d+: snapshotChunk CRC-32C mismatch/);
        return true;
      });
      assert.equal(b.snapshots.length, 0);
      assert.ok(b.log.lines.some((l) => l['event'] === 'peer_frame_invalid' && l['channel'] === 'snapshot'));
      assert.equal(a.t.stats().get(2)!.snapshotsSent, 0);
    } finally {
      proxy.close();
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('refuses a snapshot larger than maxSnapshotBytes before any bytes flow', async () => {
    const a = await startNode(1);
    const b = await startNode(2, { maxSnapshotBytes: 1000 });
    try {
      mesh([a, b]);
      await assert.rejects(a.t.sendSnapshot(2, snapMsg, new Uint8Array(5000)), /snapshot of 5000 bytes exceeds maxSnapshotBytes 1000/);
      assert.equal(b.snapshots.length, 0);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('rejects a snapshot for an unknown peer, a non-snap message, and one in flight at close()', async () => {
    const a = await startNode(1, { snapshotChunkBytes: 64 * 1024 });
    const b = await startNode(2);
    try {
      await assert.rejects(a.t.sendSnapshot(5, { ...snapMsg, to: 5 }, new Uint8Array(10)), PeerUnknown);
      mesh([a, b]);
      await assert.rejects(a.t.sendSnapshot(2, { ...snapMsg, type: 'app' }, new Uint8Array(10)), /must be a 'snap'/);
      const pending = a.t.sendSnapshot(2, snapMsg, new Uint8Array(32 * 1024 * 1024), () => void a.t.close());
      await assert.rejects(pending, SnapshotTransferFailed);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('reserves no memory from a declared size: a 1 GiB snapshotBegin costs nothing until data arrives', async () => {
    const b = await startNode(2, { maxSnapshotBytes: 2 ** 30 });
    try {
      const c = await rawClient(b.port);
      await c.hello({ fromId: 1, channel: 'snapshot' });
      assert.equal(await c.answer(), 'helloAck');
      const before = process.memoryUsage().arrayBuffers;
      c.socket.write(encodeFrame('snapshotBegin', encodeSnapshotBegin({ msg: { ...snapMsg, from: 1 }, totalBytes: 2 ** 30 })));
      const chunk = new Uint8Array(1000).fill(5);
      c.socket.write(Buffer.concat([encodeSnapshotChunkHeader(chunk), chunk]));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(c.closed, false);
      const grew = process.memoryUsage().arrayBuffers - before;
      assert.ok(grew < 64 * 1024 * 1024, `external memory grew by ${grew} bytes`);
      c.socket.destroy();
    } finally {
      await b.t.close();
    }
  });

  it('refuses a declared size above maxSnapshotBytes at once, and a chunk past the declared size', async () => {
    const b = await startNode(2, { maxSnapshotBytes: 1000 });
    try {
      const c = await rawClient(b.port);
      await c.hello({ fromId: 1, channel: 'snapshot' });
      assert.equal(await c.answer(), 'helloAck');
      c.socket.write(encodeFrame('snapshotBegin', encodeSnapshotBegin({ msg: { ...snapMsg, from: 1 }, totalBytes: 2 ** 40 })));
      await until(() => c.closed, 'the oversize stream to be refused');
      assert.ok(b.log.lines.some((l) => /snapshot of 1099511627776 bytes exceeds maxSnapshotBytes 1000/.test(String(l['reason']))));
    } finally {
      await b.t.close();
    }
    const r = new SnapshotReceiver(1, 2, 1000);
    r.handle({ type: 'snapshotBegin', payload: encodeSnapshotBegin({ msg: snapMsg, totalBytes: 10 }), offset: 0 });
    const data = new Uint8Array(11);
    const chunk = Buffer.concat([encodeSnapshotChunkHeader(data), data]).subarray(5);
    assert.throws(() => r.handle({ type: 'snapshotChunk', payload: chunk, offset: 50 }), /snapshotChunk overruns the declared 10 bytes \(already 0, chunk 11\)/);
  });
});
