// The ports a Replica is built from: durable log storage, the peer network,
// the replicated state machine, and a clock. The agent plugs in WalStorage,
// PeerTransport, KvStateMachine and the real clock; a simulator can plug in
// its own (virtual time, a simulated network and file system).
import type { Entry, HardState, Message, NodeId, SnapshotMeta } from '../raft/index.js';
import type { ApplyResult } from '../state/index.js';

/** Durable storage of the log, hard state and snapshots (WalStorage). */
export interface LogStore {
  save(hardState: HardState | undefined, entries: readonly Entry[], mustSync: boolean): Promise<void>;
  saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<unknown>;
  /** Atomically replace the log with a snapshot received from the leader. */
  installSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<unknown>;
  compact(index: number): Promise<unknown>;
}

/** Messages to peers (PeerTransport). */
export interface PeerNetwork {
  send(msgs: readonly Message[]): void;
  sendSnapshot(to: NodeId, msg: Message, data: Uint8Array, onProgress?: (sentBytes: number, totalBytes: number) => void): Promise<void>;
}

/**
 * The replicated state: deterministic apply, snapshot, restore. Today the
 * KvStateMachine, which hosts the MachineRegistry (src/state/machines.ts)
 * that routes each entry to its machine and owns the applied index.
 */
export interface StateMachine {
  /** The last entry applied, membership entries included. */
  readonly appliedIndex: number;
  /** A committed normal entry (either envelope format). */
  apply(index: number, data: Uint8Array): ApplyResult;
  /** A committed entry no state machine sees (a membership entry): only the applied index moves. */
  markApplied(index: number): void;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
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

