// WalStorage: the durable storage of one node (segmented WAL, hard state,
// snapshots). See ./README.md for file formats and recovery rules.
//
// All async methods run one at a time in call order (an internal queue), but
// the node loop should still await each call: persist → send → apply.
//
// The parts: ./codec.ts (record and segment header encoding), ./segment.ts
// (reading and classifying one segment at recovery), ./wal-log.ts (the writer:
// segment files, pending buffer, hard state bookkeeping), ./wal-recovery.ts
// (open: repair and verification), ./zero-fill.ts (durable zeroing with its
// intent file), ./snapshot.ts (snapshot files).
import { join } from 'node:path';
import type { Entry, HardState, SnapshotMeta } from '../raft/types.js';
import { InvalidHardStateError, InvalidSnapshotRequestError, StorageClosedError, StorageError, StorageFailedError } from './errors.js';
import { SerialQueue } from './fsutil.js';
import { nodeFs } from './fs.js';
import { validateHardState } from './hardstate.js';
import { SnapshotStore } from './snapshot.js';
import type { LoadedSnapshot, SnapshotValidator } from './snapshot.js';
import { WalLog } from './wal-log.js';
import { recoverWal, snapshotSource } from './wal-recovery.js';
import type { RecoveredState, SnapshotChunks, StoredSnapshotSource, WalOptions } from './wal-types.js';

export { toRaftStorageState } from './wal-types.js';
export type { RecoveredState, SnapshotChunks, StoredSnapshotSource, WalOptions } from './wal-types.js';

const MiB = 1024 * 1024;

/**
 * Size of a WAL segment unless WalOptions.segmentBytesMax says otherwise. A
 * restart reads (and checks the checksum of) every record of each segment it
 * keeps, including those its snapshot already covers; compaction removes
 * whole segments only. At 64 MiB (until the ninth session) a restarted node
 * read about 80000 records to reach the 9000 after its snapshot; at 8 MiB a
 * segment holds about 25000 records of 300 bytes and the WAL's open took
 * 150-216 ms instead of 234-294 (docs/performance.md). A segment roll (one
 * fdatasync, a file created, the directory fsynced) comes every 8 MiB.
 */
export const DEFAULT_SEGMENT_BYTES = 8 * MiB;

export class WalStorage {
  readonly dir: string;
  readonly #w: WalLog;
  readonly #snaps: SnapshotStore;
  readonly #validateSnapshot: SnapshotValidator | undefined;
  readonly #queue = new SerialQueue();
  readonly #snapQueue = new SerialQueue();
  #failed: unknown = undefined;
  #closed = false;

  private constructor(dir: string, options: WalOptions) {
    this.dir = dir;
    const fs = options.fs ?? nodeFs;
    const segmentBytesMax = options.segmentBytesMax ?? DEFAULT_SEGMENT_BYTES;
    this.#snaps = new SnapshotStore(join(dir, 'snap'), options.snapshotsKept ?? 2, fs);
    this.#validateSnapshot = options.validateSnapshot;
    if (!(segmentBytesMax >= 1024)) throw new StorageError('invalid_option', `segmentBytesMax must be at least 1024, got ${segmentBytesMax}`);
    this.#w = new WalLog({ dir, fs, segmentBytesMax, commitEvery: options.commitPersistEveryEntries ?? 1024, pendingBytesMax: options.pendingBytesMax ?? 4 * MiB });
  }

  /** Opens (creating if needed) `dir`, recovers its state and returns both. */
  static async open(dir: string, options: WalOptions = {}): Promise<{ storage: WalStorage; state: RecoveredState }> {
    const storage = new WalStorage(dir, options);
    const state = await recoverWal(storage.#w, storage.#snaps, storage.#validateSnapshot);
    return { storage, state };
  }

  /** Index of the last stored entry (the snapshot index when the log is empty). */
  get lastIndex(): number {
    return this.#w.lastIndex;
  }

  /** Index of the first entry still on disk (may be below the snapshot index until compacted). */
  get firstIndex(): number {
    return this.#w.segments[0]?.firstIndex ?? this.#w.lastIndex + 1;
  }

  /** The newest durable snapshot's metadata. */
  get snapshot(): SnapshotMeta | undefined {
    return this.#w.snapshot;
  }

  /** The latest hard state given to setHardState (durable only after sync). */
  get hardState(): HardState {
    return this.#w.hs;
  }

  /** Term of the entry at `index` if stored (or the snapshot's, at its index). */
  termAt(index: number): number | undefined {
    return this.#w.termAt(index);
  }

  /**
   * Appends entries (contiguous, ascending). If they overlap the stored log, the
   * part matching (same index and term) is skipped and the log is truncated at
   * the first conflict before the rest is written. Not durable until sync().
   */
  append(entries: readonly Entry[]): Promise<void> {
    return this.#run(() => this.#w.append(entries));
  }

  /**
   * Records the hard state (in memory). Term or vote changes are written
   * atomically at the next sync(), before anything that depends on them is sent.
   * The commit index written is never beyond the log made durable by an earlier sync.
   */
  setHardState(hs: HardState): void {
    this.#checkUsable();
    validateHardState(hs);
    const cur = this.#w.hs;
    if (hs.term < cur.term) throw new InvalidHardStateError(`term went back from ${cur.term} to ${hs.term}`);
    if (hs.term === cur.term && cur.vote !== 0 && hs.vote !== cur.vote) {
      throw new InvalidHardStateError(`vote changed from ${cur.vote} to ${hs.vote} within term ${hs.term}`);
    }
    this.#w.hs = hs;
    this.#w.markHsDirtyIfDue();
  }

  /** Makes everything since the last sync durable: one write and one fdatasync for all appends (group commit). */
  sync(): Promise<void> {
    return this.#run(() => this.#w.sync());
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
      const t = meta.index > this.#w.lastIndex ? undefined : this.termAt(meta.index);
      if (meta.index > this.#w.lastIndex || (t !== undefined && t !== meta.term)) return this.#run(() => this.#install(meta, chunks, onProgress));
      const path = await this.#snaps.save(meta, chunks, onProgress);
      if (this.#w.snapshot === undefined || meta.index >= this.#w.snapshot.index) this.#w.snapshot = meta;
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
      return snapshotSource(this.#snaps, await this.#snaps.load(f.path));
    });
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
      const snapIndex = this.#w.snapshot?.index ?? 0;
      if (index > snapIndex) throw new InvalidSnapshotRequestError(`cannot compact through index ${index}: the newest durable snapshot ends at index ${snapIndex}`);
      let n = 0;
      while (n < this.#w.segments.length - 1 && this.#w.segments[n + 1]!.firstIndex - 1 <= index) n++;
      if (n === 0) return 0;
      // Oldest first: a crash part-way leaves a contiguous suffix of the log.
      for (let j = 0; j < n; j++) await this.#w.unlinkIfExists(this.#w.segments[j]!.path);
      await this.#w.fs.fsyncDir(this.#w.walDir);
      this.#w.segments.splice(0, n);
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
      const s = this.#w.snapshot;
      if (s === undefined || s.index !== meta.index || s.term !== meta.term) {
        throw new InvalidSnapshotRequestError(
          `resetToSnapshot(term ${meta.term}, index ${meta.index}) needs that snapshot saved first with saveSnapshot; newest saved: ${s === undefined ? 'none' : `term ${s.term}, index ${s.index}`}`,
        );
      }
      if (this.#w.segments.length > 0 || this.#w.lastIndex !== meta.index) await this.#w.dropAllSegments();
      this.#w.lastIndex = meta.index;
      this.#w.durableIndex = Math.max(this.#w.durableIndex, meta.index);
      if (this.#w.hs.commit < meta.index) this.#w.hs = { ...this.#w.hs, commit: meta.index };
    });
  }

  /** Syncs what is pending (including the latest commit index) and closes files. */
  async close(): Promise<void> {
    await this.#snapQueue.run(async () => undefined);
    await this.#queue.run(async () => {
      if (this.#closed) return;
      try {
        if (this.#failed === undefined) {
          if (this.#w.hs.commit !== this.#w.persistedHs.commit) this.#w.hsDirty = true;
          await this.#w.sync();
          // The sync above wrote commit only up to the log durable before it.
          if (Math.min(this.#w.hs.commit, this.#w.durableIndex) !== this.#w.persistedHs.commit) await this.#w.writeHs();
        }
      } finally {
        this.#closed = true;
        await this.#w.closeFile();
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

  async #install(meta: SnapshotMeta, chunks: SnapshotChunks, onProgress?: (bytes: number) => void): Promise<string> {
    const w = this.#w;
    const marker = await this.#snaps.writeInstallMarker(meta, chunks, onProgress);
    await w.dropAllSegments();
    const path = await this.#snaps.promote(marker);
    w.snapshot = meta;
    w.lastIndex = meta.index;
    w.durableIndex = meta.index;
    if (w.hs.commit < meta.index) w.hs = { ...w.hs, commit: meta.index };
    w.markHsDirtyIfDue();
    return path;
  }
}
