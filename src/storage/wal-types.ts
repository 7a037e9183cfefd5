// The types WalStorage (./wal.ts) and its recovery (./wal-recovery.ts) share.
import type { Entry, HardState, RaftStorageState, SnapshotMeta } from '../raft/types.js';
import type { StorageFs } from './fs.js';
import type { SnapshotValidator } from './snapshot.js';

/** A snapshot's bytes as a stream of chunks (the node's SnapshotChunks). */
export type SnapshotChunks = AsyncIterable<Uint8Array>;

/** A stored snapshot, readable as a stream (the node's SnapshotSource). */
export interface StoredSnapshotSource {
  readonly meta: SnapshotMeta;
  readonly path: string;
  readonly bytes: number;
  read(): SnapshotChunks;
}

export interface WalOptions {
  /**
   * Segment file size: new segments are preallocated (sparse) to this size and
   * the log rolls to a new one when a record would not fit; default
   * DEFAULT_SEGMENT_BYTES (8 MiB, ./wal.ts).
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
