// Hashes the simulator's oracles use: FNV-1a over bytes, a number mixer, and
// the hash of one log entry (the chain hashes of ./logview.ts are built from it).
import type { Entry } from '../../src/raft/types.js';

/** 32-bit FNV-1a over bytes, continuing from `h`. */
export function fnv(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h;
}

/** Mixes numbers into a 32-bit hash. */
export function mix(h: number, ...xs: number[]): number {
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ Math.floor(x / 4294967296), 0x01000193) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
  }
  return h;
}

export function entryHash(e: Entry): number {
  return mix(fnv(e.data), e.index, e.term, e.type === 'conf' ? 1 : 0);
}
