// The replica's client waiters: proposals waiting for their entry to be
// applied (tracked by index, settled by the term of what is applied there),
// and linearizable reads waiting for a ReadIndex round and then for the
// applied index to reach it. Every timeout goes through the Clock port (the
// simulator runs it on virtual time). The Replica (./replica.ts) calls into
// this from inside its loop; nothing here touches the core.
import type { Entry, ReadState } from '../raft/index.js';
import type { ApplyResult } from '../state/index.js';
import { NodeError } from './errors.js';
import type { Clock } from './ports.js';

/** What the waiters count (a part of the replica's metrics). */
export interface WaiterMetrics {
  committed(): void;
  failed(reason: string): void;
  commitLatency(seconds: number): void;
}

interface ProposalWaiter {
  readonly term: number;
  readonly startedAt: number;
  resolve(r: ApplyResult): void;
  reject(e: Error): void;
  cancel: () => void;
}

interface ReadWaiter {
  index: number;
  resolve(): void;
  reject(e: Error): void;
  cancel: () => void;
}

export class Waiters {
  readonly #clock: Clock;
  readonly #metrics: WaiterMetrics;
  #proposals = new Map<number, ProposalWaiter>();
  #reads = new Map<number, ReadWaiter>();
  #readCtx = 0;

  constructor(clock: Clock, metrics: WaiterMetrics) {
    this.#clock = clock;
    this.#metrics = metrics;
  }

  /** Proposals accepted by the core and waiting to be applied (quorate_proposals_pending). */
  get pendingProposals(): number {
    return this.#proposals.size;
  }

  /** Linearizable reads waiting (for the overload bound). */
  get pendingReads(): number {
    return this.#reads.size;
  }

  // ------------------------------------------------------------ proposals

  /** A proposal accepted by the core at (index, term): wait for it to be applied, or time out. */
  addProposal(index: number, term: number, timeoutMs: number, resolve: (r: ApplyResult) => void, reject: (e: Error) => void): void {
    const w: ProposalWaiter = {
      term, startedAt: performance.now(), resolve, reject,
      cancel: this.#clock.after(timeoutMs, () => {
        if (this.#proposals.get(index) !== w) return;
        this.#proposals.delete(index);
        this.#metrics.failed('commit_unknown');
        reject(new NodeError('commit_unknown', `the write was proposed at index ${index} but not applied within ${timeoutMs} ms; it may or may not be applied. Retry with the same Idempotency-Key to learn its result`));
      }),
    };
    const displaced = this.#proposals.get(index);
    if (displaced) {
      // Our log was truncated at this index and we lead again: the old
      // entry was overwritten, so it was never committed. Settle it.
      displaced.cancel();
      this.#metrics.failed('proposal_dropped');
      displaced.reject(new NodeError('proposal_dropped', `the write proposed at index ${index} in term ${displaced.term} was overwritten by a later leader and was not applied; retry`));
    }
    this.#proposals.set(index, w);
  }

  /** Entry `e` was applied (`result`: the state machine's, none for a membership entry): settle its proposal, if any. */
  applied(e: Entry, result: ApplyResult | Promise<ApplyResult> | undefined): void {
    const w = this.#proposals.get(e.index);
    if (w) {
      this.#proposals.delete(e.index);
      w.cancel();
      if (w.term === e.term && result instanceof Promise) {
        // Applied off the loop (SQL): the entry is committed; its result settles when the machine answers.
        result.then(
          (r) => {
            this.#metrics.committed();
            this.#metrics.commitLatency((performance.now() - w.startedAt) / 1000);
            w.resolve(r);
          },
          (err: unknown) => w.reject(new NodeError('commit_unknown', `the write was committed at index ${e.index} but this node failed applying it (${(err as Error).message}); it is applied on the other nodes. Retry with the same Idempotency-Key on another node to learn its result`)),
        );
      } else if (w.term === e.term && result !== undefined && !(result instanceof Promise)) {
        this.#metrics.committed();
        this.#metrics.commitLatency((performance.now() - w.startedAt) / 1000);
        w.resolve(result);
      } else {
        this.#metrics.failed('proposal_dropped');
        w.reject(new NodeError('proposal_dropped', `the write was overwritten by a new leader at index ${e.index} and was not applied; retry`));
      }
    }
  }

  /** Settle every proposal with a fresh `err()` each (stop, die). */
  rejectProposals(err: () => Error): void {
    for (const [, w] of this.#proposals) {
      w.cancel();
      w.reject(err());
    }
    this.#proposals.clear();
  }

  // ------------------------------------------------------------ reads

  /** The context of the next ReadIndex request. */
  nextReadCtx(): number {
    return ++this.#readCtx;
  }

  /** A ReadIndex request with context `ctx` went to the core: wait for its read state, then for apply. */
  addRead(ctx: number, timeoutMs: number, resolve: () => void, reject: (e: Error) => void): void {
    this.#reads.set(ctx, {
      index: -1, resolve, reject,
      cancel: this.#clock.after(timeoutMs, () => {
        if (!this.#reads.delete(ctx)) return;
        reject(new NodeError('quorum_not_met', `a linearizable read could not confirm leadership with a quorum within ${timeoutMs} ms; retry, or read with consistency=stale`));
      }),
    });
  }

  /** A Ready's read states (confirmed) and dropped reads (leadership changed); then release what is applied. */
  readsReady(readStates: readonly ReadState[], droppedReads: readonly number[], appliedIndex: number): void {
    for (const rs of readStates) {
      const w = this.#reads.get(rs.ctx);
      if (w) w.index = rs.index;
    }
    for (const ctx of droppedReads) {
      const w = this.#reads.get(ctx);
      if (!w) continue;
      this.#reads.delete(ctx);
      w.cancel();
      w.reject(new NodeError('no_leader', 'leadership changed during a linearizable read; retry (the read was not served)'));
    }
    this.#releaseReads(appliedIndex);
  }

  #releaseReads(applied: number): void {
    for (const [ctx, w] of this.#reads) {
      if (w.index >= 0 && w.index <= applied) {
        this.#reads.delete(ctx);
        w.cancel();
        w.resolve();
      }
    }
  }

  /** Settle every read with a fresh `err()` each (stop). */
  rejectReads(err: () => Error): void {
    for (const [, r] of this.#reads) {
      r.cancel();
      r.reject(err());
    }
    this.#reads.clear();
  }
}
