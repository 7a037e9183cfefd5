import { collectSnapshot, snapshotChunksOf } from '../state/snapshot.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WalStorage } from './wal.js';
import { CorruptSnapshotError } from './errors.js';
import { meta, plain, range, tempDir } from '../../test/support/storage.js';

const snapFiles = async (dir: string): Promise<string[]> => (await readdir(join(dir, 'snap'))).sort();

async function damage(path: string, offset: number): Promise<void> {
  const b = await readFile(path);
  b[offset] = b[offset]! ^ 0xff;
  await writeFile(path, b);
}

test('a saved snapshot loads back with its meta and data, named term-index', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  const data = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
  const path = await storage.saveSnapshot(meta(42, 7), snapshotChunksOf(data));
  assert.equal(path, join(dir, 'snap', '00000000000000000007-00000000000000000042.snap'));
  const { snapshot, warnings } = await storage.loadSnapshot();
  assert.deepEqual(warnings, []);
  assert.deepEqual(snapshot?.meta, meta(42, 7));
  assert.equal(snapshot?.dataBytes, data.length);
  assert.deepEqual([...(await collectSnapshot((await storage.readSnapshot(meta(42, 7)))!.read()))], [...data]);
  assert.deepEqual(await snapFiles(dir), ['00000000000000000007-00000000000000000042.snap'], 'no temp file is left');
  await storage.close();
});

test('only the two newest snapshots are kept', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  for (const i of [10, 20, 30, 40]) await storage.saveSnapshot(meta(i, 1), snapshotChunksOf(new Uint8Array([i])));
  assert.deepEqual(await snapFiles(dir), ['00000000000000000001-00000000000000000030.snap', '00000000000000000001-00000000000000000040.snap']);
  await storage.close();
});

test('a corrupt newest snapshot is detected by checksum and the older valid one is used with a warning', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.save({ term: 1, vote: 1, commit: 40 }, range(1, 40, 1), true);
  await storage.saveSnapshot(meta(20, 1), snapshotChunksOf(new Uint8Array([20])));
  const newest = await storage.saveSnapshot(meta(30, 1), snapshotChunksOf(new Uint8Array([30, 30, 30])));
  await storage.close();
  await damage(newest, 60);
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.equal(state.snapshot?.index, 20);
  assert.deepEqual([...(await collectSnapshot(state.openSnapshot()))], [20]);
  assert.deepEqual(plain(state.entries), plain(range(21, 40, 1)));
  assert.equal(state.warnings.length, 1);
  assert.ok(state.warnings[0]!.includes(newest) && /checksum/.test(state.warnings[0]!));
  assert.ok((await snapFiles(dir)).includes('00000000000000000001-00000000000000000030.snap.corrupt'), 'moved aside, kept for inspection');
  await s2.close();
});

test('a byte flipped in the meta so that it disagrees with the file name is reported as a checksum failure with its byte offset (fuzz seed 134724782)', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.save({ term: 1, vote: 1, commit: 40 }, range(1, 40, 1), true);
  await storage.saveSnapshot(meta(10, 1), snapshotChunksOf(new Uint8Array([10])));
  const newest = await storage.saveSnapshot(meta(20, 1), snapshotChunksOf(new Uint8Array([20])));
  await storage.close();
  // The meta is JSON from byte offset 12; find the index's digits and change "20" into "30" (a well-formed meta).
  const b = await readFile(newest);
  const at = b.indexOf('"index":20', 12) + '"index":'.length;
  b[at] = '3'.charCodeAt(0);
  await writeFile(newest, b);
  const { storage: s2, state } = await WalStorage.open(dir);
  assert.equal(state.snapshot?.index, 10, 'the older valid snapshot is used');
  assert.equal(state.warnings.length, 1);
  assert.match(state.warnings[0]!, /checksum mismatch \(stored at byte offset \d+\)/);
  assert.ok(state.warnings[0]!.includes(newest));
  await s2.close();
});

test('a corrupt snapshot with no valid older one throws CorruptSnapshotError naming the file', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  const path = await storage.saveSnapshot(meta(5, 2), snapshotChunksOf(new Uint8Array(100)));
  await storage.close();
  await damage(path, 30);
  await assert.rejects(WalStorage.open(dir), (e: unknown) => {
    assert.ok(e instanceof CorruptSnapshotError);
    assert.equal(e.code, 'corrupt_snapshot');
    assert.equal(e.path, path);
    assert.ok(e.message.includes(path));
    return true;
  });
});

test('an older snapshot that does not reach the log cannot stand in for a corrupt newest one', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir, { segmentBytesMax: 1024 });
  await storage.save({ term: 1, vote: 1, commit: 60 }, range(1, 60, 1, 40), true);
  await storage.saveSnapshot(meta(10, 1), snapshotChunksOf(new Uint8Array([1])));
  const newest = await storage.saveSnapshot(meta(50, 1), snapshotChunksOf(new Uint8Array([2])));
  await storage.compact(50);
  await storage.close();
  await damage(newest, 20);
  await assert.rejects(WalStorage.open(dir, { segmentBytesMax: 1024 }), (e: unknown) => e instanceof CorruptSnapshotError && e.path === newest && /does not reach the log/.test(e.message));
});

test('a truncated snapshot file is detected', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  const path = await storage.saveSnapshot(meta(5, 2), snapshotChunksOf(new Uint8Array(100)));
  const b = await readFile(path);
  await writeFile(path, b.subarray(0, b.length - 10));
  await assert.rejects(storage.loadSnapshot(), (e: unknown) => e instanceof CorruptSnapshotError && e.path === path);
  await storage.close();
});
