import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { T0, apply, newId, read, removeReplicaDirs, replica, sha, upload } from '../../test/support/files-replica.js';
import { packCanonical } from '../state/commands.js';
import { encodeEnvelope } from '../state/envelope.js';
import { SnapshotCorruptError } from '../state/errors.js';
import { collectSnapshot, snapshotChunksOf } from '../state/snapshot.js';
import { FILES_MACHINE_ID, FILE_CHUNK_BYTES, FilePathError, UPLOAD_IDLE_MS, validateFilePath } from './command.js';
import { FileCorruptError, FilesStateMachine } from './machine.js';

after(removeReplicaDirs);

describe('files: path validation', () => {
  it('accepts relative paths and refuses "..", absolute paths, NUL, empty segments and long paths, naming the field', () => {
    assert.equal(validateFilePath('reports/2026/jan.csv'), 'reports/2026/jan.csv');
    assert.equal(validateFilePath('a..b/.hidden'), 'a..b/.hidden');
    const refused: [unknown, RegExp][] = [
      ['../etc/passwd', /"\.\." segment/],
      ['a/../../b', /"\.\." segment/],
      ['a/./b', /"\." segment/],
      ['/etc/passwd', /absolute/],
      ['a\0b', /NUL/],
      ['a//b', /empty segment/],
      ['a/', /empty segment/],
      ['a\\b', /backslash/],
      ['a\nb', /control character/],
      ['', /required/],
      [42, /required/],
      ['x'.repeat(1025), /limit is 1024 bytes/],
      [`${'y'.repeat(256)}/z`, /longer than 255 bytes/],
    ];
    for (const [p, re] of refused) {
      assert.throws(() => validateFilePath(p, 'path'), (e: unknown) => e instanceof FilePathError && e.field === 'path' && re.test(e.message) && e.message.startsWith('path:'), String(p).slice(0, 40));
    }
  });

  it('the machine refuses a command whose path is bad (invalid_command on every node, nothing changes)', async () => {
    const r = await replica();
    const payload = packCanonical([1, 'delete', '../outside']);
    const res = r.registry.apply(++r.index, encodeEnvelope({ machine: FILES_MACHINE_ID, at: T0, payload }));
    assert.ok(res !== undefined && !(res instanceof Promise) && 'error' in res && res.error === 'invalid_command', JSON.stringify(res));
    assert.match((res as { message: string }).message, /path/);
  });
});

describe('files: apply', () => {
  it('an upload in chunks becomes visible only at its commit, with its size, SHA-256 and revision; overwrite and delete', async () => {
    const r = await replica();
    const content = randomBytes(FILE_CHUNK_BYTES + 123);
    const id = newId();
    await apply(r, { op: 'chunk', uploadId: id, offset: 0, bytes: content.subarray(0, FILE_CHUNK_BYTES) });
    assert.equal(await read(r, 'big.bin'), undefined, 'nothing visible before the commit');
    assert.deepEqual(r.files.list('', 10).files, []);
    await apply(r, { op: 'chunk', uploadId: id, offset: FILE_CHUNK_BYTES, bytes: content.subarray(FILE_CHUNK_BYTES) });
    const res = await apply(r, { op: 'commit', uploadId: id, path: 'dir/big.bin', size: content.length, sha256: sha(content) });
    assert.deepEqual(res, { revision: r.index });
    assert.deepEqual(await read(r, 'dir/big.bin'), content);
    const listed = r.files.list('dir/', 10).files;
    assert.deepEqual(listed.map((f) => [f.path, f.size, f.sha256, f.revision]), [['dir/big.bin', content.length, sha(content), r.index]]);
    // Overwrite: the old object is gone, one object on disk.
    const next = Buffer.from('small');
    await upload(r, 'dir/big.bin', next);
    assert.deepEqual(await read(r, 'dir/big.bin'), next);
    assert.equal((await readdir(join(r.dir, 'store', 'objects'))).length, 1);
    assert.deepEqual(await readdir(join(r.dir, 'store', 'staging')), []);
    // Empty file, then delete.
    assert.ok('revision' in (await upload(r, 'empty', new Uint8Array(0))));
    assert.deepEqual(await read(r, 'empty'), Buffer.alloc(0));
    assert.deepEqual(await apply(r, { op: 'delete', path: 'empty' }), { revision: r.index, deleted: true });
    assert.deepEqual(await apply(r, { op: 'delete', path: 'empty' }), { revision: r.index, deleted: false });
    assert.equal(await read(r, 'empty'), undefined);
  });

  it('a commit whose staged bytes differ from the announced size or SHA-256 writes nothing (no half file), and the upload is gone', async () => {
    const r = await replica();
    await upload(r, 'keep', Buffer.from('v1'));
    const id = newId();
    await apply(r, { op: 'chunk', uploadId: id, offset: 0, bytes: Buffer.from('partial') });
    const res = await apply(r, { op: 'commit', uploadId: id, path: 'keep', size: 100, sha256: sha(Buffer.from('x')) });
    assert.equal((res as { data: { error: string } }).data.error, 'file_checksum_mismatch');
    assert.deepEqual(await read(r, 'keep'), Buffer.from('v1'), 'the previous content stays');
    const id2 = newId();
    await apply(r, { op: 'chunk', uploadId: id2, offset: 0, bytes: Buffer.from('abc') });
    const wrongSha = await apply(r, { op: 'commit', uploadId: id2, path: 'keep', size: 3, sha256: sha(Buffer.from('abd')) });
    assert.match((wrongSha as { data: { message: string } }).data.message, /SHA-256/);
    assert.deepEqual(await readdir(join(r.dir, 'store', 'staging')), []);
    // Out of order, unknown uploads, abort.
    const id3 = newId();
    assert.equal(((await apply(r, { op: 'chunk', uploadId: id3, offset: 5, bytes: Buffer.from('x') })) as { data: { error: string } }).data.error, 'upload_unknown');
    await apply(r, { op: 'chunk', uploadId: id3, offset: 0, bytes: Buffer.from('x') });
    assert.equal(((await apply(r, { op: 'chunk', uploadId: id3, offset: 7, bytes: Buffer.from('x') })) as { data: { error: string } }).data.error, 'upload_out_of_order');
    const id4 = newId();
    await apply(r, { op: 'chunk', uploadId: id4, offset: 0, bytes: Buffer.from('x') });
    assert.deepEqual(await apply(r, { op: 'abort', uploadId: id4 }), { data: { aborted: true } });
    assert.equal(((await apply(r, { op: 'commit', uploadId: id4, path: 'p', size: 1, sha256: sha(Buffer.from('x')) })) as { data: { error: string } }).data.error, 'upload_unknown');
  });

  it('an upload idle for UPLOAD_IDLE_MS of the replicated clock is dropped on the next command', async () => {
    const r = await replica();
    const id = newId();
    await apply(r, { op: 'chunk', uploadId: id, offset: 0, bytes: Buffer.from('abandoned') }, T0);
    assert.equal((await readdir(join(r.dir, 'store', 'staging'))).length, 1);
    await apply(r, { op: 'delete', path: 'nothing' }, T0 + UPLOAD_IDLE_MS);
    assert.deepEqual(await readdir(join(r.dir, 'store', 'staging')), []);
  });

  it('a retried commit with the same Idempotency-Key answers the first result and applies once; another request with the key is refused', async () => {
    const r = await replica();
    const first = await upload(r, 'a', Buffer.from('one'), { ik: 'k1' });
    const again = await upload(r, 'a', Buffer.from('one'), { ik: 'k1' });
    assert.deepEqual(again, first);
    assert.equal(r.files.list('', 10).files[0]!.revision, (first as { revision: number }).revision);
    assert.deepEqual(await readdir(join(r.dir, 'store', 'staging')), [], 'the retry\'s staged bytes are dropped');
    const other = await upload(r, 'a', Buffer.from('two'), { ik: 'k1' });
    assert.equal((other as { error: string }).error, 'idempotency_key_reused');
  });
});

describe('files: corruption, snapshots', () => {
  it('a file corrupted on disk is detected on read and when snapshotted, naming the path', async () => {
    const r = await replica();
    await upload(r, 'docs/readme.txt', Buffer.from('hello world'));
    const obj = join(r.dir, 'store', 'objects', String(r.index));
    const bytes = await readFile(obj);
    bytes[3] = bytes[3]! ^ 0x01;
    await writeFile(obj, bytes);
    await assert.rejects(read(r, 'docs/readme.txt'), (e: unknown) => e instanceof FileCorruptError && e.path === 'docs/readme.txt' && /docs\/readme\.txt/.test(e.message) && e.message.includes(obj));
    await assert.rejects(collectSnapshot(r.registry.snapshot('composite')), (e: unknown) => e instanceof FileCorruptError && /docs\/readme\.txt/.test(e.message));
    await writeFile(obj, 'hello'); // truncated
    await assert.rejects(read(r, 'docs/readme.txt'), /5 bytes on disk, 11 expected/);
  });

  it('snapshot round trip: files, an upload in progress and sessions restore into another node, equal checksums, and the upload completes there', async () => {
    const a = await replica();
    const big = randomBytes(FILE_CHUNK_BYTES + 777);
    await upload(a, 'x/big', big, { ik: 'key' });
    await upload(a, 'x/small', Buffer.from('small'));
    await upload(a, 'gone', Buffer.from('gone'));
    await apply(a, { op: 'delete', path: 'gone' });
    const id = newId();
    await apply(a, { op: 'chunk', uploadId: id, offset: 0, bytes: Buffer.from('half ') });
    const snap = await collectSnapshot(a.registry.snapshot('composite'));
    // Changes after the capture are not in it.
    await upload(a, 'later', Buffer.from('later'));
    const b = await replica();
    await b.registry.restore(snapshotChunksOf(snap));
    b.index = b.registry.appliedIndex;
    await b.files.caughtUp();
    assert.deepEqual(await read(b, 'x/big'), big);
    assert.deepEqual(await read(b, 'x/small'), Buffer.from('small'));
    assert.equal(await read(b, 'later'), undefined);
    assert.equal(await read(b, 'gone'), undefined);
    // Same state: same checksum as a fresh replica restored from the same bytes, and the snapshot bytes are reproduced.
    const again = await collectSnapshot(b.registry.snapshot('composite'));
    assert.deepEqual(Buffer.from(again), Buffer.from(snap));
    // The upload in progress finishes on the restored node.
    const done = await apply(b, { op: 'chunk', uploadId: id, offset: 5, bytes: Buffer.from('done') });
    assert.equal((done as { data: { staged: number } }).data.staged, 9);
    await apply(b, { op: 'commit', uploadId: id, path: 'finished', size: 9, sha256: sha(Buffer.from('half done')) });
    assert.deepEqual(await read(b, 'finished'), Buffer.from('half done'));
    // The session came along: a retry of the keyed commit answers its first result.
    assert.deepEqual((await upload(b, 'x/big', big, { ik: 'key' })), { revision: 1 + Math.ceil(big.length / FILE_CHUNK_BYTES) });
  });

  it('a snapshot whose file content was altered is refused naming the file, and the state is unchanged', async () => {
    const a = await replica();
    await upload(a, 'f', Buffer.from('precious content'));
    const snap = Buffer.from(await collectSnapshot(a.registry.snapshot('composite')));
    const at = snap.indexOf(Buffer.from('precious'));
    assert.ok(at > 0);
    snap[at] = snap[at]! ^ 0x20;
    const b = await replica();
    await upload(b, 'mine', Buffer.from('mine'));
    const before = await b.files.checksum();
    await assert.rejects(b.registry.restore(snapshotChunksOf(snap)), (e: unknown) => e instanceof SnapshotCorruptError);
    await assert.rejects(b.registry.validate(snapshotChunksOf(snap)), (e: unknown) => e instanceof SnapshotCorruptError);
    assert.equal(await b.files.checksum(), before);
    assert.deepEqual(await read(b, 'mine'), Buffer.from('mine'));
    assert.deepEqual((await readdir(b.dir)).filter((f) => f.endsWith('.tmp')), [], 'nothing left aside');
  });

  it('checksums agree on replicas that applied the same entries, and differ after a different entry', async () => {
    const a = await replica();
    const b = await replica();
    for (const r of [a, b]) {
      await upload(r, 'p/1', Buffer.from('1'));
      await upload(r, 'p/2', Buffer.from('2'));
    }
    assert.equal((await a.registry.checksumAsync()).checksum, (await b.registry.checksumAsync()).checksum);
    await upload(b, 'p/3', Buffer.from('3'));
    await upload(a, 'p/3', Buffer.from('4'));
    assert.notEqual(await a.files.checksum(), await b.files.checksum());
  });

  it('opening again removes what a previous run left: the state is rebuilt from the snapshot and the log', async () => {
    const a = await replica();
    await upload(a, 'f', Buffer.from('x'));
    const again = await FilesStateMachine.open({ dir: a.dir, logger: pino({ level: 'silent' }) });
    assert.deepEqual(again.list('', 10).files, []);
    assert.deepEqual(await readdir(join(a.dir, 'store', 'objects')), []);
  });
});
