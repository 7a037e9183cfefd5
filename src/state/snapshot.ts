// Snapshot framing: a fixed header, then the body (msgpack, see kv.ts).
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
// Versions: 2 (written) adds the command fingerprint to client-session
// records; 1 is still read (see KvStateMachine.restore). A build that only
// knows 1 refuses a 2 with SnapshotVersionError (upgrade it) instead of
// misreading it.
import { createHash } from 'node:crypto';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';

export const SNAPSHOT_MAGIC = 'QKVS';
export const SNAPSHOT_FORMAT_VERSION = 2;
/** Oldest format version this build still reads. */
export const SNAPSHOT_MIN_FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 48;

const MAGIC_BYTES = new TextEncoder().encode(SNAPSHOT_MAGIC);

export function sha256(bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest();
}

export function frameSnapshot(body: Uint8Array, version: number = SNAPSHOT_FORMAT_VERSION): Uint8Array {
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
  if (version < SNAPSHOT_MIN_FORMAT_VERSION || version > SNAPSHOT_FORMAT_VERSION) {
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
