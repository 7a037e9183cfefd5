// Client sessions (Raft dissertation §6.3): the result of every command that
// carries an idempotency key is recorded, so a retry returns the original
// result instead of applying twice. Bounded in count (oldest evicted first)
// and in age, where age is measured by the state machine's clock: the largest
// command `at` seen, never a local clock. Records are kept in insertion order,
// which is the same on every node, and their times never decrease (the clock
// is monotonic), so pruning from the front is exact.
import type { ApplyResult } from './results.js';

export interface SessionRecord {
  readonly key: string;
  /** State-machine clock (ms) when the result was recorded. */
  readonly atMs: number;
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

  lookup(key: string): ApplyResult | undefined {
    return this.#records.get(key)?.result;
  }

  /** Drops records recorded at or before `nowMs - ttlMs`. */
  expire(nowMs: number): void {
    for (const [key, rec] of this.#records) {
      if (rec.atMs + this.ttlMs > nowMs) break;
      this.#records.delete(key);
    }
  }

  record(key: string, atMs: number, result: ApplyResult): void {
    if (this.#records.has(key)) return;
    this.#records.set(key, { key, atMs, result });
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
