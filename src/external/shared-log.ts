// The external-shared counterpart of the Replica (src/node/replica.ts): every
// node applies the PostgreSQL log (./pg-log.ts) in order to its
// MachineRegistry, tailing it (LISTEN/NOTIFY, and a poll as the backstop);
// the lease holder appends to it under its fencing token.
//
// - propose(data): leader only (the lease's current() is asked at that
//   moment); the payload joins the next append batch (group commit: every
//   proposal that arrives while a batch is in its transaction goes into the
//   next one); once the batch committed, the proposal resolves with the result
//   of applying its entry here, as in local-sync mode.
// - takeover: when the lease is won (a new token), the fence row is raised to
//   the token once; until that succeeded the leader appends nothing. A fence
//   that already holds a higher token is a `Split-brain warning`.
// - readBarrier(): the log's last index read from PostgreSQL, then waits until
//   this node applied it: a read after it sees every write acknowledged before
//   it began (linearizable), on any node.
// - compaction (./log-compaction.ts, ./pg-snapshot.ts): the fenced leader stores a snapshot of the
//   machines every `snapshotEntries` applied entries and deletes the log up to
//   `snapshotTrailingEntries` before it; a node starts from the newest
//   snapshot and replays the tail, and a node that finds the entries it needs
//   deleted (it lagged behind the trailing entries) reloads the snapshot.
import type { Logger } from 'pino';
import type { Leadership } from '../node/leadership.js';
import { NodeError } from '../node/errors.js';
import type { ApplyResult } from '../state/index.js';
import type { StateMachine } from '../node/ports.js';
import { databaseUnavailable, isConnectionError, type PgLog } from './pg-log.js';
import { LogCompaction, type CompactionInfo } from './log-compaction.js';
import { SNAPSHOT_NOTIFY_PREFIX, type SnapshotInfo } from './pg-snapshot.js';

const POLL_MS = 500;
const READ_BATCH = 1000;
const MAX_BATCH = 64;
const MAX_PENDING = 20_000;

/** A failure of the database (connection, timeout, any SQLSTATE), not of the data read from it: retried. */
function isDatabaseError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return isConnectionError(e) || (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code));
}

interface Pending {
  readonly data: Uint8Array;
  readonly resolve: (r: ApplyResult) => void;
  readonly reject: (e: Error) => void;
}

interface Waiter {
  readonly resolve: (r: ApplyResult) => void;
  readonly reject: (e: Error) => void;
}

export interface SharedLogOptions {
  readonly log: PgLog;
  readonly sm: StateMachine;
  readonly leadership: Leadership;
  readonly logger: Logger;
  readonly notLeader: () => NodeError;
  /** This process in the fencing row: `<nodeName>/<random>` (unique per start). */
  readonly owner: string;
  /** Give up leadership now (a write was refused by the fencing row, or the fence holds a newer token at takeover). */
  readonly stepDown: (why: string) => void;
  /** Tests only (QUORATE_TEST_APPEND_DELAY_MS): a delay between taking a batch and appending it. */
  readonly testAppendDelayMs?: number;
  /** A broken invariant (a gap in the log, an apply that failed): the node must stop. */
  readonly onFatal: (e: Error) => void;
  /** The leader stores a snapshot after this many entries applied since the last one (cluster.snapshotEntries). */
  readonly snapshotEntries: number;
  /** Entries kept in the log before the snapshot's index (cluster.snapshotTrailingEntries). */
  readonly snapshotTrailingEntries: number;
}

export class SharedLog {
  readonly #o: SharedLogOptions;
  readonly #log: Logger;
  readonly #pg: PgLog;
  readonly #sm: StateMachine;
  #queue: Pending[] = [];
  #appending = false;
  /** The token the fence row holds for this node (set by a successful takeover). */
  #fencedToken = 0;
  #takingOver: number | undefined;
  /** Entries applied here, by index, whose proposer waits (leader only). */
  readonly #waiters = new Map<number, Waiter>();
  /** Results of this node's own entries applied before their append call returned (bounded). */
  readonly #early = new Map<number, Promise<ApplyResult>>();
  readonly #readWaiters: { index: number; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  #pulling = false;
  #pullAgain = false;
  #pollTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  #fatal: Error | undefined;
  #lastError: string | undefined;
  #lastOkAt = 0;
  /** The last index seen in the database (this node's view of the commit index). */
  #knownLast = 0;
  #splitBrain: string | undefined;
  #splitBrainAt = 0;
  #highestToken = 0;
  readonly #compaction: LogCompaction;
  readonly #unsubscribe: () => void;

  constructor(o: SharedLogOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#pg = o.log;
    this.#sm = o.sm;
    this.#compaction = new LogCompaction({
      pg: o.log, sm: o.sm, logger: o.logger, snapshotEntries: o.snapshotEntries, snapshotTrailingEntries: o.snapshotTrailingEntries,
      fencedToken: () => (this.writable ? this.#fencedToken : undefined),
      running: () => !this.#stopped && this.#fatal === undefined,
      notLeader: () => o.notLeader(),
      ok: () => this.#ok(),
      failed: (e) => this.#failed(e),
      fenced: (token) => {
        if (this.#fencedToken === token) this.#fencedToken = 0;
        o.stepDown(`the fencing row in PostgreSQL holds a newer token than this node's (${token}): another node took over`);
      },
      loaded: (info) => {
        this.#highestToken = Math.max(this.#highestToken, info.token);
        this.#knownLast = Math.max(this.#knownLast, info.idx);
        // Writes of this node covered by the snapshot: committed, but their results were not applied here.
        for (const [i, w] of this.#waiters) {
          if (i > info.idx) continue;
          this.#waiters.delete(i);
          w.reject(new NodeError('commit_unknown', `the write was committed at index ${i}, but this node loaded a snapshot past it before applying it, so its result is not known here: read it back`));
        }
      },
    });
    this.#unsubscribe = o.leadership.onChange((s) => {
      if (s.leading && s.term !== this.#fencedToken) void this.#takeover(s.term);
      if (!s.leading) this.#failQueued(() => o.notLeader());
    });
  }

  /** Start tailing (LISTEN and poll); catch up with the log first. */
  async start(): Promise<void> {
    // An append's NOTIFY: fetch the new entries; a snapshot's: read its row now, for status (./log-compaction.ts).
    await this.#pg.listen((payload) => { if (payload.startsWith(SNAPSHOT_NOTIFY_PREFIX)) this.#compaction.refresh(); else this.pull(); });
    // The newest snapshot first, then the log after it (the machines start empty).
    if (this.#sm.appliedIndex === 0) {
      try {
        await this.#compaction.load('start');
        this.#ok();
      } catch (e) {
        // The database went away meanwhile: the tail finds the gap and loads the snapshot when it is back.
        if (!isDatabaseError(e)) throw new Error(`loading the newest snapshot from PostgreSQL at ${this.#pg.target} failed: ${(e as Error).message}`, { cause: e });
        this.#failed(e);
      }
    }
    await this.#pullNow();
    this.#schedulePoll();
    const s = this.#o.leadership.current();
    if (s.leading) void this.#takeover(s.term);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe();
    if (this.#pollTimer) clearTimeout(this.#pollTimer);
    for (let i = 0; i < 200 && (this.#appending || this.#pulling); i++) await new Promise((r) => setTimeout(r, 10));
    await this.#compaction.settle();
    this.#failQueued(() => new NodeError('shutting_down', 'the node is shutting down; retry on another node'));
    for (const [, w] of this.#waiters) w.reject(new NodeError('commit_unknown', 'the node is shutting down; the write was committed to PostgreSQL but not yet applied here: read it back on another node'));
    this.#waiters.clear();
    for (const r of this.#readWaiters.splice(0)) { clearTimeout(r.timer); r.reject(new NodeError('shutting_down', 'the node is shutting down; retry on another node')); }
  }

  get appliedIndex(): number { return this.#sm.appliedIndex; }
  get lastIndex(): number { return Math.max(this.#knownLast, this.#sm.appliedIndex); }
  /** The highest fencing token seen in the log or the fence row (a floor for the next lease's token). */
  get highestToken(): number { return Math.max(this.#highestToken, this.#fencedToken); }
  /** The fencing token the fence row holds for this node (0: none yet). */
  get fencedToken(): number { return this.#fencedToken; }
  /** The database answered the last round trip (append, read, poll). */
  get databaseOk(): boolean { return this.#lastError === undefined; }
  get databaseError(): string | undefined { return this.#lastError; }
  get lastOkAt(): number { return this.#lastOkAt; }
  /** The last split-brain evidence, shown for a minute (the status's splitBrainWarning). */
  get splitBrainWarning(): string | undefined { return this.#splitBrain !== undefined && Date.now() - this.#splitBrainAt < 60_000 ? this.#splitBrain : undefined; }
  get fatal(): Error | undefined { return this.#fatal; }
  get compaction(): CompactionInfo { return this.#compaction.info; }
  /** Leading, and the fence row holds this node's token: writes are accepted. */
  get writable(): boolean {
    const s = this.#o.leadership.current();
    return s.leading && s.term === this.#fencedToken;
  }

  propose(data: Uint8Array): Promise<ApplyResult> {
    if (this.#fatal) return Promise.reject(new NodeError('storage_failed', `the node stopped serving: ${this.#fatal.message}`));
    const s = this.#o.leadership.current();
    if (!s.leading) return Promise.reject(this.#o.notLeader());
    if (s.term !== this.#fencedToken) return Promise.reject(new NodeError('no_leader', `this node holds the leader lease (fencing token ${s.term}) but has not raised the fencing row in PostgreSQL yet${this.#lastError ? ` (${this.#lastError})` : ''}; retry in a moment`));
    if (this.#queue.length >= MAX_PENDING) return Promise.reject(new NodeError('overloaded', 'too many writes are waiting for PostgreSQL; retry shortly', { retryAfterMs: 100 }));
    return new Promise((resolve, reject) => {
      this.#queue.push({ data, resolve, reject });
      if (!this.#appending) void this.#appendLoop();
    });
  }

  /** Resolves once this node applied every entry in the log when it was called. */
  async readBarrier(timeoutMs: number): Promise<void> {
    let target: number;
    try {
      target = await this.#pg.lastIndex();
      this.#ok();
    } catch (e) {
      this.#failed(e);
      throw new NodeError('storage_failed', `cannot read the log's end from PostgreSQL at ${this.#pg.target} (${(e as Error).message}); retry when the database is back`);
    }
    this.#knownLast = Math.max(this.#knownLast, target);
    if (this.#sm.appliedIndex >= target) return;
    this.pull();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#readWaiters.findIndex((r) => r.timer === timer);
        if (i >= 0) this.#readWaiters.splice(i, 1);
        reject(new NodeError('no_leader', `this node has not applied the log up to index ${target} within ${timeoutMs} ms (applied ${this.#sm.appliedIndex}); retry`));
      }, timeoutMs);
      this.#readWaiters.push({ index: target, resolve, reject, timer });
    });
  }

  /** Fetch new entries soon (a NOTIFY arrived, or an append committed). */
  pull(): void {
    if (this.#pulling) { this.#pullAgain = true; return; }
    void this.#pullNow();
  }

  /** Leader only: a snapshot stored in PostgreSQL now, and the log compacted behind it (./log-compaction.ts). */
  snapshotNow(): Promise<SnapshotInfo> {
    return this.#compaction.take();
  }

  // ------------------------------------------------------------ leader

  async #takeover(token: number): Promise<void> {
    if (this.#takingOver === token || this.#stopped) return;
    this.#takingOver = token;
    try {
      for (let attempt = 0; !this.#stopped; attempt++) {
        const s = this.#o.leadership.current();
        if (!s.leading || s.term !== token) return;
        try {
          const { token: fence, owner } = await this.#pg.takeover(token, this.#o.owner);
          this.#ok();
          if (fence === token && owner === this.#o.owner) {
            // The newest snapshot (another leader may have taken one): the next is due snapshotEntries after it.
            this.#compaction.note(await this.#pg.latestSnapshot());
            this.#fencedToken = token;
            this.#splitBrain = undefined;
            this.#log.info({ event: 'fence_raised', fencingToken: token }, `took over the PostgreSQL log: the fencing row holds token ${token}; writes are accepted`);
            return;
          }
          this.#splitBrainAt = Date.now();
          this.#splitBrain = fence === token
            ? `Split-brain warning: this node holds the leader lease with fencing token ${token}, and so does ${owner.split('/')[0]} (it raised PostgreSQL's fencing row with the same token): the nodes do not share one Redis (check redis.connectionString on every node); this node does not write`
            : `Split-brain warning: this node holds the leader lease with fencing token ${token} but PostgreSQL's fencing row already holds ${fence} (raised by ${owner.split('/')[0]}): another node took over with a newer lease; this node does not write`;
          this.#log.error({ event: 'split_brain', fencingToken: token, fence }, this.#splitBrain);
          this.#o.stepDown(`the fencing row in PostgreSQL holds token ${fence} (raised by ${owner.split('/')[0]}), not this lease's ${token}`);
          return;
        } catch (e) {
          this.#failed(e);
          if (attempt === 0) this.#log.error({ event: 'fence_failed', fencingToken: token, err: (e as Error).message }, `cannot raise the fencing row in PostgreSQL at ${this.#pg.target} (${(e as Error).message}); retrying, no write is accepted until it succeeds`);
          await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** Math.min(attempt, 4))));
        }
      }
    } finally {
      if (this.#takingOver === token) this.#takingOver = undefined;
    }
  }

  /** A write of this node outside the log (PostgreSQL's SQL, ./pg-sql.ts) was refused by the fence row: step down. */
  fenceRefused(token: number, message: string): void {
    this.#splitBrainAt = Date.now();
    this.#splitBrain = `Split-brain warning: this node (fencing token ${token}) tried to write after a newer leader took over the PostgreSQL database; the fencing row refused it and nothing was written`;
    this.#log.error({ event: 'write_fenced', fencingToken: token, err: message }, `${this.#splitBrain}: ${message}`);
    if (this.#fencedToken === token) this.#fencedToken = 0;
    this.#o.stepDown(`the fencing row in PostgreSQL holds a newer token than this node's (${token}): another node took over`);
  }

  async #appendLoop(): Promise<void> {
    this.#appending = true;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const batch = this.#queue.splice(0, MAX_BATCH);
        // The token these proposals were accepted under. The lease is not asked again here: whatever this
        // node believes now (it may just have woken from a pause), the fencing row decides.
        const token = this.#fencedToken;
        if (token === 0) {
          for (const p of batch) p.reject(this.#o.notLeader());
          continue;
        }
        // Tests only: widen the window between accepting a batch and writing it (a pause lands there).
        if (this.#o.testAppendDelayMs) await new Promise((r) => setTimeout(r, this.#o.testAppendDelayMs));
        let first: number;
        try {
          first = await this.#pg.append(token, batch.map((p) => p.data));
          this.#ok();
        } catch (e) {
          const err = e instanceof NodeError ? e : databaseUnavailable(this.#pg.target, e);
          if (!/refused by the fencing row/.test(err.message)) this.#failed(e);
          else {
            this.#splitBrainAt = Date.now();
            this.#splitBrain = `Split-brain warning: this node (fencing token ${token}) tried to write after a newer leader took over the PostgreSQL log; the fencing row refused it and nothing was written`;
            this.#log.error({ event: 'write_fenced', fencingToken: token, err: err.message }, `${this.#splitBrain}: ${err.message}`);
            this.#fencedToken = 0;
            this.#o.stepDown(`the fencing row in PostgreSQL holds a newer token than this node's (${token}): another node took over`);
          }
          for (const p of batch) p.reject(err);
          continue;
        }
        this.#knownLast = Math.max(this.#knownLast, first + batch.length - 1);
        batch.forEach((p, i) => {
          // The tail may have applied the entry already (the NOTIFY arrived before this continuation ran).
          const done = this.#early.get(first + i);
          if (done === undefined) this.#waiters.set(first + i, { resolve: p.resolve, reject: p.reject });
          else {
            this.#early.delete(first + i);
            done.then(p.resolve, p.reject);
          }
        });
        this.pull();
      }
    } finally {
      this.#appending = false;
    }
  }

  #failQueued(err: () => Error): void {
    for (const p of this.#queue.splice(0)) p.reject(err());
  }

  // ------------------------------------------------------------ every node: tail and apply

  #schedulePoll(): void {
    if (this.#stopped) return;
    this.#pollTimer = setTimeout(() => { this.pull(); this.#schedulePoll(); }, POLL_MS);
    this.#pollTimer.unref();
  }

  async #pullNow(): Promise<void> {
    if (this.#stopped || this.#fatal) return;
    this.#pulling = true;
    try {
      do {
        this.#pullAgain = false;
        let rows;
        try {
          rows = await this.#pg.read(this.#sm.appliedIndex, READ_BATCH);
          this.#ok();
        } catch (e) {
          this.#failed(e);
          return;
        }
        const first = rows[0];
        if (first !== undefined && first.idx > this.#sm.appliedIndex + 1) {
          // The entries this node needs were compacted away: the newest snapshot covers them (else a real gap).
          let loaded = false;
          try {
            loaded = await this.#compaction.load('behind');
            this.#ok();
          } catch (e) {
            if (isDatabaseError(e)) this.#failed(e);
            else this.#die(new Error(`loading the newest snapshot from PostgreSQL failed: ${(e as Error).message}`, { cause: e }));
            return;
          }
          if (!loaded) {
            this.#die(new Error(`the PostgreSQL log has a gap: entry ${first.idx} follows ${this.#sm.appliedIndex}, and no snapshot covers it; the log was changed outside quorate`));
            return;
          }
          this.#pullAgain = true;
          continue;
        }
        for (const row of rows) {
          const expect = this.#sm.appliedIndex + 1;
          if (row.idx < expect) continue; // already in the snapshot loaded above
          if (row.idx !== expect) {
            this.#die(new Error(`the PostgreSQL log has a gap: entry ${row.idx} follows ${expect - 1}; the log was changed outside quorate`));
            return;
          }
          this.#apply(row.idx, row.payload, row.token);
          this.#highestToken = Math.max(this.#highestToken, row.token);
          this.#knownLast = Math.max(this.#knownLast, row.idx);
        }
        if (rows.length === READ_BATCH) this.#pullAgain = true;
        this.#settleReads();
        await this.#compaction.afterApply();
      } while (this.#pullAgain && !this.#stopped && !this.#fatal);
    } finally {
      this.#pulling = false;
    }
  }

  #apply(index: number, data: Uint8Array, token: number): void {
    let result: ApplyResult | Promise<ApplyResult> | undefined;
    try {
      result = this.#sm.apply(index, data);
    } catch (e) {
      this.#die(e as Error);
      return;
    }
    let w = this.#waiters.get(index);
    this.#waiters.delete(index);
    if (w === undefined && token === this.#fencedToken && this.#appending) {
      // Written by this node, whose append call has not returned yet: keep the result for it.
      const p = new Promise<ApplyResult>((resolve, reject) => { w = { resolve, reject }; });
      p.catch(() => undefined);
      this.#early.set(index, p);
      if (this.#early.size > 10_000) this.#early.delete(this.#early.keys().next().value!);
    }
    if (result instanceof Promise) {
      result.then((r) => w?.resolve(r), (e: unknown) => { const err = e instanceof Error ? e : new Error(String(e)); w?.reject(new NodeError('commit_unknown', `the write was committed but applying it here failed (${err.message})`)); this.#die(err); });
    } else {
      w?.resolve(result ?? ({} as ApplyResult));
    }
  }

  #settleReads(): void {
    const applied = this.#sm.appliedIndex;
    for (let i = this.#readWaiters.length - 1; i >= 0; i--) {
      const r = this.#readWaiters[i]!;
      if (r.index <= applied) {
        clearTimeout(r.timer);
        this.#readWaiters.splice(i, 1);
        r.resolve();
      }
    }
  }

  #ok(): void {
    if (this.#lastError !== undefined) this.#log.info({ event: 'database_reachable', target: this.#pg.target }, `the external PostgreSQL database at ${this.#pg.target} answers again`);
    this.#lastError = undefined;
    this.#lastOkAt = Date.now();
  }

  #failed(e: unknown): void {
    const msg = `the external PostgreSQL database at ${this.#pg.target} is unavailable: ${(e as Error).message}`;
    if (this.#lastError === undefined) this.#log.error({ event: 'database_unreachable', target: this.#pg.target, err: (e as Error).message }, msg);
    this.#lastError = msg;
  }

  #die(e: Error): void {
    if (this.#fatal) return;
    this.#fatal = e;
    this.#log.fatal({ event: 'node_failed', err: e.message }, `node stopped serving: ${e.message}`);
    for (const [, w] of this.#waiters) w.reject(new NodeError('commit_unknown', `the node failed (${e.message}); the write may or may not have been applied`));
    this.#waiters.clear();
    this.#o.onFatal(e);
  }
}
