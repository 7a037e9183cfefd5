// Small durable-file helpers shared by the WAL, hard state, snapshots and ha-state.
import { open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** fsync a directory so that creations, renames and unlinks in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes all of `buffers` at `position`: one writev, looping only on a short write. */
export async function writeFully(fh: FileHandle, buffers: readonly Uint8Array[], position: number): Promise<void> {
  let total = 0;
  for (const b of buffers) total += b.length;
  if (total === 0) return;
  let written = buffers.length === 1 ? (await fh.write(buffers[0]!, 0, total, position)).bytesWritten : (await fh.writev(buffers as Uint8Array[], position)).bytesWritten;
  // Short write (rare for regular files): finish buffer by buffer.
  let pos = position + written;
  let skip = written;
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    let off = skip;
    skip = 0;
    while (off < b.length) {
      const { bytesWritten } = await fh.write(b, off, b.length - off, pos);
      off += bytesWritten;
      pos += bytesWritten;
      written += bytesWritten;
    }
  }
}

/**
 * Atomically replaces `path`: write `path.tmp`, fsync it, rename over `path`,
 * fsync the directory. A crash leaves either the old file or the new one.
 */
export async function atomicWriteFile(path: string, buffers: readonly Uint8Array[], mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', mode);
  try {
    await writeFully(fh, buffers, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/** unlink that ignores a missing file. */
export async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Runs async tasks one at a time, in call order. A failed task does not block later ones. */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(task);
    this.#tail = p.catch(() => undefined);
    return p;
  }
}
