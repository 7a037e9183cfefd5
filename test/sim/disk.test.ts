import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom } from '../../src/raft/prng.js';
import type { Entry } from '../../src/raft/types.js';
import { SimDisk } from './disk.js';

const M = { members: [{ id: 1, role: 'voter' as const }], removed: [] };
const e = (index: number, term: number): Entry => ({ index, term, type: 'normal', data: new Uint8Array([index]) });

test('synced writes survive a crash; unsynced ones do not (no tear)', () => {
  const d = new SimDisk({ index: 0, term: 0, membership: M }, new Uint8Array());
  d.write({ kind: 'entries', entries: [e(1, 1), e(2, 1)] });
  d.write({ kind: 'hardState', hardState: { term: 1, vote: 1, commit: 1 } });
  d.sync();
  d.write({ kind: 'entries', entries: [e(3, 1)] });
  d.write({ kind: 'hardState', hardState: { term: 2, vote: 0, commit: 2 } });
  const rep = d.crash(new SeededRandom(1), 0);
  assert.deepEqual(rep, { lostWrites: 2, torn: false });
  const st = d.recover();
  assert.deepEqual(st.entries.map((x) => x.index), [1, 2]);
  assert.deepEqual(st.hardState, { term: 1, vote: 1, commit: 1 });
});

test('a torn crash keeps a prefix of the unsynced writes, in order, and never a gap', () => {
  for (let seed = 1; seed < 200; seed++) {
    const d = new SimDisk({ index: 0, term: 0, membership: M }, new Uint8Array());
    d.write({ kind: 'entries', entries: [e(1, 1)] });
    d.sync();
    d.write({ kind: 'entries', entries: [e(2, 1), e(3, 1), e(4, 1)] });
    d.write({ kind: 'hardState', hardState: { term: 1, vote: 1, commit: 3 } });
    d.write({ kind: 'entries', entries: [e(3, 2), e(4, 2)] });
    d.crash(new SeededRandom(seed), 1);
    const st = d.recover(); // throws on a gap
    const idx = st.entries.map((x) => x.index);
    assert.deepEqual(idx, Array.from({ length: idx.length }, (_, i) => i + 1));
    if (st.hardState.commit === 3) assert.ok(idx.length >= 3, 'hard state is written after the entries it covers');
  }
});

test('an installed snapshot replaces the log; a local snapshot compacts it', () => {
  const d = new SimDisk({ index: 0, term: 0, membership: M }, new Uint8Array());
  d.write({ kind: 'entries', entries: [e(1, 1), e(2, 1), e(3, 1)] });
  d.sync();
  d.saveSnapshot({ index: 2, term: 1, membership: M }, new Uint8Array([9]));
  assert.deepEqual(d.recover().entries.map((x) => x.index), [3]);
  d.write({ kind: 'snapshot', meta: { index: 10, term: 3, membership: M }, bytes: new Uint8Array([7]) });
  d.write({ kind: 'entries', entries: [e(11, 3)] });
  d.sync();
  const st = d.recover();
  assert.equal(st.snapshot.index, 10);
  assert.deepEqual(st.entries.map((x) => x.index), [11]);
});
