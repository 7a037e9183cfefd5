// The raft hard state file (`<dir>/hardstate`), replaced atomically.
//   "QHST" | version u32 LE (1) | term u64 | vote u64 | commit u64 | crc32c u32 of the 32 bytes before
import { readFile } from 'node:fs/promises';
import type { HardState } from '../raft/types.js';
import { readU64, writeU64 } from './codec.js';
import { crc32c } from '../lib/crc32c.js';
import { CorruptHardStateError, InvalidHardStateError, UnsupportedFormatError } from './errors.js';
import { atomicWriteFile } from './fsutil.js';

const MAGIC = 0x54534851; // "QHST"
const VERSION = 1;
const BYTES = 36;

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };

export function validateHardState(hs: HardState): void {
  for (const k of ['term', 'vote', 'commit'] as const) {
    const v = hs[k];
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidHardStateError(`${k} must be a non-negative safe integer, got ${String(v)}`);
  }
}

export function encodeHardState(hs: HardState): Buffer {
  const b = Buffer.alloc(BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(VERSION, 4);
  writeU64(b, hs.term, 8);
  writeU64(b, hs.vote, 16);
  writeU64(b, hs.commit, 24);
  b.writeUInt32LE(crc32c(b.subarray(0, 32)), 32);
  return b;
}

export function decodeHardState(b: Buffer, path: string): HardState {
  if (b.length !== BYTES) throw new CorruptHardStateError(path, `expected ${BYTES} bytes, found ${b.length}`);
  if (b.readUInt32LE(0) !== MAGIC) throw new CorruptHardStateError(path, 'bad magic at byte offset 0');
  if (b.readUInt32LE(32) !== crc32c(b.subarray(0, 32))) throw new CorruptHardStateError(path, 'checksum mismatch at byte offset 32');
  const version = b.readUInt32LE(4);
  if (version !== VERSION) throw new UnsupportedFormatError(path, `hard state version ${version}, this build reads ${VERSION}`);
  const term = readU64(b, 8);
  const vote = readU64(b, 16);
  const commit = readU64(b, 24);
  if (term < 0 || vote < 0 || commit < 0) throw new CorruptHardStateError(path, 'value out of range');
  return { term, vote, commit };
}

/** Reads the hard state; a missing file is a new node (term 0, no vote, commit 0). */
export async function readHardState(path: string): Promise<HardState> {
  let b: Buffer;
  try {
    b = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_HARD_STATE;
    throw err;
  }
  return decodeHardState(b, path);
}

export async function writeHardState(path: string, hs: HardState): Promise<void> {
  validateHardState(hs);
  await atomicWriteFile(path, [encodeHardState(hs)], 0o600);
}
