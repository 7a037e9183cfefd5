// A simulated disk with a volatile write buffer. Writes (entries, hard state,
// an installed snapshot) land in `pending` and become durable only on sync(),
// in order, like a write-ahead log. A crash loses the pending writes; with
// some probability a prefix of them reached the platter and the last of those
// is torn (for an entry batch: a prefix of its entries survives, as a WAL with
// per-record checksums would recover it; a torn hard state is detected and
// dropped). A snapshot the node takes of its own state machine is written
// atomically (temp file, fsync, rename) and is durable at once.
import type { Entry, HardState, RaftStorageState, SnapshotMeta } from '../../src/raft/types.js';
import type { SeededRandom } from '../../src/raft/prng.js';

export type DiskWrite =
  | { readonly kind: 'snapshot'; readonly meta: SnapshotMeta; readonly bytes: Uint8Array }
  | { readonly kind: 'entries'; readonly entries: readonly Entry[] }
  | { readonly kind: 'hardState'; readonly hardState: HardState };

export interface DurableState {
  snapshot: SnapshotMeta;
  snapshotBytes: Uint8Array;
  entries: Entry[];
  hardState: HardState;
}

export interface CrashReport {
  readonly lostWrites: number;
  readonly torn: boolean;
}

export class SimDisk {
  readonly durable: DurableState;
  pending: DiskWrite[] = [];
  syncs = 0;

  constructor(snapshot: SnapshotMeta, snapshotBytes: Uint8Array) {
    this.durable = { snapshot, snapshotBytes, entries: [], hardState: { term: 0, vote: 0, commit: 0 } };
  }

  write(w: DiskWrite): void {
    this.pending.push(w);
  }

  sync(): void {
    for (const w of this.pending) this.#apply(w, undefined);
    this.pending = [];
    this.syncs++;
  }

  /** Snapshot taken locally: atomic and durable at once; compacts the durable log up to it. */
  saveSnapshot(meta: SnapshotMeta, bytes: Uint8Array): void {
    if (meta.index <= this.durable.snapshot.index) return;
    this.durable.snapshot = meta;
    this.durable.snapshotBytes = bytes;
    this.durable.entries = this.durable.entries.filter((e) => e.index > meta.index);
  }

  crash(rng: SeededRandom, tearProbability: number): CrashReport {
    const n = this.pending.length;
    let torn = false;
    if (n > 0 && rng.chance(tearProbability)) {
      // Writes 0..k-1 reached the disk whole, write k partly.
      const k = rng.int(n);
      for (let i = 0; i < k; i++) this.#apply(this.pending[i]!, undefined);
      const last = this.pending[k]!;
      if (last.kind === 'entries' && last.entries.length > 0) this.#apply(last, rng.int(last.entries.length));
      torn = true;
    }
    this.pending = [];
    return { lostWrites: n, torn };
  }

  #apply(w: DiskWrite, prefix: number | undefined): void {
    const d = this.durable;
    switch (w.kind) {
      case 'snapshot':
        d.snapshot = w.meta;
        d.snapshotBytes = w.bytes;
        d.entries = [];
        return;
      case 'hardState':
        d.hardState = w.hardState;
        return;
      case 'entries': {
        const es = prefix === undefined ? w.entries : w.entries.slice(0, prefix);
        if (es.length === 0) return;
        const first = es[0]!.index;
        const last = d.entries.length > 0 ? d.entries[d.entries.length - 1]!.index : d.snapshot.index;
        if (first > last + 1) throw new Error(`sim disk: gap: appending entry ${first} after ${last}`);
        d.entries = d.entries.filter((e) => e.index < first);
        for (const e of es) if (e.index > d.snapshot.index) d.entries.push(e);
        return;
      }
    }
  }

  /** What a restarting node reads back. */
  recover(): RaftStorageState {
    const d = this.durable;
    const entries = d.entries.filter((e) => e.index > d.snapshot.index);
    entries.forEach((e, i) => {
      if (e.index !== d.snapshot.index + 1 + i) throw new Error(`sim disk: durable log not contiguous after snapshot ${d.snapshot.index}`);
    });
    return { hardState: d.hardState, snapshot: d.snapshot, entries, applied: d.snapshot.index };
  }
}
