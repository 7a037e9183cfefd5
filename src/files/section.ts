// The "files" machine's snapshot section: its layout, and reading one back
// (restore writes the files aside, validate only checks them).
//
//   record [1 (section version), fileCount, uploadCount, sessionCount]
//   fileCount × (record [path, size, sha256, revision, at], then `size` raw bytes)   sorted by path
//   uploadCount × (record [uploadId, offset, startedAt, lastAt], then `offset` raw bytes)   sorted by id
//   sessionCount × record [idempotencyKey, atMs, resultTuple, fingerprint|nil]   insertion order
//
// Records are u32 length | msgpack (as in the composite snapshot). The
// content of every file is checked against its SHA-256 while it is read.
// Version 2 is a local snapshot (./held.ts): the same records, the bytes in a
// held directory of the node that took it.
import { createHash, type Hash } from 'node:crypto';
import { link, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { packCanonical } from '../state/commands.js';
import { SnapshotCorruptError, SnapshotVersionError } from '../state/errors.js';
import { resultFromTuple } from '../state/results.js';
import type { SessionRecord } from '../state/sessions.js';
import { ChunkReader, RecordReader, nat } from '../state/snapshot.js';
import { FILE_CHUNK_BYTES, FILE_HARD_MAX_BYTES, validateFilePath } from './command.js';
import { contentOf } from './held.js';

export const FILES_SECTION_VERSION = 1;
/** A local snapshot's section (./held.ts), read here from `heldRoot`. */
const HELD_VERSION = 2;

export interface FileMeta {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  /** Log index of the commit that wrote it (also the name of its object on disk). */
  readonly revision: number;
  /** Leader-stamped time of that commit (ms). */
  readonly at: number;
}

export interface UploadState {
  readonly id: string;
  offset: number;
  readonly hash: Hash;
  readonly startedAt: number;
  lastAt: number;
}

export const fileTuple = (f: FileMeta): unknown[] => [f.path, f.size, f.sha256, f.revision, f.at];

/** u32 length | bytes. */
export function record(value: unknown): Buffer {
  const body = packCanonical(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

export interface ReadSection {
  readonly files: FileMeta[];
  readonly uploads: UploadState[];
  readonly sessions: SessionRecord[];
}

/**
 * Reads a section (version 1, or with `heldRoot` a local version 2 whose
 * bytes are in `heldRoot/<heldName>/`). With `into` (a directory holding `objects/` and
 * `staging/`), the content is written there (objects/<revision>,
 * staging/<uploadId>), fsynced; without, it is only checked. An empty stream
 * is the empty state.
 */
export async function readSection(chunks: AsyncIterable<Uint8Array>, into: string | undefined, heldRoot?: string): Promise<ReadSection> {
  const r = new ChunkReader(chunks);
  r.hashing = false;
  const rr = new RecordReader(r);
  const out: ReadSection = { files: [], uploads: [], sessions: [] };
  if (await r.atEnd()) return out;
  const head = await rr.next('files.header');
  if (!Array.isArray(head)) return rr.bad('files.header', 'expected [version, fileCount, uploadCount, sessionCount]');
  if (typeof head[0] === 'number' && head[0] > HELD_VERSION) throw new SnapshotVersionError(head[0], HELD_VERSION);
  // Version 2: the bytes are in one of this node's held directories (./held.ts), not in the stream.
  const heldDir = head[0] === HELD_VERSION && head.length === 5 && typeof head[4] === 'string' && /^\d{20}$/.test(head[4]) ? head[4] : undefined;
  if (head[0] === HELD_VERSION && heldDir === undefined) return rr.bad('files.header', 'expected [2, fileCount, uploadCount, sessionCount, heldName]');
  if (head[0] === FILES_SECTION_VERSION ? head.length !== 4 : heldDir === undefined) return rr.bad('files.header', head[0] === FILES_SECTION_VERSION ? 'expected [version, fileCount, uploadCount, sessionCount]' : `unknown section version ${String(head[0])}`);
  if (heldDir !== undefined && heldRoot === undefined) return rr.bad('files.header', 'a local snapshot (section version 2, content held on the disk of the node that took it) is not read here');
  const held = heldDir === undefined ? undefined : join(heldRoot!, heldDir);
  const [fileCount, uploadCount, sessionCount] = [nat(rr.bad, 'files.fileCount', head[1]), nat(rr.bad, 'files.uploadCount', head[2]), nat(rr.bad, 'files.sessionCount', head[3])];
  const copy = async (size: number, dest: string | undefined, field: string, heldFile: string | undefined, isObject: boolean): Promise<Hash> => {
    const h = createHash('sha256');
    if (heldFile !== undefined) {
      // Checked in full (a local snapshot's bytes are verified as a streamed one's are); an object is linked, staged bytes are copied (the copy is appended to).
      const fh = dest !== undefined && !isObject ? await open(dest, 'w') : undefined;
      const start = r.offset;
      try {
        let n = 0;
        for await (const b of contentOf(heldFile, size, undefined)) {
          h.update(b);
          n += b.length;
          if (fh !== undefined) await fh.write(b);
        }
        if (n !== size) throw new Error(`${n} bytes`);
        if (fh !== undefined) await fh.datasync();
      } catch (e) {
        throw new SnapshotCorruptError(start, field, `the local snapshot's content ${heldFile} cannot be read in full (${(e as Error).message}): it was removed or damaged; remove this node's data dir and add it to the cluster again`, { cause: e });
      } finally {
        await fh?.close();
      }
      if (dest !== undefined && isObject) await link(heldFile, dest);
      return h;
    }
    let fh: FileHandle | undefined;
    if (dest !== undefined) fh = await open(dest, 'w');
    try {
      let left = size;
      while (left > 0) {
        const b = await r.read(Math.min(left, FILE_CHUNK_BYTES));
        if (b === undefined) throw new SnapshotCorruptError(r.offset, field, `truncated: the stream ends inside the content (${size} bytes announced)`);
        h.update(b);
        if (fh !== undefined) await fh.write(b);
        left -= b.length;
      }
      if (fh !== undefined) await fh.datasync();
    } finally {
      await fh?.close();
    }
    return h;
  };
  let prev: string | undefined;
  const revisions = new Set<number>();
  for (let i = 0; i < fileCount; i++) {
    const f = `files.file[${i}]`;
    const t = await rr.next(f);
    if (!Array.isArray(t) || t.length !== 5) return rr.bad(f, 'expected [path, size, sha256, revision, at]');
    let path: string;
    try {
      path = validateFilePath(t[0], `${f}.path`);
    } catch (e) {
      return rr.bad(`${f}.path`, (e as Error).message);
    }
    if (prev !== undefined && !(prev < path)) return rr.bad(`${f}.path`, 'paths are not strictly sorted');
    prev = path;
    const size = nat(rr.bad, `${f}.size`, t[1]);
    if (size > FILE_HARD_MAX_BYTES) rr.bad(`${f}.size`, `over ${FILE_HARD_MAX_BYTES}`);
    const sha = t[2];
    if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) return rr.bad(`${f}.sha256`, 'expected 64 hex digits');
    const revision = nat(rr.bad, `${f}.revision`, t[3]);
    if (revisions.has(revision)) rr.bad(`${f}.revision`, `revision ${revision} appears twice`);
    revisions.add(revision);
    const at = nat(rr.bad, `${f}.at`, t[4]);
    const start = r.offset;
    const h = await copy(size, into === undefined ? undefined : join(into, 'objects', String(revision)), `${f}.content`, held === undefined ? undefined : join(held, `f${revision}`), true);
    if (h.digest('hex') !== sha) throw new SnapshotCorruptError(start, `${f}.content`, `the content of ${JSON.stringify(path)} does not match its SHA-256`);
    out.files.push({ path, size, sha256: sha, revision, at });
  }
  let prevId: string | undefined;
  for (let i = 0; i < uploadCount; i++) {
    const f = `files.upload[${i}]`;
    const t = await rr.next(f);
    if (!Array.isArray(t) || t.length !== 4 || typeof t[0] !== 'string' || !/^[0-9a-f]{32}$/.test(t[0])) return rr.bad(f, 'expected [uploadId, offset, startedAt, lastAt]');
    const id = t[0];
    if (prevId !== undefined && !(prevId < id)) return rr.bad(f, 'upload ids are not strictly sorted');
    prevId = id;
    const offset = nat(rr.bad, `${f}.offset`, t[1]);
    if (offset > FILE_HARD_MAX_BYTES) rr.bad(`${f}.offset`, `over ${FILE_HARD_MAX_BYTES}`);
    const hash = await copy(offset, into === undefined ? undefined : join(into, 'staging', id), `${f}.content`, held === undefined ? undefined : join(held, `u${id}`), false);
    out.uploads.push({ id, offset, hash, startedAt: nat(rr.bad, `${f}.startedAt`, t[2]), lastAt: nat(rr.bad, `${f}.lastAt`, t[3]) });
  }
  for (let i = 0; i < sessionCount; i++) {
    const f = `files.session[${i}]`;
    const t = await rr.next(f);
    if (!Array.isArray(t) || t.length !== 4 || typeof t[0] !== 'string' || (t[3] !== null && typeof t[3] !== 'string')) return rr.bad(f, 'expected [key, atMs, result, fingerprint]');
    const result = resultFromTuple(t[2]);
    if (result === undefined) return rr.bad(`${f}.result`, 'not a result tuple');
    out.sessions.push({ key: t[0], atMs: nat(rr.bad, `${f}.atMs`, t[1]), result, fingerprint: (t[3] as string | null) ?? undefined });
  }
  if (!(await r.atEnd())) throw new SnapshotCorruptError(r.offset, 'files.end', 'bytes follow the last record');
  return out;
}
