import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packCanonical } from './commands.js';
import { encodeEnvelope } from './envelope.js';
import { SnapshotCorruptError } from './errors.js';
import { HISTORY_MACHINE_ID, HistoryStateMachine, decodeHistoryPayload, encodeHistoryPayload, type HistoryCommand } from './history.js';
import { createKvState } from './kv-state.js';
import { collectSnapshot, snapshotChunksOf } from './snapshot.js';

const leader = (term: number, id: number, reason: 'startup' | 'election' | 'switchover' | 'leader-unreachable' = 'election', max = 1000): HistoryCommand =>
  ({ kind: 'leader', max, term, leaderId: id, leaderName: `n${id}`, previousLeaderId: term > 1 ? id - 1 || 3 : undefined, previousLeaderName: term > 1 ? 'prev' : undefined, reason });
const entry = (c: HistoryCommand, at: number): Uint8Array => encodeEnvelope({ machine: HISTORY_MACHINE_ID, at, payload: encodeHistoryPayload(c) });

describe('history machine', () => {
  it('applies leader and membership records with the entry index and leader-stamped time', () => {
    const s = createKvState();
    s.registry.apply(1, entry(leader(1, 1, 'startup'), 1000));
    s.registry.apply(2, entry({ kind: 'membership', max: 1000, term: 1, op: 'add', nodeId: 4, nodeName: 'n4', role: 'learner', confIndex: 2 }, 2000));
    s.registry.apply(3, entry(leader(2, 2, 'switchover'), 1500));
    const r = s.history.records();
    assert.equal(r.length, 3);
    assert.deepStrictEqual(r.map((x) => [x.seq, x.index, x.at, x.kind, x.term]), [[1, 1, 1000, 'leader', 1], [2, 2, 2000, 'membership', 1], [3, 3, 1500, 'leader', 2]]);
    assert.equal(s.history.lastLeader()?.reason, 'switchover');
    assert.deepStrictEqual(s.history.records(1).map((x) => x.seq), [3]);
  });

  it('ignores a leader record for a term already recorded (retries, a quorum regained)', () => {
    const h = new HistoryStateMachine();
    const ctx = (index: number) => ({ index, at: index, clockMs: index, idempotencyKey: undefined });
    h.apply(leader(3, 1), ctx(1));
    h.apply(leader(3, 1), ctx(2));
    h.apply(leader(2, 2), ctx(3));
    assert.equal(h.size, 1);
  });

  it('keeps the newest `max` records, the bound carried by each command', () => {
    const h = new HistoryStateMachine();
    for (let t = 1; t <= 10; t++) h.apply(leader(t, 1 + (t % 3), 'election', 4), { index: t, at: t, clockMs: t, idempotencyKey: undefined });
    assert.deepStrictEqual(h.records().map((r) => r.term), [7, 8, 9, 10]);
    h.apply(leader(11, 1, 'election', 2), { index: 11, at: 11, clockMs: 11, idempotencyKey: undefined });
    assert.deepStrictEqual(h.records().map((r) => r.seq), [10, 11]);
  });

  it('refuses malformed payloads as invalid_command on every node (nothing changes)', () => {
    const s = createKvState();
    const bad = encodeEnvelope({ machine: HISTORY_MACHINE_ID, at: 1, payload: packCanonical([1, 'leader', 10, 1, 0, 'x', null, null, 'election']) });
    assert.equal((s.registry.apply(1, bad) as { error: string }).error, 'invalid_command');
    const reason = encodeEnvelope({ machine: HISTORY_MACHINE_ID, at: 1, payload: packCanonical([1, 'leader', 10, 1, 1, 'x', null, null, 'whim']) });
    assert.equal((s.registry.apply(2, reason) as { error: string }).error, 'invalid_command');
    assert.equal(s.history.size, 0);
    assert.throws(() => decodeHistoryPayload(packCanonical([2, 'leader'])), /command format version 2/);
    assert.throws(() => encodeHistoryPayload({ ...leader(1, 1), max: 0 }), /max/);
  });

  it('snapshot round trip: equal bytes, records and checksum; survives the registry composite snapshot', async () => {
    const a = createKvState();
    a.registry.apply(1, entry(leader(1, 1, 'startup'), 100));
    a.registry.apply(2, entry({ kind: 'membership', max: 1000, term: 1, op: 'remove', nodeId: 3, confIndex: 2 }, 200));
    a.registry.apply(3, entry(leader(2, 2, 'leader-unreachable'), 300));
    const bytes = await collectSnapshot(a.registry.snapshot('composite'));
    const b = createKvState();
    await b.registry.restore(snapshotChunksOf(bytes, 7));
    assert.deepStrictEqual(b.history.records(), a.history.records());
    assert.equal(b.history.checksum(), a.history.checksum());
    assert.equal(b.registry.checksum(), a.registry.checksum());
    assert.deepStrictEqual(await collectSnapshot(b.registry.snapshot('composite')), bytes);
    // And it goes on numbering where it left off.
    b.registry.apply(4, entry(leader(3, 3), 400));
    assert.equal(b.history.records().at(-1)?.seq, 4);
  });

  it('an empty history keeps legacy snapshots possible; a non-empty one makes them composite', async () => {
    const s = createKvState({ clusterFeatureLevel: () => 1 });
    assert.equal(s.registry.snapshotFormat, 'legacy');
    s.registry.apply(1, entry(leader(1, 1), 1));
    assert.equal(s.registry.snapshotFormat, 'composite');
  });

  it('validate rejects a corrupt section', async () => {
    const h = new HistoryStateMachine();
    h.apply(leader(1, 1), { index: 5, at: 5, clockMs: 5, idempotencyKey: undefined });
    h.apply(leader(2, 2), { index: 6, at: 6, clockMs: 6, idempotencyKey: undefined });
    const good = await collectSnapshot(h.snapshot());
    await h.validate(snapshotChunksOf(good));
    await new HistoryStateMachine().validate(snapshotChunksOf(new Uint8Array(0)));
    // Truncated.
    await assert.rejects(h.validate(snapshotChunksOf(good.subarray(0, good.length - 3))), SnapshotCorruptError);
    // Trailing bytes.
    await assert.rejects(h.validate(snapshotChunksOf(new Uint8Array([...good, 0, 0, 0, 1, 0xc0]))), (e: unknown) => e instanceof SnapshotCorruptError && e.field === 'history.end');
    // A record with a bad reason: rebuild the section by hand.
    const rec = (t: unknown[]): number[] => {
      const b = packCanonical(t);
      return [0, 0, 0, b.length, ...b];
    };
    const section = new Uint8Array([
      ...rec([1, 1, 1]),
      ...rec([1, 5, 5, 'leader', 1, 1, 'n1', null, null, 'whim']),
    ]);
    await assert.rejects(h.validate(snapshotChunksOf(section)), (e: unknown) => e instanceof SnapshotCorruptError && e.field.startsWith('history.records[0]'));
    // Sequence numbers that do not end at the head's seq.
    const gap = new Uint8Array([...rec([1, 3, 1]), ...rec([1, 5, 5, 'leader', 1, 1, 'n1', null, null, 'election'])]);
    await assert.rejects(h.validate(snapshotChunksOf(gap)), (e: unknown) => e instanceof SnapshotCorruptError && e.field === 'history.records[0].seq');
    // The failed validations changed nothing.
    assert.equal(h.size, 2);
  });
});
