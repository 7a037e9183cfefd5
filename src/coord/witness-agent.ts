// One node's side of the witness protocol (./WITNESS.md) as a pure state
// machine: given the time and what the Raft core reports, it says which
// witness script to run next and which inputs the core gets (appoint, commit
// set, step down). No I/O and no clock of its own, so the simulator
// (test/sim/witness-sim.ts) and the node (with ./witness.ts over Redis) run
// the same decisions.
//
// At most one script is in flight. The commit set given to the core is
// always a superset of the witness's in-sync set as far as this node can
// know it: a shrink takes effect in the core only after its script
// succeeded, a grow before its script is sent, and an answer that never came
// keeps both possibilities (the union) until a retry of the same, idempotent
// script settles it.
import type { WitnessOp, WitnessResult } from './witness-record.js';
import { parseSet, setKey } from './witness-record.js';
import { stepDownAfterMs } from './redis-lease.js';

export type AgentMutation = 'shrinkWithoutCas' | 'commitBeforeShrinkCas' | 'ignoreClockRateBound';

export interface WitnessAgentConfig {
  readonly id: number;
  /** The voters of the cluster (the data nodes). */
  readonly voters: readonly number[];
  readonly ttlMs: number;
  readonly renewMs: number;
  /** How often a standby tries the lease. */
  readonly pollMs: number;
  /** The time this node's own stop may take (see ./README.md). */
  readonly stopBudgetMs: number;
  /** `database.inSyncDegrade`: a standby silent for `degradeAfterMs` is removed from the in-sync set (by the CAS). */
  readonly degrade: boolean;
  readonly degradeAfterMs: number;
  /** Test-only broken variants (the simulator's mutation checks). */
  readonly mutation?: AgentMutation;
}

/** What the agent needs from the core, read just before each call. */
export interface CoreView {
  readonly leader: boolean;
  readonly term: number;
  readonly commit: number;
  /**
   * This node may create a missing record: a brand-new cluster. The caller
   * says so only for the lowest-id voter, with a pristine Raft state (term 0,
   * empty log) that has never seen a witness record (a durable mark, written
   * before a create is sent and whenever a record is seen). A record lost
   * later is never recreated automatically (WITNESS.md).
   */
  readonly fresh: boolean;
  /** Leader only: each follower's durable match index and ms since it was last heard from. */
  readonly peers: readonly { readonly id: number; readonly match: number; readonly silentMs: number }[];
}

export type AgentEffect =
  | { readonly kind: 'appoint'; readonly epoch: number; readonly inSync: readonly number[] }
  /** `inSync` ⊆ `ids`: the in-sync set as far as this node knows it (RawNode.setCommitSet). */
  | { readonly kind: 'commitSet'; readonly ids: readonly number[]; readonly inSync: readonly number[] }
  | { readonly kind: 'stepDown'; readonly reason: string };

interface Leading {
  readonly epoch: number;
  lastSentAt: number;
  deadline: number;
}

export interface AgentStatus {
  readonly leading: boolean;
  readonly epoch: number;
  /** The in-sync set as the last script this node ran saw it. */
  readonly inSync: readonly number[];
  readonly commitSet: readonly number[];
  /** Why this node does not lead (undefined while it leads or simply follows a live leader). */
  readonly waiting: string | undefined;
}

export class WitnessAgent {
  readonly #c: WitnessAgentConfig;
  readonly #stepDownAfter: number;
  #leading: Leading | undefined;
  #confirmed: readonly number[] = [];
  readonly #growing = new Set<number>();
  /** A shrink or grow whose answer did not come: its `from` stays in the commit set until settled. */
  #unsettled: { readonly op: 'shrink' | 'grow'; readonly from: readonly number[]; readonly to: readonly number[] } | undefined;
  #inFlight: WitnessOp | undefined;
  /** A lease won too late to use, given back by the next script. */
  #queued: WitnessOp | undefined;
  #lastPoll = -Infinity;
  #waiting: string | undefined;
  #wantCreate = false;
  #epochSeen = 0;

  constructor(c: WitnessAgentConfig) {
    this.#c = c;
    // The mutation 'ignoreClockRateBound' trusts its clock to run at Redis's rate: TTL − stopBudget, without the (1+ρ).
    this.#stepDownAfter = c.mutation === 'ignoreClockRateBound' ? c.ttlMs - c.stopBudgetMs : stepDownAfterMs(c.ttlMs, c.stopBudgetMs);
    if (this.#stepDownAfter <= c.renewMs) throw new Error(`the witness lease TTL (${c.ttlMs} ms) leaves ${this.#stepDownAfter} ms after a renewal, not more than the renewal interval (${c.renewMs} ms)`);
  }

  get leading(): boolean { return this.#leading !== undefined; }
  get epoch(): number { return this.#leading?.epoch ?? this.#epochSeen; }

  status(): AgentStatus {
    return { leading: this.leading, epoch: this.epoch, inSync: this.#confirmed, commitSet: this.commitSet(), waiting: this.#leading ? undefined : this.#waiting };
  }

  /** The set the core must commit over (WITNESS.md: insync ∪ growing ∪ unsettled ∪ (strict ? voters : ∅)). */
  commitSet(): number[] {
    const s = new Set<number>(this.syncSet());
    if (!this.#c.degrade) for (const v of this.#c.voters) s.add(v);
    return parseSet(setKey([...s]));
  }

  /**
   * The in-sync set as far as this node can know it: the last one the
   * witness confirmed, with the nodes it may hold meanwhile (growing, and the
   * `from` of a shrink or grow in flight or unsettled). Equal to the commit
   * set with `inSyncDegrade`; in the default mode the commit set adds every
   * voter.
   */
  syncSet(): number[] {
    const s = new Set<number>([this.#c.id, ...this.#confirmed, ...this.#growing]);
    if (this.#unsettled) for (const x of this.#unsettled.from) s.add(x);
    const inflight = this.#inFlight;
    if (inflight && (inflight.op === 'shrink' || inflight.op === 'grow') && this.#c.mutation !== 'commitBeforeShrinkCas') for (const x of inflight.from) s.add(x);
    return parseSet(setKey([...s]));
  }

  #setsEffect(): AgentEffect {
    return { kind: 'commitSet', ids: this.commitSet(), inSync: this.syncSet() };
  }

  /**
   * Whether this node may act as leader at `now` (leader-only work with
   * external effects asks this at the moment it acts).
   */
  mayAct(now: number): boolean {
    return this.#leading !== undefined && now < this.#leading.deadline;
  }

  /** The step-down deadline of the lease this node holds (its clock), or undefined when it holds none. */
  deadline(): number | undefined {
    return this.#leading?.deadline;
  }

  /** The next script to run (none while one is in flight), and core inputs due now. */
  next(now: number, core: CoreView): { op?: WitnessOp; effects: AgentEffect[] } {
    const effects: AgentEffect[] = [];
    const l = this.#leading;
    if (l && now >= l.deadline) {
      this.#loseLease(effects, `no renewal of the witness lease succeeded in time (the last successful one was sent ${Math.round(now - l.lastSentAt)} ms ago)`);
    } else if (l && !core.leader) {
      this.#loseLease(effects, 'the core learned of a higher epoch');
    } else if (!l && core.leader) {
      effects.push({ kind: 'stepDown', reason: 'this node holds no witness lease' });
    }
    if (this.#inFlight) return { effects };
    if (this.#queued) {
      const q = this.#queued;
      this.#queued = undefined;
      this.#inFlight = q;
      return { op: q, effects };
    }
    const op = this.#leading ? this.#leaderOp(now, core, effects) : this.#standbyOp(now, core);
    if (op) {
      this.#inFlight = op;
      if ((op.op === 'shrink') && this.#c.mutation === 'commitBeforeShrinkCas') {
        const ids = this.#withMutation(op.to);
        effects.push({ kind: 'commitSet', ids, inSync: ids });
      }
    }
    return op ? { op, effects } : { effects };
  }

  #withMutation(to: readonly number[]): number[] {
    const s = new Set([this.#c.id, ...to, ...this.#growing]);
    return parseSet(setKey([...s]));
  }

  #leaderOp(now: number, core: CoreView, effects: AgentEffect[]): WitnessOp | undefined {
    const l = this.#leading!;
    const me = this.#c.id;
    if (now - l.lastSentAt >= this.#c.renewMs) return { op: 'renew', me, epoch: l.epoch, ttl: this.#c.ttlMs };
    if (this.#unsettled) return { op: this.#unsettled.op, me, epoch: l.epoch, from: this.#unsettled.from, to: this.#unsettled.to };
    const peer = (id: number) => core.peers.find((p) => p.id === id);
    // Shrink: a standby in the set that stopped acknowledging. With
    // inSyncDegrade the leader then commits without it; in the default mode
    // every voter stays in the commit set (writes wait for it), and the shrink
    // only says who may lead: the leader alone, which lets it commit its no-op
    // and serve linearizable reads (src/raft/witness.ts).
    {
      for (const id of this.#confirmed) {
        if (id === me) continue;
        const p = peer(id);
        if (p === undefined || p.silentMs >= this.#c.degradeAfterMs) {
          const to = this.#confirmed.filter((x) => x !== id);
          if (this.#c.mutation === 'shrinkWithoutCas') {
            this.#confirmed = to;
            effects.push(this.#setsEffect());
            return undefined;
          }
          return { op: 'shrink', me, epoch: l.epoch, from: this.#confirmed, to };
        }
      }
    }
    // Grow, in Patroni's order: into the commit set first, into the witness once caught up.
    for (const id of this.#c.voters) {
      if (id === me || this.#confirmed.includes(id)) continue;
      const p = peer(id);
      const live = p !== undefined && p.silentMs < this.#c.degradeAfterMs / 2;
      if (!this.#growing.has(id)) {
        if (live) {
          this.#growing.add(id);
          effects.push(this.#setsEffect());
        }
        continue;
      }
      if (p === undefined || p.silentMs >= this.#c.degradeAfterMs) {
        // It went silent again before it caught up: it is not in the witness's set, so it may leave the commit set.
        this.#growing.delete(id);
        effects.push(this.#setsEffect());
        continue;
      }
      if (p.match >= core.commit) return { op: 'grow', me, epoch: l.epoch, from: this.#confirmed, to: [...this.#confirmed, id] };
    }
    return undefined;
  }

  #standbyOp(now: number, core: CoreView): WitnessOp | undefined {
    if (now - this.#lastPoll < this.#c.pollMs) return undefined;
    this.#lastPoll = now;
    const me = this.#c.id;
    if (this.#wantCreate) {
      this.#wantCreate = false;
      return { op: 'create', me, voters: this.#c.voters, floor: core.term };
    }
    return { op: 'acquire', me, floor: Math.max(core.term, this.#epochSeen), ttl: this.#c.ttlMs };
  }

  /**
   * The answer to the script in flight (`sentAt`: when it was sent), or
   * `undefined` when none came (timeout, connection lost: it may or may not
   * have run).
   */
  result(op: WitnessOp, res: WitnessResult | undefined, sentAt: number, now: number, core: CoreView): AgentEffect[] {
    const effects: AgentEffect[] = [];
    if (this.#inFlight !== op) return effects;
    this.#inFlight = undefined;
    if (res?.record) this.#epochSeen = Math.max(this.#epochSeen, res.record.epoch);
    switch (op.op) {
      case 'acquire': {
        if (res === undefined) {
          this.#waiting = 'the witness (Redis) does not answer';
          return effects;
        }
        if (!res.ok) {
          this.#refusedStandby(res, core);
          return effects;
        }
        if (res.record.epoch <= core.term || now >= sentAt + this.#stepDownAfter) {
          // Our term moved past the epoch meanwhile, or the answer came too late to act on: give it back.
          this.#queued = { op: 'release', me: op.me, epoch: res.record.epoch };
          return effects;
        }
        this.#leading = { epoch: res.record.epoch, lastSentAt: sentAt, deadline: sentAt + this.#stepDownAfter };
        this.#confirmed = res.record.insync;
        this.#growing.clear();
        this.#unsettled = undefined;
        this.#waiting = undefined;
        effects.push({ kind: 'appoint', epoch: res.record.epoch, inSync: res.record.insync });
        effects.push(this.#setsEffect());
        return effects;
      }
      case 'create':
        if (res && !res.ok && res.refused !== 'exists') this.#waiting = `the witness refused to create the record (${res.refused})`;
        this.#lastPoll = -Infinity;
        return effects;
      case 'confirm':
      case 'release':
        return effects;
      case 'renew':
      case 'shrink':
      case 'grow': {
        const l = this.#leading;
        if (!l || l.epoch !== op.epoch) return effects;
        if (res === undefined) {
          if (op.op !== 'renew') this.#unsettled = { op: op.op, from: op.from, to: op.to };
          return effects;
        }
        if (!res.ok) {
          this.#loseLease(effects, refusalText(res.refused, res.record?.leader, res.record?.epoch));
          return effects;
        }
        // Every successful script extends nothing but renew; each proves the lease was live when it ran.
        if (op.op === 'renew') {
          l.lastSentAt = sentAt;
          l.deadline = sentAt + this.#stepDownAfter;
          return effects;
        }
        this.#unsettled = undefined;
        this.#confirmed = res.record.insync;
        if (op.op === 'grow') for (const x of op.to) this.#growing.delete(x);
        effects.push(this.#setsEffect());
        return effects;
      }
    }
  }

  #refusedStandby(res: WitnessResult & { ok: false }, core: CoreView): void {
    const r = res.record;
    switch (res.refused) {
      case 'missing':
        if (core.fresh) {
          this.#wantCreate = true;
          this.#lastPoll = -Infinity;
          this.#waiting = 'creating the witness record (a new cluster)';
        } else {
          this.#waiting = 'the witness record is missing (Redis lost its data?): no node may promote until an operator runs `quorate witness confirm` on the node that should lead';
        }
        return;
      case 'untrusted':
        this.#waiting = 'the witness record was written by another Redis instance (restart, failover or restored backup): no node may promote until an operator runs `quorate witness confirm`';
        return;
      case 'not_in_sync':
        this.#waiting = `not in the in-sync set (${r?.insync.join(',') ?? '?'}): this node may lack acknowledged writes and does not promote itself; it waits for a member of the set`;
        return;
      case 'held':
        this.#waiting = undefined;
        return;
      default:
        this.#waiting = `the witness refused the lease (${res.refused})`;
    }
  }

  #loseLease(effects: AgentEffect[], reason: string): void {
    this.#leading = undefined;
    this.#growing.clear();
    this.#unsettled = undefined;
    this.#lastPoll = -Infinity;
    effects.push({ kind: 'stepDown', reason });
  }
}

function refusalText(refused: string, leader: number | undefined, epoch: number | undefined): string {
  if (refused === 'not_leader') return `node ${leader ?? '?'} holds the witness lease at epoch ${epoch ?? '?'}`;
  if (refused === 'expired') return 'the witness lease expired in Redis before the script ran';
  return `the witness refused the script (${refused})`;
}
