// Snapshot framing.
//
// The composite format ("QSMS", version 1; machines.ts writes and reads it)
// is what this release writes once the cluster feature level is >= 2. It is a
// stream, produced, checked and restored in bounded memory:
//
//   offset  size  field
//   0       4     magic "QSMS"
//   4       4     format version (1), uint32 big-endian
//   8       ...   records: uint32 big-endian length (1..8 MiB) | msgpack
//                   [appliedIndex, clockMs, sessionCount, sectionCount]
//                   sessionCount x [idempotencyKey, atMs, resultTuple, fingerprint|nil]
//                 then sectionCount sections, in machine-id order:
//                   a record: the machine id (msgpack string)
//                   data frames: uint32 length (1..64 KiB) | that many bytes of the machine's own stream
//                   an end frame: uint32 0
//   end-32  32    SHA-256 of every byte before it
//
// A machine's stream is its own business (the KV's: kv.ts). The data frames
// cut it into pieces of exactly SECTION_FRAME_BYTES (the last one shorter),
// whatever chunks the machine yielded, so equal machine bytes give equal
// snapshot bytes. Nothing may follow the trailer.
//
// The legacy format ("QKVS", versions 1 and 2; the previous release's only
// format) is one msgpack body held in memory whole:
//
//   offset  size  field
//   0       4     magic "QKVS"
//   4       4     format version, uint32 big-endian
//   8       8     body length in bytes, uint64 big-endian
//   16      32    SHA-256 of the body
//   48      n     body: [appliedIndex, revision, clockMs, keys, sessions]
//
// The body is checked against the digest before anything is decoded, so a
// corrupt snapshot is never applied. Version 2 adds the command fingerprint
// to client-session records. This release reads both and writes version 2
// while the cluster feature level is 1. (KV format 3, a streaming QKVS of an
// unreleased build, is not read.)
import { createHash } from 'node:crypto';
import { unpackCanonical } from './commands.js';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';

/** Magic of the legacy (previous release) KV snapshot. */
export const SNAPSHOT_MAGIC = 'QKVS';
/** The legacy format version written (while the cluster feature level is 1) and the newest read. */
export const SNAPSHOT_FORMAT_VERSION = 2;
/** The last format version with the whole-body framing (frameSnapshot/unframeSnapshot). */
export const SNAPSHOT_LEGACY_FORMAT_VERSION = 2;
/** Magic of the composite snapshot (registry state, then one section per machine). */
export const COMPOSITE_SNAPSHOT_MAGIC = 'QSMS';
export const COMPOSITE_SNAPSHOT_VERSION = 1;
/** Bytes of a streaming header (magic, version): the composite's, and what restore reads first to tell the formats apart. */
export const SNAPSHOT_STREAM_HEADER_BYTES = 8;
/** Largest length-prefixed record (a KV key record is at most ~1 MiB value + 4 KiB key). */
export const SNAPSHOT_RECORD_BYTES_MAX = 8 * 1024 * 1024;
/** Data frames of a composite section carry exactly this many bytes of the machine's stream (the last one fewer). */
export const SECTION_FRAME_BYTES = 64 * 1024;
/** Chunks yielded by snapshot() streams are at most this big. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Oldest format version this build still reads. */
export const SNAPSHOT_MIN_FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 48;

const MAGIC_BYTES = new TextEncoder().encode(SNAPSHOT_MAGIC);
export const COMPOSITE_MAGIC_BYTES = new TextEncoder().encode(COMPOSITE_SNAPSHOT_MAGIC);

export function sha256(bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest();
}

/** Frames a body in the format-1/2 layout (still read by restore; tests build old snapshots with it). */
export function frameSnapshot(body: Uint8Array, version: number = SNAPSHOT_LEGACY_FORMAT_VERSION): Uint8Array {
  const out = new Uint8Array(SNAPSHOT_HEADER_BYTES + body.length);
  const view = new DataView(out.buffer);
  out.set(MAGIC_BYTES, 0);
  view.setUint32(4, version);
  view.setBigUint64(8, BigInt(body.length));
  out.set(sha256(body), 16);
  out.set(body, SNAPSHOT_HEADER_BYTES);
  return out;
}

/** Checks the header and digest; returns the format version and the body (a view, not a copy). */
export function unframeSnapshot(bytes: Uint8Array): { version: number; body: Uint8Array } {
  if (bytes.length < SNAPSHOT_HEADER_BYTES) {
    throw new SnapshotCorruptError(bytes.length, 'header', `truncated: ${bytes.length} bytes, the header alone is ${SNAPSHOT_HEADER_BYTES}`);
  }
  for (let i = 0; i < MAGIC_BYTES.length; i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) throw new SnapshotCorruptError(i, 'magic', `expected "${SNAPSHOT_MAGIC}"`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4);
  if (version < SNAPSHOT_MIN_FORMAT_VERSION || version > SNAPSHOT_LEGACY_FORMAT_VERSION) {
    if (version > SNAPSHOT_FORMAT_VERSION) throw new SnapshotVersionError(version, SNAPSHOT_FORMAT_VERSION);
    throw new SnapshotCorruptError(4, 'version', `unknown format version ${version}`);
  }
  const bodyLength = view.getBigUint64(8);
  const actual = BigInt(bytes.length - SNAPSHOT_HEADER_BYTES);
  if (bodyLength !== actual) {
    throw new SnapshotCorruptError(8, 'bodyLength', `header says ${bodyLength} body bytes, found ${actual}${actual < bodyLength ? ' (truncated)' : ''}`);
  }
  const body = bytes.subarray(SNAPSHOT_HEADER_BYTES);
  const digest = sha256(body);
  const stored = bytes.subarray(16, 48);
  for (let i = 0; i < 32; i++) {
    if (digest[i] !== stored[i]) {
      throw new SnapshotCorruptError(16, 'checksum', `SHA-256 of body bytes ${SNAPSHOT_HEADER_BYTES}..${bytes.length} does not match the header`);
    }
  }
  return { version, body };
}

export { MAGIC_BYTES as SNAPSHOT_MAGIC_BYTES };

/**
 * Accumulates bytes and length-prefixed msgpack records into chunks of at
 * most SNAPSHOT_CHUNK_BYTES, hashing them. The first buffer starts small and
 * doubles up to the chunk size, so that a small state (checksum() runs after
 * every apply in the simulator) costs no 1 MiB allocation. Take finished
 * chunks from `full` as they appear; finish() flushes and returns the SHA-256
 * of everything written.
 */
export class ChunkBuilder {
  #out = Buffer.allocUnsafe(4096);
  #n = 0;
  readonly full: Uint8Array[] = [];
  readonly #hash = createHash('sha256');
  readonly #len = Buffer.alloc(4);

  write(b: Uint8Array): void {
    let at = 0;
    while (at < b.length) {
      if (this.#n === this.#out.length) {
        const bigger = Buffer.allocUnsafe(Math.min(SNAPSHOT_CHUNK_BYTES, this.#out.length * 2));
        this.#out.copy(bigger, 0, 0, this.#n);
        this.#out = bigger;
      }
      const take = Math.min(b.length - at, this.#out.length - this.#n);
      this.#out.set(b.subarray(at, at + take), this.#n);
      this.#n += take;
      at += take;
      if (this.#n === SNAPSHOT_CHUNK_BYTES) this.#flush();
    }
  }

  u32(n: number): void {
    this.#len.writeUInt32BE(n, 0);
    this.write(this.#len);
  }

  /** A record: uint32 length | msgpack of `tuple` (pack with packCanonical for deterministic bytes). */
  record(body: Uint8Array): void {
    const at = this.reserve(body.length);
    if (at >= 0) {
      this.#out.set(body, at);
      this.commit(body.length);
    } else {
      this.u32(body.length);
      this.write(body);
    }
  }

  /** The buffer reserve()'s offsets point into: valid until the next call on this builder. */
  get buffer(): Buffer {
    return this.#out;
  }

  /**
   * Room for a record of `size` body bytes in the current chunk: writes its
   * length and returns the offset in `buffer` where its body goes (write it,
   * then commit(size)). -1 where the record would cross the end of the chunk:
   * then give it to record(), which splits it. The bytes and the chunks are
   * the same either way.
   */
  reserve(size: number): number {
    const need = this.#n + 4 + size;
    if (need > SNAPSHOT_CHUNK_BYTES) return -1;
    if (need > this.#out.length) {
      const bigger = Buffer.allocUnsafe(Math.min(SNAPSHOT_CHUNK_BYTES, Math.max(need, this.#out.length * 2)));
      this.#out.copy(bigger, 0, 0, this.#n);
      this.#out = bigger;
    }
    this.#out.writeUInt32BE(size, this.#n);
    return this.#n + 4;
  }

  /** The record reserve(size) made room for is written. */
  commit(size: number): void {
    this.#n += 4 + size;
    if (this.#n === SNAPSHOT_CHUNK_BYTES) this.#flush();
  }

  #flush(): void {
    if (this.#n === 0) return;
    const c = this.#out.subarray(0, this.#n);
    this.#hash.update(c);
    this.full.push(c);
    this.#out = Buffer.allocUnsafe(SNAPSHOT_CHUNK_BYTES);
    this.#n = 0;
  }

  #digest: Uint8Array | undefined;

  /** Flushes; returns the SHA-256 of every byte written (again on later calls). */
  finish(): Uint8Array {
    if (this.#digest === undefined) {
      this.#flush();
      this.#digest = this.#hash.digest();
    }
    return this.#digest;
  }
}

/**
 * Reads exact byte counts from a stream of chunks, tracking the absolute
 * offset (for error messages) and, optionally, a SHA-256 of what was read.
 * Holds at most one source chunk plus the bytes of one read.
 */
export class ChunkReader {
  readonly #it: AsyncIterator<Uint8Array>;
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #offset = 0;
  #done = false;
  readonly hash = createHash('sha256');
  hashing = true;

  constructor(chunks: AsyncIterable<Uint8Array>) {
    this.#it = chunks[Symbol.asyncIterator]();
  }

  /** Absolute offset of the next byte. */
  get offset(): number {
    return this.#offset;
  }

  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#buf.length) {
      if (this.#done) return false;
      const r = await this.#it.next();
      if (r.done === true) {
        this.#done = true;
        return false;
      }
      this.#buf = r.value;
      this.#pos = 0;
    }
    return true;
  }

  /** The next `n` bytes, or undefined if the stream ends first (the bytes before the end are consumed). */
  async read(n: number): Promise<Uint8Array | undefined> {
    if (n === 0) return new Uint8Array(0);
    if (!(await this.#fill())) return undefined;
    let out: Uint8Array;
    if (this.#buf.length - this.#pos >= n) {
      out = this.#buf.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
    } else {
      out = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        if (!(await this.#fill())) {
          this.#offset += got;
          return undefined;
        }
        const take = Math.min(n - got, this.#buf.length - this.#pos);
        out.set(this.#buf.subarray(this.#pos, this.#pos + take), got);
        this.#pos += take;
        got += take;
      }
    }
    this.#offset += n;
    if (this.hashing) this.hash.update(out);
    return out;
  }

  /** The rest of the current chunk, not consumed (empty when it is used up or none is read yet). */
  buffered(): Uint8Array {
    return this.#buf.subarray(this.#pos);
  }

  /**
   * The next `n` bytes if the current chunk holds them all, else undefined
   * and nothing consumed (then read(n)): a record of a snapshot of small keys
   * is read without a promise per field.
   */
  readNow(n: number): Uint8Array | undefined {
    if (n === 0 || this.#buf.length - this.#pos < n) return undefined;
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    this.#offset += n;
    if (this.hashing) this.hash.update(out);
    return out;
  }

  /** The bytes available now (the rest of the current chunk), or undefined at the end of the stream. */
  async chunk(): Promise<Uint8Array | undefined> {
    if (!(await this.#fill())) return undefined;
    const out = this.#buf.subarray(this.#pos);
    this.#pos = this.#buf.length;
    this.#offset += out.length;
    if (this.hashing) this.hash.update(out);
    return out;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.#fill());
  }

  /** Every remaining byte (legacy formats), bounded by `maxBytes`. */
  async rest(maxBytes: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let n = 0;
    while (await this.#fill()) {
      const part = this.#buf.subarray(this.#pos);
      n += part.length;
      if (n > maxBytes) throw new SnapshotCorruptError(this.#offset, 'body', `a format-1/2 snapshot over ${maxBytes} bytes is not read`);
      parts.push(part.slice());
      this.#pos = this.#buf.length;
      this.#offset += part.length;
    }
    return Buffer.concat(parts, n);
  }

  /** Stops reading the source (closes a file it reads). */
  async close(): Promise<void> {
    await this.#it.return?.();
  }
}

/** Collects a snapshot stream into one array (tests, small states). */
export async function collectSnapshot(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of chunks) {
    parts.push(c.slice());
    n += c.length;
  }
  return new Uint8Array(Buffer.concat(parts, n));
}

/** A one-chunk stream of `bytes` (or chunks of `chunkBytes`). */
export async function* snapshotChunksOf(bytes: Uint8Array, chunkBytes = SNAPSHOT_CHUNK_BYTES): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += chunkBytes) yield bytes.subarray(at, Math.min(bytes.length, at + chunkBytes));
}

/** A check failed: throws SnapshotCorruptError at the current record's offset. */
export type Bad = (field: string, reason: string) => never;

/** Reads length-prefixed msgpack records (uint32 length 1..SNAPSHOT_RECORD_BYTES_MAX | msgpack) from a ChunkReader. */
/** RecordReader.nextNow's answer when the record is not all in the current chunk. */
export const NOT_BUFFERED: unique symbol = Symbol('not buffered');

export class RecordReader {
  /** Offset of the record being read (for errors). */
  at: number;
  readonly bad: Bad = (field, reason) => {
    throw new SnapshotCorruptError(this.at, field, reason);
  };

  /**
   * `decodeFast`, when given, reads a record it knows in place (undefined:
   * not one of those, then msgpack as for every other record).
   */
  constructor(readonly r: ChunkReader, readonly decodeFast?: (body: Uint8Array) => unknown) {
    this.at = r.offset;
  }

  async next(field: string): Promise<unknown> {
    const now = this.nextNow(field);
    if (now !== NOT_BUFFERED) return now;
    const r = this.r;
    this.at = r.offset;
    const len = await r.read(4);
    if (len === undefined) return this.bad(field, `truncated: the stream ends at byte ${r.offset}, inside the length of a record`);
    const n = this.#length(field, len);
    const body = await r.read(n);
    if (body === undefined) return this.bad(field, `truncated: the stream ends at byte ${r.offset}, inside a record of ${n} bytes`);
    return this.#decode(field, body);
  }

  /**
   * The next record decoded, when the current chunk holds all of it (most
   * records: chunks are 1 MiB), else NOT_BUFFERED with nothing consumed.
   * Reading 10000 small keys took two promises per key through next() alone.
   */
  nextNow(field: string): unknown {
    const r = this.r;
    const b = r.buffered();
    if (b.length < 4) return NOT_BUFFERED;
    this.at = r.offset;
    const n = this.#length(field, b);
    if (b.length < 4 + n) return NOT_BUFFERED;
    r.readNow(4);
    return this.#decode(field, r.readNow(n)!);
  }

  #length(field: string, len: Uint8Array): number {
    const n = ((len[0]! << 24) | (len[1]! << 16) | (len[2]! << 8) | len[3]!) >>> 0;
    if (n === 0 || n > SNAPSHOT_RECORD_BYTES_MAX) return this.bad(field, `record length ${n} is outside 1..${SNAPSHOT_RECORD_BYTES_MAX}`);
    return n;
  }

  #decode(field: string, body: Uint8Array): unknown {
    const fast = this.decodeFast?.(body);
    if (fast !== undefined) return fast;
    try {
      return unpackCanonical(body);
    } catch (err) {
      return this.bad(field, `not valid msgpack (${(err as Error).message})`);
    }
  }
}

export const nat = (bad: Bad, field: string, v: unknown): number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : bad(field, `expected a non-negative integer, got ${String(v)}`);

/** An empty stream (a registered machine absent from a snapshot restores from it: its empty state). */
export const EMPTY_SNAPSHOT: AsyncIterable<Uint8Array> = {
  [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }),
};
