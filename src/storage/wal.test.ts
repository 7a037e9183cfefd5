import { collectSnapshot, snapshotChunksOf } from '../state/snapshot.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WalStorage } from './wal.js';
import { SnapshotStore } from './snapshot.js';
import { CorruptLogError, InvalidAppendError, StorageError } from './errors.js';
import { SEGMENT_HEADER_BYTES, RECORD_HEADER_BYTES, ENTRY_FIXED_BYTES } from './codec.js';
import { ent, meta, plain, range, recordsEnd, segmentFiles, tempDir, toLegacyV1 } from '../../test/support/storage.js';

const SMALL = { segmentBytesMax: 1024 };
const recBytes = (size: number): number => RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES + size;

async function writeLog(dir: string, entries = range(1, 10, 1), opts = {}): Promise<void> {
  const { storage } = await WalStorage.open(dir, opts);
  await storage.save({ term: entries.at(-1)?.term ?? 0, vote: 1, commit: 0 }, entries, true);
  await storage.close();
}

async function flipByte(path: string, offset: number): Promise<void> {
  const b = await readFile(path);
  b[offset] = b[offset]! ^ 0x5a;
  await writeFile(path, b);
}

test('entries appended across segment rolls are recovered in order', async (t) => {
  const dir = await tempDir(t);
  const all = range(1, 100, 1, 40);
  {
    const { storage, state } = await WalStorage.open(dir, SMALL);
    assert.deepEqual(state.entries, []);
    assert.equal(state.snapshot, undefined);
    storage.setHardState({ term: 2, vote: 1, commit: 0 });
    for (let i = 0; i < all.length; i += 7) {
      await storage.append(all.slice(i, i + 7));
      await storage.sync();
    }
    assert.equal(storage.lastIndex, 100);
    await storage.close();
  }
  const files = await segmentFiles(dir);
  assert.ok(files.length > 3, `expected several segments, got ${files.length}`);
  assert.equal(files[0], '00000000000000000001.seg');
  for (const f of files) assert.ok((await stat(join(dir, 'wal', f))).size <= 1024);
  const { storage, state } = await WalStorage.open(dir, SMALL);
  assert.deepEqual(state.warnings, []);
  assert.deepEqual(plain(state.entries), plain(all));
  // The name of each segment is the index of its first entry.
  const firsts = files.map((f) => Number(f.slice(0, 20)));
  for (const first of firsts) assert.equal(state.entries[first - 1]!.index, first);
  await storage.append(range(101, 105, 2));
  await storage.sync();
  await storage.close();
  const again = await WalStorage.open(dir, SMALL);
  assert.deepEqual(plain(again.state.entries), plain([...all, ...range(101, 105, 2)]));
  await again.storage.close();
});

test('a conflicting suffix is truncated across segments before the new entries are written', async (t) => {
  const dir = await tempDir(t);
  await writeLog(dir, range(1, 60, 1, 40), SMALL);
  const before = await segmentFiles(dir);
  {
    const { storage } = await WalStorage.open(dir, SMALL);
    await storage.append(range(20, 25, 2, 40));
    await storage.sync();
    assert.equal(storage.lastIndex, 25);
    await storage.close();
  }
  const after = await segmentFiles(dir);
  assert.ok(after.length < before.length, 'segments after the conflict were removed');
  const { storage, state } = await WalStorage.open(dir, SMALL);
  assert.deepEqual(plain(state.entries), plain([...range(1, 19, 1, 40), ...range(20, 25, 2, 40)]));
  await storage.close();
});

test('a conflicting suffix inside the active segment is truncated, synced or not', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.append(range(1, 10, 1));
  await storage.sync();
  await storage.append(range(11, 12, 1)); // pending, not yet written
  await storage.append([ent(12, 2)]); // conflict inside the pending buffer
  await storage.append([ent(8, 3), ent(9, 3)]); // conflict inside the written file
  await storage.sync();
  await storage.close();
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.deepEqual(plain(state.entries), plain([...range(1, 7, 1), ent(8, 3), ent(9, 3)]));
  await s2.close();
});

test('entries already stored with the same term are skipped, not rewritten', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.append(range(1, 5, 1));
  await storage.sync();
  const end = await recordsEnd(join(dir, 'wal', '00000000000000000001.seg'));
  await storage.append(range(3, 7, 1));
  await storage.sync();
  assert.equal(await recordsEnd(join(dir, 'wal', '00000000000000000001.seg')), end + 2 * recBytes(16));
  await storage.close();
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.deepEqual(plain(state.entries), plain(range(1, 7, 1)));
  await s2.close();
});

test('appends that would leave a gap, go backwards or overwrite the snapshot are rejected', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.append(range(1, 5, 2));
  await assert.rejects(storage.append([ent(7, 2)]), (e: unknown) => e instanceof InvalidAppendError && e.code === 'invalid_append' && /gap/.test(e.message));
  await assert.rejects(storage.append([ent(6, 2), ent(8, 2)]), /not contiguous/);
  await assert.rejects(storage.append([ent(6, 1)]), /lower than the previous entry's term/);
  await storage.saveSnapshot(meta(3, 2), snapshotChunksOf(new Uint8Array([1])));
  await assert.rejects(storage.append([ent(2, 9)]), /at or below the snapshot index 3/);
  // A rejected append changes nothing and does not poison the storage.
  await storage.append([ent(6, 2)]);
  await storage.sync();
  assert.equal(storage.lastIndex, 6);
  await storage.close();
});

test('a torn final record in a version-1 segment (previous release) is truncated and reported', async (t) => {
  const dir = await tempDir(t);
  await writeLog(dir);
  await toLegacyV1(dir);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const full = (await stat(seg)).size;
  await truncate(seg, full - 5); // short payload
  const { storage, state } = await WalStorage.open(dir);
  assert.deepEqual(plain(state.entries), plain(range(1, 9, 1)));
  assert.equal(state.warnings.length, 1);
  assert.match(state.warnings[0]!, /torn final record/);
  assert.ok(state.warnings[0]!.includes(seg));
  assert.ok(state.warnings[0]!.includes(`byte offset ${full - recBytes(16)}`));
  assert.equal((await stat(seg)).size, full - recBytes(16), 'the torn bytes are cut off');
  await storage.append([ent(10, 1)]);
  await storage.sync();
  await storage.close();
  const again = await WalStorage.open(dir);
  assert.deepEqual(again.state.warnings, []);
  assert.deepEqual(plain(again.state.entries), plain(range(1, 10, 1)));
  await again.storage.close();
});

test('in a version-1 segment (previous release) a torn record header, a zero-filled tail and a bad checksum in the last record are all truncated', async (t) => {
  const cases: [string, (seg: string, size: number) => Promise<void>][] = [
    ['short header', (seg, size) => truncate(seg, size - recBytes(16) + 3)],
    ['zero-filled tail', (seg) => appendFile(seg, new Uint8Array(4096))],
    ['bad checksum', (seg, size) => flipByte(seg, size - 2)],
  ];
  for (const [name, damage] of cases) {
    const dir = await tempDir(t);
    await writeLog(dir);
    await toLegacyV1(dir);
    const seg = join(dir, 'wal', '00000000000000000001.seg');
    await damage(seg, (await stat(seg)).size);
    const { storage, state } = await WalStorage.open(dir);
    const expected = name === 'zero-filled tail' ? range(1, 10, 1) : range(1, 9, 1);
    assert.deepEqual(plain(state.entries), plain(expected), name);
    assert.equal(state.warnings.length, 1, name);
    assert.match(state.warnings[0]!, /torn final record/, name);
    await storage.close();
  }
});

test('a bad checksum in the middle of the log throws CorruptLogError naming the file and offset', async (t) => {
  const dir = await tempDir(t);
  await writeLog(dir);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const offset = SEGMENT_HEADER_BYTES + 4 * recBytes(16); // record of index 5
  await flipByte(seg, offset + RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES + 3);
  await assert.rejects(WalStorage.open(dir), (e: unknown) => {
    assert.ok(e instanceof CorruptLogError);
    assert.equal(e.code, 'corrupt_log');
    assert.equal(e.path, seg);
    assert.equal(e.offset, offset);
    assert.ok(e.message.includes(seg) && e.message.includes(`offset ${offset}`));
    assert.match(e.message, /restore this node from a peer/);
    return true;
  });
});

test('a bad checksum at the end of a sealed segment is corruption, not a torn write', async (t) => {
  const dir = await tempDir(t);
  await writeLog(dir, range(1, 60, 1, 40), SMALL);
  const files = await segmentFiles(dir);
  const first = join(dir, 'wal', files[0]!);
  await flipByte(first, (await recordsEnd(first)) - 1); // the last byte of its last record
  await assert.rejects(WalStorage.open(dir, SMALL), (e: unknown) => e instanceof CorruptLogError && e.path === first);
});

test('a missing segment in the middle of the log is reported as corruption', async (t) => {
  const dir = await tempDir(t);
  await writeLog(dir, range(1, 60, 1, 40), SMALL);
  const files = await segmentFiles(dir);
  const { unlink } = await import('node:fs/promises');
  await unlink(join(dir, 'wal', files[1]!));
  await assert.rejects(WalStorage.open(dir, SMALL), (e: unknown) => e instanceof CorruptLogError && /segment is missing/.test(e.message));
});

test('a record is never returned if its checksum fails, whichever byte is damaged', async (t) => {
  const dir = await tempDir(t);
  const written = range(1, 4, 3, 5);
  await writeLog(dir, written, SMALL);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const pristine = await readFile(seg);
  // Every byte of the header and the records (the zero tail after them holds no record).
  const end = await recordsEnd(seg);
  for (let pos = 0; pos < end; pos++) {
    const b = Buffer.from(pristine);
    b[pos] = b[pos]! ^ 0x01;
    await writeFile(seg, b);
    try {
      const { storage, state } = await WalStorage.open(dir, SMALL);
      // Whatever is returned is an undamaged prefix of what was written.
      assert.ok(state.entries.length < written.length, `byte ${pos}: the damaged record was dropped`);
      assert.deepEqual(plain(state.entries), plain(written.slice(0, state.entries.length)), `byte ${pos}`);
      await storage.close();
    } catch (err) {
      assert.ok(err instanceof StorageError, `byte ${pos}: ${String(err)}`);
    }
  }
});

test('hard state round-trips; term and vote are durable after sync', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.save({ term: 3, vote: 2, commit: 0 }, range(1, 5, 3), true);
  // Simulated crash: read the disk while the first instance is still open.
  const crashed = await WalStorage.open(dir);
  assert.deepEqual(crashed.state.hardState, { term: 3, vote: 2, commit: 0 });
  await crashed.storage.close();
  storage.setHardState({ term: 3, vote: 2, commit: 5 });
  await storage.close(); // a clean close also persists the lazy commit
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.deepEqual(state.hardState, { term: 3, vote: 2, commit: 5 });
  await s2.close();
});

test('commit-only changes are written lazily, every N entries', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir, { commitPersistEveryEntries: 10 });
  await storage.save({ term: 1, vote: 1, commit: 0 }, range(1, 20, 1), true);
  await storage.save({ term: 1, vote: 1, commit: 4 }, [], true);
  const mid = await WalStorage.open(dir);
  assert.deepEqual(mid.state.hardState, { term: 1, vote: 1, commit: 0 });
  await mid.storage.close();
  await storage.save({ term: 1, vote: 1, commit: 12 }, [], true);
  const after = await WalStorage.open(dir);
  assert.deepEqual(after.state.hardState, { term: 1, vote: 1, commit: 12 });
  await after.storage.close();
  await storage.close();
});

test('the commit index is never persisted beyond the durable log', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir, { commitPersistEveryEntries: 0 });
  await storage.save({ term: 1, vote: 1, commit: 0 }, range(1, 5, 1), true);
  await storage.save({ term: 2, vote: 2, commit: 9 }, [], true);
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.deepEqual(state.hardState, { term: 2, vote: 2, commit: 5 });
  await s2.close();
  await storage.close();
});

test('a second vote in the same term and a term going back are refused', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  storage.setHardState({ term: 4, vote: 1, commit: 0 });
  assert.throws(() => storage.setHardState({ term: 4, vote: 2, commit: 0 }), (e: unknown) => e instanceof StorageError && e.code === 'invalid_hard_state');
  assert.throws(() => storage.setHardState({ term: 3, vote: 0, commit: 0 }), /term went back/);
  storage.setHardState({ term: 5, vote: 2, commit: 0 });
  await storage.close();
});

test('compact removes whole segments at or below the index and keeps later entries', async (t) => {
  const dir = await tempDir(t);
  const all = range(1, 60, 1, 40);
  const { storage } = await WalStorage.open(dir, SMALL);
  await storage.append(all);
  await storage.sync();
  const before = await segmentFiles(dir);
  await assert.rejects(storage.compact(30), /newest durable snapshot ends at index 0/);
  await storage.saveSnapshot(meta(30, 1), snapshotChunksOf(new Uint8Array([7, 7])));
  const removed = await storage.compact(30);
  const after = await segmentFiles(dir);
  assert.ok(removed > 0);
  assert.equal(after.length, before.length - removed);
  const firstKept = Number(after[0]!.slice(0, 20));
  assert.ok(firstKept <= 31, `entry 31 is still on disk (first kept segment starts at ${firstKept})`);
  assert.equal(storage.firstIndex, firstKept);
  await storage.close();
  const { storage: s2, state } = await WalStorage.open(dir, SMALL);
  assert.equal(state.snapshot?.index, 30);
  assert.deepEqual([...(await collectSnapshot(state.openSnapshot()))], [7, 7]);
  assert.deepEqual(plain(state.entries), plain(all.slice(30)));
  await s2.close();
});

test('resetToSnapshot drops the whole log and appends continue after the snapshot', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir, SMALL);
  await storage.append(range(1, 40, 1, 40));
  await storage.sync();
  await assert.rejects(storage.resetToSnapshot(meta(100, 5)), /needs that snapshot saved first/);
  await storage.saveSnapshot(meta(100, 5), snapshotChunksOf(new Uint8Array([1, 2, 3])));
  await storage.resetToSnapshot(meta(100, 5));
  assert.deepEqual(await segmentFiles(dir), []);
  assert.equal(storage.lastIndex, 100);
  await storage.append(range(101, 103, 5));
  await storage.sync();
  await storage.close();
  assert.deepEqual(await segmentFiles(dir), ['00000000000000000101.seg']);
  const { storage: s2, state } = await WalStorage.open(dir, SMALL);
  assert.equal(state.snapshot?.index, 100);
  assert.deepEqual(plain(state.entries), plain(range(101, 103, 5)));
  await s2.close();
});

test('in a version-1 dir (previous release) recovery discards a log that an installed snapshot supersedes', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.save({ term: 3, vote: 0, commit: 0 }, range(1, 10, 1), true);
  await storage.close();
  await toLegacyV1(dir);
  // The previous release saved the snapshot, then crashed before resetToSnapshot.
  await new SnapshotStore(join(dir, 'snap')).save(meta(20, 3), snapshotChunksOf(new Uint8Array([9])));
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.deepEqual(state.entries, []);
  assert.equal(state.warnings.length, 1);
  assert.match(state.warnings[0]!, /does not continue snapshot/);
  assert.equal(s2.lastIndex, 20);
  await s2.append([ent(21, 3)]);
  await s2.close();
});

test('a log that starts after index 1 with no snapshot is corruption', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir, SMALL);
  await storage.append(range(1, 60, 1, 40));
  await storage.saveSnapshot(meta(50, 1), snapshotChunksOf(new Uint8Array(0)));
  await storage.compact(50);
  await storage.close();
  const { rm } = await import('node:fs/promises');
  await rm(join(dir, 'snap'), { recursive: true });
  await assert.rejects(WalStorage.open(dir, SMALL), (e: unknown) => e instanceof CorruptLogError && /no snapshot covering/.test(e.message));
});

test('a closed storage refuses work with a typed error', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.close();
  await assert.rejects(storage.append([ent(1, 1)]), (e: unknown) => e instanceof StorageError && e.code === 'storage_closed');
});
