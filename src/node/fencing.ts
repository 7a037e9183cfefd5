// Fencing the previous leader (cluster.fenceScript), a gate for leader work
// with external side effects.
//
// Raft keeps the replicated state safe without fencing: a deposed leader cannot
// commit. What it cannot stop is a deposed (paused, partitioned) leader's side
// effects outside the log: holding the virtual IP, running a job, delivering
// outbox messages, writing a backup. So before a new leader starts any of
// these, it runs cluster.fenceScript against the previous leader (STONITH:
// power it off, revoke its storage path, call a cloud API), retrying with
// backoff until it succeeds; meanwhile it serves consensus reads and writes
// and does its internal leader work (TTL expiry, membership), but none of the
// gated work. No fencing is needed, and the script is not run, when:
//   - cluster.fenceScript is not set (the gated work then starts at once and
//     relies on the term as its fencing token; the VIP waits out the old
//     leader's kernel lease, ./vip.ts);
//   - this node won its term by a clean switchover (the old leader stepped
//     down and confirmed before handing over);
//   - no previous leader is known (the first leader of the cluster).
//
// With Redis as the witness (src/coord/WITNESS.md), leadership also ends at
// the witness lease's step-down deadline. The gate does not wait for the
// witness driver to step the core down (it checks every 50 ms): each gated
// service is stopped by a timer set at the deadline itself unless a renewal
// moved it, and leader work asks `leaseOk()` at the moment it acts.
import type { Logger } from 'pino';
import type { FenceView } from '../api/ports.js';
import type { LeaderService } from './leadership.js';
import { runFenceScript, type CommandResult, type FenceTarget } from './vip-commands.js';

export interface FencingDeps {
  readonly fenceScript: string;
  readonly log: Logger;
  /** This node won its current term by a leadership transfer (a clean switchover). */
  wonByTransfer(): boolean;
  /** The previous leader, as this node last saw it. */
  previousLeader(): FenceTarget | undefined;
  runFence?: (t: FenceTarget) => Promise<CommandResult>;
  /** Backoff after the n-th failure (ms); default 1 s doubling to 30 s. */
  backoffMs?: (attempt: number) => number;
  /**
   * Witness mode only: the step-down deadline of the witness lease this node
   * holds (performance.now() time), undefined when it holds none.
   */
  leaseDeadline?: () => number | undefined;
  /** Monotonic clock (tests); default performance.now. */
  now?: () => number;
}

/** How a term's gate opened: the previous leader was fenced, or no fencing was needed; 'ended': the term ended first. */
export type FenceOutcome = 'fenced' | 'not-needed' | 'ended';

interface Waiter {
  readonly term: number;
  readonly resolve: (o: FenceOutcome) => void;
}

export class Fencing implements LeaderService {
  readonly name = 'fencing';
  readonly #d: FencingDeps;
  readonly #log: Logger;
  #epoch = 0;
  /** The term whose gate is open, and how it opened. */
  #open: { term: number; outcome: Exclude<FenceOutcome, 'ended'> } | undefined;
  #waiters: Waiter[] = [];
  #view: FenceView | undefined;

  constructor(d: FencingDeps) {
    this.#d = d;
    this.#log = d.log.child({ component: 'fencing' });
  }

  get configured(): boolean {
    return this.#d.fenceScript !== '';
  }

  start(term: number): void {
    const epoch = ++this.#epoch;
    this.#open = undefined;
    const prev = this.configured && !this.#d.wonByTransfer() ? this.#d.previousLeader() : undefined;
    if (prev === undefined) {
      this.#openGate(term, 'not-needed');
      return;
    }
    void this.#loop(prev, term, epoch);
  }

  stop(): void {
    this.#epoch++;
    this.#open = undefined;
    const w = this.#waiters;
    this.#waiters = [];
    for (const x of w) x.resolve('ended');
  }

  /** Resolves when leader work with external effects may start in `term`, or 'ended' once this node stops leading. */
  whenReady(term: number): Promise<FenceOutcome> {
    if (this.#open?.term === term) return Promise.resolve(this.#open.outcome);
    return new Promise((resolve) => this.#waiters.push({ term, resolve }));
  }

  /**
   * Whether leader work with external effects may act now as far as the
   * witness lease goes: always outside witness mode; in it, only before the
   * step-down deadline of a lease this node holds.
   */
  leaseOk(): boolean {
    const f = this.#d.leaseDeadline;
    if (f === undefined) return true;
    const d = f();
    return d !== undefined && this.#now() < d;
  }

  /** Why `leaseOk()` is false, for errors and logs. */
  leaseProblem(): string {
    return this.#d.leaseDeadline?.() === undefined
      ? 'this node holds no witness lease'
      : 'the witness lease was not renewed before its step-down deadline';
  }

  #now(): number {
    return this.#d.now?.() ?? performance.now();
  }

  /** The last fencing attempt (for status), or undefined when none ran. */
  status(): FenceView | undefined {
    return this.#view;
  }

  /**
   * Wraps a leader service so that it starts only once this gate opens for
   * its term (and, in witness mode, while the lease holds), and stops at the
   * witness lease's step-down deadline if no renewal moved it.
   */
  gate(inner: LeaderService): LeaderService {
    let gen = 0;
    let started = false;
    let timer: NodeJS.Timeout | undefined;
    const disarm = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    const halt = (): void => {
      gen++;
      disarm();
      if (!started) return;
      started = false;
      inner.stop();
    };
    const watch = (mine: number): void => {
      const d = this.#d.leaseDeadline?.();
      if (mine !== gen || !started) return;
      if (d === undefined || this.#now() >= d) {
        this.#log.warn({ event: 'witness_lease_deadline', service: inner.name }, `stopping ${inner.name}: ${this.leaseProblem()} (leader work with external effects never outlives the witness lease)`);
        halt();
        return;
      }
      timer = setTimeout(() => watch(mine), Math.max(1, d - this.#now()));
      timer.unref();
    };
    return {
      name: inner.name,
      start: (term) => {
        const mine = ++gen;
        disarm();
        void this.whenReady(term).then((o) => {
          if (o === 'ended' || mine !== gen) return;
          if (!this.leaseOk()) {
            this.#log.warn({ event: 'witness_lease_deadline', service: inner.name, term }, `not starting ${inner.name} in term ${term}: ${this.leaseProblem()}`);
            return;
          }
          started = true;
          inner.start(term);
          if (this.#d.leaseDeadline !== undefined) watch(mine);
        });
      },
      stop: halt,
    };
  }

  #openGate(term: number, outcome: Exclude<FenceOutcome, 'ended'>): void {
    this.#open = { term, outcome };
    const keep: Waiter[] = [];
    for (const w of this.#waiters) {
      if (w.term === term) w.resolve(outcome);
      else if (w.term > term) keep.push(w);
      else w.resolve('ended');
    }
    this.#waiters = keep;
  }

  async #loop(prev: FenceTarget, term: number, epoch: number): Promise<void> {
    const run = this.#d.runFence ?? ((t: FenceTarget) => runFenceScript(this.#d.fenceScript, t));
    const backoffOf = this.#d.backoffMs ?? ((n: number) => Math.min(30_000, 1000 * 2 ** Math.min(n - 1, 5)));
    for (let attempt = 1; ; attempt++) {
      this.#log.info({ event: 'fence_running', target: prev.nodeName, targetTerm: prev.term, term, attempt },
        `fencing the previous leader ${prev.nodeName} (term ${prev.term}) with cluster.fenceScript before leader work with external effects (virtual IP, jobs, outbox delivery, backups)`);
      let r: CommandResult;
      try {
        r = await run(prev);
      } catch (e) {
        r = { ok: false, command: this.#d.fenceScript, detail: (e as Error).message };
      }
      if (epoch !== this.#epoch) return;
      if (r.ok) {
        this.#view = { target: prev.nodeName, term: prev.term, attempts: attempt, ok: true };
        this.#log.info({ event: 'fence_succeeded', target: prev.nodeName, targetTerm: prev.term, attempt, output: r.detail },
          `fenced ${prev.nodeName}: starting leader work with external effects now`);
        this.#openGate(term, 'fenced');
        return;
      }
      const backoff = backoffOf(attempt);
      this.#view = { target: prev.nodeName, term: prev.term, attempts: attempt, ok: false, lastError: r.detail };
      this.#log.error({ event: 'fence_failed', target: prev.nodeName, command: r.command, output: r.detail, attempt, retryInMs: backoff },
        `fencing ${prev.nodeName} failed (${r.command}: ${r.detail}); the virtual IP, jobs, outbox delivery and backups stay stopped until it succeeds, retrying in ${backoff} ms. Writes and reads are served meanwhile; fix the script or fence the node by hand`);
      const until = performance.now() + backoff;
      while (epoch === this.#epoch && performance.now() < until) await new Promise((res) => setTimeout(res, Math.min(100, until - performance.now())));
      if (epoch !== this.#epoch) return;
    }
  }
}
