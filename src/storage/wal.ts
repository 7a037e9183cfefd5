// WalStorage: the durable storage of one node (segmented WAL, hard state,
// snapshots). See ./README.md for file formats and recovery rules.
//
// All async methods run one at a time in call order (an internal queue), but
// the node loop should still await each call: persist → send → apply.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Entry, HardState, RaftStorageState, SnapshotMeta } from '../raft/types.js';
import {
  SEGMENT_HEADER_BYTES,
  SEGMENT_VERSION,
  ZERO_TAIL_BYTES,
  encodeRecord,
  endOfNonZero,
  encodeSegmentHeader,
  parseSegmentFileName,
  recordBytes,
  segmentFileName,
} from './codec.js';
import {
  CorruptHardStateError,
  CorruptIncarnationError,
  CorruptLogError,
  CorruptSnapshotError,
  InvalidAppendError,
  InvalidHardStateError,
  InvalidSnapshotRequestError,
  StorageClosedError,
  StorageError,
  StorageFailedError,
} from './errors.js';
import { SerialQueue, atomicWriteFile, mkdirDurable, unlinkIfExists } from './fsutil.js';
import { nodeFs } from './fs.js';
import type { StorageFile, StorageFs } from './fs.js';
import { EMPTY_HARD_STATE, readStoredHardState, validateHardState, writeHardState } from './hardstate.js';
import { SnapshotStore } from './snapshot.js';
import type { LoadedSnapshot, SnapshotValidator } from './snapshot.js';

/** A snapshot's bytes as a stream of chunks (the node's SnapshotChunks). */
export type SnapshotChunks = AsyncIterable<Uint8Array>;

/** A stored snapshot, readable as a stream (the node's SnapshotSource). */
export interface StoredSnapshotSource {
  readonly meta: SnapshotMeta;
  readonly path: string;
  readonly bytes: number;
  read(): SnapshotChunks;
}
import { parseSegment } from './segment.js';

export interface WalOptions {
  /**
   * Segment file size: new segments are preallocated (sparse) to this size and
   * the log rolls to a new one when a record would not fit; default 64 MiB.
   */
  readonly segmentBytesMax?: number;
  /**
   * Commit-only hard state changes are persisted once commit has advanced by
   * this many entries (term/vote changes always are, at the next sync);
   * default 1024, 0 = every change. A stale commit after a crash is safe.
   */
  readonly commitPersistEveryEntries?: number;
  /** Snapshot files kept; default 2. */
  readonly snapshotsKept?: number;
  /** Unsynced appended bytes handed to the OS (write, no fsync) beyond this; default 4 MiB. */
  readonly pendingBytesMax?: number;
  /**
   * Checks a snapshot's content (the state machine's own format), throwing if
   * it is unusable. A snapshot it rejects is treated like one whose checksum
   * fails: recovery falls back to an older snapshot or the log when they
   * suffice, and stops with CorruptSnapshotError otherwise.
   */
  readonly validateSnapshot?: SnapshotValidator;
  /** The file system (./fs.ts); default the real one (nodeFs). Tests pass a simulated one. */
  readonly fs?: StorageFs;
}

/** What recovery found on disk. `warnings` are for the caller to log. */
export interface RecoveredState {
  readonly hardState: HardState;
  /** The newest valid snapshot, or undefined for a node that never had one. */
  readonly snapshot: SnapshotMeta | undefined;
  /** Size of that snapshot's data in bytes (0 without one). */
  readonly snapshotBytes: number;
  /**
   * That snapshot's data as a stream read from its file (the CRC is checked
   * again at its end); nothing is held in memory. Each call reads anew.
   */
  openSnapshot(): SnapshotChunks;
  /** Entries after the snapshot index, contiguous. */
  readonly entries: readonly Entry[];
  readonly warnings: readonly string[];
  /** Random 128-bit id (32 hex digits) of this data dir, created at its first open. */
  readonly incarnation: string;
}

/** Builds the core's RaftStorageState, using `bootstrap` (index 0) when no snapshot exists. */
export function toRaftStorageState(state: RecoveredState, bootstrap: SnapshotMeta): RaftStorageState {
  return { hardState: state.hardState, snapshot: state.snapshot ?? bootstrap, entries: state.entries };
}

interface Segment {
  readonly firstIndex: number;
  readonly path: string;
  /** Byte offset and term of each record (record i holds firstIndex + i). */
  readonly offsets: number[];
  readonly terms: number[];
  /** False for segments wholly below the snapshot, not read at recovery. */
  readonly parsed: boolean;
  /** Segment format version (1 = previous release, never appended to). */
  readonly version: number;
  /** End of the last record (sealed segments; the active one uses #written). */
  end: number;
}

const MiB = 1024 * 1024;
const PENDING_INITIAL_BYTES = 64 * 1024;
const EXTEND_STEP_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);
const INCARNATION_FILE = 'incarnation';
/**
 * `<dir>/zero-fill`: a zero-fill of a segment's tail is in progress (overwriting
 * a suffix, or repairing a torn tail). A crash can persist any part of that
 * write, leaving zeros before stale records, which would look like records
 * lost in the middle of the log; recovery finishes the zero-fill it names first.
 */
const ZERO_FILL_FILE = 'zero-fill';
const INCARNATION = /^[0-9a-f]{32}$/;

export class WalStorage {
  readonly dir: string;
  readonly #walDir: string;
  readonly #hsPath: string;
  readonly #snaps: SnapshotStore;
  readonly #segmentBytesMax: number;
  readonly #commitEvery: number;
  readonly #pendingBytesMax: number;
  readonly #validateSnapshot: SnapshotValidator | undefined;
  readonly #fs: StorageFs;
  readonly #queue = new SerialQueue();
  readonly #snapQueue = new SerialQueue();

  /** Ascending by firstIndex. When #fh is set, the last one is open for appending. */
  #segments: Segment[] = [];
  /** The active (version 2) segment; undefined = the next append creates a segment. */
  #fh: StorageFile | undefined;
  /** End of the last record written to the active segment. */
  #written = 0;
  /** Size of the active segment file (>= #written + ZERO_TAIL_BYTES). */
  #fileSize = 0;
  /** Encoded records not yet written (they follow #written). */
  #pending: Buffer = Buffer.allocUnsafe(PENDING_INITIAL_BYTES);
  #pendingLen = 0;
  #dataDirty = false;
  #lastIndex = 0;
  /** Highest index known durable (fdatasynced log or snapshot). */
  #durableIndex = 0;
  #snapshot: SnapshotMeta | undefined;
  #hs: HardState = EMPTY_HARD_STATE;
  #persistedHs: HardState = EMPTY_HARD_STATE;
  #hsDirty = false;
  /** First index of the newest segment, as recorded in (or due for) the hard state. */
  #walTail = 0;
  #failed: unknown = undefined;
  #closed = false;

  private constructor(dir: string, options: WalOptions) {
    this.dir = dir;
    this.#walDir = join(dir, 'wal');
    this.#hsPath = join(dir, 'hardstate');
    this.#fs = options.fs ?? nodeFs;
    this.#snaps = new SnapshotStore(join(dir, 'snap'), options.snapshotsKept ?? 2, this.#fs);
    this.#segmentBytesMax = options.segmentBytesMax ?? 64 * MiB;
    this.#commitEvery = options.commitPersistEveryEntries ?? 1024;
    this.#pendingBytesMax = options.pendingBytesMax ?? 4 * MiB;
    this.#validateSnapshot = options.validateSnapshot;
    if (!(this.#segmentBytesMax >= 1024)) throw new StorageError('invalid_option', `segmentBytesMax must be at least 1024, got ${this.#segmentBytesMax}`);
  }

  /** Opens (creating if needed) `dir`, recovers its state and returns both. */
  static async open(dir: string, options: WalOptions = {}): Promise<{ storage: WalStorage; state: RecoveredState }> {
    const storage = new WalStorage(dir, options);
    const state = await storage.#recover();
    return { storage, state };
  }

  /** Index of the last stored entry (the snapshot index when the log is empty). */
  get lastIndex(): number {
    return this.#lastIndex;
  }

  /** Index of the first entry still on disk (may be below the snapshot index until compacted). */
  get firstIndex(): number {
    return this.#segments[0]?.firstIndex ?? this.#lastIndex + 1;
  }

  /** The newest durable snapshot's metadata. */
  get snapshot(): SnapshotMeta | undefined {
    return this.#snapshot;
  }

  /** The latest hard state given to setHardState (durable only after sync). */
  get hardState(): HardState {
    return this.#hs;
  }

  /** Term of the entry at `index` if stored (or the snapshot's, at its index). */
  termAt(index: number): number | undefined {
    if (index === this.#snapshot?.index) return this.#snapshot.term;
    if (index > this.#lastIndex) return undefined;
    const seg = this.#segments[this.#findSegment(index)];
    return seg?.terms[index - seg.firstIndex];
  }

  /**
   * Appends entries (contiguous, ascending). If they overlap the stored log, the
   * part matching (same index and term) is skipped and the log is truncated at
   * the first conflict before the rest is written. Not durable until sync().
   */
  append(entries: readonly Entry[]): Promise<void> {
    return this.#run(() => this.#append(entries));
  }

  /**
   * Records the hard state (in memory). Term or vote changes are written
   * atomically at the next sync(), before anything that depends on them is sent.
   * The commit index written is never beyond the log made durable by an earlier sync.
   */
  setHardState(hs: HardState): void {
    this.#checkUsable();
    validateHardState(hs);
    const cur = this.#hs;
    if (hs.term < cur.term) throw new InvalidHardStateError(`term went back from ${cur.term} to ${hs.term}`);
    if (hs.term === cur.term && cur.vote !== 0 && hs.vote !== cur.vote) {
      throw new InvalidHardStateError(`vote changed from ${cur.vote} to ${hs.vote} within term ${hs.term}`);
    }
    this.#hs = hs;
    this.#markHsDirtyIfDue();
  }

  /** Makes everything since the last sync durable: one write and one fdatasync for all appends (group commit). */
  sync(): Promise<void> {
    return this.#run(() => this.#sync());
  }

  /** One Ready's persistence: append, record hard state, and sync when `mustSync`. */
  async save(hardState: HardState | undefined, entries: readonly Entry[], mustSync: boolean): Promise<void> {
    if (entries.length > 0) await this.append(entries);
    if (hardState !== undefined) this.setHardState(hardState);
    if (mustSync) await this.sync();
  }

  /**
   * Writes a locally taken snapshot durably; keeps the newest `snapshotsKept`.
   * Returns its path. A snapshot the stored log does not contain (beyond the
   * last index, or a different term at its index) can only come from the
   * leader: it is installed as by installSnapshot (the log is dropped).
   */
  saveSnapshot(meta: SnapshotMeta, chunks: SnapshotChunks, onProgress?: (bytes: number) => void): Promise<string> {
    return this.#snapQueue.run(async () => {
      this.#checkUsable();
      const t = meta.index > this.#lastIndex ? undefined : this.termAt(meta.index);
      if (meta.index > this.#lastIndex || (t !== undefined && t !== meta.term)) return this.#run(() => this.#install(meta, chunks, onProgress));
      const path = await this.#snaps.save(meta, chunks, onProgress);
      if (this.#snapshot === undefined || meta.index >= this.#snapshot.index) this.#snapshot = meta;
      return path;
    });
  }

  /**
   * Installs a snapshot received from the leader, as one step: writes it as
   * `<name>.snap.install`, drops the whole log, renames it into place. A crash
   * at any point recovers either the old state or the installed snapshot (a
   * marker found at recovery completes the install). The next entry is
   * meta.index + 1. Returns the snapshot's path.
   */
  installSnapshot(meta: SnapshotMeta, chunks: SnapshotChunks, onProgress?: (bytes: number) => void): Promise<string> {
    return this.#snapQueue.run(async () => {
      this.#checkUsable();
      return this.#run(() => this.#install(meta, chunks, onProgress));
    });
  }

  /**
   * A stored snapshot (the one `meta` names, if still kept) as a stream read
   * from its file; undefined if no such file. The file is opened at each
   * read(); its CRC is checked at the end of each.
   */
  readSnapshot(meta: Pick<SnapshotMeta, 'term' | 'index'>): Promise<StoredSnapshotSource | undefined> {
    return this.#snapQueue.run(async () => {
      const f = (await this.#snaps.list()).find((x) => x.index === meta.index && x.term === meta.term);
      if (f === undefined) return undefined;
      return this.#source(await this.#snaps.load(f.path));
    });
  }

  #source(loaded: LoadedSnapshot): StoredSnapshotSource {
    const snaps = this.#snaps;
    return { meta: loaded.meta, path: loaded.path, bytes: loaded.dataBytes, read: () => snaps.read(loaded) };
  }

  /** The newest snapshot that verifies; `warnings` name newer files that did not. Throws if all are corrupt. */
  loadSnapshot(): Promise<{ snapshot: LoadedSnapshot | undefined; warnings: string[] }> {
    return this.#snapQueue.run(async () => {
      const { loaded, corrupt } = await this.#snaps.loadNewest(this.#validateSnapshot);
      return { snapshot: loaded, warnings: corrupt.map((e) => `${e.message} (using an older snapshot)`) };
    });
  }

  /**
   * Removes whole segments whose entries are all <= `index` (never the newest
   * one). `index` must not exceed the newest durable snapshot. Returns how many.
   */
  compact(index: number): Promise<number> {
    return this.#run(async () => {
      const snapIndex = this.#snapshot?.index ?? 0;
      if (index > snapIndex) throw new InvalidSnapshotRequestError(`cannot compact through index ${index}: the newest durable snapshot ends at index ${snapIndex}`);
      let n = 0;
      while (n < this.#segments.length - 1 && this.#segments[n + 1]!.firstIndex - 1 <= index) n++;
      if (n === 0) return 0;
      // Oldest first: a crash part-way leaves a contiguous suffix of the log.
      for (let j = 0; j < n; j++) await this.#unlinkIfExists(this.#segments[j]!.path);
      await this.#fs.fsyncDir(this.#walDir);
      this.#segments.splice(0, n);
      return n;
    });
  }

  /**
   * @deprecated Use installSnapshot(meta, data), which does both steps safely.
   * After saveSnapshot of a snapshot from the leader: drops the whole log (a
   * no-op when saveSnapshot already installed it); the next entry is meta.index + 1.
   */
  resetToSnapshot(meta: SnapshotMeta): Promise<void> {
    return this.#run(async () => {
      const s = this.#snapshot;
      if (s === undefined || s.index !== meta.index || s.term !== meta.term) {
        throw new InvalidSnapshotRequestError(
          `resetToSnapshot(term ${meta.term}, index ${meta.index}) needs that snapshot saved first with saveSnapshot; newest saved: ${s === undefined ? 'none' : `term ${s.term}, index ${s.index}`}`,
        );
      }
      if (this.#segments.length > 0 || this.#lastIndex !== meta.index) await this.#dropAllSegments();
      this.#lastIndex = meta.index;
      this.#durableIndex = Math.max(this.#durableIndex, meta.index);
      if (this.#hs.commit < meta.index) this.#hs = { ...this.#hs, commit: meta.index };
    });
  }

  /** Syncs what is pending (including the latest commit index) and closes files. */
  async close(): Promise<void> {
    await this.#snapQueue.run(async () => undefined);
    await this.#queue.run(async () => {
      if (this.#closed) return;
      try {
        if (this.#failed === undefined) {
          if (this.#hs.commit !== this.#persistedHs.commit) this.#hsDirty = true;
          await this.#sync();
          // The sync above wrote commit only up to the log durable before it.
          if (Math.min(this.#hs.commit, this.#durableIndex) !== this.#persistedHs.commit) await this.#writeHs();
        }
      } finally {
        this.#closed = true;
        const fh = this.#fh;
        this.#fh = undefined;
        await fh?.close();
      }
    });
  }

  // ---- internals ----

  #checkUsable(): void {
    if (this.#closed) throw new StorageClosedError();
    if (this.#failed !== undefined) throw new StorageFailedError(this.#failed);
  }

  #run<T>(task: () => Promise<T>): Promise<T> {
    return this.#queue.run(async () => {
      this.#checkUsable();
      try {
        return await task();
      } catch (err) {
        // Contract violations change nothing; any I/O failure poisons the
        // storage (after a failed fsync the page cache can no longer be trusted).
        if (!(err instanceof StorageError)) this.#failed ??= err;
        throw err;
      }
    });
  }

  #markHsDirtyIfDue(): void {
    const hs = this.#hs;
    const p = this.#persistedHs;
    if (hs.term !== p.term || hs.vote !== p.vote || (hs.commit !== p.commit && hs.commit - p.commit >= this.#commitEvery)) this.#hsDirty = true;
  }

  /** Writes the hard state now, with commit capped at the durable log. */
  async #writeHs(): Promise<void> {
    const hs = { ...this.#hs, commit: Math.min(this.#hs.commit, this.#durableIndex) };
    this.#hsDirty = false;
    await writeHardState(this.#hsPath, hs, this.#walTail, this.#fs);
    this.#persistedHs = hs;
  }

  #findSegment(index: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#segments[mid]!.firstIndex <= index) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  async #append(entries: readonly Entry[]): Promise<void> {
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
    while (s < entries.length && entries[s]!.index <= this.#lastIndex && this.termAt(entries[s]!.index) === entries[s]!.term) s++;
    const head = entries[s];
    if (head === undefined) return;
    if (head.index > this.#lastIndex + 1) throw new InvalidAppendError(`entry ${head.index} leaves a gap after the last stored index ${this.#lastIndex}`);
    const snapIndex = this.#snapshot?.index ?? 0;
    if (head.index <= snapIndex) throw new InvalidAppendError(`entry ${head.index} conflicts at or below the snapshot index ${snapIndex}`);
    const prevTerm = this.termAt(head.index - 1);
    if (prevTerm !== undefined && head.term < prevTerm) throw new InvalidAppendError(`entry ${head.index} has term ${head.term}, lower than the previous entry's term ${prevTerm}`);
    if (head.index <= this.#lastIndex) await this.#truncateFrom(head.index);

    for (let i = s; i < entries.length; i++) {
      const e = entries[i]!;
      const size = recordBytes(e);
      if (this.#fh === undefined) await this.#createSegment(e.index);
      else if (this.#segments.at(-1)!.offsets.length > 0 && this.#written + this.#pendingLen + size + ZERO_TAIL_BYTES > this.#segmentBytesMax) await this.#roll(e.index);
      const seg = this.#segments.at(-1)!;
      this.#reservePending(size);
      seg.offsets.push(this.#written + this.#pendingLen);
      seg.terms.push(e.term);
      this.#pendingLen = encodeRecord(e, this.#pending, this.#pendingLen);
      this.#lastIndex = e.index;
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
   * libuv's thread pool). The internal queue runs one operation at a time, so
   * nothing touches #pending until the write has settled; meanwhile the event
   * loop serves the network, and the replica gathers the proposals and
   * messages that arrive into its next Ready (group commit: the next fsync
   * covers all of them).
   */
  async #flushPending(sync: boolean): Promise<void> {
    const fh = this.#fh;
    if (this.#pendingLen === 0) {
      if (sync && this.#dataDirty) {
        await fh!.writeLog(EMPTY, this.#written, true);
        this.#dataDirty = false;
      }
      return;
    }
    // The zero tail must stay: a record never reaches the end of the file. The
    // (rare: once per EXTEND_STEP_BYTES) extension is made durable before
    // records land in it, so a crash can never leave records at the end of a
    // file without their zero tail.
    const need = this.#written + this.#pendingLen + ZERO_TAIL_BYTES;
    if (need > this.#fileSize) {
      const size = Math.ceil(need / EXTEND_STEP_BYTES) * EXTEND_STEP_BYTES;
      await fh!.truncate(size);
      await fh!.datasync();
      this.#fileSize = size;
    }
    await fh!.writeLog(this.#pending.subarray(0, this.#pendingLen), this.#written, sync);
    this.#written += this.#pendingLen;
    this.#pendingLen = 0;
    this.#dataDirty = !sync;
    if (this.#pending.length > 16 * MiB) this.#pending = Buffer.allocUnsafe(PENDING_INITIAL_BYTES);
  }

  async #sync(): Promise<void> {
    // Hard state first: the log terms must never run above the stored term. Its
    // commit is capped at the log made durable by earlier syncs (#writeHs), so a
    // crash before the fdatasync below can lose only uncommitted entries.
    if (this.#hsDirty) await this.#writeHs();
    if (this.#fh !== undefined) await this.#flushPending(true);
    this.#durableIndex = Math.max(this.#durableIndex, this.#lastIndex);
    // A commit held back by the cap above goes out with a later sync.
    this.#markHsDirtyIfDue();
  }

  /**
   * Creates a version-2 segment durably: preallocated (sparse zeros) to
   * segmentBytesMax, header written, file and directory fsynced. The hard state
   * records it as the newest segment at the next sync.
   */
  async #createSegment(firstIndex: number): Promise<void> {
    const path = join(this.#walDir, segmentFileName(firstIndex));
    const fh = await this.#fs.open(path, 'w', 0o600);
    try {
      await fh.truncate(this.#segmentBytesMax);
      await fh.write(encodeSegmentHeader(firstIndex), 0, SEGMENT_HEADER_BYTES, 0);
      await fh.datasync();
      await this.#fs.fsyncDir(this.#walDir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.#fh = fh;
    this.#segments.push({ firstIndex, path, offsets: [], terms: [], parsed: true, version: SEGMENT_VERSION, end: SEGMENT_HEADER_BYTES });
    this.#written = SEGMENT_HEADER_BYTES;
    this.#fileSize = this.#segmentBytesMax;
    this.#pendingLen = 0;
    this.#walTail = firstIndex;
    this.#hsDirty = true;
  }

  /**
   * Seals the active segment durably before starting the next one, so that at
   * recovery only the last segment can have a torn tail.
   */
  async #roll(nextIndex: number): Promise<void> {
    await this.#flushPending(true);
    this.#segments.at(-1)!.end = this.#written;
    const fh = this.#fh!;
    this.#fh = undefined;
    await fh.close();
    await this.#createSegment(nextIndex);
  }

  /**
   * Zero-fills [from, to) of segment `firstIndex` durably, with the intent
   * recorded first (ZERO_FILL_FILE) so that recovery completes it after a crash.
   */
  async #zeroFillSegment(fh: StorageFile, firstIndex: number, from: number, to: number): Promise<void> {
    const marker = join(this.dir, ZERO_FILL_FILE);
    await atomicWriteFile(marker, [Buffer.from(`${JSON.stringify({ segment: firstIndex, from })}\n`)], 0o600, this.#fs);
    await this.#zeroFill(fh, from, to);
    await this.#fs.unlink(marker);
    await this.#fs.fsyncDir(this.dir);
  }

  /** Completes a zero-fill a crash interrupted (see ZERO_FILL_FILE). */
  async #finishZeroFill(warnings: string[]): Promise<void> {
    const marker = join(this.dir, ZERO_FILL_FILE);
    let text: string;
    try {
      text = (await this.#fs.readFile(marker)).toString('utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    let intent: { segment: number; from: number };
    try {
      intent = JSON.parse(text) as { segment: number; from: number };
      if (!Number.isSafeInteger(intent.segment) || !Number.isSafeInteger(intent.from) || intent.segment < 1 || intent.from < SEGMENT_HEADER_BYTES) throw new Error('bad fields');
    } catch (err) {
      throw new CorruptLogError(marker, 0, `zero-fill intent is not valid (${(err as Error).message}); it is written atomically, so this is damage`);
    }
    const path = join(this.#walDir, segmentFileName(intent.segment));
    let buf: Buffer | undefined;
    try {
      buf = await this.#fs.readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (buf !== undefined && intent.from < buf.length) {
      const to = endOfNonZero(buf, intent.from);
      if (to > intent.from) {
        const fh = await this.#fs.open(path, 'r+');
        try {
          await this.#zeroFill(fh, intent.from, to);
        } finally {
          await fh.close();
        }
        warnings.push(`completed zeroing bytes ${intent.from}..${to} of ${path}, which a crash had interrupted (entries being overwritten, or a torn tail being repaired)`);
      }
    }
    await this.#fs.unlink(marker);
    await this.#fs.fsyncDir(this.dir);
  }

  /** Overwrites [from, to) of a file with zeros and fdatasyncs it. */
  async #zeroFill(fh: StorageFile, from: number, to: number): Promise<void> {
    const zeros = Buffer.alloc(Math.min(to - from, MiB));
    for (let at = from; at < to; ) {
      const n = Math.min(zeros.length, to - at);
      const bytesWritten = await fh.write(zeros, 0, n, at);
      at += bytesWritten;
    }
    await fh.datasync();
  }

  /** Removes entries >= index (index within the stored log, above the snapshot). */
  async #truncateFrom(index: number): Promise<void> {
    const k = this.#findSegment(index);
    const seg = this.#segments[k]!;
    this.#durableIndex = Math.min(this.#durableIndex, index - 1);
    if (k < this.#segments.length - 1) {
      const fh = this.#fh;
      this.#fh = undefined;
      this.#pendingLen = 0;
      this.#dataDirty = false;
      await fh?.close();
      // Record the new newest segment before deleting the later ones, newest
      // first, so that a crash leaves a contiguous log that is not "missing" any.
      this.#walTail = seg.firstIndex;
      await this.#writeHs();
      for (let j = this.#segments.length - 1; j > k; j--) await this.#unlinkIfExists(this.#segments[j]!.path);
      await this.#fs.fsyncDir(this.#walDir);
      this.#segments.length = k + 1;
      if (seg.version === SEGMENT_VERSION) {
        this.#fh = await this.#fs.open(seg.path, 'r+');
        this.#written = seg.end;
        this.#fileSize = (await this.#fh.stat()).size;
      }
    }
    const keep = index - seg.firstIndex;
    const off = seg.offsets[keep]!;
    if (this.#fh !== undefined) {
      if (off >= this.#written) {
        this.#pendingLen = off - this.#written;
      } else {
        // Zero-filled, not shortened (the zero tail marks the end of the log),
        // and durable at once: stale records must never reappear behind a
        // later torn write.
        this.#pendingLen = 0;
        await this.#zeroFillSegment(this.#fh, seg.firstIndex, off, this.#written);
        this.#written = off;
        this.#dataDirty = false;
      }
    } else {
      // A version-1 segment (previous release): shortened, as that format requires.
      const fh = await this.#fs.open(seg.path, 'r+');
      try {
        await fh.truncate(off);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      seg.end = off;
      if (keep === 0) {
        this.#segments.pop();
        this.#walTail = this.#segments.at(-1)?.firstIndex ?? 0;
        await this.#writeHs();
        await this.#unlinkIfExists(seg.path);
        await this.#fs.fsyncDir(this.#walDir);
      }
    }
    seg.offsets.length = keep;
    seg.terms.length = keep;
    this.#lastIndex = index - 1;
  }

  /** Drops the whole log: the hard state stops naming a newest segment first. */
  async #dropAllSegments(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    this.#pendingLen = 0;
    this.#dataDirty = false;
    await fh?.close();
    this.#walTail = 0;
    await this.#writeHs();
    for (let j = this.#segments.length - 1; j >= 0; j--) await this.#unlinkIfExists(this.#segments[j]!.path);
    await this.#fs.fsyncDir(this.#walDir);
    this.#segments = [];
  }

  async #install(meta: SnapshotMeta, chunks: SnapshotChunks, onProgress?: (bytes: number) => void): Promise<string> {
    const marker = await this.#snaps.writeInstallMarker(meta, chunks, onProgress);
    await this.#dropAllSegments();
    const path = await this.#snaps.promote(marker);
    this.#snapshot = meta;
    this.#lastIndex = meta.index;
    this.#durableIndex = meta.index;
    if (this.#hs.commit < meta.index) this.#hs = { ...this.#hs, commit: meta.index };
    this.#markHsDirtyIfDue();
    return path;
  }

  async #recover(): Promise<RecoveredState> {
    await mkdirDurable(this.#walDir, this.#fs);
    await mkdirDurable(this.#snaps.dir, this.#fs);
    const warnings: string[] = [];
    const incPath = join(this.dir, INCARNATION_FILE);
    await this.#unlinkIfExists(`${this.#hsPath}.tmp`);
    await this.#unlinkIfExists(`${incPath}.tmp`);
    await this.#snaps.removeTemps();
    await this.#unlinkIfExists(`${join(this.dir, ZERO_FILL_FILE)}.tmp`);
    await this.#finishZeroFill(warnings);
    const stored = await readStoredHardState(this.#hsPath, this.#fs);
    const legacyHs = stored !== undefined && stored.version === 1;
    let hs = stored?.hs ?? EMPTY_HARD_STATE;
    let recordedTail = stored?.walTail ?? 0;

    const listSegments = async (): Promise<{ path: string; firstIndex: number }[]> => {
      const out: { path: string; firstIndex: number }[] = [];
      for (const name of await this.#fs.readdir(this.#walDir)) {
        const firstIndex = parseSegmentFileName(name);
        if (firstIndex !== undefined) out.push({ path: join(this.#walDir, name), firstIndex });
      }
      return out.sort((a, b) => a.firstIndex - b.firstIndex);
    };
    let files = await listSegments();
    const markers = await this.#snaps.listInstallMarkers();
    const snapFiles = await this.#snaps.list();
    const fresh = stored === undefined && files.length === 0 && markers.length === 0 && snapFiles.length === 0;
    if (stored === undefined && (markers.length > 0 || snapFiles.length > 0)) {
      const f = markers[0] ?? snapFiles[0]!;
      throw new CorruptHardStateError(this.#hsPath, `the file is missing, but snapshot ${f.path} exists: starting without it would forget this node's term and vote`);
    }

    // A snapshot received from the leader whose install a crash interrupted:
    // it is verified and committed, so finish the install (drop the log).
    const marker = markers[0];
    if (marker !== undefined) {
      let loaded: LoadedSnapshot;
      try {
        loaded = await this.#snaps.loadValid(marker.path, this.#validateSnapshot);
      } catch (err) {
        if (!(err instanceof CorruptSnapshotError)) throw err;
        throw new CorruptSnapshotError(marker.path, `an interrupted snapshot install from the leader cannot be completed: ${reasonOf(err)}`);
      }
      this.#hs = hs;
      this.#durableIndex = Math.min(hs.commit, loaded.meta.index);
      this.#persistedHs = hs;
      this.#segments = files.map((f) => ({ ...f, offsets: [], terms: [], parsed: false, version: 0, end: 0 }));
      await this.#dropAllSegments();
      const path = await this.#snaps.promote(marker.path);
      for (const m of markers.slice(1)) await this.#unlinkIfExists(m.path);
      warnings.push(
        `completed the install of snapshot ${path} (term ${loaded.meta.term}, index ${loaded.meta.index}) received from the leader, which a crash had interrupted: dropped the log it replaces${files.length > 0 ? ` (${files.length} segment file(s) from ${files[0]!.path})` : ''}`,
      );
      files = [];
      recordedTail = 0;
    }

    const { loaded, corrupt } = await this.#snaps.findNewest(this.#validateSnapshot);
    const snap = loaded?.meta;
    const snapIndex = snap?.index ?? 0;
    this.#snapshot = snap;

    // A newest segment older than the one the hard state records: segments were lost.
    const newestOnDisk = files.at(-1);
    if (recordedTail > 0 && (newestOnDisk === undefined || newestOnDisk.firstIndex < recordedTail)) {
      throw new CorruptLogError(
        join(this.#walDir, segmentFileName(recordedTail)),
        0,
        `segment file is missing: the hard state ${this.#hsPath} records it as the newest segment (entries from index ${recordedTail} on), but the newest segment on disk is ${newestOnDisk?.path ?? 'none'}`,
      );
    }

    const segs: Segment[] = [];
    let entries: Entry[] = [];
    let prevTerm = 0;
    for (let k = 0; k < files.length; k++) {
      const { path, firstIndex } = files[k]!;
      const next = files[k + 1];
      if (next !== undefined && next.firstIndex <= snapIndex) {
        // Wholly below the snapshot: never returned, so not read (compact() removes it).
        segs.push({ firstIndex, path, offsets: [], terms: [], parsed: false, version: 0, end: 0 });
        prevTerm = 0;
        continue;
      }
      const buf = await this.#fs.readFile(path);
      const parsed = parseSegment(buf, { path, firstIndex, prevTerm, keepFrom: snapIndex + 1, isLast: next === undefined });
      if (parsed.headerTorn !== undefined) {
        if (firstIndex <= recordedTail) {
          throw new CorruptLogError(path, 0, `${parsed.headerTorn}, but the hard state ${this.#hsPath} records this segment as durable`);
        }
        await this.#unlinkIfExists(path);
        await this.#fs.fsyncDir(this.#walDir);
        warnings.push(`${parsed.headerTorn} in ${path}: removed the empty last segment (its creation was interrupted by a crash)`);
        break;
      }
      const prev = segs.at(-1);
      if (prev !== undefined) {
        const prevLast = prev.parsed ? prev.firstIndex + prev.offsets.length - 1 : firstIndex - 1;
        if (firstIndex !== prevLast + 1) {
          throw new CorruptLogError(path, 0, `segment starts at index ${firstIndex} but the previous segment ends at index ${prevLast}: a segment is missing or damaged`);
        }
      }
      if (parsed.truncate !== undefined) {
        const fh = await this.#fs.open(path, 'r+');
        try {
          await fh.truncate(parsed.truncate.offset);
          await fh.datasync();
        } finally {
          await fh.close();
        }
        warnings.push(
          `torn final record in ${path} (version-1 segment) at byte offset ${parsed.truncate.offset} (${parsed.truncate.reason}): truncated ${buf.length - parsed.truncate.offset} bytes (a write interrupted by a crash)`,
        );
      }
      if (parsed.zeroFill !== undefined) {
        const { from, to, reason } = parsed.zeroFill;
        const fh = await this.#fs.open(path, 'r+');
        try {
          await this.#zeroFillSegment(fh, firstIndex, from, to);
        } finally {
          await fh.close();
        }
        warnings.push(`torn final record in ${path} at byte offset ${from} (${reason}): zeroed ${to - from} bytes of a write interrupted by a crash before its fdatasync`);
      }
      segs.push({ firstIndex, path, offsets: parsed.offsets, terms: parsed.terms, parsed: true, version: parsed.version, end: parsed.end });
      for (const e of parsed.entries) entries.push(e);
      prevTerm = parsed.terms.at(-1) ?? prevTerm;
    }
    this.#segments = segs;

    const last = segs.at(-1);
    this.#lastIndex = last === undefined ? snapIndex : last.firstIndex + last.offsets.length - 1;
    const first = segs[0];
    if (stored === undefined && first !== undefined && this.#lastIndex >= first.firstIndex) {
      throw new CorruptHardStateError(
        this.#hsPath,
        `the file is missing, but the log in ${this.#walDir} holds indexes ${first.firstIndex}..${this.#lastIndex}: starting without it would forget this node's term, vote and commit index`,
      );
    }
    const snapPath = loaded?.path ?? '';
    if (first !== undefined) {
      if (snap !== undefined) {
        const termAtSnap = this.#termAtStored(snapIndex);
        if (this.#lastIndex < snapIndex || (termAtSnap !== undefined && termAtSnap !== snap.term)) {
          const why = this.#lastIndex < snapIndex ? `ends at index ${this.#lastIndex}` : `holds term ${termAtSnap} at index ${snapIndex}`;
          if (!legacyHs) {
            throw new CorruptLogError(
              last!.path,
              last!.end,
              `the log (indexes ${first.firstIndex}..${this.#lastIndex}) ${why}, so it does not contain snapshot ${snapPath} (term ${snap.term}, index ${snapIndex}), and no snapshot install was in progress: log entries are missing`,
            );
          }
          // Version-1 hard state (previous release): a snapshot installed from
          // the leader and a crash before the log reset looked exactly like this.
          warnings.push(
            `log (indexes ${first.firstIndex}..${this.#lastIndex}) does not continue snapshot term ${snap.term} index ${snapIndex}: discarded it (a snapshot was installed and the log not yet reset)`,
          );
          this.#hs = hs;
          this.#persistedHs = hs;
          this.#durableIndex = Math.min(hs.commit, snapIndex);
          await this.#dropAllSegments();
          entries = [];
          this.#lastIndex = snapIndex;
        } else if (first.firstIndex > snapIndex + 1) {
          const newest = corrupt[0];
          if (newest !== undefined) {
            throw new CorruptSnapshotError(
              newest.error.path,
              `${reasonOf(newest.error)}, and the older snapshot (index ${snapIndex}) does not reach the log, which starts at index ${first.firstIndex}`,
            );
          }
          throw new CorruptLogError(first.path, 0, `log starts at index ${first.firstIndex} but the newest snapshot ends at index ${snapIndex}: the entries in between are missing`);
        }
      } else if (first.firstIndex !== 1) {
        const newest = corrupt[0];
        if (newest !== undefined) {
          throw new CorruptSnapshotError(newest.error.path, `${reasonOf(newest.error)}, and there is no older valid snapshot; the log starts at index ${first.firstIndex}, so it does not reach back to the start`);
        }
        throw new CorruptLogError(first.path, 0, `log starts at index ${first.firstIndex} and there is no snapshot covering the entries before it`);
      }
    }
    const recoveredEnd = Math.max(this.#lastIndex, snapIndex);
    const newestCorrupt = corrupt[0];
    if (newestCorrupt !== undefined && recoveredEnd < newestCorrupt.index) {
      throw new CorruptSnapshotError(
        newestCorrupt.error.path,
        `${reasonOf(newestCorrupt.error)}, and neither an older snapshot nor the log reaches its index ${newestCorrupt.index} (recovered state ends at index ${recoveredEnd})`,
      );
    }
    for (const c of corrupt) {
      const moved = await this.#snaps.quarantine(c.error.path);
      warnings.push(`${c.error.message}; moved it to ${moved} and recovered from ${loaded !== undefined ? `the older snapshot ${loaded.path}` : 'the log'}`);
    }

    // The commit index is never persisted beyond the durable log (version 2),
    // so a commit beyond the recovered log means committed entries were lost.
    if (hs.commit > recoveredEnd) {
      if (legacyHs) {
        warnings.push(
          `hard state ${this.#hsPath} (version 1, written by the previous release) records commit index ${hs.commit} beyond the recovered log, which ends at index ${recoveredEnd}: lowered it (that release could write commit before the log's fdatasync)`,
        );
      } else {
        throw new CorruptLogError(
          last?.path ?? this.#walDir,
          last?.end ?? 0,
          `the log ends at index ${recoveredEnd}, but the hard state ${this.#hsPath} records commit index ${hs.commit}: committed entries ${recoveredEnd + 1}..${hs.commit} are missing (commit is never written beyond the durable log, so this is damage, not a torn write)`,
        );
      }
    }
    const lastTerm = this.termAt(this.#lastIndex) ?? 0;
    if (lastTerm > hs.term) {
      warnings.push(`hard state term ${hs.term} is below the log's last term ${lastTerm}: raised the term (no vote)`);
      hs = { term: lastTerm, vote: 0, commit: hs.commit };
    }
    const commit = Math.min(Math.max(hs.commit, snapIndex), recoveredEnd);
    if (commit !== hs.commit) hs = { ...hs, commit };

    // A version-1 last segment is never appended to: the next append starts a
    // version-2 segment. One left without records holds nothing: removed.
    const lastSeg = this.#segments.at(-1);
    if (lastSeg !== undefined && lastSeg.parsed && lastSeg.version !== SEGMENT_VERSION && lastSeg.offsets.length === 0) {
      this.#segments.pop();
      await this.#unlinkIfExists(lastSeg.path);
      await this.#fs.fsyncDir(this.#walDir);
    }
    const active = this.#segments.at(-1);
    if (active !== undefined && active.parsed) {
      const fh = await this.#fs.open(active.path, 'r+');
      // Records recovered from the page cache after a process crash become durable now.
      await fh.datasync();
      if (active.version === SEGMENT_VERSION) {
        this.#fh = fh;
        this.#written = active.end;
        this.#fileSize = (await fh.stat()).size;
      } else await fh.close();
    }
    this.#durableIndex = recoveredEnd;
    this.#hs = hs;
    this.#walTail = this.#segments.at(-1)?.firstIndex ?? 0;
    let incarnation: string;
    try {
      incarnation = await this.#loadIncarnation(incPath, fresh, warnings);
      const p = stored?.hs;
      if (stored === undefined || stored.version !== 2 || stored.walTail !== this.#walTail || p?.term !== hs.term || p.vote !== hs.vote || p.commit > hs.commit) {
        await this.#writeHs();
      } else {
        this.#persistedHs = stored.hs;
      }
    } catch (err) {
      await this.#fh?.close();
      this.#fh = undefined;
      throw err;
    }
    const source = loaded === undefined ? undefined : this.#source(loaded);
    return {
      hardState: hs, snapshot: snap, snapshotBytes: source?.bytes ?? 0, entries, warnings, incarnation,
      openSnapshot: () => {
        if (source === undefined) throw new InvalidSnapshotRequestError('openSnapshot(): this data dir holds no snapshot');
        return source.read();
      },
    };
  }

  async #loadIncarnation(path: string, fresh: boolean, warnings: string[]): Promise<string> {
    let text: string | undefined;
    try {
      text = (await this.#fs.readFile(path)).toString('utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      const id = text.trim();
      if (!INCARNATION.test(id)) throw new CorruptIncarnationError(path, 'expected 32 lowercase hex digits');
      return id;
    }
    const id = randomBytes(16).toString('hex');
    await atomicWriteFile(path, [Buffer.from(`${id}\n`)], 0o600, this.#fs);
    if (!fresh) warnings.push(`${path} was missing (a data dir written by a release without incarnation ids): created incarnation ${id}; the data in this dir is kept`);
    return id;
  }

  /** unlink that ignores a missing file. */
  #unlinkIfExists(path: string): Promise<void> {
    return unlinkIfExists(path, this.#fs);
  }

  /** Term of a stored log entry, ignoring the snapshot. */
  #termAtStored(index: number): number | undefined {
    const seg = this.#segments[this.#findSegment(index)];
    if (seg === undefined || !seg.parsed) return undefined;
    return seg.terms[index - seg.firstIndex];
  }
}

/** The reason part of a storage error message (between the file and the advice). */
function reasonOf(err: CorruptSnapshotError): string {
  const m = err.message;
  const start = m.indexOf(': ') + 2;
  const end = m.indexOf('; keep this node stopped');
  return m.slice(start, end < 0 ? undefined : end);
}
