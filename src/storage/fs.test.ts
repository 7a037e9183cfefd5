// nodeFs's hot path (StorageFile.writeLog): the WAL's batch write and
// fdatasync on libuv's thread pool, the event loop free meanwhile.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { nodeFs } from './fs.js';

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-fs-'));
  try {
    await fn(join(dir, 'f'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('writeLog writes the whole buffer at its position, with and without fdatasync', async () => {
  await withFile(async (path) => {
    const f = await nodeFs.open(path, 'w', 0o600);
    try {
      await f.truncate(16);
      await f.writeLog(Buffer.from('abcd'), 4, false);
      await f.writeLog(Buffer.from('XY'), 10, true);
      await f.writeLog(new Uint8Array(0), 0, true);
      const big = Buffer.alloc(3 * 1024 * 1024, 0x5a);
      await f.writeLog(big, 16, true);
      assert.equal((await f.stat()).size, 16 + big.length);
    } finally {
      await f.close();
    }
    const got = await readFile(path);
    assert.deepEqual(got.subarray(0, 16), Buffer.from('\0\0\0\0abcd\0\0XY\0\0\0\0', 'latin1'));
    assert.ok(got.subarray(16).every((b) => b === 0x5a));
  });
});

test('writeLog runs off the event loop: callbacks scheduled before it run before it settles', async () => {
  await withFile(async (path) => {
    const f = await nodeFs.open(path, 'w', 0o600);
    try {
      // The first synced writeLog opens the O_DSYNC descriptor, then writes:
      // two thread-pool jobs, and the event loop turns (its check phase runs
      // setImmediate callbacks) in between. A synchronous implementation
      // would settle before the loop turns.
      let immediateRan = false;
      setImmediate(() => {
        immediateRan = true;
      });
      await f.writeLog(Buffer.from('x'.repeat(4096)), 0, true);
      assert.equal(immediateRan, true, 'the event loop was blocked during writeLog');
    } finally {
      await f.close();
    }
  });
});

test('writeLog mixes unsynced writes, synced ones (then write + fdatasync) and plain writes in order', async () => {
  await withFile(async (path) => {
    const f = await nodeFs.open(path, 'w', 0o600);
    try {
      await f.truncate(64);
      await f.writeLog(Buffer.from('aa'), 0, true); // O_DSYNC descriptor
      await f.writeLog(Buffer.from('bb'), 2, false); // unsynced on the main descriptor
      await f.writeLog(Buffer.from('cc'), 4, true); // write + fdatasync (covers bb)
      await f.write(Buffer.from('dd'), 0, 2, 6);
      await f.datasync();
      await f.writeLog(Buffer.from('ee'), 8, true); // O_DSYNC again
    } finally {
      await f.close();
    }
    assert.equal((await readFile(path)).subarray(0, 10).toString('latin1'), 'aabbccddee');
  });
});

test('writeLog reports an I/O error (a closed descriptor) as a rejection', async () => {
  await withFile(async (path) => {
    const f = await nodeFs.open(path, 'w', 0o600);
    await f.close();
    await assert.rejects(f.writeLog(Buffer.from('x'), 0, true), { code: 'EBADF' });
  });
});
