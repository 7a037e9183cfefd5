// The raft hard state file (`<dir>/hardstate`), replaced atomically.
//   v2: "QHST" | version u32 LE (2) | term u64 | vote u64 | commit u64 | walTail u64 | crc32c u32 of the 40 bytes before
//   v1: "QHST" | version u32 LE (1) | term u64 | vote u64 | commit u64 | crc32c u32 of the 32 bytes before (still read)
// walTail = first index of the newest WAL segment known durable (0 = none):
// a newest segment on disk older than that means segments were lost.
// commit is never written beyond the durable log (v2), so at recovery a commit
// beyond the recovered log is corruption; a v1 commit may be ahead (clamped).
import type { HardState } from '../raft/types.js';
import { readU64, writeU64 } from './codec.js';
import { crc32c } from '../lib/crc32c.js';
import { CorruptHardStateError, InvalidHardStateError, UnsupportedFormatError } from './errors.js';
import { atomicWriteFile } from './fsutil.js';
import { nodeFs } from './fs.js';
import type { StorageFs } from './fs.js';

const MAGIC = 0x54534851; // "QHST"
const VERSION = 2;
const BYTES = 44;
const V1_BYTES = 36;

/** The hard state file's full contents. */
export interface StoredHardState {
  readonly hs: HardState;
  /** First index of the newest durable segment, 0 = none recorded (or a v1 file). */
  readonly walTail: number;
  readonly version: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };

export function validateHardState(hs: HardState): void {
  for (const k of ['term', 'vote', 'commit'] as const) {
    const v = hs[k];
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidHardStateError(`${k} must be a non-negative safe integer, got ${String(v)}`);
  }
}

export function encodeHardState(hs: HardState, walTail = 0): Buffer {
  const b = Buffer.alloc(BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(VERSION, 4);
  writeU64(b, hs.term, 8);
  writeU64(b, hs.vote, 16);
  writeU64(b, hs.commit, 24);
  writeU64(b, walTail, 32);
  b.writeUInt32LE(crc32c(b.subarray(0, 40)), 40);
  return b;
}

export function decodeHardState(b: Buffer, path: string): StoredHardState {
  if (b.length < 8) throw new CorruptHardStateError(path, `expected ${BYTES} bytes, found ${b.length}`);
  if (b.readUInt32LE(0) !== MAGIC) throw new CorruptHardStateError(path, 'bad magic at byte offset 0');
  const version = b.readUInt32LE(4);
  const size = version === 1 ? V1_BYTES : BYTES;
  if (b.length !== size) throw new CorruptHardStateError(path, `expected ${size} bytes, found ${b.length}`);
  if (b.readUInt32LE(size - 4) !== crc32c(b.subarray(0, size - 4))) throw new CorruptHardStateError(path, `checksum mismatch at byte offset ${size - 4}`);
  if (version !== VERSION && version !== 1) throw new UnsupportedFormatError(path, `hard state version ${version} (byte offset 4), this build reads 1 and ${VERSION}`);
  const term = readU64(b, 8);
  const vote = readU64(b, 16);
  const commit = readU64(b, 24);
  const walTail = version === 1 ? 0 : readU64(b, 32);
  if (term < 0 || vote < 0 || commit < 0 || walTail < 0) throw new CorruptHardStateError(path, 'value out of range');
  return { hs: { term, vote, commit }, walTail, version };
}

/** Reads the whole hard state file; undefined when it does not exist. */
export async function readStoredHardState(path: string, fs: StorageFs = nodeFs): Promise<StoredHardState | undefined> {
  let b: Buffer;
  try {
    b = await fs.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return decodeHardState(b, path);
}

/** Reads the hard state; a missing file is a new node (term 0, no vote, commit 0). */
export async function readHardState(path: string, fs: StorageFs = nodeFs): Promise<HardState> {
  return (await readStoredHardState(path, fs))?.hs ?? EMPTY_HARD_STATE;
}

export async function writeHardState(path: string, hs: HardState, walTail = 0, fs: StorageFs = nodeFs): Promise<void> {
  validateHardState(hs);
  if (!Number.isSafeInteger(walTail) || walTail < 0) throw new InvalidHardStateError(`walTail must be a non-negative safe integer, got ${walTail}`);
  await atomicWriteFile(path, [encodeHardState(hs, walTail)], 0o600, fs);
}

/** A version-1 file, as the previous release wrote it (for upgrade tests). */
export function encodeHardStateV1(hs: HardState): Buffer {
  const b = Buffer.alloc(V1_BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(1, 4);
  writeU64(b, hs.term, 8);
  writeU64(b, hs.vote, 16);
  writeU64(b, hs.commit, 24);
  b.writeUInt32LE(crc32c(b.subarray(0, 32)), 32);
  return b;
}
