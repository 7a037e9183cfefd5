// Snapshots of the files machine by reference, for this node's own storage.
//
// A snapshot that carried every file's bytes (section version 1) costs a
// copy of all the replicated files each time one is taken: a 1 GiB upload
// with a snapshot every 64 MiB of log wrote about 8 GiB of snapshots per
// node, and the Raft log had to keep up to 96 MiB of chunk entries in memory
// because snapshots could not be taken more often. A local snapshot (section
// version 2) holds only the records; the bytes stay on this node's disk,
// hard-linked into `<dir>/held/<name>/` when it is taken (objects as
// `f<revision>`, uploads in progress as `u<uploadId>`, of which the first
// `offset` bytes count: staging files are only ever written past their
// staged offset). Taking one costs a link per file and an fsync of the
// uploads' staging files (their bytes were not synced before).
//
//   record [2 (section version), fileCount, uploadCount, sessionCount, heldName]
//   fileCount × record [path, size, sha256, revision, at]        sorted by path
//   uploadCount × record [uploadId, offset, startedAt, lastAt]   sorted by id
//   sessionCount × record [idempotencyKey, atMs, resultTuple, fingerprint|nil]
//
// Such a section never leaves the node: expand() rewrites it into version 1
// (the bytes read from the held links and checked against their SHA-256)
// for a follower, and restore() at start links the objects back (and copies
// the uploads' staged bytes). Held directories survive restarts; the newest
// HELD_KEEP are kept (the storage keeps the newest two snapshots), none is
// removed while a hold() is active (a snapshot being sent).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ChunkReader, RecordReader, nat } from '../state/snapshot.js';
import { SnapshotCorruptError } from '../state/errors.js';
import { FILE_CHUNK_BYTES } from './command.js';
import { FILES_SECTION_VERSION, record, type FileMeta } from './section.js';

/** The section version of a local (by reference) snapshot. */
export const HELD_SECTION_VERSION = 2;
/** Held directories kept (the newest): the storage keeps two snapshots, one more may be being written, one spare. */
export const HELD_KEEP = 4;
const NAME = /^\d{20}$/;

/** A file's content on disk does not match its SHA-256 (or its size): reported naming the path (HTTP 500 file_corrupt). */
export class FileCorruptError extends Error {
  readonly code = 'file_corrupt';
  readonly path: string;
  readonly diskFile: string;
  constructor(path: string, diskFile: string, why: string) {
    super(`the replicated file ${JSON.stringify(path)} is corrupt on this node's disk (${diskFile}: ${why}); read it from another node, and restart this node to rebuild its files from the snapshot and the log (check the disk)`);
    this.name = 'FileCorruptError';
    this.path = path;
    this.diskFile = diskFile;
  }
}

/** The first `size` bytes of `file` in chunks of at most FILE_CHUNK_BYTES, checked against `verify`'s SHA-256 when given. */
export async function* contentOf(file: string, size: number, verify: FileMeta | undefined): AsyncGenerator<Uint8Array> {
  const h = createHash('sha256');
  let n = 0;
  if (size > 0) {
    for await (const c of createReadStream(file, { start: 0, end: size - 1, highWaterMark: FILE_CHUNK_BYTES })) {
      const b = c as Buffer;
      n += b.length;
      h.update(b);
      yield b;
    }
  }
  if (n !== size) throw new FileCorruptError(verify?.path ?? file, file, `${n} bytes on disk, ${size} expected`);
  if (verify !== undefined && h.digest('hex') !== verify.sha256) throw new FileCorruptError(verify.path, file, 'its content does not match its SHA-256');
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The held directories of one files machine (`<dir>/held`). */
export class HeldDirs {
  readonly root: string;
  #next: number;
  #holds = 0;

  private constructor(root: string, next: number) {
    this.root = root;
    this.#next = next;
  }

  static async open(root: string): Promise<HeldDirs> {
    await mkdir(root, { recursive: true });
    let max = 0;
    for (const f of await readdir(root)) if (NAME.test(f)) max = Math.max(max, Number(f));
    return new HeldDirs(root, max + 1);
  }

  static validName(name: unknown): name is string {
    return typeof name === 'string' && NAME.test(name);
  }

  dirOf(name: string): string {
    return join(this.root, name);
  }

  /** A new, empty held directory (its name sorts after every earlier one). */
  async create(): Promise<string> {
    const name = String(this.#next++).padStart(20, '0');
    await mkdir(this.dirOf(name));
    return name;
  }

  /** Keeps every held directory until the returned function is called (a snapshot being expanded and sent). */
  hold(): () => void {
    this.#holds++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#holds--;
    };
  }

  /** Removes all but the newest HELD_KEEP held directories, unless a hold is active. */
  async gc(): Promise<void> {
    if (this.#holds > 0) return;
    const names = (await readdir(this.root)).filter((f) => NAME.test(f)).sort();
    for (const n of names.slice(0, Math.max(0, names.length - HELD_KEEP))) {
      if (this.#holds > 0) return;
      await rm(this.dirOf(n), { recursive: true, force: true });
    }
  }

  /**
   * Rewrites a section into version 1 (every byte inline): a version-2
   * section's content is read from its held directory and checked against
   * its SHA-256 (FileCorruptError names the path); any other section passes
   * through unchanged.
   */
  async *expand(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const r = new ChunkReader(chunks);
    r.hashing = false;
    const rr = new RecordReader(r);
    if (await r.atEnd()) return;
    const head = await rr.next('files.header');
    if (!Array.isArray(head) || head[0] !== HELD_SECTION_VERSION) {
      yield record(head);
      for (let c = await r.chunk(); c !== undefined; c = await r.chunk()) yield c;
      return;
    }
    if (head.length !== 5 || !HeldDirs.validName(head[4])) return rr.bad('files.header', 'expected [2, fileCount, uploadCount, sessionCount, heldName]');
    const [fileCount, uploadCount, sessionCount] = [nat(rr.bad, 'files.fileCount', head[1]), nat(rr.bad, 'files.uploadCount', head[2]), nat(rr.bad, 'files.sessionCount', head[3])];
    const dir = this.dirOf(head[4]);
    yield record([FILES_SECTION_VERSION, fileCount, uploadCount, sessionCount]);
    for (let i = 0; i < fileCount; i++) {
      const t = await rr.next(`files.file[${i}]`);
      if (!Array.isArray(t) || t.length !== 5 || typeof t[0] !== 'string' || typeof t[2] !== 'string') return rr.bad(`files.file[${i}]`, 'expected [path, size, sha256, revision, at]');
      const meta: FileMeta = { path: t[0], size: nat(rr.bad, `files.file[${i}].size`, t[1]), sha256: t[2], revision: nat(rr.bad, `files.file[${i}].revision`, t[3]), at: nat(rr.bad, `files.file[${i}].at`, t[4]) };
      yield record(t);
      yield* contentOf(join(dir, `f${meta.revision}`), meta.size, meta);
    }
    for (let i = 0; i < uploadCount; i++) {
      const t = await rr.next(`files.upload[${i}]`);
      if (!Array.isArray(t) || t.length !== 4 || typeof t[0] !== 'string' || !/^[0-9a-f]{32}$/.test(t[0])) return rr.bad(`files.upload[${i}]`, 'expected [uploadId, offset, startedAt, lastAt]');
      yield record(t);
      yield* contentOf(join(dir, `u${t[0]}`), nat(rr.bad, `files.upload[${i}].offset`, t[1]), undefined);
    }
    for (let i = 0; i < sessionCount; i++) yield record(await rr.next(`files.session[${i}]`));
    if (!(await r.atEnd())) throw new SnapshotCorruptError(r.offset, 'files.end', 'bytes follow the last record');
  }
}
