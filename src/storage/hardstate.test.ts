import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeHardStateV1, readHardState, readStoredHardState, writeHardState } from './hardstate.js';
import { WalStorage } from './wal.js';
import { CorruptHardStateError, CorruptIncarnationError } from './errors.js';
import { tempDir } from '../../test/support/storage.js';

test('hard state is written atomically and read back exactly', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'hardstate');
  assert.deepEqual(await readHardState(path), { term: 0, vote: 0, commit: 0 }, 'a missing file is a new node');
  await writeHardState(path, { term: 2 ** 40, vote: 3, commit: 2 ** 53 - 1 });
  assert.deepEqual(await readHardState(path), { term: 2 ** 40, vote: 3, commit: 2 ** 53 - 1 });
  await writeHardState(path, { term: 7, vote: 0, commit: 1 });
  assert.deepEqual(await readHardState(path), { term: 7, vote: 0, commit: 1 });
  assert.deepEqual(await readdir(dir), ['hardstate'], 'no temp file is left behind');
});

test('a damaged hard state file throws CorruptHardStateError naming it', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'hardstate');
  await writeHardState(path, { term: 5, vote: 1, commit: 0 });
  const b = await readFile(path);
  b[10] = b[10]! ^ 1;
  await writeFile(path, b);
  await assert.rejects(readHardState(path), (e: unknown) => e instanceof CorruptHardStateError && e.code === 'corrupt_hard_state' && e.path === path && e.message.includes(path));
  await assert.rejects(WalStorage.open(dir), CorruptHardStateError);
});

test('a temp file left by a crash mid-write is ignored and removed', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'hardstate');
  await writeHardState(path, { term: 4, vote: 2, commit: 0 });
  await writeFile(`${path}.tmp`, 'half-written garbage');
  const { storage, state } = await WalStorage.open(dir);
  assert.deepEqual(state.hardState, { term: 4, vote: 2, commit: 0 });
  assert.ok(!(await readdir(dir)).includes('hardstate.tmp'));
  await storage.close();
});

test('a version-1 hard state file (previous release) is read; writes are version 2 with the newest segment', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'hardstate');
  await writeFile(path, encodeHardStateV1({ term: 3, vote: 2, commit: 7 }));
  assert.deepEqual(await readStoredHardState(path), { hs: { term: 3, vote: 2, commit: 7 }, walTail: 0, version: 1 });
  await writeHardState(path, { term: 3, vote: 2, commit: 7 }, 41);
  assert.deepEqual(await readStoredHardState(path), { hs: { term: 3, vote: 2, commit: 7 }, walTail: 41, version: 2 });
  assert.equal((await readFile(path)).length, 44);
});

test('a damaged incarnation file stops the node naming it', async (t) => {
  const dir = await tempDir(t);
  const { storage } = await WalStorage.open(dir);
  await storage.close();
  await writeFile(join(dir, 'incarnation'), 'not-an-id\n');
  await assert.rejects(WalStorage.open(dir), (e: unknown) => e instanceof CorruptIncarnationError && e.code === 'corrupt_incarnation' && e.message.includes(join(dir, 'incarnation')));
});
