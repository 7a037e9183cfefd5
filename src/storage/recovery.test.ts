// Recovery of a damaged data dir: only a torn write is repaired; any other
// damage stops the node with an error naming the files, offsets and indexes.
import { collectSnapshot, snapshotChunksOf } from '../state/snapshot.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, rename, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_SEGMENT_BYTES, WalStorage } from './wal.js';
import { nodeFs, type StorageFs } from './fs.js';
import { CorruptHardStateError, CorruptLogError, CorruptSnapshotError, RESTORE_ADVICE, StorageError } from './errors.js';
import { RECORD_HEADER_BYTES, SECTOR_BYTES, SEGMENT_HEADER_BYTES } from './codec.js';
import { readStoredHardState, writeHardState } from './hardstate.js';
import { encodeSnapshot, snapshotFileName } from './snapshot.js';
import { ent, meta, plain, range, recordsEnd, segmentFiles, tempDir, toLegacyV1 } from '../../test/support/storage.js';

const SMALL = { segmentBytesMax: 1024 };
const CLI_VERBS = ['status', 'leader', 'active', 'id', 'peers', 'state', 'dump', 'kv', 'snapshot', 'switchover', 'failover-safe', 'init', 'agent', 'demo'];

/** A single node that acknowledged 40 writes, one per sync (as the node loop does), commit persisted each time. */
async function acknowledged40(dir: string, opts: { segmentBytesMax?: number; size?: number } = {}): Promise<void> {
  const { storage } = await WalStorage.open(dir, { commitPersistEveryEntries: 0, ...(opts.segmentBytesMax ? { segmentBytesMax: opts.segmentBytesMax } : {}) });
  for (let i = 1; i <= 40; i++) {
    await storage.save({ term: 1, vote: 1, commit: i - 1 }, [ent(i, 1, opts.size ?? 16)], true);
  }
  await storage.save({ term: 1, vote: 1, commit: 40 }, [], true);
  await storage.close();
}

function assertSafeAdvice(message: string): void {
  assert.ok(message.includes('keep this node stopped; the cluster tolerates its absence'), message);
  assert.ok(message.includes('restore this node from a peer'), message);
  assert.doesNotMatch(message, /wipe|delete the data|rm -rf/i);
  for (const m of message.matchAll(/quorate ([a-z-]+)/g)) assert.ok(CLI_VERBS.includes(m[1]!), `advises a command that does not exist: quorate ${m[1]}`);
}

async function rejectsCorrupt(p: Promise<unknown>, check: (e: CorruptLogError) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CorruptLogError, String(e));
    assert.equal(e.code, 'corrupt_log');
    assert.ok(e.message.includes(e.path) && e.message.includes(`byte offset ${e.offset}`), e.message);
    assertSafeAdvice(e.message);
    check(e);
    return true;
  });
}

test('a truncated last segment stops the node instead of losing acknowledged writes', async (t) => {
  // (Cutting only zeros off the preallocated tail loses nothing and is accepted.)
  const cuts: [string, (seg: string, end: number, size: number) => number][] = [
    ['exactly at the end of the last record (zero tail gone)', (_seg, end) => end],
    ['inside the last record', (_seg, end) => end - 7],
    ['in the middle of the records', (_seg, end) => Math.floor(end / 2)],
    ['right after the header', () => SEGMENT_HEADER_BYTES],
  ];
  for (const [name, cut] of cuts) {
    const dir = await tempDir(t);
    await acknowledged40(dir);
    const seg = join(dir, 'wal', '00000000000000000001.seg');
    await truncate(seg, cut(seg, await recordsEnd(seg), (await stat(seg)).size));
    await rejectsCorrupt(WalStorage.open(dir), (e) => {
      assert.equal(e.path, seg, name);
      assert.match(e.message, /shortened|zero tail|runs past the end/, name);
    });
  }
});

test('a deleted last segment is detected and named, also when it was the only one', async (t) => {
  {
    const dir = await tempDir(t);
    await acknowledged40(dir, { segmentBytesMax: 1024, size: 40 });
    const files = await segmentFiles(dir);
    assert.ok(files.length > 2);
    const lastPath = join(dir, 'wal', files.at(-1)!);
    await unlink(lastPath);
    await rejectsCorrupt(WalStorage.open(dir, SMALL), (e) => {
      assert.equal(e.path, lastPath);
      assert.match(e.message, /segment file is missing/);
      assert.ok(e.message.includes(join(dir, 'wal', files.at(-2)!)), 'names the newest segment still on disk');
    });
  }
  {
    const dir = await tempDir(t);
    await acknowledged40(dir);
    const only = join(dir, 'wal', '00000000000000000001.seg');
    await unlink(only);
    await rejectsCorrupt(WalStorage.open(dir), (e) => {
      assert.equal(e.path, only);
      assert.match(e.message, /segment file is missing.*the newest segment on disk is none/);
    });
  }
});

test('a flipped byte in the last record is corruption, not a torn write', async (t) => {
  const dir = await tempDir(t);
  await acknowledged40(dir);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const end = await recordsEnd(seg);
  const lastRecord = end - (RECORD_HEADER_BYTES + 17 + 16);
  const b = await readFile(seg);
  b[end - 3] = b[end - 3]! ^ 0x10;
  await writeFile(seg, b);
  await rejectsCorrupt(WalStorage.open(dir), (e) => {
    assert.equal(e.offset, lastRecord);
    assert.match(e.message, /checksum mismatch in the complete record for index 40/);
  });
});

test('a torn write (a never-written sector in the last record) is cut off with a warning, and only there', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir, { commitPersistEveryEntries: 0 });
  await storage.save({ term: 1, vote: 1, commit: 0 }, range(1, 5, 1, 1500), true);
  await storage.save({ term: 1, vote: 1, commit: 5 }, [], true);
  await storage.save({ term: 1, vote: 1, commit: 5 }, range(6, 7, 1, 1500), true); // 6, 7 never committed
  await storage.close();
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const size = (await stat(seg)).size;
  const end = await recordsEnd(seg);
  const rec = RECORD_HEADER_BYTES + 17 + 1500;
  const start7 = end - rec;
  const sector = Math.ceil((start7 + RECORD_HEADER_BYTES) / SECTOR_BYTES) * SECTOR_BYTES; // a whole sector inside record 7
  const pristine = await readFile(seg);
  {
    const b = Buffer.from(pristine);
    b.fill(0, sector, sector + SECTOR_BYTES);
    await writeFile(seg, b);
    const { storage: s2, state } = await WalStorage.open(dir);
    assert.deepEqual(plain(state.entries), plain(range(1, 6, 1, 1500)));
    assert.equal(state.warnings.length, 1);
    assert.match(state.warnings[0]!, /torn final record/);
    assert.ok(state.warnings[0]!.includes(`${seg} at byte offset ${start7}`) && state.warnings[0]!.includes('index 7'));
    assert.equal((await stat(seg)).size, size, 'zeroed, not shortened');
    await s2.save({ term: 2, vote: 0, commit: 6 }, [ent(7, 2)], true);
    await s2.close();
    const again = await WalStorage.open(dir);
    assert.deepEqual(again.state.warnings, []);
    assert.deepEqual(plain(again.state.entries), plain([...range(1, 6, 1, 1500), ent(7, 2)]));
    await again.storage.close();
  }
  {
    // The same never-written sector in record 6, with the valid record 7 after it: not a torn write.
    const b = Buffer.from(pristine);
    const start6 = start7 - rec;
    const s6 = Math.ceil((start6 + RECORD_HEADER_BYTES) / SECTOR_BYTES) * SECTOR_BYTES;
    b.fill(0, s6, s6 + SECTOR_BYTES);
    await writeFile(seg, b);
    await rejectsCorrupt(WalStorage.open(dir), (e) => {
      assert.equal(e.offset, start6);
      assert.match(e.message, /index 6, followed by a valid record/);
    });
  }
});

test('non-zero bytes after the end of the log are an unfinished write only if no valid record follows', async (t) => {
  const dir = await tempDir(t);
  await acknowledged40(dir);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const end = await recordsEnd(seg);
  const pristine = await readFile(seg);
  {
    const b = Buffer.from(pristine);
    b.fill(0x77, end + 9, end + 100); // the zero length stays; garbage after it
    await writeFile(seg, b);
    const { storage, state } = await WalStorage.open(dir);
    assert.equal(state.entries.length, 40);
    assert.match(state.warnings[0]!, /unfinished write/);
    await storage.close();
    assert.ok((await readFile(seg)).subarray(end).every((x) => x === 0), 'zeroed durably');
  }
  {
    // A valid record of index 41 behind a zeroed length: entries are missing in between.
    const b = Buffer.from(pristine);
    const last = end - (RECORD_HEADER_BYTES + 17 + 16);
    b.copy(b, end + 64, last, end); // a copy of record 40 (valid, index 40 < 41: not "after")
    const { encodeRecord } = await import('./codec.js');
    encodeRecord(ent(41, 1), b, end + 200);
    await writeFile(seg, b);
    await rejectsCorrupt(WalStorage.open(dir), (e) => assert.match(e.message, /records are missing in the middle of the log/));
  }
  {
    // A flipped byte far out in the zero tail: no write of this log reaches there.
    const b = Buffer.from(pristine);
    const far = Math.floor(b.length / 3);
    b[far] = 0xff;
    await writeFile(seg, b);
    await rejectsCorrupt(WalStorage.open(dir), (e) => {
      assert.equal(e.offset, far);
      assert.match(e.message, /farther out than an interrupted write can reach/);
    });
  }
});

test('a commit index beyond the recovered log stops the node', async (t) => {
  const dir = await tempDir(t);
  await acknowledged40(dir);
  const hsPath = join(dir, 'hardstate');
  const stored = await readStoredHardState(hsPath);
  assert.equal(stored?.hs.commit, 40);
  assert.equal(stored?.walTail, 1);
  await writeHardState(hsPath, { term: 1, vote: 1, commit: 45 }, 1);
  await rejectsCorrupt(WalStorage.open(dir), (e) => {
    assert.match(e.message, /records commit index 45: committed entries 41\.\.45 are missing/);
    assert.ok(e.message.includes(hsPath));
  });
});

test('the commit index written with a sync never exceeds the log durable before that sync', async (t) => {
  const dir = await tempDir(t);
  const hsPath = join(dir, 'hardstate');
  const { storage } = await WalStorage.open(dir, { commitPersistEveryEntries: 0 });
  await storage.save({ term: 1, vote: 1, commit: 0 }, range(1, 5, 1), true);
  // A follower learns commit 8 together with entries 6..8: the hard state is
  // written before their fdatasync, so it may only say 5.
  await storage.save({ term: 1, vote: 1, commit: 8 }, range(6, 8, 1), true);
  assert.equal((await readStoredHardState(hsPath))?.hs.commit, 5);
  await storage.save({ term: 1, vote: 1, commit: 8 }, [], true);
  assert.equal((await readStoredHardState(hsPath))?.hs.commit, 8);
  await storage.close();
});

test('a log or snapshot with no hard state refuses to start; an empty dir starts', async (t) => {
  const dir = await tempDir(t);
  const first = await WalStorage.open(dir);
  assert.deepEqual(first.state.warnings, []);
  await first.storage.close();
  await acknowledged40(dir);
  const hsPath = join(dir, 'hardstate');
  await unlink(hsPath);
  await assert.rejects(WalStorage.open(dir), (e: unknown) => {
    assert.ok(e instanceof CorruptHardStateError);
    assert.equal(e.path, hsPath);
    assert.match(e.message, /the file is missing, but the log .* holds indexes 1\.\.40/);
    assertSafeAdvice(e.message);
    return true;
  });
  const dir2 = await tempDir(t);
  const { storage } = await WalStorage.open(dir2);
  await storage.installSnapshot(meta(5, 2), snapshotChunksOf(new Uint8Array([1])));
  await storage.close();
  await unlink(join(dir2, 'hardstate'));
  await assert.rejects(WalStorage.open(dir2), (e: unknown) => e instanceof CorruptHardStateError && /snapshot .* exists/.test(e.message));
});

test('installSnapshot drops the log in one call; an install interrupted by a crash is completed at recovery', async (t) => {
  const dir = await tempDir(t);
  {
    const { storage } = await WalStorage.open(dir, SMALL);
    await storage.save({ term: 1, vote: 1, commit: 10 }, range(1, 40, 1, 40), true);
    const path = await storage.installSnapshot(meta(100, 5), snapshotChunksOf(new Uint8Array([1, 2, 3])));
    assert.ok(path.endsWith(snapshotFileName(meta(100, 5))));
    assert.deepEqual(await segmentFiles(dir), []);
    assert.equal(storage.lastIndex, 100);
    assert.equal(storage.hardState.commit, 100);
    await storage.save({ term: 5, vote: 0, commit: 100 }, range(101, 103, 5), true);
    await storage.close();
    const { storage: s2, state } = await WalStorage.open(dir, SMALL);
    assert.deepEqual(state.warnings, []);
    assert.equal(state.snapshot?.index, 100);
    assert.deepEqual(plain(state.entries), plain(range(101, 103, 5)));
    await s2.close();
  }
  // Crash after the install marker was written, before the log was dropped.
  const dir2 = await tempDir(t);
  await acknowledged40(dir2);
  const marker = join(dir2, 'snap', `${snapshotFileName(meta(60, 3))}.install`);
  await writeFile(marker, Buffer.concat(encodeSnapshot(meta(60, 3), new Uint8Array([6]))));
  const { storage, state } = await WalStorage.open(dir2);
  assert.equal(state.snapshot?.index, 60);
  assert.deepEqual([...(await collectSnapshot(state.openSnapshot()))], [6]);
  assert.deepEqual(state.entries, []);
  assert.match(state.warnings[0]!, /completed the install of snapshot .* received from the leader/);
  assert.deepEqual(await segmentFiles(dir2), []);
  assert.deepEqual(await readdir(join(dir2, 'snap')), [snapshotFileName(meta(60, 3))]);
  assert.equal(state.hardState.commit, 60);
  await storage.close();
});

test('a snapshot beyond the log with no install in progress is corruption', async (t) => {
  const dir = await tempDir(t);
  await acknowledged40(dir);
  const marker = join(dir, 'snap', `${snapshotFileName(meta(60, 3))}.install`);
  await writeFile(marker, Buffer.concat(encodeSnapshot(meta(60, 3), new Uint8Array([6]))));
  await rename(marker, marker.slice(0, -'.install'.length));
  await rejectsCorrupt(WalStorage.open(dir), (e) => assert.match(e.message, /does not contain snapshot .*term 3, index 60.*no snapshot install was in progress/));
});

test('saveSnapshot of a snapshot the log does not contain installs it (the previous call sequence stays safe)', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.save({ term: 1, vote: 1, commit: 10 }, range(1, 10, 1), true);
  await storage.save({ term: 3, vote: 0, commit: 10 }, [], true);
  await storage.saveSnapshot(meta(20, 3), snapshotChunksOf(new Uint8Array([9]))); // from the leader
  assert.deepEqual(await segmentFiles(dir), [], 'the log was dropped with the install');
  await storage.close(); // crash before resetToSnapshot
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.deepEqual(state.warnings, []);
  assert.equal(state.snapshot?.index, 20);
  await s2.resetToSnapshot(meta(20, 3)); // a no-op now
  await s2.append([ent(21, 3)]);
  await s2.close();
});

test('each data dir gets an incarnation id at its first open; a dir from the previous release gets one with a warning', async (t) => {
  const dir = await tempDir(t);
  const a = await WalStorage.open(dir);
  assert.match(a.state.incarnation, /^[0-9a-f]{32}$/);
  assert.deepEqual(a.state.warnings, []);
  await a.storage.save({ term: 1, vote: 1, commit: 0 }, range(1, 3, 1), true);
  await a.storage.close();
  const st = await stat(join(dir, 'incarnation'));
  assert.equal(st.mode & 0o777, 0o600);
  const b = await WalStorage.open(dir);
  assert.equal(b.state.incarnation, a.state.incarnation);
  await b.storage.close();
  const other = await tempDir(t);
  const c = await WalStorage.open(other);
  assert.notEqual(c.state.incarnation, a.state.incarnation);
  await c.storage.close();

  await toLegacyV1(dir, true);
  const d = await WalStorage.open(dir);
  assert.notEqual(d.state.incarnation, a.state.incarnation);
  assert.deepEqual(plain(d.state.entries), plain(range(1, 3, 1)), 'the data is kept');
  assert.equal(d.state.warnings.length, 1);
  assert.match(d.state.warnings[0]!, /incarnation was missing .*created incarnation [0-9a-f]{32}; the data in this dir is kept/);
  await d.storage.close();
});

test('a snapshot whose content validateSnapshot rejects falls back to an older snapshot or the log, else stops naming it', async (t) => {
  const reject30 = async (chunks: AsyncIterable<Uint8Array>): Promise<void> => {
    if ((await collectSnapshot(chunks))[0] === 30) throw new Error('bad kv snapshot');
  };
  {
    const dir = await tempDir(t);
    const { storage } = await WalStorage.open(dir);
    await storage.save({ term: 1, vote: 1, commit: 40 }, range(1, 40, 1), true);
    await storage.saveSnapshot(meta(20, 1), snapshotChunksOf(new Uint8Array([20])));
    const newest = await storage.saveSnapshot(meta(30, 1), snapshotChunksOf(new Uint8Array([30])));
    await storage.close();
    const { storage: s2, state } = await WalStorage.open(dir, { validateSnapshot: reject30 });
    assert.equal(state.snapshot?.index, 20);
    assert.deepEqual(plain(state.entries), plain(range(21, 40, 1)));
    assert.ok(state.warnings[0]!.includes(newest) && /validateSnapshot rejected its content \(bad kv snapshot\)/.test(state.warnings[0]!));
    assert.ok((await readdir(join(dir, 'snap'))).includes(`${snapshotFileName(meta(30, 1))}.corrupt`));
    await s2.close();
  }
  {
    // Only one snapshot, but the log still starts at index 1: the log suffices.
    const dir = await tempDir(t);
    const { storage } = await WalStorage.open(dir);
    await storage.save({ term: 1, vote: 1, commit: 40 }, range(1, 40, 1), true);
    await storage.saveSnapshot(meta(30, 1), snapshotChunksOf(new Uint8Array([30])));
    await storage.close();
    const { storage: s2, state } = await WalStorage.open(dir, { validateSnapshot: reject30 });
    assert.equal(state.snapshot, undefined);
    assert.deepEqual(plain(state.entries), plain(range(1, 40, 1)));
    assert.match(state.warnings[0]!, /recovered from the log/);
    await s2.close();
  }
  {
    // Nothing else holds those entries: stop, naming the file.
    const dir = await tempDir(t);
    const { storage } = await WalStorage.open(dir);
    const path = await storage.installSnapshot(meta(30, 1), snapshotChunksOf(new Uint8Array([30])));
    await storage.close();
    await assert.rejects(WalStorage.open(dir, { validateSnapshot: reject30 }), (e: unknown) => {
      assert.ok(e instanceof CorruptSnapshotError);
      assert.equal(e.path, path);
      assert.match(e.message, /validateSnapshot rejected/);
      assertSafeAdvice(e.message);
      return true;
    });
  }
});

test('a version-1 data dir (previous release) opens; new entries go to a version-2 segment', async (t) => {
  const dir = await tempDir(t);
  await acknowledged40(dir);
  await toLegacyV1(dir);
  const { storage, state } = await WalStorage.open(dir);
  assert.deepEqual(state.warnings, []);
  assert.equal(state.entries.length, 40);
  assert.equal(state.hardState.commit, 40);
  await storage.save({ term: 1, vote: 1, commit: 40 }, [ent(41, 1)], true);
  await storage.close();
  const files = await segmentFiles(dir);
  assert.deepEqual(files, ['00000000000000000001.seg', '00000000000000000041.seg']);
  assert.equal((await readFile(join(dir, 'wal', files[1]!))).readUInt16LE(4), 2);
  assert.equal((await readStoredHardState(join(dir, 'hardstate')))?.version, 2);
  const again = await WalStorage.open(dir);
  assert.equal(again.state.entries.length, 41);
  await again.storage.close();
});

test('segments are preallocated sparsely and a conflicting suffix is zeroed, not cut', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.save({ term: 1, vote: 1, commit: 0 }, range(1, 10, 1), true);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  const st = await stat(seg);
  assert.equal(st.size, DEFAULT_SEGMENT_BYTES);
  assert.ok(st.blocks * 512 < 1024 * 1024, `sparse: ${st.blocks * 512} bytes allocated`);
  await storage.append([ent(8, 2)]);
  await storage.sync();
  assert.equal((await stat(seg)).size, st.size);
  await storage.close();
  const end = await recordsEnd(seg);
  assert.ok((await readFile(seg)).subarray(end, end + 4096).every((x) => x === 0), 'the dropped records are zeroed');
});

test('storage error messages advise only commands that exist', () => {
  assertSafeAdvice(RESTORE_ADVICE);
  const e = new CorruptLogError('/x/wal/1.seg', 16, 'reason');
  assert.ok(e instanceof StorageError);
  assertSafeAdvice(e.message);
});

test('recovery parses a preallocated segment without reading its zero tail into memory, and still finds a byte in the tail', async (t) => {
  const dir = await tempDir(t);
  await acknowledged40(dir);
  const seg = join(dir, 'wal', '00000000000000000001.seg');
  let largest = 0;
  const counting: StorageFs = {
    ...nodeFs,
    readFile: async (path) => {
      const b = await nodeFs.readFile(path);
      largest = Math.max(largest, b.length);
      return b;
    },
  };
  {
    const { storage, state } = await WalStorage.open(dir, { fs: counting });
    assert.equal(state.entries.length, 40);
    assert.deepEqual(state.warnings, []);
    await storage.close();
    assert.ok(largest < 1024 * 1024, `the preallocated segment was read whole (${largest} bytes)`);
  }
  // The file's very last byte: found by the backward scan, judged on the whole file.
  const b = await readFile(seg);
  b[b.length - 1] = 0x01;
  await writeFile(seg, b);
  await rejectsCorrupt(WalStorage.open(dir, { fs: counting }), (e) => {
    assert.equal(e.offset, b.length - 1);
    assert.match(e.message, /farther out than an interrupted write can reach/);
  });
});
