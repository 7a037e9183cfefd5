// Compaction of the shared log, as the SharedLog (./shared-log.ts) runs it:
// the fenced leader stores a snapshot of the machines every
// `snapshotEntries` applied entries and deletes the log up to
// `snapshotTrailingEntries` before it (./pg-snapshot.ts: one transaction,
// fenced); a node loads the newest snapshot at start and when the entries it
// needs were deleted; every node reads the newest snapshot's row when the
// snapshot's NOTIFY arrives, and every 10 s in case one was missed, for its
// status. Kept apart from the SharedLog for size.
import type { Logger } from 'pino';
import { NodeError } from '../node/errors.js';
import type { StateMachine } from '../node/ports.js';
import { databaseUnavailable, type PgLog } from './pg-log.js';
import type { SnapshotInfo } from './pg-snapshot.js';

/** After a failed snapshot write, the next automatic one waits this long. */
const RETRY_MS = 10_000;
/** How often a node reads the newest snapshot's row for its status when no NOTIFY said a new one was stored. */
const CHECK_MS = 10_000;

/** What the node shows of compaction (status, logs). */
export interface CompactionInfo {
  /** The newest snapshot this node knows of in PostgreSQL (undefined: none). */
  readonly snapshot: SnapshotInfo | undefined;
  /** Snapshots this node loaded (at start, or because it lagged behind the deleted entries). */
  readonly loads: number;
  /** The last snapshot write that failed, and why (cleared by the next success). */
  readonly lastError: string | undefined;
}

/** What compaction needs of its SharedLog. */
export interface CompactionHost {
  readonly pg: PgLog;
  readonly sm: StateMachine;
  readonly logger: Logger;
  /** cluster.snapshotEntries, cluster.snapshotTrailingEntries. */
  readonly snapshotEntries: number;
  readonly snapshotTrailingEntries: number;
  /** Leading with the fence raised: the token it raised, else undefined. */
  fencedToken(): number | undefined;
  /** Running (not stopped, not failed). */
  running(): boolean;
  notLeader(): NodeError;
  /** The database answered / failed (the SharedLog's database state). */
  ok(): void;
  failed(e: unknown): void;
  /** The fence row refused this node's token: step down. */
  fenced(token: number): void;
  /** A snapshot was loaded up to `info.idx`: settle what it covers (waiters, the known end, tokens). */
  loaded(info: SnapshotInfo): void;
}

export class LogCompaction {
  readonly #h: CompactionHost;
  #snapshot: SnapshotInfo | undefined;
  #writing: Promise<SnapshotInfo> | undefined;
  #error: string | undefined;
  #retryAt = 0;
  #loads = 0;
  #checkedAt = 0;

  constructor(h: CompactionHost) {
    this.#h = h;
  }

  get info(): CompactionInfo { return { snapshot: this.#snapshot, loads: this.#loads, lastError: this.#error }; }

  /** A snapshot row seen elsewhere (at takeover): the next one is due snapshotEntries after it. */
  note(info: SnapshotInfo | undefined): void {
    if (info !== undefined && (this.#snapshot === undefined || this.#snapshot.idx < info.idx)) this.#snapshot = info;
  }

  /** Waits for a snapshot being written (at stop). */
  async settle(): Promise<void> {
    await this.#writing?.catch(() => undefined);
  }

  /**
   * Leader only: store a snapshot of the machines as of the applied index now and compact the log (one
   * transaction, fenced). Resolves with the snapshot (the newest one when nothing was applied since).
   */
  take(): Promise<SnapshotInfo> {
    const h = this.#h;
    const token = h.fencedToken();
    if (token === undefined) return Promise.reject(h.notLeader());
    if (this.#writing) return Promise.reject(new NodeError('snapshot_in_progress', 'a snapshot is already being written to PostgreSQL; try again shortly'));
    const idx = h.sm.appliedIndex;
    if (this.#snapshot !== undefined && this.#snapshot.idx >= idx) return Promise.resolve(this.#snapshot);
    // Captured now, at idx (the machines' stream is lazy; apply goes on meanwhile).
    const chunks = h.sm.snapshot();
    const compactTo = Math.max(0, Math.min(idx - 1, idx - h.snapshotTrailingEntries));
    const t0 = performance.now();
    const p = h.pg.writeSnapshot(token, idx, compactTo, chunks).then((r) => {
      h.ok();
      this.note(r);
      this.#error = undefined;
      const ms = Math.round(performance.now() - t0);
      h.logger.info({ event: 'snapshot_stored', index: idx, fencingToken: token, bytes: r.bytes, chunks: r.chunks, logEntriesDeleted: r.deleted, compactedTo: compactTo, ms },
        `snapshot at index ${idx} stored in PostgreSQL (${r.bytes} bytes in ${r.chunks} chunks, ${ms} ms); log entries up to ${compactTo} deleted (${r.deleted})`);
      return r;
    }, (e: unknown) => {
      const err = e as Error;
      this.#error = `the snapshot at index ${idx} was not stored (${err.message})`;
      this.#retryAt = Date.now() + RETRY_MS;
      if (/refused by the fencing row/.test(err.message)) {
        h.logger.error({ event: 'snapshot_fenced', index: idx, fencingToken: token }, err.message);
        h.fenced(token);
        throw err;
      }
      h.failed(e);
      h.logger.error({ event: 'snapshot_failed', index: idx, err: err.message }, `${this.#error}; the log is kept whole, retrying in ${RETRY_MS / 1000} s`);
      throw err instanceof NodeError ? err : databaseUnavailable(h.pg.target, e);
    }).finally(() => { this.#writing = undefined; });
    this.#writing = p;
    return p;
  }

  /** A snapshot was stored (its NOTIFY arrived): read the newest row now, for status. */
  refresh(): void {
    this.#checkedAt = Date.now();
    this.#h.pg.latestSnapshot().then((info) => this.note(info), () => undefined);
  }

  /** After applying: the leader takes a snapshot when one is due; every node reads the newest row now and then (the backstop when a NOTIFY was missed). */
  async afterApply(): Promise<void> {
    const h = this.#h;
    if (!this.#writing && h.running() && h.fencedToken() !== undefined && Date.now() >= this.#retryAt
      && h.sm.appliedIndex - (this.#snapshot?.idx ?? 0) >= h.snapshotEntries) this.take().catch(() => undefined);
    if (Date.now() - this.#checkedAt < CHECK_MS) return;
    this.#checkedAt = Date.now();
    try {
      this.note(await h.pg.latestSnapshot());
    } catch {
      // The next read reports the database's state.
    }
  }

  /**
   * Replace the machines' state with the newest snapshot in PostgreSQL (at start, or when the entries after
   * this node's applied index were deleted). False when there is none newer than what is applied here.
   */
  async load(why: 'start' | 'behind'): Promise<boolean> {
    const h = this.#h;
    const t0 = performance.now();
    const from = h.sm.appliedIndex;
    const info = await h.pg.withSnapshot(async (info, chunks) => {
      if (info.idx <= h.sm.appliedIndex) return undefined;
      await h.sm.restore(chunks);
      return info;
    });
    if (info === undefined) return false;
    if (h.sm.appliedIndex !== info.idx) throw new Error(`the snapshot at index ${info.idx} in PostgreSQL restored to applied index ${h.sm.appliedIndex}: it was changed outside quorate`);
    this.#loads++;
    this.note(info);
    h.loaded(info);
    const ms = Math.round(performance.now() - t0);
    h.logger.info({ event: 'snapshot_loaded', index: info.idx, bytes: info.bytes, from, why, ms },
      why === 'start' ? `loaded the snapshot at index ${info.idx} from PostgreSQL (${info.bytes} bytes, ${ms} ms); replaying the log after it`
        : `this node had applied up to ${from} but the log after it was compacted: loaded the snapshot at index ${info.idx} from PostgreSQL (${info.bytes} bytes, ${ms} ms)`);
    return true;
  }
}
