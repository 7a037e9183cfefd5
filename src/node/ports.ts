// The ports a Replica is built from: durable log storage, the peer network,
// the replicated state machine, and a clock. The agent plugs in WalStorage,
// PeerTransport, the MachineRegistry (with the KV in it) and the real clock; a simulator can plug in
// its own (virtual time, a simulated network and file system).
import type { Entry, HardState, Message, NodeId, SnapshotMeta } from '../raft/index.js';
import type { ApplyResult } from '../state/index.js';

/**
 * A snapshot's bytes as a stream of chunks, read lazily: snapshots are never
 * held in memory whole. Each chunk may be reused by its producer once the
 * next one is asked for; copy what you keep.
 */
export type SnapshotChunks = AsyncIterable<Uint8Array>;

/** A snapshot stored somewhere (a file): readable as chunks, as many times as needed. */
export interface SnapshotSource {
  /** Size of the snapshot (the state machine's bytes) in bytes. */
  readonly bytes: number;
  read(): SnapshotChunks;
}

/** A snapshot received from a peer into a temporary file. */
export interface ReceivedSnapshotSource extends SnapshotSource {
  /** Removes the temporary file (idempotent). */
  discard(): Promise<void>;
}

/** Durable storage of the log, hard state and snapshots (WalStorage). */
export interface LogStore {
  save(hardState: HardState | undefined, entries: readonly Entry[], mustSync: boolean): Promise<void>;
  /** Writes a snapshot streamed from `chunks` durably; `onProgress` sees the bytes written so far. */
  saveSnapshot(meta: SnapshotMeta, chunks: SnapshotChunks, onProgress?: (bytes: number) => void): Promise<unknown>;
  /** Atomically replace the log with a snapshot received from the leader, streamed from `chunks`. */
  installSnapshot(meta: SnapshotMeta, chunks: SnapshotChunks, onProgress?: (bytes: number) => void): Promise<unknown>;
  /** The stored snapshot `meta` names (the newest, or one still kept), readable as a stream; undefined if not stored. */
  readSnapshot(meta: Pick<SnapshotMeta, 'term' | 'index'>): Promise<SnapshotSource | undefined>;
  compact(index: number): Promise<unknown>;
}

/** Messages to peers (PeerTransport). */
export interface PeerNetwork {
  send(msgs: readonly Message[]): void;
  /** Streams `totalBytes` bytes of `chunks` to `to` with back-pressure; resolves when the peer verified and took it. */
  sendSnapshot(to: NodeId, msg: Message, chunks: SnapshotChunks, totalBytes: number, onProgress?: (sentBytes: number, totalBytes: number) => void): Promise<void>;
}

/**
 * The replicated state: deterministic apply, snapshot, restore. The
 * MachineRegistry (src/state/machines.ts): it routes each entry to its
 * machine, owns the applied index, clock and sessions, and writes the
 * snapshot of every machine (in the format the cluster feature level allows).
 */
export interface StateMachine {
  /** The last entry applied, membership entries included. */
  readonly appliedIndex: number;
  /**
   * A committed normal entry (either envelope format); undefined for an empty
   * entry (a new leader's no-op). The applied index moves at the call. A
   * machine that applies off the loop (SQL) answers with a Promise: the
   * command was handed over in log order; the promise settles with its
   * result, or rejects for a non-deterministic failure (the replica then stops).
   */
  apply(index: number, data: Uint8Array): ApplyResult | Promise<ApplyResult> | undefined;
  /** A committed entry no state machine sees (a membership entry): only the applied index moves. */
  markApplied(index: number): void;
  /** Work the entry just applied asked to finish before any later entry applies (MachineRegistry.holdUntil); the replica awaits it. */
  takeHold?(): Promise<void> | undefined;
  /**
   * The state as of appliedIndex at the call, captured synchronously and
   * yielded lazily in chunks of at most 1 MiB; apply() may go on meanwhile.
   * The format is the state machine's choice (the registry's: by the cluster
   * feature level, so that every member can install it).
   */
  snapshot(): SnapshotChunks;
  /**
   * Optional: a snapshot for this node's own storage (what Snapshots.take
   * writes), which may refer to content on this node's disk instead of
   * carrying it, so that taking one stays cheap. restore() reads it;
   * anything sent to a peer goes through expandSnapshot().
   */
  localSnapshot?(): SnapshotChunks;
  /** A stored snapshot (`read()` streams it) as snapshot() would write it, its size, and a release of what it refers to. */
  expandSnapshot?(read: () => SnapshotChunks): Promise<{ bytes: number; chunks: SnapshotChunks; release: () => void }>;
  /**
   * Replaces the whole state with a snapshot's. Everything is checked before
   * the live state changes; a bad stream throws and changes nothing.
   */
  restore(chunks: SnapshotChunks): Promise<void>;
}

/** Time and timers (the real clock in the agent). */
export interface Clock {
  every(ms: number, fn: () => void): () => void;
  after(ms: number, fn: () => void): () => void;
  /** Soon, after the current I/O (setImmediate). */
  soon(fn: () => void): void;
}

export const REAL_CLOCK: Clock = {
  every(ms, fn) {
    const t = setInterval(fn, ms);
    return () => clearInterval(t);
  },
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
  soon(fn) {
    setImmediate(fn);
  },
};

