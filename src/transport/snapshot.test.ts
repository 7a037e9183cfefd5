import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { collectSnapshot, snapshotChunksOf } from '../state/snapshot.js';
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
    const spool = await mkdtemp(join(tmpdir(), 'quorate-spool-'));
    const spooled: string[] = [];
    const a = await startNode(1, { snapshotChunkBytes: 256 * 1024 });
    const b: Node = await startNode(2, {
      onMessages: (m) => {
        if (!snapshotDelivered) heartbeatsBeforeSnapshot += m.length;
      },
      onSnapshot: (from, meta, source, m) => {
        snapshotDelivered = true;
        spooled.push(source.path);
        void collectSnapshot(source.read()).then(async (data) => {
          await source.discard();
          b.snapshots.push({ from, meta, data, msg: m });
        });
      },
      snapshotSpoolDir: spool,
    });
    try {
      mesh([a, b]);
      await connected(a, b);
      const data = new Uint8Array(randomBytes(6 * 1024 * 1024));
      const progress: [number, number][] = [];
      await a.t.sendSnapshot(2, snapMsg, snapshotChunksOf(data), data.length, (sent, total) => {
        progress.push([sent, total]);
        a.t.send([msg({ from: 1, to: 2, type: 'heartbeat', context: progress.length })]);
      });
      assert.equal(progress.length, 24);
      assert.deepStrictEqual(progress.at(-1), [data.length, data.length]);
      await until(() => b.snapshots.length === 1, 'the received snapshot read back');
      assert.equal(spooled.length, 1);
      assert.match(spooled[0]!, new RegExp(`^${spool}/incoming-1-3-42-[0-9a-f]{8}\\.tmp$`), 'written to a file in the spool dir as it arrived');
      assert.deepEqual(await readdir(spool), [], 'discarded by its owner');
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
      await rm(spool, { recursive: true, force: true });
    }
  });

  it('streams a lazily produced multi-chunk source with back-pressure: pieces are pulled only as the socket drains', async () => {
    const spool = await mkdtemp(join(tmpdir(), 'quorate-spool-'));
    const a = await startNode(1, { snapshotChunkBytes: 100_000 });
    const b = await startNode(2, { snapshotSpoolDir: spool });
    const total = 40 * 1024 * 1024;
    let pulled = 0;
    let maxAhead = 0;
    let sentSoFar = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let i = 0; pulled < total; i++) {
        const n = Math.min(total - pulled, 300_001); // pieces that do not align with the chunk size
        const piece = Buffer.alloc(n, i & 0xff);
        pulled += n;
        maxAhead = Math.max(maxAhead, pulled - sentSoFar);
        yield piece;
      }
    }
    try {
      mesh([a, b]);
      await connected(a, b);
      await a.t.sendSnapshot(2, snapMsg, source(), total, (sent) => {
        sentSoFar = sent;
      });
      assert.ok(maxAhead <= 2 * 300_001, `the sender pulled at most a piece ahead of what it sent (${maxAhead} bytes)`);
      await until(() => b.snapshots.length === 1, 'delivery');
      const got = b.snapshots[0]!.data;
      assert.equal(got.length, total);
      assert.equal(got[0], 0);
      assert.equal(got[300_001], 1);
      assert.equal(got[total - 1], Math.floor((total - 1) / 300_001) & 0xff);
      // A source that ends short of (or runs past) what was announced fails the transfer, and the receiver keeps no file.
      await assert.rejects(a.t.sendSnapshot(2, snapMsg, snapshotChunksOf(new Uint8Array(1000)), 2000), /ended after 1000 of the 2000 bytes announced/);
      await assert.rejects(a.t.sendSnapshot(2, snapMsg, snapshotChunksOf(new Uint8Array(3000)), 2000), /holds more than the 2000 bytes announced/);
      await until(async () => (await readdir(spool)).length === 0, 'the receiver to remove the files of failed streams');
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
      await rm(spool, { recursive: true, force: true });
    }
  });

  it('rejects a snapshot corrupted in flight and never delivers it', async () => {
    const spool = await mkdtemp(join(tmpdir(), 'quorate-spool-'));
    const a = await startNode(1);
    const b = await startNode(2, { snapshotSpoolDir: spool });
    const proxy = await corruptingProxy(b.port, 300_000);
    try {
      a.t.setPeers(new Map([[2, { host: '127.0.0.1', port: proxy.port }]]));
      await until(() => a.t.stats().get(2)?.connected === true, 'connection through the proxy');
      const data = new Uint8Array(randomBytes(2 * 1024 * 1024));
      await assert.rejects(a.t.sendSnapshot(2, snapMsg, snapshotChunksOf(data), data.length), (err: unknown) => {
        assert.ok(err instanceof SnapshotTransferFailed, String(err));
        assert.equal(err.code, 'snapshot_transfer_failed');
        assert.match(err.message, /snapshot transfer to peer 2 failed: peer refused: invalid frame at byte offset \d+: snapshotChunk CRC-32C mismatch/);
        return true;
      });
      assert.equal(b.snapshots.length, 0);
      assert.ok(b.log.lines.some((l) => l['event'] === 'peer_frame_invalid' && l['channel'] === 'snapshot'));
      assert.equal(a.t.stats().get(2)!.snapshotsSent, 0);
      await until(async () => (await readdir(spool)).length === 0, 'the partial file to be removed');
    } finally {
      proxy.close();
      await Promise.all([a.t.close(), b.t.close()]);
      await rm(spool, { recursive: true, force: true });
    }
  });

  it('refuses a snapshot larger than maxSnapshotBytes before any bytes flow', async () => {
    const a = await startNode(1);
    const b = await startNode(2, { maxSnapshotBytes: 1000 });
    try {
      mesh([a, b]);
      await assert.rejects(a.t.sendSnapshot(2, snapMsg, snapshotChunksOf(new Uint8Array(5000)), 5000), /snapshot of 5000 bytes exceeds maxSnapshotBytes 1000/);
      assert.equal(b.snapshots.length, 0);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('rejects a snapshot for an unknown peer, a non-snap message, and one in flight at close()', async () => {
    const a = await startNode(1, { snapshotChunkBytes: 64 * 1024 });
    const b = await startNode(2);
    try {
      await assert.rejects(a.t.sendSnapshot(5, { ...snapMsg, to: 5 }, snapshotChunksOf(new Uint8Array(10)), 10), PeerUnknown);
      mesh([a, b]);
      await assert.rejects(a.t.sendSnapshot(2, { ...snapMsg, type: 'app' }, snapshotChunksOf(new Uint8Array(10)), 10), /must be a 'snap'/);
      const pending = a.t.sendSnapshot(2, snapMsg, snapshotChunksOf(new Uint8Array(32 * 1024 * 1024)), 32 * 1024 * 1024, () => void a.t.close());
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
    const r = new SnapshotReceiver(1, 2, 1000, join(tmpdir(), 'quorate-spool-unused'));
    r.handle({ type: 'snapshotBegin', payload: encodeSnapshotBegin({ msg: snapMsg, totalBytes: 10 }), offset: 0 });
    const data = new Uint8Array(11);
    const chunk = Buffer.concat([encodeSnapshotChunkHeader(data), data]).subarray(5);
    assert.throws(() => r.handle({ type: 'snapshotChunk', payload: chunk, offset: 50 }), /snapshotChunk overruns the declared 10 bytes \(already 0, chunk 11\)/);
    r.abort();
  });
});
