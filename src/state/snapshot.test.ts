import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom } from '../raft/prng.js';
import { encodeCommand, packCanonical } from './commands.js';
import type { Command, TxnOp } from './commands.js';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import { TestKv } from '../../test/support/kv-state.js';
import { ChunkBuilder, collectSnapshot, frameSnapshot, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_HEADER_BYTES, SNAPSHOT_STREAM_HEADER_BYTES, snapshotChunksOf } from './snapshot.js';

/**
 * A seeded random command stream touching every command type, idempotency
 * keys, TTLs and time. A "leader" machine applies it as it is generated, so
 * expire commands name keys that really are due (as the real leader does).
 */
function randomEntries(seed: number, n: number): Uint8Array[] {
  const rnd = new SeededRandom(seed);
  const leader = new TestKv({ sessionMax: 20, sessionTtlMs: 5000 });
  const key = () => `k/${rnd.int(40)}`;
  const val = () => (rnd.chance(0.1) ? 'ü✓'.repeat(rnd.int(5)) : String(rnd.int(1000)));
  const uniqueOps = (): TxnOp[] => {
    const seen = new Set<string>();
    const ops: TxnOp[] = [];
    for (let i = rnd.int(4); i > 0; i--) {
      const k = key();
      if (seen.has(k)) continue;
      seen.add(k);
      ops.push(rnd.chance(0.7) ? { type: 'put', key: k, value: val() } : { type: 'delete', key: k });
    }
    return ops;
  };
  const out: Uint8Array[] = [];
  let at = 1_000_000;
  for (let i = 0; i < n; i++) {
    at += rnd.int(200) - 20; // mostly forward, sometimes back (leader change)
    const p = rnd.next();
    let command: Command;
    if (p < 0.4) {
      command = { type: 'put', key: key(), value: val(), ...(rnd.chance(0.3) ? { ifRevision: rnd.int(i + 1) } : {}), ...(rnd.chance(0.3) ? { ttlMs: 1 + rnd.int(3000) } : {}) };
    } else if (p < 0.55) {
      command = { type: 'delete', key: key(), ...(rnd.chance(0.3) ? { ifRevision: rnd.int(i + 1) } : {}) };
    } else if (p < 0.8) {
      command = {
        type: 'txn',
        compare: [{ key: key(), target: 'version', op: rnd.chance(0.5) ? '>' : '<', value: rnd.int(3) }],
        success: uniqueOps(),
        failure: uniqueOps(),
      };
    } else if (p < 0.9) {
      const due = leader.expiredKeys(at, 3);
      command = { type: 'expire', keys: rnd.chance(0.2) ? [...due, { key: key(), modRevision: rnd.int(i + 1) }] : due };
    } else {
      command = { type: 'noop' };
    }
    const ik = rnd.chance(0.3) ? `c${rnd.int(50)}` : undefined;
    const data = rnd.chance(0.05) ? new Uint8Array() : encodeCommand(ik === undefined ? { at, command } : { at, idempotencyKey: ik, command });
    leader.apply(i + 1, data);
    out.push(data);
  }
  return out;
}

function feed(kv: TestKv, entries: readonly Uint8Array[]): unknown[] {
  return entries.map((data, i) => kv.apply(i + 1, data));
}

describe('determinism', () => {
  it('two state machines fed the same seeded command sequence give identical results, checksums and snapshot bytes', async () => {
    for (const seed of [1, 2, 3]) {
      const entries = randomEntries(seed, 3000);
      const a = new TestKv({ sessionMax: 20, sessionTtlMs: 5000, watchHistoryEvents: 10 });
      const b = new TestKv({ sessionMax: 20, sessionTtlMs: 5000 }); // watch history is node-local
      assert.deepEqual(feed(a, entries), feed(b, entries), `seed ${seed}`);
      assert.equal(a.checksum(), b.checksum(), `seed ${seed}`);
      assert.deepEqual(await collectSnapshot(a.snapshot()), await collectSnapshot(b.snapshot()), `seed ${seed}`);
      const results = feed(new TestKv({ sessionMax: 20, sessionTtlMs: 5000 }), entries);
      const expired = results.reduce<number>((n, r) => n + ((r as { expired?: number }).expired ?? 0), 0);
      assert.ok(a.size > 0 && a.revision > 100 && expired > 10 && a.sessionCount > 0, `seed ${seed} exercised the store (expired ${expired})`);
    }
  });

  it('a snapshot that yields to the loop between slices of keys has the same bytes, whatever is applied while it waits', async () => {
    // 2000 distinct keys (about 8 slices), then the random mix over some of them.
    const entries = [
      ...Array.from({ length: 2000 }, (_, i) => encodeCommand({ at: 1_000_000 + i, command: { type: 'put', key: `k/${i}`, value: `v${i}` } })),
      ...randomEntries(5, 500),
    ];
    const plain = new TestKv();
    feed(plain, entries);
    const expected = await collectSnapshot(plain.snapshot());
    const later = randomEntries(6, 400);
    let next = 0;
    let pauses = 0;
    const live: TestKv = new TestKv({
      yieldToLoop: async () => {
        pauses++;
        // Entries applied while the snapshot waits (as on a live node).
        for (let i = 0; i < 20 && next < later.length; i++, next++) live.apply(entries.length + next + 1, later[next]!);
      },
    });
    feed(live, entries);
    assert.ok(live.size > 1500, `enough keys for several slices (${live.size})`);
    assert.deepEqual(await collectSnapshot(live.snapshot()), expected);
    assert.ok(pauses >= Math.floor(live.size / 256) - 1 && next > 0, `paused ${pauses} times, applied ${next} entries meanwhile`);
  });

  it('a node restored from a mid-stream snapshot converges with one that applied everything', async () => {
    const entries = randomEntries(42, 2000);
    const full = new TestKv();
    feed(full, entries);
    const early = new TestKv();
    feed(early, entries.slice(0, 1000));
    const late = new TestKv();
    await late.restore(early.snapshot());
    for (let i = 1000; i < entries.length; i++) late.apply(i + 1, entries[i]!);
    assert.equal(late.checksum(), full.checksum());
    assert.deepEqual(await collectSnapshot(late.snapshot()), await collectSnapshot(full.snapshot()));
  });
});

describe('snapshot', () => {
  it('restore of a snapshot reproduces the state exactly', async () => {
    const a = new TestKv();
    feed(a, randomEntries(9, 1500));
    const snap = await collectSnapshot(a.snapshot());
    const b = new TestKv();
    await b.restore(snapshotChunksOf(snap));
    assert.equal(b.appliedIndex, a.appliedIndex);
    assert.equal(b.revision, a.revision);
    assert.equal(b.clockMs, a.clockMs);
    assert.equal(b.checksum(), a.checksum());
    assert.deepEqual(b.range('', 1000), a.range('', 1000));
    assert.deepEqual(b.expiredKeys(Number.MAX_SAFE_INTEGER, 1000), a.expiredKeys(Number.MAX_SAFE_INTEGER, 1000));
    assert.deepEqual(await collectSnapshot(b.snapshot()), snap);
  });

  it('an empty store round-trips', async () => {
    const b = new TestKv();
    await b.restore(new TestKv().snapshot());
    assert.equal(b.revision, 0);
    assert.equal(b.size, 0);
  });

  it('rejects a corrupt or truncated stream, naming offset and field, and keeps the old state', async () => {
    const a = new TestKv();
    feed(a, randomEntries(5, 300));
    const good = await collectSnapshot(a.snapshot());
    const target = new TestKv();
    target.apply(1, encodeCommand({ at: 1, command: { type: 'put', key: 'mine', value: 'x' } }));
    const before = target.checksum();
    const expectCorrupt = async (bytes: Uint8Array, field: string, offset: number): Promise<void> => {
      for (const chunkBytes of [1 << 20, 7]) {
        await assert.rejects(target.restore(snapshotChunksOf(bytes, chunkBytes)), (e: unknown) => {
          assert.ok(e instanceof SnapshotCorruptError, String(e));
          assert.equal(e.code, 'snapshot_corrupt');
          assert.deepEqual([e.field, e.offset], [field, offset], e.message);
          return true;
        });
        await assert.rejects(new TestKv().validate(snapshotChunksOf(bytes, chunkBytes)), SnapshotCorruptError);
        assert.equal(target.checksum(), before);
      }
    };
    const n = good.length;
    const badTrailer = good.slice();
    badTrailer[n - 5]! ^= 0x01;
    await expectCorrupt(badTrailer, 'checksum', n - 32);
    await expectCorrupt(good.subarray(0, n - 1), 'checksum', n - 32);
    await expectCorrupt(Buffer.concat([good, new Uint8Array([0])]), 'trailer', n);
    await expectCorrupt(good.subarray(0, 20), 'head', SNAPSHOT_STREAM_HEADER_BYTES);
    await expectCorrupt(good.subarray(0, 5), 'header', 5);
    const badMagic = good.slice();
    badMagic[1] = 0x00;
    await expectCorrupt(badMagic, 'magic', 1);
    const zeroLength = good.slice();
    zeroLength.fill(0, SNAPSHOT_STREAM_HEADER_BYTES, SNAPSHOT_STREAM_HEADER_BYTES + 4);
    await expectCorrupt(zeroLength, 'head', SNAPSHOT_STREAM_HEADER_BYTES);
    // A flipped byte in the middle: caught by the record checks or, at the latest, by the trailer.
    for (const at of [n >> 1, n >> 2, n - 40]) {
      const flipped = good.slice();
      flipped[at]! ^= 0x20;
      await assert.rejects(target.restore(snapshotChunksOf(flipped)), (e: unknown) => e instanceof SnapshotCorruptError && e.offset >= SNAPSHOT_STREAM_HEADER_BYTES && e.offset <= n - 32);
      assert.equal(target.checksum(), before);
    }
    const newer = good.slice();
    new DataView(newer.buffer).setUint32(4, 99);
    await assert.rejects(target.restore(snapshotChunksOf(newer)), (e: unknown) => e instanceof SnapshotVersionError && /format version 99 is not supported .*up to 1/.test(e.message));
    assert.equal(target.get('mine')?.value, 'x');
    await new TestKv().validate(snapshotChunksOf(good, 5));
  });

  it('a format-2 snapshot (previous release) still restores to the same state', async () => {
    const a = new TestKv();
    feed(a, randomEntries(11, 500));
    const keys = a.range('', 10_000).records.map((r) => [r.key, r.value, r.createRevision, r.modRevision, r.version, r.leaseDeadlineMs ?? null]);
    const v2 = frameSnapshot(packCanonical([a.appliedIndex, a.revision, a.clockMs, keys, []]), 2);
    const b = new TestKv();
    await b.restore(snapshotChunksOf(v2, 1000));
    assert.deepEqual(b.range('', 10_000), a.range('', 10_000));
    assert.equal(b.revision, a.revision);
    const corrupt = v2.slice();
    corrupt[SNAPSHOT_HEADER_BYTES + 3]! ^= 1;
    await assert.rejects(new TestKv().restore(snapshotChunksOf(corrupt)), (e: unknown) => e instanceof SnapshotCorruptError && e.field === 'checksum' && e.offset === 16);
  });
});

describe('streaming snapshot', () => {
  const put = (key: string, value: string): Uint8Array => encodeCommand({ at: 5, command: { type: 'put', key, value } });
  const del = (key: string): Uint8Array => encodeCommand({ at: 5, command: { type: 'delete', key } });

  it('streams the state as of the call in chunks of at most 1 MiB while applies go on', async () => {
    const a = new TestKv();
    let i = 0;
    const value = 'v'.repeat(1000);
    for (let k = 0; k < 4000; k++) a.apply(++i, put(`key/${String(k).padStart(5, '0')}`, `${k}:${value}`));
    const atCapture = await collectSnapshot(a.snapshot());
    const checksumAtCapture = a.checksum();
    const stream = a.snapshot();
    const chunks: Uint8Array[] = [];
    let round = 0;
    for await (const c of stream) {
      assert.ok(c.length > 0 && c.length <= SNAPSHOT_CHUNK_BYTES, `chunk of ${c.length} bytes`);
      chunks.push(c.slice());
      // Between chunks: rewrite keys already streamed and not yet streamed, delete some, create new ones.
      round++;
      for (let k = 0; k < 4000; k += 97) a.apply(++i, put(`key/${String((k + round) % 4000).padStart(5, '0')}`, `changed ${round}`));
      a.apply(++i, del(`key/${String(3999 - round).padStart(5, '0')}`));
      a.apply(++i, del(`key/${String(round * 13).padStart(5, '0')}`));
      a.apply(++i, put(`key/${String(round * 13).padStart(5, '0')}`, 'recreated'));
      a.apply(++i, put(`new/${round}`, 'new'));
    }
    assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
    const streamed = Buffer.concat(chunks);
    assert.deepEqual(new Uint8Array(streamed), atCapture, 'the stream holds the state as of the call');
    const b = new TestKv();
    await b.restore(snapshotChunksOf(streamed, 4096));
    assert.equal(b.checksum(), checksumAtCapture);
    assert.equal(b.get('new/1'), undefined);
    assert.equal(b.get('key/00001')?.value, `1:${value}`);
    assert.notEqual(a.checksum(), checksumAtCapture);
    // Once the stream ended, later snapshots see the live state.
    const c = new TestKv();
    await c.restore(a.snapshot());
    assert.equal(c.checksum(), a.checksum());
  });

  it('two streams open at once each keep their own capture; a restore meanwhile does not disturb them', async () => {
    const a = new TestKv();
    a.apply(1, put('x', '1'));
    const first = a.snapshot();
    a.apply(2, put('x', '2'));
    const second = a.snapshot();
    a.apply(3, put('x', '3'));
    a.apply(4, del('x'));
    const other = new TestKv();
    other.apply(9, put('y', 'z'));
    await a.restore(other.snapshot());
    a.apply(10, put('x', 'after restore'));
    const one = new TestKv();
    await one.restore(first);
    const two = new TestKv();
    await two.restore(second);
    assert.deepEqual([one.get('x')?.value, one.appliedIndex], ['1', 1]);
    assert.deepEqual([two.get('x')?.value, two.appliedIndex], ['2', 2]);
    assert.equal(a.get('y')?.value, 'z');
  });

});

describe('ChunkBuilder', () => {
  it('a record written in place (reserve, commit) gives the same chunks and digest as one written through write(), across chunk ends', () => {
    const rng = new SeededRandom(7);
    // Record sizes around the chunk's end: small keys, 64 KiB values, and sizes that land exactly on it.
    const sizes: number[] = [];
    for (let total = 0; total < 3.5 * SNAPSHOT_CHUNK_BYTES;) {
      const size = rng.int(10) === 0 ? 65536 + rng.int(300) : rng.int(600);
      sizes.push(size);
      total += 4 + size;
    }
    sizes.push(SNAPSHOT_CHUNK_BYTES - 4, 0, SNAPSHOT_CHUNK_BYTES + 10);
    const body = (i: number, size: number): Buffer => Buffer.alloc(size, i % 251);
    const plain = new ChunkBuilder();
    const inPlace = new ChunkBuilder();
    let placed = 0;
    sizes.forEach((size, i) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(size);
      plain.write(len);
      plain.write(body(i, size));
      const at = inPlace.reserve(size);
      if (at < 0) return inPlace.record(body(i, size));
      placed++;
      inPlace.buffer.fill(i % 251, at, at + size);
      inPlace.commit(size);
    });
    assert.deepEqual(inPlace.finish(), plain.finish());
    assert.deepEqual(inPlace.full.map((c) => c.length), plain.full.map((c) => c.length));
    assert.deepEqual(Buffer.concat(inPlace.full), Buffer.concat(plain.full));
    assert.ok(placed > sizes.length / 2 && placed < sizes.length, `${placed} of ${sizes.length} records written in place`);
  });
});
