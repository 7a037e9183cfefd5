// The leader-only scheduler: cron schedules (croner) that run on the leader
// only, as one LeaderService. Started with the term as fencing token while
// this node leads with a quorum (src/node/leadership.ts), stopped otherwise:
// stopping aborts every running job (its AbortSignal) and cancels the timers.
//
// At most once per slot, across failovers: before a run, the leader claims
// its slot through the log (the "scheduler" machine, src/state/scheduler-machine.ts);
// the claim applies only if the slot is later than the job's last claimed
// slot, on every node alike, so a slot claimed by one leader is never run by
// another. A leader that dies after its claim and before the run ends leaves
// that slot unrun (at most once, never twice).
//
// Catch-up: when a node becomes leader, a job whose most recent due slot
// (<= now) is later than its last claimed slot missed it (the old leader died,
// or no leader had a quorum): `once` claims and runs that most recent slot
// once (the older missed ones are not run), `skip` leaves it and waits for the
// next slot. A job seen for the first time is "armed" at its last due slot:
// nothing it never had the chance to run is caught up.
//
// Slots that pass while a run of the same job is still going are skipped
// (logged `job_slot_skipped`): a job never overlaps itself.
import { Cron } from 'croner';
import type { Logger } from 'pino';
import { encodeSchedulerPayload, type ApplyResult, type JobRecord, type RunKind, type SchedulerCommand, type SkipReason } from '../state/index.js';
import { NodeError } from './errors.js';
import type { LeaderService } from './leadership.js';

export type CatchUp = 'once' | 'skip';

export interface JobContext {
  /** The leader's term: the fencing token of this run. */
  readonly term: number;
  /** The slot (epoch ms) this run was claimed for. */
  readonly slotMs: number;
  /** The run's sequence number for this job (1, 2, ...). */
  readonly seq: number;
  readonly kind: RunKind;
  /** Aborted when this node stops leading (or stops). */
  readonly signal: AbortSignal;
}

export interface ScheduledJob {
  /** Unique, 1..100 characters. */
  readonly name: string;
  /** A cron pattern (5 fields, or 6 with seconds first), in the node's local time zone. */
  readonly schedule: string;
  readonly catchUp: CatchUp;
  /** Resolves with a short message for the run history; throws to report a failed run. */
  run(ctx: JobContext): Promise<string | void>;
}

export interface SchedulerDeps {
  readonly log: Logger;
  /** The replicated claims (the node's "scheduler" machine). */
  readonly claims: { job(name: string): JobRecord | undefined; jobs(): JobRecord[] };
  /** Proposes a scheduler command (format-2 envelope) and resolves with its result once applied. */
  propose(c: SchedulerCommand): Promise<ApplyResult>;
  /** The cluster feature level: claims need format-2 entries (>= 2). */
  featureLevel(): number;
  /** This node's name (recorded with each run it claims). */
  readonly nodeName: string;
  /** Resolves once this leader has applied everything committed before its term (a linearizable read barrier); throws if it cannot. */
  barrier(): Promise<void>;
  /** Witness mode: the lease still holds now (Fencing.leaseOk); asked when a run is about to start. */
  mayAct?(): boolean;
  now?(): number;
}

/** Throws a message naming the problem when `pattern` is not a cron pattern croner accepts. */
export function checkSchedule(pattern: string): void {
  new Cron(pattern, { paused: true });
}

const STEP_MS = 100;
/** Longest single timer (setTimeout's limit is ~24.8 days): longer waits are re-armed. */
const MAX_TIMER_MS = 60 * 60 * 1000;

export class LeaderScheduler implements LeaderService {
  readonly name = 'scheduler';
  readonly #d: SchedulerDeps;
  readonly #jobs = new Map<string, { job: ScheduledJob; cron: Cron }>();
  /** The running generation: bumped by start/stop; loops of an older one end. */
  #gen = 0;
  #term: number | undefined;
  #abort = new AbortController();
  readonly #running = new Set<string>();

  constructor(d: SchedulerDeps) {
    this.#d = d;
  }

  #now(): number {
    return this.#d.now?.() ?? Date.now();
  }

  /** Adds a job (before or after start). Throws on a duplicate name or a bad schedule. */
  add(job: ScheduledJob): void {
    if (this.#jobs.has(job.name)) throw new Error(`scheduler: a job named ${JSON.stringify(job.name)} is already registered`);
    const cron = new Cron(job.schedule, { paused: true });
    this.#jobs.set(job.name, { job, cron });
    if (this.#term !== undefined) void this.#loop(job.name, this.#term, this.#gen);
  }

  /** The registered jobs with their next slot and replicated record. */
  list(): { name: string; schedule: string; catchUp: CatchUp; nextRunMs: number | undefined; running: boolean; record: JobRecord | undefined }[] {
    return [...this.#jobs.values()].map(({ job, cron }) => ({
      name: job.name, schedule: job.schedule, catchUp: job.catchUp, nextRunMs: cron.nextRun(new Date(this.#now()))?.getTime(),
      running: this.#running.has(job.name), record: this.#d.claims.job(job.name),
    }));
  }

  /** This node runs the scheduler now (leads with a quorum): the term, else undefined. */
  get term(): number | undefined {
    return this.#term;
  }

  start(term: number): void {
    this.#gen++;
    this.#term = term;
    this.#abort = new AbortController();
    for (const name of this.#jobs.keys()) void this.#loop(name, term, this.#gen);
  }

  stop(): void {
    this.#gen++;
    this.#term = undefined;
    this.#abort.abort(new Error('this node is no longer the leader'));
  }

  /**
   * Runs `name` now (an operator's request), claiming the current time as its
   * slot: resolves once the run is claimed and started (it goes on in the
   * background); refused while not leading or while the job is running.
   */
  async runNow(name: string): Promise<{ seq: number; slotMs: number }> {
    const e = this.#jobs.get(name);
    if (e === undefined) throw new Error(`no job named ${JSON.stringify(name)} in this node's config (jobs lists them)`);
    const term = this.#term;
    if (term === undefined) throw new Error('this node does not run the scheduler (it is not the leader with a quorum)');
    if (this.#running.has(name)) throw new NodeError('job_running', `job ${JSON.stringify(name)} is running now; wait for it to end (quorate jobs history ${name})`);
    return new Promise((resolve, reject) => {
      void this.#claimAndRun(e.job, this.#now(), term, this.#gen, 'manual', (seq, slotMs) => resolve({ seq, slotMs })).then((r) => {
        if (r === undefined) reject(new NodeError('job_running', `job ${JSON.stringify(name)}: the slot could not be claimed (leadership changed, or a later slot was claimed meanwhile)`));
      });
    });
  }

  #live(gen: number): boolean {
    return gen === this.#gen;
  }

  async #sleep(ms: number, gen: number): Promise<void> {
    const signal = this.#abort.signal;
    if (!this.#live(gen)) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
      t.unref();
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done);
    });
  }

  async #loop(name: string, term: number, gen: number): Promise<void> {
    const d = this.#d;
    const entry = this.#jobs.get(name)!;
    const { job, cron } = entry;
    // Claims need format-2 entries, and a view of the claims that includes everything committed before this term.
    let warned = false;
    for (;;) {
      if (!this.#live(gen)) return;
      if (d.featureLevel() < 2) {
        if (!warned) d.log.warn({ event: 'job_not_scheduled', job: name }, `job ${name} does not run while the cluster feature level is below 2 (a member runs the previous release)`);
        warned = true;
      } else if (await d.barrier().then(() => true, () => false)) {
        break;
      }
      await this.#sleep(STEP_MS * 5, gen);
    }
    if (!this.#live(gen)) return;
    try {
      // Runs an earlier leader started and could not report (it died or lost leadership) end as interrupted.
      for (const r of d.claims.job(name)?.runs ?? []) {
        if (r.ok !== undefined || r.term >= term) continue;
        await d.propose({ op: 'finish', name, seq: r.seq, ok: false, message: `interrupted: the leader of term ${r.term} died or lost leadership before run ${r.seq} ended` });
      }
      const now = this.#now();
      const due = cron.previousRuns(1, new Date(now + 1))[0]?.getTime();
      const rec = d.claims.job(name);
      if (rec === undefined) {
        await d.propose({ op: 'arm', name, slotMs: due ?? now });
      } else if (due !== undefined && due > rec.lastSlotMs) {
        if (job.catchUp === 'once') {
          d.log.info({ event: 'job_catch_up', job: name, slot: new Date(due).toISOString(), lastSlot: new Date(rec.lastSlotMs).toISOString() }, `job ${name} missed its slot ${new Date(due).toISOString()}: running it once now (catchUp once)`);
          // Earlier slots missed in the same outage are not run: the latest of them is recorded as skipped (it stands for all of them).
          const before = cron.previousRuns(1, new Date(due))[0]?.getTime();
          if (before !== undefined && before > rec.lastSlotMs) await this.#recordSkip(name, before, term, 'superseded');
          await this.#claimAndRun(job, due, term, gen, 'catch-up');
        } else {
          d.log.info({ event: 'job_slot_skipped', job: name, slot: new Date(due).toISOString(), reason: 'missed' }, `job ${name} missed its slot ${new Date(due).toISOString()}: skipped (catchUp skip)`);
          await this.#recordSkip(name, due, term, 'missed');
        }
      }
    } catch (e) {
      if (this.#live(gen)) d.log.warn({ event: 'job_catch_up_failed', job: name, err: (e as Error).message }, `job ${name}: checking for a missed slot failed (${(e as Error).message}); waiting for the next slot`);
    }
    let after = this.#now();
    while (this.#live(gen)) {
      const next = cron.nextRun(new Date(Math.max(after, this.#now())))?.getTime();
      if (next === undefined) return; // the pattern has no future slot
      while (this.#live(gen) && this.#now() < next) await this.#sleep(next - this.#now(), gen);
      if (!this.#live(gen)) return;
      after = next;
      if (this.#running.has(name)) {
        d.log.warn({ event: 'job_slot_skipped', job: name, slot: new Date(next).toISOString(), reason: 'running' }, `job ${name}: slot ${new Date(next).toISOString()} skipped, the previous run is still going`);
        void this.#recordSkip(name, next, term, 'running');
        continue;
      }
      void this.#claimAndRun(job, next, term, gen, 'scheduled');
    }
  }

  /** Records a skipped slot in the job's replicated history (it claims the slot, so no later leader runs it either). */
  async #recordSkip(name: string, slotMs: number, term: number, reason: SkipReason): Promise<void> {
    try {
      await this.#d.propose({ op: 'claim', name, slotMs, term, kind: 'skipped', node: this.#d.nodeName, reason });
    } catch (e) {
      this.#d.log.debug({ event: 'job_skip_not_recorded', job: name, slot: new Date(slotMs).toISOString(), err: (e as Error).message }, `job ${name}: the skipped slot was not recorded`);
    }
  }

  /** Claims `slotMs` for `job` through the log and runs it if the claim is this leader's; undefined when not claimed. */
  async #claimAndRun(job: ScheduledJob, slotMs: number, term: number, gen: number, kind: Exclude<RunKind, 'skipped'>, onStarted?: (seq: number, slotMs: number) => void): Promise<{ seq: number; slotMs: number; ok: boolean; message: string } | undefined> {
    const d = this.#d;
    const slot = new Date(slotMs).toISOString();
    this.#running.add(job.name);
    try {
      let seq: number;
      try {
        const r = await d.propose({ op: 'claim', name: job.name, slotMs, term, kind, node: d.nodeName });
        if (!('revision' in r)) {
          d.log.info({ event: 'job_slot_taken', job: job.name, slot, err: 'error' in r ? r.error : 'unexpected result' }, `job ${job.name}: slot ${slot} was already claimed; not run`);
          return undefined;
        }
        seq = r.revision;
      } catch (e) {
        // The claim may or may not have committed: the slot is not run here (at most once).
        d.log.warn({ event: 'job_claim_failed', job: job.name, slot, err: (e as Error).message }, `job ${job.name}: claiming slot ${slot} failed (${(e as Error).message}); not run`);
        return undefined;
      }
      if (!this.#live(gen)) {
        d.log.warn({ event: 'job_not_run', job: job.name, slot, seq }, `job ${job.name}: slot ${slot} was claimed but leadership was lost before it started; not run`);
        return undefined;
      }
      if (d.mayAct && !d.mayAct()) {
        d.log.warn({ event: 'job_not_run', job: job.name, slot, seq, reason: 'witness_lease' }, `job ${job.name}: slot ${slot} was claimed but the witness lease was not renewed in time (this node is about to step down); not run`);
        return undefined;
      }
      const started = this.#now();
      d.log.info({ event: 'job_started', job: job.name, slot, seq, kind, fencingTerm: term }, `job ${job.name} run ${seq} started (slot ${slot}, ${kind}, term ${term})`);
      let ok = true;
      let message = '';
      onStarted?.(seq, slotMs);
      try {
        message = (await job.run({ term, slotMs, seq, kind, signal: this.#abort.signal })) ?? '';
      } catch (e) {
        ok = false;
        message = (e as Error).message;
      }
      const ms = this.#now() - started;
      if (ok) d.log.info({ event: 'job_finished', job: job.name, slot, seq, ms }, `job ${job.name} run ${seq} finished in ${ms} ms${message ? `: ${message}` : ''}`);
      else d.log.error({ event: 'job_failed', job: job.name, slot, seq, ms, err: message }, `job ${job.name} run ${seq} failed after ${ms} ms: ${message}`);
      if (this.#live(gen)) {
        await d.propose({ op: 'finish', name: job.name, seq, ok, message: message.slice(0, 512) }).catch((e: unknown) => {
          d.log.debug({ event: 'job_finish_not_recorded', job: job.name, seq, err: (e as Error).message }, `job ${job.name}: the end of run ${seq} was not recorded`);
        });
      }
      return { seq, slotMs, ok, message };
    } finally {
      this.#running.delete(job.name);
    }
  }
}

/** The scheduler's proposals as format-2 entries for machine "scheduler". */
export function schedulerPayload(c: SchedulerCommand): Uint8Array {
  return encodeSchedulerPayload(c);
}
