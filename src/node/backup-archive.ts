// The backup archive: one file (or HTTP stream) holding the whole replicated
// state at one applied index, and a manifest that describes it.
//
//   offset  size   field
//   0       4      "QBAK"
//   4       4      u32 archive version (1), big-endian
//   8       S      the state: a composite registry snapshot (QSMS 1, src/state/README.md), S = manifest.state.bytes
//   8+S     M      the manifest, JSON (UTF-8)
//   8+S+M   32     SHA-256 of the manifest's M bytes
//   +32     4      u32 M
//   +36     4      "QBKE"
//
// The manifest comes last so the archive streams in one pass with bounded
// memory (the state's size and hashes are known only at its end). It holds
// the SHA-256 of the whole state and of each part: "registry" (the QSMS
// header, registry record and client sessions, as stored) and one part per
// machine section, named by the machine id, hashing the machine's own stream
// bytes (so the "kv" part equals the KV checksum `quorate dump --checksum`
// prints). A machine in its empty state has no section and no part. Every
// byte of the archive is covered: the header by its magic and version, the
// state by its part hashes (and the QSMS trailer), the manifest by its hash,
// the trailer by its magic and the manifest length.
import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { unpackCanonical } from '../state/commands.js';

export const ARCHIVE_MAGIC = 'QBAK';
export const ARCHIVE_END_MAGIC = 'QBKE';
export const ARCHIVE_VERSION = 1;
export const ARCHIVE_HEADER_BYTES = 8;
export const ARCHIVE_TRAILER_BYTES = 40;
const MAX_MANIFEST_BYTES = 1024 * 1024;

/** What backups leave out, said in every manifest. */
export const SECRETS_NOTE =
  'none: the archive holds the replicated state only (KV, cluster history, settings, scheduler claims and every other registered machine); the cluster secret, admin token, tokens.json, TLS keys and CA keys live in each node\'s data dir and are not in it';

export interface ArchivePart {
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface BackupManifest {
  readonly format: 'quorate-backup';
  readonly version: number;
  readonly clusterId: string;
  readonly takenBy: string;
  /** The applied index the state is at, and the term of the entry at that index. */
  readonly index: number;
  readonly term: number;
  readonly takenAt: string;
  readonly quorateVersion: string;
  /** scheduled | catch-up | manual (`quorate backup create`) | download (GET /v1/cluster/backup) */
  readonly kind: string;
  /** The scheduler slot of a scheduled run (ISO), and the leader term that ran it (its fencing token). */
  readonly slot?: string;
  readonly fencingTerm?: number;
  /** The Raft membership at the index (informational: a restore starts a new one-node cluster). */
  readonly membership: unknown;
  readonly state: { readonly format: 'QSMS'; readonly version: number; readonly offset: number; readonly bytes: number; readonly sha256: string };
  readonly parts: readonly ArchivePart[];
  readonly secrets: string;
}

export type ManifestBase = Omit<BackupManifest, 'format' | 'version' | 'state' | 'parts' | 'secrets'>;

/** A problem with an archive: where (byte offset in the file) and what. */
export class ArchiveError extends Error {
  readonly code = 'backup_corrupt';
  readonly offset: number;
  readonly field: string;
  constructor(offset: number, field: string, message: string) {
    super(`backup archive ${field} at byte ${offset}: ${message}`);
    this.name = 'ArchiveError';
    this.offset = offset;
    this.field = field;
  }
}

/**
 * Hashes a QSMS stream incrementally, part by part (bounded memory: at most one
 * record, ≤ 8 MiB, is held to read its length or the registry record).
 */
export class PartHasher {
  readonly #whole = createHash('sha256');
  #bytes = 0;
  readonly #parts: ArchivePart[] = [];
  #cur: { name: string; hash: Hash; bytes: number };
  /** What the next bytes are: fixed-size fields are gathered into #buf. */
  #phase: 'header' | 'reclen' | 'rec' | 'seclen' | 'secid' | 'framelen' | 'frame' | 'trailer' | 'done' = 'header';
  #need = 8;
  #buf: Buffer[] = [];
  #bufLen = 0;
  #recordsLeft = -1; // registry record + sessions still to read (-1: the registry record itself)
  #sectionsLeft = 0;

  constructor() {
    this.#cur = { name: 'registry', hash: createHash('sha256'), bytes: 0 };
  }

  /** Bytes of the QSMS stream seen so far. */
  get bytes(): number {
    return this.#bytes;
  }

  update(chunk: Uint8Array): void {
    this.#whole.update(chunk);
    let off = 0;
    while (off < chunk.length) {
      if (this.#phase === 'done') throw new ArchiveError(ARCHIVE_HEADER_BYTES + this.#bytes + off, 'state', 'bytes after the end of the state snapshot');
      const take = Math.min(this.#need, chunk.length - off);
      const piece = chunk.subarray(off, off + take);
      // Frame data streams into the section's hash; everything else is gathered.
      if (this.#phase === 'frame') {
        this.#hashPiece(piece);
      } else {
        this.#buf.push(Buffer.from(piece));
        this.#bufLen += take;
        // The registry part is stored bytes (header, lengths and records); a section's part is its frames' data only.
        if (this.#phase === 'header' || this.#phase === 'reclen' || this.#phase === 'rec') this.#hashPiece(piece);
      }
      this.#need -= take;
      off += take;
      if (this.#need === 0) this.#step(this.#bytes + off);
    }
    this.#bytes += chunk.length;
  }

  #hashPiece(piece: Uint8Array): void {
    this.#cur.hash.update(piece);
    this.#cur.bytes += piece.length;
  }

  #go(phase: PartHasher['phase'], need: number): void {
    this.#phase = phase;
    this.#need = need;
  }

  /** What the parser expects next (for messages). */
  get phase(): 'header' | 'reclen' | 'rec' | 'seclen' | 'secid' | 'framelen' | 'frame' | 'trailer' | 'done' {
    return this.#phase;
  }

  #take(): Buffer {
    const b = Buffer.concat(this.#buf, this.#bufLen);
    this.#buf = [];
    this.#bufLen = 0;
    return b;
  }

  #bad(at: number, what: string): never {
    throw new ArchiveError(ARCHIVE_HEADER_BYTES + at, 'state', what);
  }

  #step(at: number): void {
    switch (this.#phase) {
      case 'header': {
        const h = this.#take();
        if (h.toString('latin1', 0, 4) !== 'QSMS' || h.readUInt32BE(4) !== 1) this.#bad(at - 8, 'not a composite (QSMS 1) state snapshot');
        this.#go('reclen', 4);
        return;
      }
      case 'reclen': {
        const n = this.#take().readUInt32BE(0);
        if (n === 0 || n > 8 * 1024 * 1024) this.#bad(at - 4, `bad record length ${n}`);
        this.#go('rec', n);
        return;
      }
      case 'rec': {
        const body = this.#take();
        if (this.#recordsLeft === -1) {
          let head: unknown;
          try {
            head = unpackCanonical(body);
          } catch {
            this.#bad(at - body.length, 'the registry record does not decode');
          }
          if (!Array.isArray(head) || head.length !== 4 || !Number.isSafeInteger(head[2]) || !Number.isSafeInteger(head[3])) this.#bad(at - body.length, 'bad registry record');
          this.#recordsLeft = head[2] as number;
          this.#sectionsLeft = head[3] as number;
        } else {
          this.#recordsLeft--;
        }
        if (this.#recordsLeft > 0) {
          this.#go('reclen', 4);
        } else {
          this.#endPart();
          this.#nextSection();
        }
        return;
      }
      case 'seclen': {
        const n = this.#take().readUInt32BE(0);
        if (n === 0 || n > 1024) this.#bad(at - 4, `bad section record length ${n}`);
        this.#go('secid', n);
        return;
      }
      case 'secid': {
        const body = this.#take();
        let id: unknown;
        try {
          id = unpackCanonical(body);
        } catch {
          this.#bad(at - body.length, 'a section id does not decode');
        }
        if (typeof id !== 'string' || !/^[a-z][a-z0-9_-]{0,63}$/.test(id)) this.#bad(at - body.length, 'bad section id');
        this.#cur = { name: id, hash: createHash('sha256'), bytes: 0 };
        this.#go('framelen', 4);
        return;
      }
      case 'framelen': {
        const n = this.#take().readUInt32BE(0);
        if (n > 64 * 1024) this.#bad(at - 4, `bad frame length ${n}`);
        if (n === 0) {
          this.#endPart();
          this.#sectionsLeft--;
          this.#nextSection();
        } else {
          this.#go('frame', n);
        }
        return;
      }
      case 'frame':
        this.#go('framelen', 4);
        return;
      case 'trailer':
        this.#take();
        this.#go('done', 0);
        return;
    }
  }

  #endPart(): void {
    this.#parts.push({ name: this.#cur.name, bytes: this.#cur.bytes, sha256: this.#cur.hash.digest('hex') });
  }

  #nextSection(): void {
    if (this.#sectionsLeft > 0) this.#go('seclen', 4);
    else this.#go('trailer', 32);
  }

  /** The parts and the whole stream's hash; throws if the stream ended early. */
  finish(): { bytes: number; sha256: string; parts: ArchivePart[] } {
    if (this.#phase !== 'done') this.#bad(this.#bytes, `the state snapshot ends early (in its ${this.#phase})`);
    return { bytes: this.#bytes, sha256: this.#whole.digest('hex'), parts: this.#parts };
  }
}

/** The archive as a stream: header, the state as it is read (hashed on the way), then the manifest and trailer. */
export async function* archiveChunks(state: AsyncIterable<Uint8Array>, base: ManifestBase, onManifest?: (m: BackupManifest) => void): AsyncGenerator<Uint8Array> {
  const header = Buffer.alloc(ARCHIVE_HEADER_BYTES);
  header.write(ARCHIVE_MAGIC, 0, 'latin1');
  header.writeUInt32BE(ARCHIVE_VERSION, 4);
  yield header;
  const hasher = new PartHasher();
  for await (const c of state) {
    hasher.update(c);
    yield c;
  }
  const h = hasher.finish();
  const manifest: BackupManifest = {
    format: 'quorate-backup', version: ARCHIVE_VERSION, ...base,
    state: { format: 'QSMS', version: 1, offset: ARCHIVE_HEADER_BYTES, bytes: h.bytes, sha256: h.sha256 },
    parts: h.parts, secrets: SECRETS_NOTE,
  };
  onManifest?.(manifest);
  yield trailerOf(manifest);
}

export function trailerOf(manifest: BackupManifest): Buffer {
  const json = Buffer.from(JSON.stringify(manifest, null, 1));
  const tail = Buffer.alloc(ARCHIVE_TRAILER_BYTES);
  createHash('sha256').update(json).digest().copy(tail, 0);
  tail.writeUInt32BE(json.length, 32);
  tail.write(ARCHIVE_END_MAGIC, 36, 'latin1');
  return Buffer.concat([json, tail]);
}

/** Reads and checks an archive's header, trailer and manifest (not the state: see checkArchive). */
export async function readManifest(path: string): Promise<{ manifest: BackupManifest; fileBytes: number }> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size < ARCHIVE_HEADER_BYTES + ARCHIVE_TRAILER_BYTES) throw new ArchiveError(0, 'file', `${size} bytes is too short for a backup archive`);
    const head = Buffer.alloc(ARCHIVE_HEADER_BYTES);
    await fh.read(head, 0, head.length, 0);
    if (head.toString('latin1', 0, 4) !== ARCHIVE_MAGIC) throw new ArchiveError(0, 'magic', `not a quorate backup archive (expected "${ARCHIVE_MAGIC}")`);
    if (head.readUInt32BE(4) !== ARCHIVE_VERSION) throw new ArchiveError(4, 'version', `archive version ${head.readUInt32BE(4)} is not supported (this build reads ${ARCHIVE_VERSION}); use a newer quorate`);
    const tail = Buffer.alloc(ARCHIVE_TRAILER_BYTES);
    const tailAt = size - ARCHIVE_TRAILER_BYTES;
    await fh.read(tail, 0, tail.length, tailAt);
    if (tail.toString('latin1', 36, 40) !== ARCHIVE_END_MAGIC) throw new ArchiveError(tailAt + 36, 'end', `the archive does not end with "${ARCHIVE_END_MAGIC}" (truncated or damaged)`);
    const m = tail.readUInt32BE(32);
    if (m === 0 || m > MAX_MANIFEST_BYTES || m > tailAt - ARCHIVE_HEADER_BYTES) throw new ArchiveError(tailAt + 32, 'manifestLength', `bad manifest length ${m}`);
    const json = Buffer.alloc(m);
    await fh.read(json, 0, m, tailAt - m);
    if (!createHash('sha256').update(json).digest().equals(tail.subarray(0, 32))) throw new ArchiveError(tailAt - m, 'manifest', 'the manifest does not match its SHA-256 (damaged)');
    const manifest = JSON.parse(json.toString('utf8')) as BackupManifest;
    if (manifest.format !== 'quorate-backup' || typeof manifest.index !== 'number' || manifest.state?.offset !== ARCHIVE_HEADER_BYTES || manifest.state.bytes !== tailAt - m - ARCHIVE_HEADER_BYTES) {
      throw new ArchiveError(tailAt - m, 'manifest', 'the manifest does not describe this file (state size or offset differ)');
    }
    return { manifest, fileBytes: size };
  } finally {
    await fh.close();
  }
}

/** The state (QSMS stream) of an archive, read from its file in 1 MiB chunks; `onBytes` counts progress. */
export async function* stateChunks(path: string, manifest: BackupManifest, onBytes?: (n: number) => void): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    let pos = manifest.state.offset;
    const end = pos + manifest.state.bytes;
    let done = 0;
    while (pos < end) {
      const buf = Buffer.alloc(Math.min(1024 * 1024, end - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) throw new ArchiveError(pos, 'state', 'the file ended early');
      pos += bytesRead;
      done += bytesRead;
      onBytes?.(done);
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** Compares parts computed from a state stream with a manifest's: the first difference, or undefined. */
export function compareParts(manifest: BackupManifest, got: { sha256: string; parts: readonly ArchivePart[] }): string | undefined {
  const want = new Map(manifest.parts.map((p) => [p.name, p]));
  for (const p of got.parts) {
    const w = want.get(p.name);
    if (w === undefined) return `part ${p.name} is not in the manifest`;
    if (w.sha256 !== p.sha256 || w.bytes !== p.bytes) return `part ${p.name}: SHA-256 ${p.sha256} (${p.bytes} bytes), the manifest says ${w.sha256} (${w.bytes} bytes)`;
    want.delete(p.name);
  }
  if (want.size > 0) return `part(s) ${[...want.keys()].join(', ')} of the manifest are missing`;
  if (got.sha256 !== manifest.state.sha256) return `the state's SHA-256 is ${got.sha256}, the manifest says ${manifest.state.sha256}`;
  return undefined;
}

/** Reads the whole archive: manifest, then every part's hash against it. Throws ArchiveError naming the first problem. */
export async function checkArchive(path: string, onBytes?: (n: number, total: number) => void): Promise<{ manifest: BackupManifest; fileBytes: number }> {
  const r = await readManifest(path);
  const hasher = new PartHasher();
  for await (const c of stateChunks(path, r.manifest, (n) => onBytes?.(n, r.manifest.state.bytes))) hasher.update(c);
  const diff = compareParts(r.manifest, hasher.finish());
  if (diff !== undefined) throw new ArchiveError(ARCHIVE_HEADER_BYTES, 'state', `${diff} (the archive is damaged)`);
  return r;
}
