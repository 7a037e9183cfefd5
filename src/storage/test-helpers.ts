// Helpers shared by the storage tests (not exported from index.ts).
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry, EntryType, SnapshotMeta } from '../raft/types.js';

export async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-storage-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** An entry whose data is derived from (index, term) so a wrong byte is noticed. */
export function ent(index: number, term: number, size = 16, type: EntryType = 'normal'): Entry {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (index * 31 + term * 7 + i) & 0xff;
  return { index, term, type, data };
}

export function range(from: number, to: number, term: number, size = 16): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(ent(i, term, size));
  return out;
}

export async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'wal'))).filter((n) => n.endsWith('.seg')).sort();
}

export function meta(index: number, term: number): SnapshotMeta {
  return { index, term, membership: { members: [{ id: 1, role: 'voter' }, { id: 2, role: 'observer' }], removed: [] } };
}

/** Plain objects for deepEqual (Buffer vs Uint8Array differ in prototype). */
export function plain(entries: readonly Entry[]): { index: number; term: number; type: EntryType; data: number[] }[] {
  return entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: [...e.data] }));
}
