import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom } from '../raft/prng.js';
import { encodeCommand } from './commands.js';
import type { Command, TxnOp } from './commands.js';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import { KvStateMachine } from './kv.js';
import { SNAPSHOT_HEADER_BYTES } from './snapshot.js';

/**
 * A seeded random command stream touching every command type, idempotency
 * keys, TTLs and time. A "leader" machine applies it as it is generated, so
 * expire commands name keys that really are due (as the real leader does).
 */
function randomEntries(seed: number, n: number): Uint8Array[] {
  const rnd = new SeededRandom(seed);
  const leader = new KvStateMachine({ sessionMax: 20, sessionTtlMs: 5000 });
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

function feed(kv: KvStateMachine, entries: readonly Uint8Array[]): unknown[] {
  return entries.map((data, i) => kv.apply(i + 1, data));
}

describe('determinism', () => {
  it('two state machines fed the same seeded command sequence give identical results, checksums and snapshot bytes', () => {
    for (const seed of [1, 2, 3]) {
      const entries = randomEntries(seed, 3000);
      const a = new KvStateMachine({ sessionMax: 20, sessionTtlMs: 5000, watchHistoryEvents: 10 });
      const b = new KvStateMachine({ sessionMax: 20, sessionTtlMs: 5000 }); // watch history is node-local
      assert.deepEqual(feed(a, entries), feed(b, entries), `seed ${seed}`);
      assert.equal(a.checksum(), b.checksum(), `seed ${seed}`);
      assert.deepEqual(a.snapshot(), b.snapshot(), `seed ${seed}`);
      const results = feed(new KvStateMachine({ sessionMax: 20, sessionTtlMs: 5000 }), entries);
      const expired = results.reduce<number>((n, r) => n + ((r as { expired?: number }).expired ?? 0), 0);
      assert.ok(a.size > 0 && a.revision > 100 && expired > 10 && a.sessionCount > 0, `seed ${seed} exercised the store (expired ${expired})`);
    }
  });

  it('a node restored from a mid-stream snapshot converges with one that applied everything', () => {
    const entries = randomEntries(42, 2000);
    const full = new KvStateMachine();
    feed(full, entries);
    const early = new KvStateMachine();
    feed(early, entries.slice(0, 1000));
    const late = new KvStateMachine();
    late.restore(early.snapshot());
    for (let i = 1000; i < entries.length; i++) late.apply(i + 1, entries[i]!);
    assert.equal(late.checksum(), full.checksum());
    assert.deepEqual(late.snapshot(), full.snapshot());
  });
});

describe('snapshot', () => {
  it('restore of a snapshot reproduces the state exactly', () => {
    const a = new KvStateMachine();
    feed(a, randomEntries(9, 1500));
    const snap = a.snapshot();
    const b = new KvStateMachine();
    b.restore(snap);
    assert.equal(b.appliedIndex, a.appliedIndex);
    assert.equal(b.revision, a.revision);
    assert.equal(b.clockMs, a.clockMs);
    assert.equal(b.checksum(), a.checksum());
    assert.deepEqual(b.range('', 1000), a.range('', 1000));
    assert.deepEqual(b.expiredKeys(Number.MAX_SAFE_INTEGER, 1000), a.expiredKeys(Number.MAX_SAFE_INTEGER, 1000));
    assert.deepEqual(b.snapshot(), snap);
  });

  it('an empty store round-trips', () => {
    const b = new KvStateMachine();
    b.restore(new KvStateMachine().snapshot());
    assert.equal(b.revision, 0);
    assert.equal(b.size, 0);
  });

  it('rejects a corrupt snapshot, naming offset and field, and keeps the old state', () => {
    const a = new KvStateMachine();
    feed(a, randomEntries(5, 300));
    const good = a.snapshot();
    const target = new KvStateMachine();
    target.apply(1, encodeCommand({ at: 1, command: { type: 'put', key: 'mine', value: 'x' } }));
    const before = target.checksum();
    const expectCorrupt = (bytes: Uint8Array, field: string, offset: number): void => {
      assert.throws(() => target.restore(bytes), (e: unknown) => e instanceof SnapshotCorruptError && e.code === 'snapshot_corrupt' && e.field === field && e.offset === offset);
      assert.equal(target.checksum(), before);
    };
    const flipped = good.slice();
    flipped[SNAPSHOT_HEADER_BYTES + 10]! ^= 0x01;
    expectCorrupt(flipped, 'checksum', 16);
    const badDigest = good.slice();
    badDigest[20]! ^= 0xff;
    expectCorrupt(badDigest, 'checksum', 16);
    expectCorrupt(good.subarray(0, good.length - 1), 'bodyLength', 8);
    expectCorrupt(good.subarray(0, 20), 'header', 20);
    const badMagic = good.slice();
    badMagic[1] = 0x00;
    expectCorrupt(badMagic, 'magic', 1);
    const newer = good.slice();
    new DataView(newer.buffer).setUint32(4, 99);
    assert.throws(() => target.restore(newer), SnapshotVersionError);
    assert.equal(target.get('mine')?.value, 'x');
  });
});
