// The WAL's writer: the segment files of one node's log and its hard state
// bookkeeping (what is appended, written, durable). WalStorage (./wal.ts) runs
// these operations one at a time through its queue; recovery (./wal-recovery.ts)
// fills the state in at open. Internal to src/storage: the fields are shared
// by these three modules and by nothing else.
import { join } from 'node:path';
import type { Entry, HardState, SnapshotMeta } from '../raft/types.js';
import { SEGMENT_HEADER_BYTES, SEGMENT_VERSION, ZERO_TAIL_BYTES, encodeRecord, encodeSegmentHeader, recordBytes, segmentFileName } from './codec.js';
import { InvalidAppendError } from './errors.js';
import { unlinkIfExists } from './fsutil.js';
import type { StorageFile, StorageFs } from './fs.js';
import { EMPTY_HARD_STATE, writeHardState } from './hardstate.js';
import { zeroFillSegment } from './zero-fill.js';

/** One segment file of the log. */
export interface Segment {
  readonly firstIndex: number;
  readonly path: string;
  /** Byte offset and term of each record (record i holds firstIndex + i). */
  readonly offsets: number[];
  readonly terms: number[];
  /** False for segments wholly below the snapshot, not read at recovery. */
  readonly parsed: boolean;
  /** Segment format version (1 = previous release, never appended to). */
  readonly version: number;
  /** End of the last record (sealed segments; the active one uses `written`). */
  end: number;
}

const MiB = 1024 * 1024;
const PENDING_INITIAL_BYTES = 64 * 1024;
const EXTEND_STEP_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);

export interface WalLogOptions {
  readonly dir: string;
  readonly fs: StorageFs;
  readonly segmentBytesMax: number;
  readonly commitEvery: number;
  readonly pendingBytesMax: number;
}

export class WalLog {
  readonly dir: string;
  readonly walDir: string;
  readonly hsPath: string;
  readonly fs: StorageFs;
  readonly #segmentBytesMax: number;
  readonly #commitEvery: number;
  readonly #pendingBytesMax: number;

  /** Ascending by firstIndex. When `fh` is set, the last one is open for appending. */
  segments: Segment[] = [];
  /** The active (version 2) segment; undefined = the next append creates a segment. */
  fh: StorageFile | undefined;
  /** End of the last record written to the active segment. */
  written = 0;
  /** Size of the active segment file (>= written + ZERO_TAIL_BYTES). */
  fileSize = 0;
  /** Encoded records not yet written (they follow `written`). */
  #pending: Buffer = Buffer.allocUnsafe(PENDING_INITIAL_BYTES);
  #pendingLen = 0;
  #dataDirty = false;
  lastIndex = 0;
  /** Highest index known durable (fdatasynced log or snapshot). */
  durableIndex = 0;
  snapshot: SnapshotMeta | undefined;
  hs: HardState = EMPTY_HARD_STATE;
  persistedHs: HardState = EMPTY_HARD_STATE;
  hsDirty = false;
  /** First index of the newest segment, as recorded in (or due for) the hard state. */
  walTail = 0;

  constructor(o: WalLogOptions) {
    this.dir = o.dir;
    this.walDir = join(o.dir, 'wal');
    this.hsPath = join(o.dir, 'hardstate');
    this.fs = o.fs;
    this.#segmentBytesMax = o.segmentBytesMax;
    this.#commitEvery = o.commitEvery;
    this.#pendingBytesMax = o.pendingBytesMax;
  }

  /** Term of the entry at `index` if stored (or the snapshot's, at its index). */
  termAt(index: number): number | undefined {
    if (index === this.snapshot?.index) return this.snapshot.term;
    if (index > this.lastIndex) return undefined;
    const seg = this.segments[this.findSegment(index)];
    return seg?.terms[index - seg.firstIndex];
  }

  /** Term of a stored log entry, ignoring the snapshot. */
  termAtStored(index: number): number | undefined {
    const seg = this.segments[this.findSegment(index)];
    if (seg === undefined || !seg.parsed) return undefined;
    return seg.terms[index - seg.firstIndex];
  }

  findSegment(index: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.segments[mid]!.firstIndex <= index) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  markHsDirtyIfDue(): void {
    const hs = this.hs;
    const p = this.persistedHs;
    if (hs.term !== p.term || hs.vote !== p.vote || (hs.commit !== p.commit && hs.commit - p.commit >= this.#commitEvery)) this.hsDirty = true;
  }

  /** Writes the hard state now, with commit capped at the durable log. */
  async writeHs(): Promise<void> {
    const hs = { ...this.hs, commit: Math.min(this.hs.commit, this.durableIndex) };
    this.hsDirty = false;
    await writeHardState(this.hsPath, hs, this.walTail, this.fs);
    this.persistedHs = hs;
  }

  /** unlink that ignores a missing file. */
  unlinkIfExists(path: string): Promise<void> {
    return unlinkIfExists(path, this.fs);
  }

  /** See WalStorage.append. */
  async append(entries: readonly Entry[]): Promise<void> {
    if (entries.length === 0) return;
    let prev: Entry | undefined;
    for (const e of entries) {
      if (!Number.isSafeInteger(e.index) || e.index < 1 || !Number.isSafeInteger(e.term) || e.term < 0) {
        throw new InvalidAppendError(`entry index ${e.index} term ${e.term}: both must be safe integers, index >= 1`);
      }
      if (e.type !== 'normal' && e.type !== 'conf') throw new InvalidAppendError(`entry ${e.index} has unknown type ${String(e.type)}`);
      if (!(e.data instanceof Uint8Array)) throw new InvalidAppendError(`entry ${e.index} data is not a Uint8Array`);
      if (prev !== undefined && e.index !== prev.index + 1) throw new InvalidAppendError(`entries not contiguous: ${prev.index} then ${e.index}`);
      if (prev !== undefined && e.term < prev.term) throw new InvalidAppendError(`term decreases from ${prev.term} to ${e.term} at index ${e.index}`);
      prev = e;
    }
    // Skip what is already stored: same index and term means the same entry (Log Matching).
    let s = 0;
    while (s < entries.length && entries[s]!.index <= this.lastIndex && this.termAt(entries[s]!.index) === entries[s]!.term) s++;
    const head = entries[s];
    if (head === undefined) return;
    if (head.index > this.lastIndex + 1) throw new InvalidAppendError(`entry ${head.index} leaves a gap after the last stored index ${this.lastIndex}`);
    const snapIndex = this.snapshot?.index ?? 0;
    if (head.index <= snapIndex) throw new InvalidAppendError(`entry ${head.index} conflicts at or below the snapshot index ${snapIndex}`);
    const prevTerm = this.termAt(head.index - 1);
    if (prevTerm !== undefined && head.term < prevTerm) throw new InvalidAppendError(`entry ${head.index} has term ${head.term}, lower than the previous entry's term ${prevTerm}`);
    if (head.index <= this.lastIndex) await this.#truncateFrom(head.index);

    for (let i = s; i < entries.length; i++) {
      const e = entries[i]!;
      const size = recordBytes(e);
      if (this.fh === undefined) await this.#createSegment(e.index);
      else if (this.segments.at(-1)!.offsets.length > 0 && this.written + this.#pendingLen + size + ZERO_TAIL_BYTES > this.#segmentBytesMax) await this.#roll(e.index);
      const seg = this.segments.at(-1)!;
      this.#reservePending(size);
      seg.offsets.push(this.written + this.#pendingLen);
      seg.terms.push(e.term);
      this.#pendingLen = encodeRecord(e, this.#pending, this.#pendingLen);
      this.lastIndex = e.index;
    }
    if (this.#pendingLen >= this.#pendingBytesMax) await this.#flushPending(false);
  }

  #reservePending(bytes: number): void {
    const need = this.#pendingLen + bytes;
    if (need <= this.#pending.length) return;
    const next = Buffer.allocUnsafe(Math.max(need, this.#pending.length * 2));
    this.#pending.copy(next, 0, 0, this.#pendingLen);
    this.#pending = next;
  }

  /**
   * Everything appended since the last flush in one write (and, when `sync`,
   * one fdatasync after it), both off the event loop (StorageFile.writeLog:
   * libuv's thread pool). WalStorage's queue runs one operation at a time, so
   * nothing touches the pending buffer until the write has settled; meanwhile
   * the event loop serves the network, and the replica gathers the proposals
   * and messages that arrive into its next Ready (group commit: the next fsync
   * covers all of them).
   */
  async #flushPending(sync: boolean): Promise<void> {
    const fh = this.fh;
    if (this.#pendingLen === 0) {
      if (sync && this.#dataDirty) {
        await fh!.writeLog(EMPTY, this.written, true);
        this.#dataDirty = false;
      }
      return;
    }
    // The zero tail must stay: a record never reaches the end of the file. The
    // (rare: once per EXTEND_STEP_BYTES) extension is made durable before
    // records land in it, so a crash can never leave records at the end of a
    // file without their zero tail.
    const need = this.written + this.#pendingLen + ZERO_TAIL_BYTES;
    if (need > this.fileSize) {
      const size = Math.ceil(need / EXTEND_STEP_BYTES) * EXTEND_STEP_BYTES;
      await fh!.truncate(size);
      await fh!.datasync();
      this.fileSize = size;
    }
    await fh!.writeLog(this.#pending.subarray(0, this.#pendingLen), this.written, sync);
    this.written += this.#pendingLen;
    this.#pendingLen = 0;
    this.#dataDirty = !sync;
    if (this.#pending.length > 16 * MiB) this.#pending = Buffer.allocUnsafe(PENDING_INITIAL_BYTES);
  }

  /** Makes everything since the last sync durable (see WalStorage.sync). */
  async sync(): Promise<void> {
    // Hard state first: the log terms must never run above the stored term. Its
    // commit is capped at the log made durable by earlier syncs (writeHs), so a
    // crash before the fdatasync below can lose only uncommitted entries.
    if (this.hsDirty) await this.writeHs();
    if (this.fh !== undefined) await this.#flushPending(true);
    this.durableIndex = Math.max(this.durableIndex, this.lastIndex);
    // A commit held back by the cap above goes out with a later sync.
    this.markHsDirtyIfDue();
  }

  /**
   * Creates a version-2 segment durably: preallocated (sparse zeros) to
   * segmentBytesMax, header written, file and directory fsynced. The hard state
   * records it as the newest segment at the next sync.
   */
  async #createSegment(firstIndex: number): Promise<void> {
    const path = join(this.walDir, segmentFileName(firstIndex));
    const fh = await this.fs.open(path, 'w', 0o600);
    try {
      await fh.truncate(this.#segmentBytesMax);
      await fh.write(encodeSegmentHeader(firstIndex), 0, SEGMENT_HEADER_BYTES, 0);
      await fh.datasync();
      await this.fs.fsyncDir(this.walDir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.fh = fh;
    this.segments.push({ firstIndex, path, offsets: [], terms: [], parsed: true, version: SEGMENT_VERSION, end: SEGMENT_HEADER_BYTES });
    this.written = SEGMENT_HEADER_BYTES;
    this.fileSize = this.#segmentBytesMax;
    this.#pendingLen = 0;
    this.walTail = firstIndex;
    this.hsDirty = true;
  }

  /**
   * Seals the active segment durably before starting the next one, so that at
   * recovery only the last segment can have a torn tail.
   */
  async #roll(nextIndex: number): Promise<void> {
    await this.#flushPending(true);
    this.segments.at(-1)!.end = this.written;
    const fh = this.fh!;
    this.fh = undefined;
    await fh.close();
    await this.#createSegment(nextIndex);
  }

  /** Removes entries >= index (index within the stored log, above the snapshot). */
  async #truncateFrom(index: number): Promise<void> {
    const k = this.findSegment(index);
    const seg = this.segments[k]!;
    this.durableIndex = Math.min(this.durableIndex, index - 1);
    if (k < this.segments.length - 1) {
      const fh = this.fh;
      this.fh = undefined;
      this.#pendingLen = 0;
      this.#dataDirty = false;
      await fh?.close();
      // Record the new newest segment before deleting the later ones, newest
      // first, so that a crash leaves a contiguous log that is not "missing" any.
      this.walTail = seg.firstIndex;
      await this.writeHs();
      for (let j = this.segments.length - 1; j > k; j--) await this.unlinkIfExists(this.segments[j]!.path);
      await this.fs.fsyncDir(this.walDir);
      this.segments.length = k + 1;
      if (seg.version === SEGMENT_VERSION) {
        this.fh = await this.fs.open(seg.path, 'r+');
        this.written = seg.end;
        this.fileSize = (await this.fh.stat()).size;
      }
    }
    const keep = index - seg.firstIndex;
    const off = seg.offsets[keep]!;
    if (this.fh !== undefined) {
      if (off >= this.written) {
        this.#pendingLen = off - this.written;
      } else {
        // Zero-filled, not shortened (the zero tail marks the end of the log),
        // and durable at once: stale records must never reappear behind a
        // later torn write.
        this.#pendingLen = 0;
        await zeroFillSegment(this.fs, this.dir, this.fh, seg.firstIndex, off, this.written);
        this.written = off;
        this.#dataDirty = false;
      }
    } else {
      // A version-1 segment (previous release): shortened, as that format requires.
      const fh = await this.fs.open(seg.path, 'r+');
      try {
        await fh.truncate(off);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      seg.end = off;
      if (keep === 0) {
        this.segments.pop();
        this.walTail = this.segments.at(-1)?.firstIndex ?? 0;
        await this.writeHs();
        await this.unlinkIfExists(seg.path);
        await this.fs.fsyncDir(this.walDir);
      }
    }
    seg.offsets.length = keep;
    seg.terms.length = keep;
    this.lastIndex = index - 1;
  }

  /** Drops the whole log: the hard state stops naming a newest segment first. */
  async dropAllSegments(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    this.#pendingLen = 0;
    this.#dataDirty = false;
    await fh?.close();
    this.walTail = 0;
    await this.writeHs();
    for (let j = this.segments.length - 1; j >= 0; j--) await this.unlinkIfExists(this.segments[j]!.path);
    await this.fs.fsyncDir(this.walDir);
    this.segments = [];
  }

  /** Closes the active segment file (nothing is flushed). */
  async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}
