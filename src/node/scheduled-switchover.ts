// A switchover scheduled for a later time (`quorate switchover --at TIME`,
// POST /v1/cluster/switchover {at}). Kept in the leader's memory only: it is
// a leader service (./leadership.ts), so when this node stops leading (or
// loses its quorum, or stops) a pending schedule is cancelled and the log
// says so; schedule it again on the new leader. When the time comes the
// leader runs the normal switchover (./control.ts, with its caught-up check)
// and logs the outcome.
import type { Logger } from 'pino';
import type { LeaderService } from './leadership.js';
import { NodeError } from './errors.js';

/** At most this far ahead (the schedule lives in one leader's memory). */
export const MAX_SCHEDULE_AHEAD_MS = 7 * 24 * 3600_000;

export interface ScheduledSwitchover {
  /** Target node name, or undefined: the most caught-up voter when it runs. */
  readonly to: string | undefined;
  /** Epoch ms. */
  readonly at: number;
  readonly scheduledBy: string | undefined;
  readonly scheduledAt: number;
}

export interface SwitchoverOutcome {
  readonly ok: boolean;
  readonly from: string;
  readonly to?: string;
  readonly term?: number;
  readonly pauseMs?: number;
  readonly error?: { code: string; message: string };
}

export interface SchedulerDeps {
  readonly log: Logger;
  readonly nodeName: string;
  /** The normal switchover (./control.ts). */
  switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }>;
  /** Checks a target name now (member, not drained); throws a NodeError. */
  checkTarget?(to: string): void;
  notLeader(): NodeError;
  now?(): number;
}

export class SwitchoverScheduler implements LeaderService {
  readonly name = 'scheduled-switchover';
  readonly #d: SchedulerDeps;
  #leading = false;
  #pending: ScheduledSwitchover | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The last scheduled switchover that ran on this node, and its outcome. */
  #last: (ScheduledSwitchover & { outcome: SwitchoverOutcome }) | undefined;

  constructor(deps: SchedulerDeps) {
    this.#d = deps;
  }

  #now(): number {
    return this.#d.now?.() ?? Date.now();
  }

  start(): void {
    this.#leading = true;
  }

  stop(): void {
    this.#leading = false;
    const p = this.#pending;
    if (p === undefined) return;
    this.#clear();
    this.#d.log.warn({ event: 'switchover_schedule_cancelled', reason: 'leadership_lost', to: p.to ?? null, at: new Date(p.at).toISOString() },
      `scheduled switchover${p.to !== undefined ? ` to ${p.to}` : ''} at ${new Date(p.at).toISOString()} cancelled: ${this.#d.nodeName} no longer leads with a quorum (the schedule is kept in the leader's memory); schedule it again on the new leader`);
  }

  /** The pending schedule (undefined when none) and the last one that ran here. */
  current(): { scheduled: ScheduledSwitchover | undefined; last: (ScheduledSwitchover & { outcome: SwitchoverOutcome }) | undefined } {
    if (!this.#leading) throw this.#d.notLeader();
    return { scheduled: this.#pending, last: this.#last };
  }

  schedule(at: number, to: string | undefined, by?: string): ScheduledSwitchover {
    if (!this.#leading) throw this.#d.notLeader();
    const now = this.#now();
    if (at < now - 1000) throw new NodeError('invalid_transfer', `the time ${new Date(at).toISOString()} is in the past (the leader's clock says ${new Date(now).toISOString()}); give a future time or +DURATION such as +10m`);
    if (at > now + MAX_SCHEDULE_AHEAD_MS) throw new NodeError('invalid_transfer', `the time ${new Date(at).toISOString()} is more than 7 days ahead; a schedule is kept in the leader's memory, so schedule it closer to the time`);
    const p0 = this.#pending;
    if (p0 !== undefined) {
      throw new NodeError('switchover_scheduled', `a switchover${p0.to !== undefined ? ` to ${p0.to}` : ''} is already scheduled for ${new Date(p0.at).toISOString()}; cancel it first with \`quorate switchover --cancel\``, { scheduledAt: new Date(p0.at).toISOString(), scheduledTo: p0.to ?? '' });
    }
    if (to !== undefined) this.#d.checkTarget?.(to);
    const p: ScheduledSwitchover = { to, at, scheduledBy: by, scheduledAt: now };
    this.#pending = p;
    this.#timer = setTimeout(() => void this.#run(p), Math.max(0, at - now));
    this.#timer.unref?.();
    this.#d.log.info({ event: 'switchover_scheduled', to: to ?? null, at: new Date(at).toISOString(), by },
      `switchover${to !== undefined ? ` to ${to}` : ''} scheduled for ${new Date(at).toISOString()} (in ${Math.round((at - now) / 1000)} s)`);
    return p;
  }

  /** Cancels the pending schedule; returns it, or undefined when none was pending. */
  cancel(by?: string): ScheduledSwitchover | undefined {
    if (!this.#leading) throw this.#d.notLeader();
    const p = this.#pending;
    if (p === undefined) return undefined;
    this.#clear();
    this.#d.log.info({ event: 'switchover_schedule_cancelled', reason: 'operator', by, to: p.to ?? null, at: new Date(p.at).toISOString() },
      `scheduled switchover${p.to !== undefined ? ` to ${p.to}` : ''} at ${new Date(p.at).toISOString()} cancelled by ${by ?? 'an operator'}`);
    return p;
  }

  #clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = undefined;
  }

  async #run(p: ScheduledSwitchover): Promise<void> {
    if (this.#pending !== p) return;
    this.#clear();
    const log = this.#d.log;
    log.info({ event: 'switchover_schedule_due', to: p.to ?? null, at: new Date(p.at).toISOString() }, `scheduled switchover${p.to !== undefined ? ` to ${p.to}` : ''} is due: running it`);
    let outcome: SwitchoverOutcome;
    try {
      const r = await this.#d.switchover(p.to);
      outcome = { ok: true, ...r };
      log.info({ event: 'scheduled_switchover_done', ...r }, `scheduled switchover done: ${r.from} -> ${r.to} (term ${r.term}, writes paused ${r.pauseMs} ms)`);
    } catch (e) {
      const err = { code: (e as { code?: string }).code ?? 'internal', message: (e as Error).message };
      outcome = { ok: false, from: this.#d.nodeName, error: err };
      log.error({ event: 'scheduled_switchover_failed', to: p.to ?? null, code: err.code, err: err.message }, `scheduled switchover failed (${err.code}): ${err.message}`);
    }
    this.#last = { ...p, outcome };
  }
}
