// Small durable-file helpers shared by the WAL, hard state, snapshots and ha-state.
// All file access goes through the StorageFs port (./fs.ts).
import { dirname } from 'node:path';
import { nodeFs } from './fs.js';
import type { StorageFile, StorageFs } from './fs.js';

/** fsync a directory so that creations, renames and unlinks in it are durable. */
export function fsyncDir(dir: string, fs: StorageFs = nodeFs): Promise<void> {
  return fs.fsyncDir(dir);
}

/**
 * mkdir -p that survives a power loss: creating a directory adds an entry to
 * its parent, which is durable only once the parent is fsynced. Without that,
 * a crash soon after a node's first start could take the whole new data
 * directory with it, and every vote and entry written under it since (the
 * simulator found this). Fsyncs the parent of every directory it creates,
 * deepest last; existing directories are left alone.
 */
export async function mkdirDurable(path: string, fs: StorageFs = nodeFs): Promise<void> {
  const created: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    try {
      await fs.readdir(p);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      created.push(p);
      if (dirname(p) === p) break;
    }
  }
  if (created.length === 0) return;
  await fs.mkdir(path, { recursive: true });
  for (const p of created.reverse()) await fs.fsyncDir(dirname(p));
}

/** Writes all of `buffers` at `position`: one writev, looping only on a short write. */
export async function writeFully(fh: StorageFile, buffers: readonly Uint8Array[], position: number): Promise<void> {
  let total = 0;
  for (const b of buffers) total += b.length;
  if (total === 0) return;
  let written = buffers.length === 1 ? await fh.write(buffers[0]!, 0, total, position) : await fh.writev(buffers, position);
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
      const bytesWritten = await fh.write(b, off, b.length - off, pos);
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
export async function atomicWriteFile(path: string, buffers: readonly Uint8Array[], mode = 0o644, fs: StorageFs = nodeFs): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await fs.open(tmp, 'w', mode);
  try {
    await writeFully(fh, buffers, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
  await fs.fsyncDir(dirname(path));
}

/** unlink that ignores a missing file. */
export async function unlinkIfExists(path: string, fs: StorageFs = nodeFs): Promise<void> {
  try {
    await fs.unlink(path);
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
