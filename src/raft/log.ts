// The in-memory Raft log of one node: entries after the compaction point,
// which entries are durable (stable), the latest snapshot, and the
// membership in force at the end of the log (a configuration takes effect as
// soon as its entry is in the log, and is rolled back if that suffix is
// truncated).
import { invariant } from './errors.js';
import { decodeConfEntry } from './membership.js';
import type { Entry, Membership, SnapshotMeta } from './types.js';

interface ConfPoint {
  readonly index: number;
  readonly membership: Membership;
}

export class RaftLog {
  /** Index of the entry just before entries[0] (the compaction point). */
  #offset: number;
  #offsetTerm: number;
  #entries: Entry[];
  /** Entries with index <= stable are durable on this node. */
  #stable: number;
  /** Membership as of #offset. */
  #baseMembership: Membership;
  /** Conf entries in the log after #offset, ascending. */
  #confs: ConfPoint[] = [];
  /** The newest snapshot this node holds (sent to followers behind #offset). */
  #snapshot: SnapshotMeta;

  constructor(snapshot: SnapshotMeta, entries: readonly Entry[]) {
    this.#offset = snapshot.index;
    this.#offsetTerm = snapshot.term;
    this.#snapshot = snapshot;
    this.#baseMembership = snapshot.membership;
    this.#entries = [];
    // Trailing entries kept before the snapshot are not needed after a restart.
    const after = entries.filter((e) => e.index > snapshot.index);
    let expect = snapshot.index + 1;
    for (const e of after) {
      invariant(e.index === expect, () => `recovered log is not contiguous: expected index ${expect}, got ${e.index}`);
      expect++;
    }
    this.#appendRaw(after);
    this.#stable = this.lastIndex();
  }

  firstIndex(): number {
    return this.#offset + 1;
  }
  lastIndex(): number {
    return this.#offset + this.#entries.length;
  }
  lastTerm(): number {
    return this.term(this.lastIndex())!;
  }
  stableIndex(): number {
    return this.#stable;
  }
  snapshot(): SnapshotMeta {
    return this.#snapshot;
  }

  /** Term of the entry at index, or undefined when compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.#offset) return this.#offsetTerm;
    if (index < this.#offset || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#offset - 1]!.term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.#offset || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#offset - 1];
  }

  /** Entries in [lo, hi] up to maxBytes of data (at least one entry when any). Undefined if lo is compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    if (lo <= this.#offset) return undefined;
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= Math.min(hi, this.lastIndex()); i++) {
      const e = this.#entries[i - this.#offset - 1]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  hasUnstable(): boolean {
    return this.#stable < this.lastIndex();
  }

  unstableEntries(): Entry[] {
    return this.#entries.slice(this.#stable - this.#offset);
  }

  markStable(index: number): void {
    invariant(index <= this.lastIndex(), () => `marking stable index ${index} beyond last index ${this.lastIndex()}`);
    if (index > this.#stable) this.#stable = index;
  }

  membership(): Membership {
    const last = this.#confs[this.#confs.length - 1];
    return last ? last.membership : this.#baseMembership;
  }

  membershipAt(index: number): Membership {
    let m = this.#baseMembership;
    for (const c of this.#confs) {
      if (c.index > index) break;
      m = c.membership;
    }
    return m;
  }

  /** Index of the newest conf entry in the log (the compaction point if none). */
  lastConfIndex(): number {
    const last = this.#confs[this.#confs.length - 1];
    return last ? last.index : this.#offset;
  }

  /** Append entries that follow the log or overwrite a suffix; returns the first index written. */
  append(entries: readonly Entry[], committed: number): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    invariant(first > committed, () => `truncating committed entry ${first} (commit ${committed})`);
    invariant(first > this.#offset && first <= this.lastIndex() + 1, () => `append at ${first} leaves a gap (log ${this.#offset}..${this.lastIndex()})`);
    if (first <= this.lastIndex()) {
      this.#entries.length = first - this.#offset - 1;
      while (this.#confs.length > 0 && this.#confs[this.#confs.length - 1]!.index >= first) this.#confs.pop();
      if (this.#stable >= first) this.#stable = first - 1;
    }
    this.#appendRaw(entries);
  }

  #appendRaw(entries: readonly Entry[]): void {
    let prevTerm = this.term(this.lastIndex())!;
    for (const e of entries) {
      invariant(e.index === this.lastIndex() + 1, () => `entry index ${e.index} does not follow ${this.lastIndex()}`);
      invariant(e.term >= prevTerm, () => `entry ${e.index} has term ${e.term} below previous term ${prevTerm}`);
      prevTerm = e.term;
      this.#entries.push(e);
      if (e.type === 'conf') {
        this.#confs.push({ index: e.index, membership: decodeConfEntry(e.data).membership });
      }
    }
  }

  /** Given a rejected probe at (index, term), the largest index <= index whose term <= term. */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    while (i > this.#offset) {
      const t = this.term(i)!;
      if (t <= term) break;
      i--;
    }
    return i;
  }

  /** First index in entries whose term differs from ours (or is past our end); 0 when all match. */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /** Record a snapshot taken at `meta.index` and drop entries at or before `compactTo`. */
  compact(meta: SnapshotMeta, compactTo: number): void {
    invariant(meta.index > this.#snapshot.index, () => `snapshot at ${meta.index} is not newer than ${this.#snapshot.index}`);
    this.#snapshot = meta;
    if (compactTo <= this.#offset) return;
    invariant(compactTo <= this.#stable, () => `compacting to ${compactTo} past stable index ${this.#stable}`);
    const t = this.term(compactTo)!;
    const m = this.membershipAt(compactTo);
    this.#entries = this.#entries.slice(compactTo - this.#offset);
    this.#offset = compactTo;
    this.#offsetTerm = t;
    this.#baseMembership = m;
    this.#confs = this.#confs.filter((c) => c.index > compactTo);
  }

  /** Replace the whole log with a snapshot received from the leader. */
  restore(meta: SnapshotMeta): void {
    this.#snapshot = meta;
    this.#offset = meta.index;
    this.#offsetTerm = meta.term;
    this.#entries = [];
    this.#baseMembership = meta.membership;
    this.#confs = [];
    this.#stable = meta.index;
  }

  /** Bytes of entry data in (from, lastIndex]. */
  bytesAfter(from: number): number {
    let n = 0;
    for (let i = Math.max(from, this.#offset) + 1; i <= this.lastIndex(); i++) n += this.#entries[i - this.#offset - 1]!.data.length;
    return n;
  }
}
