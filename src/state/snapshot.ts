// Snapshot framing.
//
// Format 3 (written now) is a stream, so a snapshot of any size is produced,
// checked and restored in bounded memory:
//
//   offset  size  field
//   0       4     magic "QKVS"
//   4       4     format version (3), uint32 big-endian
//   8       ...   records: uint32 big-endian length | msgpack (see kv.ts)
//   end-32  32    SHA-256 of every byte before it
//
// The first record says how many records follow, so the trailer's position
// is known without reading ahead; nothing may follow the trailer.
//
// Formats 1 and 2 (still read; the whole snapshot is then held in memory):
//
//   offset  size  field
//   0       4     magic "QKVS"
//   4       4     format version, uint32 big-endian
//   8       8     body length in bytes, uint64 big-endian
//   16      32    SHA-256 of the body
//   48      n     body
//
// The body is checked against the digest before anything is decoded, so a
// corrupt snapshot is never applied.
//
// Versions: 3 (written) streams; 2 adds the command fingerprint to client-session
// records; 1 is still read (see KvStateMachine.restore). A build that only
// knows 1 refuses a 2 with SnapshotVersionError (upgrade it) instead of
// misreading it.
import { createHash } from 'node:crypto';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';

export const SNAPSHOT_MAGIC = 'QKVS';
export const SNAPSHOT_FORMAT_VERSION = 3;
/** The last format version with the whole-body framing (frameSnapshot/unframeSnapshot). */
export const SNAPSHOT_LEGACY_FORMAT_VERSION = 2;
/** Bytes of the format-3 header (magic, version). */
export const SNAPSHOT_STREAM_HEADER_BYTES = 8;
/** Largest record of a format-3 snapshot (a key record is at most ~1 MiB value + 4 KiB key). */
export const SNAPSHOT_RECORD_BYTES_MAX = 8 * 1024 * 1024;
/** Chunks yielded by KvStateMachine.snapshot() are at most this big. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Oldest format version this build still reads. */
export const SNAPSHOT_MIN_FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 48;

const MAGIC_BYTES = new TextEncoder().encode(SNAPSHOT_MAGIC);

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
