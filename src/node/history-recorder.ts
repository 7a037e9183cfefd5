// The leader's side of the cluster history (the "history" machine,
// src/state/history.ts): a leader service that records how this node won its
// term, and the membership records the leader proposes after a membership
// entry applies. Everything is proposed as format-2 entries for machine
// "history", only while the cluster feature level is >= 2: below it history
// is not recorded (a previous-release member would stop on the entry).
//
// Why a node became leader is decided here, at the moment it does
// (`electedAs`): `switchover` if the core says its candidacy began with a
// TimeoutNow (Status.campaign 'transfer'); else `failover` if an operator's
// `quorate failover` made it stand (seconds before); else `startup` if it had seen no
// leader since its process started; else `leader-unreachable` if the
// connection to the leader it followed was reset (it pre-voted at once,
// Replica.peerReset) and it saw no leader since; else `election` (its
// election timeout ran out).
import type { Logger } from 'pino';
import { NONE, type ConfEntry, type NodeId, type Status } from '../raft/index.js';
import { HISTORY_MACHINE_ID, encodeEnvelope, encodeHistoryPayload, type ApplyResult, type HistoryCommand, type HistoryRecord, type HistoryStateMachine, type LeaderReason } from '../state/index.js';
import type { LeaderService } from './leadership.js';

/** A win this soon after `quorate failover` asked this node to campaign is recorded as `failover` (the command waits at most ~8 s). */
const FAILOVER_WINDOW_MS = 15_000;

/** Retry / wait step of the recorder. */
const STEP_MS = 100;

export interface HistoryRecorderDeps {
  readonly log: Logger;
  readonly history: HistoryStateMachine;
  readonly selfId: NodeId;
  readonly selfName: string;
  /** Bound put in every command (config cluster.historyMax). */
  readonly historyMax: number;
  featureLevel(): number;
  appliedIndex(): number;
  status(): Pick<Status, 'term' | 'role' | 'campaign' | 'lastIndex'>;
  nameOf(id: NodeId): string;
  /** Proposes an entry (with the node's proposal timeout); the recorder builds the format-2 envelope for machine "history". */
  propose(entry: Uint8Array): Promise<ApplyResult>;
}

interface Elected {
  readonly term: number;
  readonly reason: LeaderReason;
  /** The new leader's first entry in its term (its no-op): recorded once that is applied. */
  readonly firstIndex: number;
  /** The leader this node last followed (node-local; the replicated history's newest leader record is preferred). */
  readonly previous: NodeId;
}

export class HistoryRecorder implements LeaderService {
  readonly name = 'history';
  readonly #d: HistoryRecorderDeps;
  /** A leader was seen since this process started. */
  #leaderSeen = false;
  /** The followed leader's connection was reset and no leader was seen since. */
  #leaderReset = false;
  #lastLeader: NodeId = NONE;
  #failoverAt: number | undefined;
  #elected: Elected | undefined;
  /** Bumped by start/stop: a running loop whose generation is stale ends. */
  #generation = 0;
  #levelWarned = false;
  #promotion = false;

  constructor(d: HistoryRecorderDeps) {
    this.#d = d;
  }

  /** The newest `limit` history records of this node's applied state, oldest first (QuorateNode.clusterHistory, moved from node.ts). */
  clusterHistory(limit?: number): { records: readonly HistoryRecord[]; appliedIndex: number } {
    return { records: this.#d.history.records(limit), appliedIndex: this.#d.appliedIndex() };
  }

  /** A format-2 entry for machine "history" (callers check the cluster feature level is >= 2; moved from node.ts #proposeTo). */
  #propose(payload: Uint8Array): Promise<ApplyResult> {
    return this.#d.propose(encodeEnvelope({ machine: HISTORY_MACHINE_ID, at: Date.now(), payload }));
  }

  /** This node was just made the only voter of a new generation (./generation.ts): its first win is recorded as `promotion`. */
  promotionPending(): void {
    this.#promotion = true;
  }

  /** An operator ran `quorate failover` on this node (it is about to stand for election): its win is recorded as `failover`. */
  failoverRequested(): void {
    this.#failoverAt = Date.now();
  }

  /** The transport reset the connection to `peer` (call before Replica.peerReset). */
  peerReset(peer: NodeId, lead: NodeId, role: string): void {
    if (peer === lead && role === 'follower') this.#leaderReset = true;
  }

  /** A soft-state change (in the loop, before the leadership seam is updated). */
  softState(prev: { lead: NodeId; role: string }, next: { lead: NodeId; role: string }): void {
    if (next.role === 'leader' && prev.role !== 'leader') {
      const st = this.#d.status();
      const byOperator = this.#failoverAt !== undefined && Date.now() - this.#failoverAt < FAILOVER_WINDOW_MS;
      this.#failoverAt = undefined;
      const promotion = this.#promotion;
      this.#promotion = false;
      const reason: LeaderReason = promotion ? 'promotion' : st.campaign === 'transfer' ? 'switchover' : byOperator ? 'failover' : !this.#leaderSeen ? 'startup' : this.#leaderReset ? 'leader-unreachable' : 'election';
      this.#elected = { term: st.term, reason, firstIndex: st.lastIndex, previous: this.#lastLeader };
      this.#d.log.info({ event: 'elected', reason, term: st.term }, `${this.#d.selfName} won term ${st.term} (${reason})`);
    }
    if (next.lead !== NONE) {
      this.#leaderSeen = true;
      this.#leaderReset = false;
      if (next.lead !== this.#d.selfId) this.#lastLeader = next.lead;
    }
  }

  start(term: number): void {
    const gen = ++this.#generation;
    void this.#recordLeader(term, gen);
  }

  stop(): void {
    this.#generation++;
  }

  async #recordLeader(term: number, gen: number): Promise<void> {
    const d = this.#d;
    while (gen === this.#generation) {
      // The leadership seam can start this service from the core's status (housekeeping) before the loop's
      // soft-state hook has recorded the win (a lone voter wins within one tick): wait for it.
      const e = this.#elected;
      if (e === undefined || e.term < term) {
        await new Promise((r) => setTimeout(r, STEP_MS));
        continue;
      }
      if (e.term !== term) return; // a later term: that win records itself
      const last = d.history.lastLeader();
      if (last !== undefined && last.term >= term) return;
      if (d.featureLevel() < 2) {
        if (!this.#levelWarned) {
          this.#levelWarned = true;
          d.log.info({ event: 'history_not_recorded', term }, 'cluster history is not recorded while the cluster feature level is below 2 (a member runs the previous release)');
        }
      } else if (d.appliedIndex() >= e.firstIndex) {
        const prevId = last?.leaderId ?? (e.previous !== NONE ? e.previous : undefined);
        const prevName = last?.leaderName ?? (prevId !== undefined ? d.nameOf(prevId) : undefined);
        const c: HistoryCommand = {
          kind: 'leader', max: d.historyMax, term, leaderId: d.selfId, leaderName: d.selfName,
          previousLeaderId: prevId, previousLeaderName: prevName, reason: e.reason,
        };
        try {
          await this.#propose(encodeHistoryPayload(c));
          return;
        } catch (err) {
          d.log.debug({ event: 'history_propose_failed', err: (err as Error).message }, `recording the leadership change failed: ${(err as Error).message}; retrying`);
        }
      }
      await new Promise((r) => setTimeout(r, STEP_MS));
    }
  }

  /** A membership entry applied at `index` (in the loop): the leader records it. */
  confApplied(index: number, ce: ConfEntry, nameOf: (id: NodeId) => string | undefined): void {
    const d = this.#d;
    const st = d.status();
    if (st.role !== 'leader' || d.featureLevel() < 2) return;
    const ch = ce.change as { op: 'add' | 'remove' | 'setRole' | 'setMember'; id: NodeId; role?: string; member?: { role?: string } };
    // setMember records who a member is (name, addresses, data-dir id), which
    // the leader does for every member at start: not a membership change an
    // operator looks for in the history (a rejoin is logged as member_rejoined).
    if (ch.op === 'setMember') return;
    const nodeName = nameOf(ch.id);
    const role = ch.role ?? ch.member?.role;
    const c: HistoryCommand = {
      kind: 'membership', max: d.historyMax, term: st.term, op: ch.op, nodeId: ch.id,
      nodeName: nodeName === undefined || nodeName === '' ? undefined : nodeName, role, confIndex: index,
    };
    this.#propose(encodeHistoryPayload(c)).catch((err: unknown) => {
      d.log.warn({ event: 'history_propose_failed', index, err: (err as Error).message }, `recording the membership change at index ${index} failed: ${(err as Error).message}`);
    });
  }
}
