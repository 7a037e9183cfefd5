import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeCommand, packCanonical } from './commands.js';
import { encodeEnvelope } from './envelope.js';
import { SnapshotCorruptError, SnapshotMachineError } from './errors.js';
import { createKvState } from './kv-state.js';
import { resultToTuple } from './results.js';
import type { KvState } from './kv-state.js';
import { COMPOSITE_SNAPSHOT_MAGIC, SECTION_FRAME_BYTES, SNAPSHOT_MAGIC, collectSnapshot, frameSnapshot, snapshotChunksOf } from './snapshot.js';
import { counterMachine } from '../../test/support/kv-state.js';

const put = (key: string, value: string, at: number, idempotencyKey?: string): Uint8Array =>
  encodeCommand({ at, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}), command: { type: 'put', key, value } });
const add = (n: number, at: number, machine = 'counter'): Uint8Array =>
  encodeEnvelope({ machine, at, payload: new TextEncoder().encode(JSON.stringify(n)) });

/** A registry with the KV and a counter whose section spans several frames. */
function twoMachines(o: { pad?: number; chunk?: number; maxFormatVersion?: number } = {}): KvState & { counter: ReturnType<typeof counterMachine> } {
  const s = createKvState(o.maxFormatVersion !== undefined ? { maxFormatVersion: o.maxFormatVersion } : {});
  const counter = counterMachine({ pad: o.pad ?? 2 * SECTION_FRAME_BYTES + 123, chunk: o.chunk ?? 1000 });
  s.registry.register(counter);
  return { ...s, counter };
}

function fill(s: KvState, from: number, n: number): number {
  let i = from;
  for (let k = 0; k < n; k++) {
    s.registry.apply(++i, put(`k/${k % 37}`, `v${i}`, i * 10, k % 5 === 0 ? `ik-${i}` : undefined));
    s.registry.apply(++i, add(k, i * 10));
  }
  s.registry.markApplied(++i);
  return i;
}

describe('composite snapshot (QSMS)', () => {
  it('round-trips two machines, captured at the call while applies go on; equal state gives equal bytes', async () => {
    const a = twoMachines();
    let index = fill(a, 0, 200);
    const sumAtCapture = a.registry.checksum();
    const totalAtCapture = a.counter.total;
    const stream = a.registry.snapshot('composite');
    const chunks: Uint8Array[] = [];
    for await (const c of stream) {
      chunks.push(c.slice());
      assert.ok(c.length <= 1024 * 1024);
      index = fill(a, index, 3); // interleaved applies change both machines
    }
    const bytes = Buffer.concat(chunks);
    assert.equal(bytes.subarray(0, 4).toString(), COMPOSITE_SNAPSHOT_MAGIC);
    const b = twoMachines({ chunk: 7 });
    b.registry.apply(1, put('other', 'x', 1));
    await b.registry.restore(snapshotChunksOf(bytes, 4096));
    assert.equal(b.registry.checksum(), sumAtCapture);
    assert.equal(b.counter.total, totalAtCapture);
    assert.equal(b.kv.get('other'), undefined);
    // Another node with the same state (its machine yields other chunk sizes) writes the same bytes.
    assert.deepStrictEqual(await collectSnapshot(b.registry.snapshot('composite')), new Uint8Array(bytes));
    await b.registry.validate(snapshotChunksOf(bytes, 1));
    // The restored registry goes on applying like the original did.
    assert.notEqual(a.registry.checksum(), sumAtCapture);
  });

  it('refuses a section of a machine this build does not run, naming it, and changes nothing', async () => {
    const a = twoMachines();
    fill(a, 0, 5);
    const bytes = await collectSnapshot(a.registry.snapshot('composite'));
    const kvOnly = createKvState();
    kvOnly.registry.apply(1, put('mine', 'x', 1));
    const before = kvOnly.registry.checksum();
    for (const op of [() => kvOnly.registry.restore(snapshotChunksOf(bytes)), () => kvOnly.registry.validate(snapshotChunksOf(bytes))]) {
      await assert.rejects(op(), (e: unknown) => e instanceof SnapshotMachineError && e.machine === 'counter' && e.code === 'snapshot_machine_unsupported' && /"counter"/.test(e.message));
    }
    assert.equal(kvOnly.registry.checksum(), before);
  });

  it('a registered machine without a section restores to its empty state', async () => {
    const kvOnly = createKvState();
    kvOnly.registry.markApplied(1);
    kvOnly.registry.apply(2, put('a', '1', 5));
    const bytes = await collectSnapshot(kvOnly.registry.snapshot('composite'));
    const b = twoMachines();
    fill(b, 0, 10);
    assert.ok(b.counter.total > 0);
    await b.registry.restore(snapshotChunksOf(bytes));
    assert.equal(b.counter.total, 0);
    assert.equal(b.kv.get('a')?.value, '1');
    assert.equal(b.registry.appliedIndex, 2);
  });

  it('refuses a corrupt or truncated stream with its offset and field, and changes no machine', async () => {
    const a = twoMachines();
    fill(a, 0, 50);
    const good = await collectSnapshot(a.registry.snapshot('composite'));
    const t = twoMachines();
    fill(t, 0, 3);
    const before = t.registry.checksum();
    const total = t.counter.total;
    const expect = async (bytes: Uint8Array, check: (e: SnapshotCorruptError) => void): Promise<void> => {
      for (const size of [1 << 20, 13]) {
        await assert.rejects(t.registry.restore(snapshotChunksOf(bytes, size)), (e: unknown) => {
          assert.ok(e instanceof SnapshotCorruptError, String(e));
          check(e);
          return true;
        });
        await assert.rejects(t.registry.validate(snapshotChunksOf(bytes, size)), SnapshotCorruptError);
        assert.equal(t.registry.checksum(), before);
        assert.equal(t.counter.total, total);
      }
    };
    const n = good.length;
    await expect(good.subarray(0, n - 1), (e) => assert.deepEqual([e.field, e.offset], ['checksum', n - 32]));
    await expect(good.subarray(0, n - 100), (e) => assert.match(e.field, /^kv\.|frame/));
    await expect(good.subarray(0, 6), (e) => assert.deepEqual([e.field, e.offset], ['header', 6]));
    const trailer = good.slice();
    trailer[n - 1]! ^= 1;
    await expect(trailer, (e) => assert.deepEqual([e.field, e.offset], ['checksum', n - 32]));
    await expect(Buffer.concat([good, new Uint8Array([1])]), (e) => assert.equal(e.field, 'trailer'));
    // A byte of the counter's padding: the counter itself refuses it; the offset is mapped into the snapshot.
    const pad = good.indexOf('.'.charCodeAt(0)) + SECTION_FRAME_BYTES + 50;
    const flipped = good.slice();
    flipped[pad] = 'x'.charCodeAt(0);
    await expect(flipped, (e) => assert.deepEqual([e.field, e.offset], ['counter.pad', pad]));
    // The counter section (id "counter" sorts before "kv") was read and built before the KV's failed: still nothing changed.
    const kvBroken = good.slice();
    kvBroken[n - 40]! ^= 0xff;
    await expect(kvBroken, (e) => assert.ok(e.offset > pad && e.offset <= n - 32, e.message));
  });

  it('restores a legacy QKVS 2 snapshot (previous release): the KV and the registry state (applied index, clock, sessions)', async () => {
    const a = createKvState();
    a.registry.apply(1, put('a', '1', 100, 'key-1'));
    a.registry.apply(2, put('b', '2', 200));
    a.registry.markApplied(3);
    // Built by hand, as the previous release wrote it.
    const keys = a.kv.range('', 10).records.map((r) => [r.key, r.value, r.createRevision, r.modRevision, r.version, null]);
    const sessions = [...a.registry.sessionRecords()].map((s) => [s.key, s.atMs, resultToTuple(s.result), s.fingerprint ?? null]);
    const body = packCanonical([3, a.kv.revision, 200, keys, sessions]);
    const legacy = frameSnapshot(body, 2);
    assert.deepStrictEqual(await collectSnapshot(a.registry.snapshot('legacy')), legacy, 'legacy snapshots are written byte for byte as the previous release did');
    const b = twoMachines();
    fill(b, 0, 4);
    await b.registry.restore(snapshotChunksOf(legacy, 10));
    assert.equal(b.registry.appliedIndex, 3);
    assert.equal(b.registry.clockMs, 200);
    assert.equal(b.registry.sessionCount, 1);
    assert.equal(b.kv.get('b')?.value, '2');
    assert.equal(b.counter.total, 0, 'machines other than the KV restore empty from a legacy snapshot');
    // The session answers a retry.
    assert.deepStrictEqual(b.registry.apply(4, put('a', '1', 300, 'key-1')), { revision: 1 });
  });

  it('a registry run as the previous release writes and reads only QKVS, and refuses the composite as that release did', async () => {
    const neu = createKvState();
    neu.registry.apply(1, put('a', '1', 1));
    const composite = await collectSnapshot(neu.registry.snapshot('composite'));
    const old = createKvState({ maxFormatVersion: 1 });
    assert.equal(old.registry.snapshotFormat, 'legacy');
    for (const op of [() => old.registry.restore(snapshotChunksOf(composite)), () => old.registry.validate(snapshotChunksOf(composite))]) {
      await assert.rejects(op(), (e: unknown) => e instanceof SnapshotCorruptError && e.field === 'magic' && e.offset === 1 && /expected "QKVS"$/.test(e.message));
    }
    const legacy = await collectSnapshot(neu.registry.snapshot('legacy'));
    assert.equal(Buffer.from(legacy.subarray(0, 4)).toString(), SNAPSHOT_MAGIC);
    await old.registry.restore(snapshotChunksOf(legacy));
    assert.equal(old.kv.get('a')?.value, '1');
    assert.equal(Buffer.from((await collectSnapshot(old.registry.snapshot())).subarray(0, 4)).toString(), SNAPSHOT_MAGIC);
  });

  it('the format written follows the cluster feature level', async () => {
    let level = 1;
    const s = createKvState({ clusterFeatureLevel: () => level });
    s.registry.apply(1, put('a', '1', 1));
    const magic = async (): Promise<string> => Buffer.from((await collectSnapshot(s.registry.snapshot())).subarray(0, 4)).toString();
    assert.equal(await magic(), SNAPSHOT_MAGIC);
    level = 2;
    assert.equal(await magic(), COMPOSITE_SNAPSHOT_MAGIC);
    // Either format restores to the same state (same checksum).
    const x = createKvState();
    const y = createKvState();
    await x.registry.restore(s.registry.snapshot('legacy'));
    await y.registry.restore(s.registry.snapshot('composite'));
    assert.equal(x.registry.checksum(), s.registry.checksum());
    assert.equal(y.registry.checksum(), s.registry.checksum());
  });
});
