// Client sessions (Raft dissertation §6.3): the result of every command that
// carries an idempotency key is recorded, so a retry returns the original
// result instead of applying twice. Bounded in count (oldest evicted first)
// and in age, where age is measured by the state machine's clock: the largest
// command `at` seen, never a local clock. Records are kept in insertion order,
// which is the same on every node, and their times never decrease (the clock
// is monotonic), so pruning from the front is exact.
//
// Each record also keeps the fingerprint of the command that created it
// (commandFingerprint: a hash of the command, computed inside apply, so every
// replica stores the same one). A later command with the same key but another
// fingerprint is a different request reusing the key: it is refused
// (`idempotency_key_reused`), not answered with this record's result. Records
// restored from a format-1 snapshot have no fingerprint (undefined) and keep
// the old behaviour: any command with their key gets their result.
import type { ApplyResult } from './results.js';

export interface SessionRecord {
  readonly key: string;
  /** State-machine clock (ms) when the result was recorded. */
  readonly atMs: number;
  /** commandFingerprint of the recorded command; undefined for records from format-1 snapshots. */
  readonly fingerprint: string | undefined;
  readonly result: ApplyResult;
}

export class SessionTable {
  readonly maxRecords: number;
  readonly ttlMs: number;
  #records = new Map<string, SessionRecord>();

  constructor(maxRecords: number, ttlMs: number) {
    this.maxRecords = maxRecords;
    this.ttlMs = ttlMs;
  }

  get size(): number {
    return this.#records.size;
  }

  lookup(key: string): SessionRecord | undefined {
    return this.#records.get(key);
  }

  /** Drops records recorded at or before `nowMs - ttlMs`. */
  expire(nowMs: number): void {
    for (const [key, rec] of this.#records) {
      if (rec.atMs + this.ttlMs > nowMs) break;
      this.#records.delete(key);
    }
  }

  record(key: string, atMs: number, fingerprint: string | undefined, result: ApplyResult): void {
    if (this.#records.has(key)) return;
    this.#records.set(key, { key, atMs, fingerprint, result });
    this.#evictOverflow();
  }

  #evictOverflow(): void {
    while (this.#records.size > this.maxRecords) {
      const oldest = this.#records.keys().next();
      if (oldest.done === true) break;
      this.#records.delete(oldest.value);
    }
  }

  /** Records in insertion order (the order snapshots keep). */
  values(): IterableIterator<SessionRecord> {
    return this.#records.values();
  }

  /** Replaces the content; `records` must be in insertion order. */
  load(records: readonly SessionRecord[]): void {
    this.#records = new Map(records.map((r) => [r.key, r]));
    this.#evictOverflow();
  }
}
