// Snapshot files: `<dir>/snap/<term>-<index>.snap` (both zero-padded to 20 digits).
//   "QSNP" | version u32 LE (1) | metaLen u32 | meta (JSON of SnapshotMeta) | dataLen u64 | data | crc32c u32
// The CRC covers every byte before it. Files are written atomically (temp,
// fsync, rename, fsync dir); the newest `keep` are kept.
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
import { atomicWriteFile, unlinkIfExists } from './fsutil.js';
import { nodeFs } from './fs.js';
import type { StorageFs } from './fs.js';

const MAGIC = 0x504e5351; // "QSNP"
const VERSION = 1;
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
          name: z.string().min(1).max(256).optional(),
          catchUpTo: z.number().int().nonnegative().safe().optional(),
        }).strict()),
        removed: z.array(z.number().int().positive().safe()),
      })
      .strict(),
  })
  .strict();

export interface LoadedSnapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
  readonly path: string;
}

export interface SnapshotFile {
  readonly path: string;
  readonly term: number;
  readonly index: number;
}

export function snapshotFileName(meta: Pick<SnapshotMeta, 'term' | 'index'>): string {
  return `${String(meta.term).padStart(20, '0')}-${String(meta.index).padStart(20, '0')}.snap`;
}

function encodeHeader(meta: SnapshotMeta, dataLen: number): Buffer {
  const json = Buffer.from(JSON.stringify({ index: meta.index, term: meta.term, membership: meta.membership }), 'utf8');
  const b = Buffer.alloc(12 + json.length + 8);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(VERSION, 4);
  b.writeUInt32LE(json.length, 8);
  json.copy(b, 12);
  writeU64(b, dataLen, 12 + json.length);
  return b;
}

/** Parses and verifies a whole snapshot file; throws CorruptSnapshotError naming the file. */
export function decodeSnapshot(b: Buffer, path: string): LoadedSnapshot {
  if (b.length < 24) throw new CorruptSnapshotError(path, `file is ${b.length} bytes, shorter than any snapshot`);
  if (b.readUInt32LE(0) !== MAGIC) throw new CorruptSnapshotError(path, 'bad magic at byte offset 0');
  const crcAt = b.length - 4;
  if (crc32c(b.subarray(0, crcAt)) !== b.readUInt32LE(crcAt)) throw new CorruptSnapshotError(path, `checksum mismatch (stored at byte offset ${crcAt})`);
  const version = b.readUInt32LE(4);
  if (version !== VERSION) throw new UnsupportedFormatError(path, `snapshot version ${version}, this build reads ${VERSION}`);
  const metaLen = b.readUInt32LE(8);
  const dataLenAt = 12 + metaLen;
  if (dataLenAt + 8 > crcAt) throw new CorruptSnapshotError(path, `meta length ${metaLen} runs past the end of the file`);
  const dataLen = readU64(b, dataLenAt);
  const dataAt = dataLenAt + 8;
  if (dataLen < 0 || dataAt + dataLen !== crcAt) throw new CorruptSnapshotError(path, `data length ${dataLen} at byte offset ${dataLenAt} does not match the file size`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(b.subarray(12, dataLenAt).toString('utf8'));
  } catch (err) {
    throw new CorruptSnapshotError(path, `meta at byte offset 12 is not JSON (${(err as Error).message})`);
  }
  const r = metaSchema.safeParse(parsed);
  if (!r.success) throw new CorruptSnapshotError(path, `meta invalid: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  const meta: SnapshotMeta = { index: r.data.index, term: r.data.term, membership: { members: r.data.membership.members.map((m) => normalizeMember(m as Member)), removed: r.data.membership.removed } };
  return { meta, data: b.subarray(dataAt, crcAt), path };
}

/** The whole file as buffers (header, data, crc). */
export function encodeSnapshot(meta: SnapshotMeta, data: Uint8Array): Uint8Array[] {
  const header = encodeHeader(meta, data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32c(data, crc32c(header)));
  return [header, data, crc];
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

  async save(meta: SnapshotMeta, data: Uint8Array): Promise<string> {
    const path = await this.#write(meta, data, '');
    await this.#prune();
    return path;
  }

  /** Writes a received snapshot durably under its install-marker name; returns that path. */
  writeInstallMarker(meta: SnapshotMeta, data: Uint8Array): Promise<string> {
    return this.#write(meta, data, INSTALL_SUFFIX);
  }

  /** Renames an install marker into place (durably) and prunes; returns the snapshot's path. */
  async promote(markerPath: string): Promise<string> {
    const path = markerPath.slice(0, -INSTALL_SUFFIX.length);
    await this.#fs.rename(markerPath, path);
    await this.#fs.fsyncDir(this.dir);
    await this.#prune();
    return path;
  }

  async #write(meta: SnapshotMeta, data: Uint8Array, suffix: string): Promise<string> {
    const r = metaSchema.safeParse(meta);
    if (!r.success) throw new InvalidSnapshotRequestError(`invalid snapshot meta: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    const path = join(this.dir, snapshotFileName(meta) + suffix);
    await atomicWriteFile(path, encodeSnapshot(meta, data), 0o600, this.#fs);
    return path;
  }

  async load(path: string): Promise<LoadedSnapshot> {
    const loaded = decodeSnapshot(await this.#fs.readFile(path), path);
    const m = ANY_NAME.exec(path.slice(this.dir.length + 1));
    if (m !== null && (Number(m[1]) !== loaded.meta.term || Number(m[2]) !== loaded.meta.index)) {
      throw new CorruptSnapshotError(path, `meta says term ${loaded.meta.term} index ${loaded.meta.index}, which does not match the file name`);
    }
    return loaded;
  }

  /**
   * Loads and verifies one file: framing and checksum, then the content with
   * `validate` (the state machine's own check); a rejection is reported as a
   * CorruptSnapshotError naming the file.
   */
  async loadValid(path: string, validate?: (data: Uint8Array) => void): Promise<LoadedSnapshot> {
    const loaded = await this.load(path);
    if (validate !== undefined) {
      try {
        validate(loaded.data);
      } catch (err) {
        throw new CorruptSnapshotError(path, `its checksum is valid but validateSnapshot rejected its content (${err instanceof Error ? err.message : String(err)})`);
      }
    }
    return loaded;
  }

  /**
   * The newest snapshot that verifies (and passes `validate`), plus the newer
   * files that did not (newest first, with their file-name index). Never throws
   * for corrupt files: the caller decides whether the fallback suffices.
   */
  async findNewest(validate?: (data: Uint8Array) => void): Promise<{ loaded: LoadedSnapshot | undefined; corrupt: { error: CorruptSnapshotError; index: number }[] }> {
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
  async loadNewest(validate?: (data: Uint8Array) => void): Promise<{ loaded: LoadedSnapshot | undefined; corrupt: CorruptSnapshotError[] }> {
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
