// The KV's snapshot section (its own stream inside the registry's composite
// snapshot, ./registry-snapshot.ts): serializing a copy-on-write capture of
// the KV, and parsing and checking a section back. Part of the KV (./kv.ts),
// kept apart for size. Layout: records of [KV_SECTION_VERSION, revision,
// keyCount], then keyCount key tuples sorted by key.
import { packCanonical, packCanonicalView } from './commands.js';
import { SnapshotVersionError } from './errors.js';
import { decodeKeyRecordFast, keyRecordBytes, writeKeyRecord } from './fast-entry.js';
import type { KeyRecord } from './kv.js';
import { ChunkBuilder, ChunkReader, NOT_BUFFERED, RecordReader, nat } from './snapshot.js';
import type { Bad } from './snapshot.js';

export interface Capture {
  readonly records: ReadonlyMap<string, KeyRecord>;
  readonly keys: readonly string[];
  readonly overlay: Map<string, KeyRecord>;
  readonly revision: number;
}

/** The KV section's version (its head record's first field). */
export const KV_SECTION_VERSION = 1;

export const keyTuple = (r: KeyRecord): unknown[] => [r.key, r.value, r.createRevision, r.modRevision, r.version, r.leaseDeadlineMs ?? null];

/** Records serialized between two PAUSE markers: about a millisecond of work. */
const RECORDS_PER_SLICE = 256;

/**
 * Yielded by serializeCapture between slices of records, not a chunk: a
 * consumer on the event loop lets other work run there (a 1 MiB chunk of
 * small keys is several milliseconds of work, and the snapshot runs beside
 * live traffic); any other consumer skips it.
 */
export const PAUSE: Uint8Array = new Uint8Array(0);

export function* serializeCapture(cap: Capture, b: ChunkBuilder): Generator<Uint8Array, void, undefined> {
  b.record(packCanonical([KV_SECTION_VERSION, cap.revision, cap.keys.length]));
  let n = 0;
  for (const key of cap.keys) {
    const r = cap.overlay.get(key) ?? cap.records.get(key)!;
    const size = keyRecordBytes(r);
    const at = size < 0 ? -1 : b.reserve(size);
    if (at >= 0) {
      // Written straight into the chunk (the common record: ASCII, within the chunk).
      writeKeyRecord(r, b.buffer, at);
      b.commit(size);
    } else if (size >= 0) {
      // Across the end of a chunk: record() splits it.
      const one = Buffer.allocUnsafe(size);
      writeKeyRecord(r, one, 0);
      b.record(one);
    } else {
      // Copied into the chunk at once: no copy of its own (the view is reused by the next pack).
      b.record(packCanonicalView(keyTuple(r)));
    }
    while (b.full.length > 0) yield b.full.shift()!;
    if (++n % RECORDS_PER_SLICE === 0) yield PAUSE;
  }
  b.finish();
  while (b.full.length > 0) yield b.full.shift()!;
}

export interface ParsedKv {
  revision: number;
  records: Map<string, KeyRecord>;
  sorted: string[];
  leases: Map<string, number>;
}

/** Per-key checks shared by both formats; `prevKey` carries the order between records. */
export class KeyChecker {
  prevKey: string | undefined;
  constructor(readonly revision: number) {}

  key(t: unknown, f: string, bad: Bad): KeyRecord {
    if (!Array.isArray(t) || t.length !== 6) bad(f, 'expected [key, value, createRevision, modRevision, version, leaseDeadlineMs]');
    const [key, value, cr, mr, ver, lease] = t as unknown[];
    if (typeof key !== 'string' || key.length === 0) return bad(`${f}.key`, 'expected a non-empty string');
    if (this.prevKey !== undefined && !(this.prevKey < key)) bad(`${f}.key`, `keys out of order or duplicated: ${JSON.stringify(this.prevKey)} then ${JSON.stringify(key)}`);
    this.prevKey = key;
    if (typeof value !== 'string') return bad(`${f}.value`, 'expected a string');
    const createRevision = nat(bad, `${f}.createRevision`, cr);
    const modRevision = nat(bad, `${f}.modRevision`, mr);
    const version = nat(bad, `${f}.version`, ver);
    if (createRevision < 1 || createRevision > modRevision || modRevision > this.revision) {
      bad(`${f}.modRevision`, `need 1 <= createRevision (${createRevision}) <= modRevision (${modRevision}) <= revision (${this.revision})`);
    }
    if (version < 1) bad(`${f}.version`, 'expected >= 1');
    const base = { key, value, createRevision, modRevision, version };
    if (lease === null) return Object.freeze(base);
    return Object.freeze({ ...base, leaseDeadlineMs: nat(bad, `${f}.leaseDeadlineMs`, lease) });
  }
}

export function emptyParsed(revision: number): ParsedKv {
  return { revision, records: new Map(), sorted: [], leases: new Map() };
}

export function addKey(p: ParsedKv, rec: KeyRecord): void {
  p.records.set(rec.key, rec);
  p.sorted.push(rec.key);
  if (rec.leaseDeadlineMs !== undefined) p.leases.set(rec.key, rec.leaseDeadlineMs);
}

/** Reads and checks a whole KV section; builds the state only when `build`. An empty stream is the empty KV. */
export async function readSection(chunks: AsyncIterable<Uint8Array>, build: boolean): Promise<ParsedKv | undefined> {
  const r = new ChunkReader(chunks);
  r.hashing = false;
  try {
    if (await r.atEnd()) return emptyParsed(0);
    const rr = new RecordReader(r, decodeKeyRecordFast);
    const head = await rr.next('kv.head');
    if (!Array.isArray(head) || head.length !== 3) return rr.bad('kv.head', 'expected [sectionVersion, revision, keyCount]');
    if (head[0] !== KV_SECTION_VERSION) {
      if (typeof head[0] === 'number' && Number.isSafeInteger(head[0]) && head[0] > KV_SECTION_VERSION) throw new SnapshotVersionError(head[0], KV_SECTION_VERSION);
      return rr.bad('kv.version', `unknown KV section version ${String(head[0])}`);
    }
    const revision = nat(rr.bad, 'kv.revision', head[1]);
    const keyCount = nat(rr.bad, 'kv.keyCount', head[2]);
    const check = new KeyChecker(revision);
    const p = build ? emptyParsed(revision) : undefined;
    for (let i = 0; i < keyCount; i++) {
      const f = `kv.keys[${i}]`;
      let t = rr.nextNow(f);
      if (t === NOT_BUFFERED) t = await rr.next(f);
      const rec = check.key(t, f, rr.bad);
      if (p) addKey(p, rec);
    }
    if (!(await r.atEnd())) {
      rr.at = r.offset;
      rr.bad('kv.end', `bytes follow the ${keyCount} key records the head announced`);
    }
    return p;
  } finally {
    await r.close();
  }
}
