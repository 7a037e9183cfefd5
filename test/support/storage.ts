// Helpers shared by the storage tests (src/storage/*.test.ts).
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry, EntryType, SnapshotMeta } from '../../src/raft/types.js';

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

/**
 * Rewrites a data dir as the previous release wrote it: version-1 segments
 * (no preallocation: the file ends at its last record) and a version-1 hard
 * state. The incarnation file is kept unless `dropIncarnation`.
 */
export async function toLegacyV1(dir: string, dropIncarnation = false): Promise<void> {
  const { readFile, writeFile, rm } = await import('node:fs/promises');
  const { parseSegment } = await import('../../src/storage/segment.js');
  const { encodeHardStateV1, readHardState } = await import('../../src/storage/hardstate.js');
  for (const name of await segmentFiles(dir)) {
    const path = join(dir, 'wal', name);
    const buf = await readFile(path);
    const parsed = parseSegment(buf, { path, firstIndex: Number(name.slice(0, 20)), prevTerm: 0, keepFrom: Infinity, isLast: true });
    const out = Buffer.from(buf.subarray(0, parsed.end));
    out.writeUInt16LE(1, 4);
    await writeFile(path, out);
  }
  const hsPath = join(dir, 'hardstate');
  await writeFile(hsPath, encodeHardStateV1(await readHardState(hsPath)));
  if (dropIncarnation) await rm(join(dir, 'incarnation'), { force: true });
}

/** End of the last record of a version-2 segment file. */
export async function recordsEnd(path: string): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const { parseSegment } = await import('../../src/storage/segment.js');
  const name = path.slice(path.lastIndexOf('/') + 1);
  return parseSegment(await readFile(path), { path, firstIndex: Number(name.slice(0, 20)), prevTerm: 0, keepFrom: Infinity, isLast: true }).end;
}
