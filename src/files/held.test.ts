import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { apply, newId, read, removeReplicaDirs, replica, sha, upload } from '../../test/support/files-replica.js';
import { packCanonical, packCanonicalWithBytes } from '../state/commands.js';
import { SnapshotCorruptError } from '../state/errors.js';
import { collectSnapshot, snapshotChunksOf } from '../state/snapshot.js';
import { FILE_CHUNK_BYTES } from './command.js';
import { HELD_KEEP } from './held.js';

after(removeReplicaDirs);

const expanded = async (r: Awaited<ReturnType<typeof replica>>, local: Uint8Array): Promise<{ bytes: number; snap: Buffer; release: () => void }> => {
  const x = await r.registry.expandSnapshot(() => snapshotChunksOf(local));
  return { bytes: x.bytes, snap: Buffer.from(await collectSnapshot(x.chunks)), release: x.release };
};

describe('files: local snapshots (content held by reference)', () => {
  it('a local snapshot carries no file bytes; expanded, it is byte for byte the snapshot of the same state, and its size is counted', async () => {
    const a = await replica();
    const big = randomBytes(2 * FILE_CHUNK_BYTES + 5);
    await upload(a, 'big', big, { ik: 'k' });
    const id = newId();
    await apply(a, { op: 'chunk', uploadId: id, offset: 0, bytes: Buffer.from('half ') });
    const local = await collectSnapshot(a.registry.localSnapshot());
    const full = Buffer.from(await collectSnapshot(a.registry.snapshot('composite')));
    assert.ok(local.length < 4096, `the local snapshot holds records only (${local.length} bytes)`);
    assert.ok(full.length > big.length);
    const x = await expanded(a, local);
    x.release();
    assert.equal(x.bytes, full.length);
    assert.deepEqual(x.snap, full);
  });

  it('a local snapshot keeps what it captured: files overwritten or deleted and uploads that go on after it expand to the captured state', async () => {
    const a = await replica();
    await upload(a, 'keep', Buffer.from('old content'));
    await upload(a, 'gone', Buffer.from('deleted later'));
    const id = newId();
    await apply(a, { op: 'chunk', uploadId: id, offset: 0, bytes: Buffer.from('first ') });
    const full = Buffer.from(await collectSnapshot(a.registry.snapshot('composite')));
    const local = await collectSnapshot(a.registry.localSnapshot());
    await upload(a, 'keep', Buffer.from('new content'));
    await apply(a, { op: 'delete', path: 'gone' });
    await apply(a, { op: 'chunk', uploadId: id, offset: 6, bytes: Buffer.from('second') });
    await apply(a, { op: 'commit', uploadId: id, path: 'done', size: 12, sha256: sha(Buffer.from('first second')) });
    const x = await expanded(a, local);
    x.release();
    assert.deepEqual(x.snap, full);
    // A follower installs the expanded bytes: the captured state.
    const b = await replica();
    await b.registry.restore(snapshotChunksOf(x.snap));
    assert.deepEqual(await read(b, 'keep'), Buffer.from('old content'));
    assert.deepEqual(await read(b, 'gone'), Buffer.from('deleted later'));
    assert.equal(await read(b, 'done'), undefined);
  });

  it('the node that took a local snapshot restores from it after a restart: files linked back, the upload in progress completes, equal checksums', async () => {
    const a = await replica();
    const big = randomBytes(FILE_CHUNK_BYTES + 99);
    await upload(a, 'f/big', big, { ik: 'key' });
    const id = newId();
    await apply(a, { op: 'chunk', uploadId: id, offset: 0, bytes: Buffer.from('half ') });
    const local = await collectSnapshot(a.registry.localSnapshot());
    const sum = await a.registry.checksumAsync();
    // More applied after the snapshot (lost with the restart, replayed from the log in a node).
    await apply(a, { op: 'chunk', uploadId: id, offset: 5, bytes: Buffer.from('XXXX') });
    await a.files.close();
    const again = await replica(a.dir);
    await again.registry.validate(snapshotChunksOf(local));
    await again.registry.restore(snapshotChunksOf(local));
    again.index = again.registry.appliedIndex;
    assert.deepEqual(await again.registry.checksumAsync(), sum);
    assert.deepEqual(await read(again, 'f/big'), big);
    await apply(again, { op: 'chunk', uploadId: id, offset: 5, bytes: Buffer.from('done') });
    await apply(again, { op: 'commit', uploadId: id, path: 'finished', size: 9, sha256: sha(Buffer.from('half done')) });
    assert.deepEqual(await read(again, 'finished'), Buffer.from('half done'));
    assert.deepEqual(await upload(again, 'f/big', big, { ik: 'key' }), { revision: 1 + Math.ceil(big.length / FILE_CHUNK_BYTES) });
  });

  it('a local snapshot whose held content is gone is refused naming the field, and the state is unchanged', async () => {
    const a = await replica();
    await upload(a, 'f', Buffer.from('content'));
    const local = await collectSnapshot(a.registry.localSnapshot());
    for (const d of await readdir(join(a.dir, 'held'))) await rm(join(a.dir, 'held', d), { recursive: true });
    const before = await a.registry.checksumAsync();
    await assert.rejects(a.registry.restore(snapshotChunksOf(local)), (e: unknown) => e instanceof SnapshotCorruptError && /files\.file\[0\]\.content/.test(e.message) && /add it to the cluster again/.test(e.message));
    await assert.rejects(a.registry.expandSnapshot(() => snapshotChunksOf(local)), /f\d+/);
    assert.deepEqual(await a.registry.checksumAsync(), before);
    assert.deepEqual(await read(a, 'f'), Buffer.from('content'));
  });

  it('a local snapshot is refused by a node that did not take it (no held content there)', async () => {
    const a = await replica();
    await upload(a, 'f', Buffer.from('content'));
    const local = await collectSnapshot(a.registry.localSnapshot());
    const b = await replica();
    await assert.rejects(b.registry.validate(snapshotChunksOf(local)), (e: unknown) => e instanceof SnapshotCorruptError);
  });

  it(`keeps the newest ${HELD_KEEP} held directories, and removes none while a snapshot is being expanded`, async () => {
    const a = await replica();
    await upload(a, 'f', Buffer.from('v0'));
    const first = await collectSnapshot(a.registry.localSnapshot());
    const held = await a.registry.expandSnapshot(() => snapshotChunksOf(first));
    for (let i = 1; i <= HELD_KEEP + 2; i++) {
      await upload(a, 'f', Buffer.from(`v${i}`));
      await collectSnapshot(a.registry.localSnapshot());
    }
    await a.files.caughtUp();
    assert.equal((await readdir(join(a.dir, 'held'))).length, HELD_KEEP + 3, 'all kept while one is held');
    assert.ok((await collectSnapshot(held.chunks)).length > 0, 'the held one expands');
    held.release();
    await collectSnapshot(a.registry.localSnapshot());
    await a.files.caughtUp();
    assert.equal((await readdir(join(a.dir, 'held'))).length, HELD_KEEP);
    await assert.rejects(a.registry.expandSnapshot(() => snapshotChunksOf(first)), 'the oldest is gone');
  });

  it('packCanonicalWithBytes writes the bytes of packCanonical([...head, bytes]) whatever the size, in parts or whole', () => {
    for (const n of [0, 1, 255, 256, 65535, 65536, FILE_CHUNK_BYTES]) {
      const bytes = randomBytes(n);
      for (const head of [[], [2, 'files', 1_700_000_000_000, null], [1, 'chunk', 'ab'.repeat(16), 2 ** 40]]) {
        const want = Buffer.from(packCanonical([...head, bytes]));
        assert.deepEqual(Buffer.from(packCanonicalWithBytes(head, bytes)), want);
        assert.deepEqual(Buffer.from(packCanonicalWithBytes(head, [bytes.subarray(0, n >> 1), bytes.subarray(n >> 1)])), want);
      }
    }
  });
});
