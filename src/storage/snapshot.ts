// Snapshot files: `<dir>/snap/<term>-<index>.snap` (both zero-padded to 20 digits).
//   version 2 (written): "QSNP" | 2 u32 LE | metaLen u32 | meta (JSON of SnapshotMeta) | data | dataLen u64 | crc32c u32
//   version 1 (read):    "QSNP" | 1 u32 LE | metaLen u32 | meta | dataLen u64 | data | crc32c u32
// The CRC covers every byte before it. Version 2 puts the data length after
// the data so that a snapshot is written in one streaming pass (its length is
// known only at the end) with a running CRC. Files are written atomically
// (temp, fsync, rename, fsync dir); the newest `keep` are kept. Nothing here
// holds a snapshot in memory: data is written and read in chunks.
// A snapshot received from the leader is first written as
// `<term>-<index>.snap.install` (an install marker), then the log is dropped,
// then it is renamed into place; recovery completes an install it finds.
import { join } from 'node:path';
import { z } from 'zod';
import type { Member, SnapshotMeta } from '../raft/types.js';
import { normalizeMember } from '../raft/membership.js';
import { readU64, writeU64 } from './codec.js';
import { crc32c } from '../lib/crc32c.js';
import { CorruptSnapshotError, InvalidSnapshotRequestError, UnsupportedFormatError } from './errors.js';
import { unlinkIfExists, writeFully } from './fsutil.js';
import { nodeFs } from './fs.js';
import type { StorageFile, StorageFs } from './fs.js';

const MAGIC = 0x504e5351; // "QSNP"
const VERSION = 2;
const READ_CHUNK_BYTES = 1024 * 1024;
const META_BYTES_MAX = 16 * 1024 * 1024;
const NAME = /^(\d{20})-(\d{20})\.snap$/;
const ANY_NAME = /^(\d{20})-(\d{20})\.snap(\.install)?$/;
const MARKER = /^(\d{20})-(\d{20})\.snap\.install$/;
export const INSTALL_SUFFIX = '.install';

const metaSchema = z
  .object({
    index: z.number().int().nonnegative().safe(),
    term: z.number().int().nonnegative().safe(),
    membership: z
      .object({
        members: z.array(z.object({
          id: z.number().int().positive().safe(),
          role: z.enum(['voter', 'observer', 'learner']),
          // What the leader recorded for the member (src/raft Member).
          incarnation: z.string().min(1).max(256).optional(),
          apiUrl: z.string().min(1).max(256).optional(),
          peerUrl: z.string().min(1).max(256).optional(),
          name: z.string().min(1).max(256).optional(),
          catchUpTo: z.number().int().nonnegative().safe().optional(),
        }).strict()),
        removed: z.array(z.number().int().positive().safe()),
      })
      .strict(),
  })
  .strict();

/** A snapshot file whose header and trailer were read (its data is read on demand). */
export interface LoadedSnapshot {
  readonly meta: SnapshotMeta;
  readonly path: string;
  /** Size of the data (the state machine's bytes). */
  readonly dataBytes: number;
  /** Byte offset of the data in the file. */
  readonly dataOffset: number;
  /** CRC32C of the bytes before the data. */
  readonly headCrc: number;
  /** The bytes between the data and the stored CRC (the version-2 data length; empty in version 1). */
  readonly tail: Uint8Array;
  readonly storedCrc: number;
}

export interface SnapshotFile {
  readonly path: string;
  readonly term: number;
  readonly index: number;
}

/**
 * Validates a snapshot's content as a stream (the state machine's own check);
 * throws if unusable. `meta` names the snapshot checked (a node opening its
 * storage builds the state as it checks, and keeps it for that snapshot).
 */
export type SnapshotValidator = (chunks: AsyncIterable<Uint8Array>, meta: { readonly term: number; readonly index: number }) => Promise<void>;

export function snapshotFileName(meta: Pick<SnapshotMeta, 'term' | 'index'>): string {
  return `${String(meta.term).padStart(20, '0')}-${String(meta.index).padStart(20, '0')}.snap`;
}

function encodeHeader(meta: SnapshotMeta): Buffer {
  const json = Buffer.from(JSON.stringify({ index: meta.index, term: meta.term, membership: meta.membership }), 'utf8');
  const b = Buffer.alloc(12 + json.length);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(VERSION, 4);
  b.writeUInt32LE(json.length, 8);
  json.copy(b, 12);
  return b;
}

class ShortFileError extends Error {}

async function readExactly(fh: StorageFile, length: number, position: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = await fh.read(b, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? b : b.subarray(0, got);
}

/** Streams bytes [from, to) of an open file in fresh chunks. */
async function* readRange(fh: StorageFile, from: number, to: number): AsyncGenerator<Uint8Array> {
  for (let pos = from; pos < to; ) {
    const b = await readExactly(fh, Math.min(READ_CHUNK_BYTES, to - pos), pos);
    if (b.length === 0) throw new ShortFileError(`the file ends at byte ${pos}, before the end of its data (${to})`);
    pos += b.length;
    yield b;
  }
}

/** Checks the whole file's CRC (a pass over every byte); throws CorruptSnapshotError on a mismatch or a file too short. */
async function checkCrc(fs: StorageFs, path: string): Promise<void> {
  const fh = await fs.open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size < 24) throw new CorruptSnapshotError(path, `file is ${size} bytes, shorter than any snapshot`);
    let crc = 0;
    for await (const c of readRange(fh, 0, size - 4)) crc = crc32c(c, crc);
    const stored = (await readExactly(fh, 4, size - 4)).readUInt32LE(0);
    if (crc !== stored) throw new CorruptSnapshotError(path, `checksum mismatch (stored at byte offset ${size - 4})`);
  } finally {
    await fh.close();
  }
}

/**
 * Reads a snapshot file's header and trailer and checks its structure (not
 * yet the CRC of its data: readSnapshotData checks that while streaming).
 * A structural defect is reported as a checksum mismatch when the CRC fails
 * too (the likelier cause). Throws CorruptSnapshotError naming the file.
 */
export async function openSnapshotFile(fs: StorageFs, path: string): Promise<LoadedSnapshot> {
  const structural = async (reason: string): Promise<never> => {
    await checkCrc(fs, path);
    throw new CorruptSnapshotError(path, reason);
  };
  const fh = await fs.open(path, 'r');
  let head: Buffer;
  let size: number;
  try {
    size = (await fh.stat()).size;
    if (size < 24) throw new CorruptSnapshotError(path, `file is ${size} bytes, shorter than any snapshot`);
    head = await readExactly(fh, 12, 0);
    if (head.readUInt32LE(0) !== MAGIC) return await structural('bad magic at byte offset 0');
    const version = head.readUInt32LE(4);
    if (version !== 1 && version !== VERSION) {
      await checkCrc(fs, path);
      throw new UnsupportedFormatError(path, `snapshot version ${version} (byte offset 4), this build reads 1 and ${VERSION}`);
    }
    const metaLen = head.readUInt32LE(8);
    if (metaLen > META_BYTES_MAX || 12 + metaLen + 12 > size) return await structural(`meta length ${metaLen} runs past the end of the file`);
    const metaBytes = await readExactly(fh, metaLen, 12);
    let dataOffset: number;
    let dataBytes: number;
    let tail: Buffer;
    let headBytes: Buffer;
    if (version === 1) {
      const lenAt = 12 + metaLen;
      const lenBytes = await readExactly(fh, 8, lenAt);
      dataBytes = readU64(lenBytes, 0);
      dataOffset = lenAt + 8;
      if (dataBytes < 0 || dataOffset + dataBytes !== size - 4) return await structural(`data length ${dataBytes} at byte offset ${lenAt} does not match the file size`);
      headBytes = Buffer.concat([head, metaBytes, lenBytes]);
      tail = Buffer.alloc(0);
    } else {
      const lenAt = size - 12;
      tail = await readExactly(fh, 8, lenAt);
      dataBytes = readU64(tail, 0);
      dataOffset = 12 + metaLen;
      if (dataBytes < 0 || dataOffset + dataBytes !== lenAt) return await structural(`data length ${dataBytes} at byte offset ${lenAt} does not match the file size`);
      headBytes = Buffer.concat([head, metaBytes]);
    }
    const storedCrc = (await readExactly(fh, 4, size - 4)).readUInt32LE(0);
    let parsed: unknown;
    try {
      parsed = JSON.parse(metaBytes.toString('utf8'));
    } catch (err) {
      return await structural(`meta at byte offset 12 is not JSON (${(err as Error).message})`);
    }
    const r = metaSchema.safeParse(parsed);
    if (!r.success) return await structural(`meta invalid: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    const meta: SnapshotMeta = { index: r.data.index, term: r.data.term, membership: { members: r.data.membership.members.map((m) => normalizeMember(m as Member)), removed: r.data.membership.removed } };
    return { meta, path, dataBytes, dataOffset, headCrc: crc32c(headBytes), tail, storedCrc };
  } finally {
    await fh.close();
  }
}

/**
 * Streams a snapshot's data (fresh chunks of at most 1 MiB), checking the
 * file's CRC as it goes: the stream throws CorruptSnapshotError at its end
 * if the CRC fails. The file is opened at the first read and closed at the
 * end (or when the consumer stops).
 */
export async function* readSnapshotData(fs: StorageFs, s: LoadedSnapshot): AsyncGenerator<Uint8Array> {
  const fh = await fs.open(s.path, 'r');
  try {
    let crc = s.headCrc;
    for await (const c of readRange(fh, s.dataOffset, s.dataOffset + s.dataBytes)) {
      crc = crc32c(c, crc);
      yield c;
    }
    crc = crc32c(s.tail, crc);
    if (crc !== s.storedCrc) throw new CorruptSnapshotError(s.path, `checksum mismatch (stored at byte offset ${s.dataOffset + s.dataBytes + s.tail.length})`);
  } catch (err) {
    if (err instanceof ShortFileError) throw new CorruptSnapshotError(s.path, err.message);
    throw err;
  } finally {
    await fh.close();
  }
}

/** A whole snapshot file as buffers (header, data, data length, crc): tests and small tools. */
export function encodeSnapshot(meta: SnapshotMeta, data: Uint8Array): Uint8Array[] {
  const header = encodeHeader(meta);
  const len = Buffer.alloc(8);
  writeU64(len, data.length, 0);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32c(len, crc32c(data, crc32c(header))));
  return [header, data, len, crc];
}

/** Consumes a stream to its end (so that a CRC checked at the end is checked). */
async function drain(chunks: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const c of chunks) void c;
}

export class SnapshotStore {
  readonly dir: string;
  readonly #keep: number;
  readonly #fs: StorageFs;

  constructor(dir: string, keep = 2, fs: StorageFs = nodeFs) {
    this.dir = dir;
    this.#keep = Math.max(1, keep);
    this.#fs = fs;
  }

  /** Snapshot files by name, newest (highest index, then term) first. */
  async list(): Promise<SnapshotFile[]> {
    const out: SnapshotFile[] = [];
    for (const name of await this.#fs.readdir(this.dir)) {
      const m = NAME.exec(name);
      if (m === null) continue;
      out.push({ path: join(this.dir, name), term: Number(m[1]), index: Number(m[2]) });
    }
    return out.sort((a, b) => b.index - a.index || b.term - a.term);
  }

  /** Install markers (snapshots received from the leader, install not finished), newest first. */
  async listInstallMarkers(): Promise<SnapshotFile[]> {
    const out: SnapshotFile[] = [];
    for (const name of await this.#fs.readdir(this.dir)) {
      const m = MARKER.exec(name);
      if (m !== null) out.push({ path: join(this.dir, name), term: Number(m[1]), index: Number(m[2]) });
    }
    return out.sort((a, b) => b.index - a.index || b.term - a.term);
  }

  /** Removes temp files left by a crash during save. */
  async removeTemps(): Promise<void> {
    for (const name of await this.#fs.readdir(this.dir)) if (name.endsWith('.tmp')) await this.#fs.unlink(join(this.dir, name));
  }

  /** Writes a snapshot streamed from `chunks` durably (temp, running CRC, fsync, rename, dir fsync), prunes old ones; returns its path. */
  async save(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>, onProgress?: (bytes: number) => void): Promise<string> {
    const path = await this.#write(meta, chunks, '', onProgress);
    await this.#prune();
    return path;
  }

  /** Writes a received snapshot durably under its install-marker name; returns that path. */
  writeInstallMarker(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>, onProgress?: (bytes: number) => void): Promise<string> {
    return this.#write(meta, chunks, INSTALL_SUFFIX, onProgress);
  }

  /** Renames an install marker into place (durably) and prunes; returns the snapshot's path. */
  async promote(markerPath: string): Promise<string> {
    const path = markerPath.slice(0, -INSTALL_SUFFIX.length);
    await this.#fs.rename(markerPath, path);
    await this.#fs.fsyncDir(this.dir);
    await this.#prune();
    return path;
  }

  async #write(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>, suffix: string, onProgress?: (bytes: number) => void): Promise<string> {
    const r = metaSchema.safeParse(meta);
    if (!r.success) throw new InvalidSnapshotRequestError(`invalid snapshot meta: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    const path = join(this.dir, snapshotFileName(meta) + suffix);
    const tmp = `${path}.tmp`;
    const fh = await this.#fs.open(tmp, 'w', 0o600);
    let ok = false;
    try {
      const header = encodeHeader(meta);
      await writeFully(fh, [header], 0);
      let crc = crc32c(header);
      let pos = header.length;
      let dataBytes = 0;
      for await (const c of chunks) {
        if (c.length === 0) continue;
        await writeFully(fh, [c], pos);
        crc = crc32c(c, crc);
        pos += c.length;
        dataBytes += c.length;
        onProgress?.(dataBytes);
      }
      const trailer = Buffer.alloc(12);
      writeU64(trailer, dataBytes, 0);
      trailer.writeUInt32LE(crc32c(trailer.subarray(0, 8), crc), 8);
      await writeFully(fh, [trailer], pos);
      await fh.sync();
      ok = true;
    } finally {
      await fh.close().catch(() => undefined);
      if (!ok) await unlinkIfExists(tmp, this.#fs).catch(() => undefined);
    }
    await this.#fs.rename(tmp, path);
    await this.#fs.fsyncDir(this.dir);
    return path;
  }

  /** Reads a file's header and trailer (not its data); throws CorruptSnapshotError on a defect or a name that does not match. */
  async load(path: string): Promise<LoadedSnapshot> {
    const loaded = await openSnapshotFile(this.#fs, path);
    const m = ANY_NAME.exec(path.slice(this.dir.length + 1));
    if (m !== null && (Number(m[1]) !== loaded.meta.term || Number(m[2]) !== loaded.meta.index)) {
      // A damaged meta (the header's CRC is checked with the data, at the end) is reported as the checksum
      // failure it is, with its byte offset; an intact file under another name, as the mismatch.
      await checkCrc(this.#fs, path);
      throw new CorruptSnapshotError(path, `meta (byte offset 12) says term ${loaded.meta.term} index ${loaded.meta.index}, which does not match the file name`);
    }
    return loaded;
  }

  /** The data of a loaded snapshot as a stream; the CRC is checked at its end. */
  read(loaded: LoadedSnapshot): AsyncIterable<Uint8Array> {
    return readSnapshotData(this.#fs, loaded);
  }

  /**
   * Loads and verifies one file: framing and checksum (one streaming pass over
   * the data), and the content with `validate` (the state machine's own check,
   * fed from the same pass); a rejection is reported as a CorruptSnapshotError
   * naming the file, a checksum mismatch taking precedence.
   */
  async loadValid(path: string, validate?: SnapshotValidator): Promise<LoadedSnapshot> {
    const loaded = await this.load(path);
    if (validate === undefined) {
      await drain(this.read(loaded));
      return loaded;
    }
    try {
      await validate(this.read(loaded), { term: loaded.meta.term, index: loaded.meta.index });
    } catch (err) {
      if (err instanceof CorruptSnapshotError) throw err;
      await drain(this.read(loaded)); // a checksum mismatch explains a rejection: report that
      throw new CorruptSnapshotError(path, `its checksum is valid but validateSnapshot rejected its content (${err instanceof Error ? err.message : String(err)})`);
    }
    return loaded;
  }

  /**
   * The newest snapshot that verifies (and passes `validate`), plus the newer
   * files that did not (newest first, with their file-name index). Never throws
   * for corrupt files: the caller decides whether the fallback suffices.
   */
  async findNewest(validate?: SnapshotValidator): Promise<{ loaded: LoadedSnapshot | undefined; corrupt: { error: CorruptSnapshotError; index: number }[] }> {
    const corrupt: { error: CorruptSnapshotError; index: number }[] = [];
    for (const f of await this.list()) {
      try {
        return { loaded: await this.loadValid(f.path, validate), corrupt };
      } catch (err) {
        if (!(err instanceof CorruptSnapshotError)) throw err;
        corrupt.push({ error: err, index: f.index });
      }
    }
    return { loaded: undefined, corrupt };
  }

  /**
   * The newest snapshot that verifies, plus the newer files that did not (newest
   * first). Throws when snapshots exist but none verifies.
   */
  async loadNewest(validate?: SnapshotValidator): Promise<{ loaded: LoadedSnapshot | undefined; corrupt: CorruptSnapshotError[] }> {
    const { loaded, corrupt } = await this.findNewest(validate);
    if (loaded === undefined && corrupt[0] !== undefined) throw corrupt[0].error;
    return { loaded, corrupt: corrupt.map((c) => c.error) };
  }

  /** Moves a corrupt file aside (kept for inspection, ignored from now on). */
  async quarantine(path: string): Promise<string> {
    const to = `${path}.corrupt`;
    await this.#fs.rename(path, to);
    await this.#fs.fsyncDir(this.dir);
    return to;
  }

  async #prune(): Promise<void> {
    const files = await this.list();
    if (files.length <= this.#keep) return;
    for (const f of files.slice(this.#keep)) await unlinkIfExists(f.path, this.#fs);
    await this.#fs.fsyncDir(this.dir);
  }
}
