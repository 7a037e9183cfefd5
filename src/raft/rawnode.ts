// RawNode: one Raft peer as a pure state machine. Input: tick(), step(),
// propose(), readIndex(), transferLeadership(), proposeConfChange().
// Output: ready(). The caller's contract (persist → send → apply → advance)
// is in ./README.md; the state diagram in ./DESIGN.md.
// The state lives in a RaftCore (./core.ts); what acts on it is split by
// concern: ./elections.ts, ./follower.ts, ./replication.ts, ./readindex.ts,
// ./propose.ts, ./transfer.ts, ./ticks.ts (witness mode: ./witness.ts).
// This file holds the public API, the step dispatcher and the Ready cycle.
import { NotLeader, invariant } from './errors.js';
import { roleOf, votingIds } from './membership.js';
import { checkAppointment } from './witness.js';
import { RaftCore } from './core.js';
import { CTX_TRANSFER, becomeLeader, campaign, handleVoteRequest, stepCandidate } from './elections.js';
import { stepFollower } from './follower.js';
import { bcastHeartbeat, flushBroadcast, maybeCommit, sendHeartbeat, stepLeader, type ProposeResult } from './replication.js';
import { closeReadRound, readRoundDue, releaseReads, requestRead } from './readindex.js';
import { proposeConfChange, proposeEntry } from './propose.js';
import { transferLeadership } from './transfer.js';
import { tickElection, tickLeader, votersInContact } from './ticks.js';
import type {
  ConfChange,
  Entry,
  HardState,
  Membership,
  Message,
  NodeId,
  RaftConfig,
  RaftStorageState,
  Ready,
  SnapshotMeta,
  SoftState,
  Status,
} from './types.js';
import { NONE } from './types.js';

const MAX_COMMITTED_BYTES_PER_READY = 16 * 1024 * 1024;

interface InProgress {
  readonly lastIndex: number;
  readonly hardState: HardState;
  readonly softState: SoftState;
  readonly appliedTo: number;
  readonly appliedBytes: number;
}

export type { ProposeResult } from './replication.js';

export class RawNode {
  readonly #c: RaftCore;

  #prevHard: HardState;
  #prevSoft: SoftState;
  #inProgress: InProgress | undefined;

  constructor(config: RaftConfig, storage: RaftStorageState) {
    this.#c = new RaftCore(config, storage);
    this.#prevHard = this.#c.hardState();
    this.#prevSoft = { lead: NONE, role: 'follower' };
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.#assertNotInReady('tick');
    for (const pr of this.#c.prs.values()) pr.ticksSinceContact++;
    if (this.#c.role === 'leader') tickLeader(this.#c);
    else tickElection(this.#c);
  }

  step(m: Message): void {
    this.#assertNotInReady('step');
    if (m.to !== this.#c.id) return;
    if (m.term > this.#c.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        // §4.2.3: ignore disruptive candidates while we hear from a live leader.
        const inLease = this.#c.cfg.checkQuorum && this.#c.lead !== NONE && this.#c.electionElapsed < this.#c.cfg.electionTicks;
        if (m.context !== CTX_TRANSFER && inLease) return;
      }
      if (m.type === 'preVote' || (m.type === 'preVoteResp' && !m.reject)) {
        // A pre-vote carries a future term; it does not change ours.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.#c.becomeFollower(m.term, m.from);
      } else {
        this.#c.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.#c.term) {
      if (m.type === 'app' || m.type === 'heartbeat') {
        // Tell a stale leader about the newer term so it steps down (needed with
        // CheckQuorum and PreVote, where our term may be ahead of its).
        this.#c.send({ type: 'appResp', to: m.from, term: this.#c.term });
      } else if (m.type === 'preVote') {
        this.#c.send({ type: 'preVoteResp', to: m.from, term: this.#c.term, reject: true });
      }
      return;
    }

    if (m.type === 'vote' || m.type === 'preVote') {
      handleVoteRequest(this.#c, m);
      return;
    }
    switch (this.#c.role) {
      case 'leader':
        stepLeader(this.#c, m);
        break;
      case 'candidate':
      case 'preCandidate':
        if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
          // A leader of our term (or newer) exists: follow it.
          this.#c.becomeFollower(m.term, m.from);
          stepFollower(this.#c, m);
        } else {
          stepCandidate(this.#c, m);
        }
        break;
      case 'follower':
        stepFollower(this.#c, m);
        break;
    }
  }

  propose(data: Uint8Array): ProposeResult {
    this.#assertNotInReady('propose');
    return proposeEntry(this.#c, 'normal', data);
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    this.#assertNotInReady('propose');
    return proposeConfChange(this.#c, cc);
  }


  readIndex(ctx: number): void {
    this.#assertNotInReady('readIndex');
    if (this.#c.role !== 'leader') throw new NotLeader(this.#c.lead);
    requestRead(this.#c, ctx);
  }

  transferLeadership(to: NodeId): void {
    this.#assertNotInReady('transferLeadership');
    transferLeadership(this.#c, to);
  }

  /** Start an election now (tests, and operator-forced failover on a voter). */
  campaign(): void {
    this.#assertNotInReady('campaign');
    if (this.#c.role === 'leader' || !this.#c.mayCampaign() || this.#c.cfg.witness) return;
    campaign(this.#c, this.#c.cfg.preVote ? 'pre' : 'election');
  }

  /** The transport saw the leader's connection reset: the leader's process is gone. */
  leaderUnreachable(): void {
    this.#assertNotInReady('leaderUnreachable');
    if (this.#c.role !== 'follower' || this.#c.lead === NONE) return;
    this.#c.lead = NONE;
    if (this.#c.cfg.witness) return;
    // Campaign after a short random delay: at most half a heartbeat interval
    // (10-50 ms at the defaults). Two followers that pre-vote at once do not
    // split the vote: the one with the longer log wins, and with equal logs
    // the crossed pre-vote tie-break (elections.ts) lets the lower id go on;
    // the delay only spreads their pre-votes.
    this.#c.electionElapsed = 0;
    this.#c.randomizedElectionTimeout = 1 + Math.floor(this.#c.random.next() * Math.ceil(this.#c.cfg.heartbeatTicks / 2));
  }

  /**
   * For the start of a node that is the only voter of its configuration (a
   * one-node cluster): no one else can lead or vote, so waiting out an
   * election timeout (1-2 s by default) only delays its own election. The
   * next tick's election timeout fires instead; every rule of that tick
   * still applies (witness mode, automatic campaigns off, a node that
   * withholds its vote). etcd fast-forwards a one-member cluster's election
   * ticks the same way. Returns whether it did (false with other voters,
   * or once a leader is known).
   */
  soleVoterFastStart(): boolean {
    this.#assertNotInReady('soleVoterFastStart');
    const c = this.#c;
    if (c.role !== 'follower' || c.lead !== NONE) return false;
    const voters = votingIds(c.log.membership());
    if (voters.length !== 1 || voters[0] !== c.id) return false;
    c.electionElapsed = Math.max(c.electionElapsed, c.randomizedElectionTimeout - 1);
    return true;
  }

  /**
   * The transport (re)established its connection to `id`. A leader
   * heartbeats it now instead of at the next interval: a restarted follower
   * learns who leads, and its reply starts the probe for what it lacks, one
   * round trip after it connects rather than up to a heartbeat interval later.
   */
  peerConnected(id: NodeId): void {
    this.#assertNotInReady('peerConnected');
    if (this.#c.role !== 'leader' || id === this.#c.id) return;
    sendHeartbeat(this.#c, id);
  }

  reportUnreachable(id: NodeId): void {
    const pr = this.#c.prs.get(id);
    if (this.#c.role === 'leader' && pr && pr.state === 'replicate') pr.becomeProbe();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.#c.prs.get(id);
    if (this.#c.role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the follower's reply (or a heartbeat response) before probing.
    pr.probeSent = true;
  }

  /** Metadata for a snapshot of the state machine at applied index `index` (term and membership there). */
  snapshotMeta(index: number): SnapshotMeta {
    invariant(index <= this.#c.applied, () => `snapshot index ${index} is beyond applied ${this.#c.applied}`);
    const term = this.#c.log.term(index);
    invariant(term !== undefined, () => `snapshot index ${index} is not in the log`);
    return { index, term, membership: this.#c.log.membershipAt(index) };
  }

  /** The caller persisted a snapshot of its state machine at `index` (`snapshotBytes` long: it sets the next bytes threshold, RaftConfig.snapshotBytesMax); compact the log. */
  snapshotTaken(index: number, snapshotBytes?: number): { compactedTo: number } {
    this.#assertNotInReady('snapshotTaken');
    invariant(index <= this.#c.applied, () => `snapshot index ${index} is beyond applied ${this.#c.applied}`);
    if (snapshotBytes !== undefined) this.#c.lastSnapshotBytes = snapshotBytes;
    if (index <= this.#c.log.snapshot().index) return { compactedTo: this.#c.log.firstIndex() - 1 };
    const meta = this.snapshotMeta(index);
    let keepAfter = Math.max(this.#c.log.firstIndex() - 1, index - this.#c.cfg.trailingEntries);
    // The trailing entries are bounded in bytes too: keep the newest ones whose data fits trailingBytes.
    let bytes = 0;
    for (let i = index; i > keepAfter; i--) {
      bytes += this.#c.log.entry(i)?.data.length ?? 0;
      if (bytes > this.#c.cfg.trailingBytes) {
        keepAfter = i;
        break;
      }
    }
    const compactTo = Math.min(keepAfter, this.#c.log.stableIndex());
    this.#c.log.compact(meta, compactTo);
    return { compactedTo: this.#c.log.firstIndex() - 1 };
  }

  /**
   * Witness mode: this node took the witness's lease at `epoch` with in-sync
   * set `inSync` (it must be in it). It becomes leader at term = epoch without
   * a vote, with `inSync` as its commit set, and appends the no-op of its
   * term. The new term is durable before any message leaves (Ready.mustSync).
   */
  appoint(epoch: number, inSync: readonly NodeId[]): void {
    this.#assertNotInReady('appoint');
    checkAppointment(this.#c.cfg.witness, this.#c.id, this.#c.term, epoch, inSync, this.#c.promotable());
    this.#c.reset(epoch);
    this.#c.vote = this.#c.id;
    this.#c.role = 'candidate';
    this.#c.lastCampaign = 'election';
    this.#c.witness.appointed(inSync);
    becomeLeader(this.#c);
    this.#c.witness.started(this.#c.log.lastIndex());
  }

  /**
   * Witness mode: the leader's commit set `ids` (every member holds an index
   * durably before it commits; a superset of the witness's in-sync set) and
   * the in-sync set as the caller knows it (`inSync` ⊆ `ids`, default `ids`).
   * Rules and invariants: ./witness.ts. Ignored on a follower's commits.
   */
  setCommitSet(ids: readonly NodeId[], inSync: readonly NodeId[] = ids): void {
    this.#assertNotInReady('setCommitSet');
    invariant(this.#c.cfg.witness, 'setCommitSet() outside witness mode');
    if (this.#c.role !== 'leader') throw new NotLeader(this.#c.lead);
    this.#c.witness.set(ids, inSync);
    maybeCommit(this.#c);
    releaseReads(this.#c);
  }

  /** Witness mode: the lease is lost (or this node stops): the leader becomes a follower of no one, keeping its term. */
  stepDown(): void {
    this.#assertNotInReady('stepDown');
    if (this.#c.role === 'leader') this.#c.becomeFollower(this.#c.term, NONE);
  }

  // ---------------------------------------------------------------- output

  hasReady(): boolean {
    if (this.#inProgress) return false;
    return (
      this.#c.msgs.length > 0 ||
      this.#c.bcastEntries ||
      this.#c.bcastCommit ||
      (this.#c.role === 'leader' && readRoundDue(this.#c)) ||
      this.#c.log.hasUnstable() ||
      this.#c.pendingSnapshotInstall !== undefined ||
      this.#c.commit > this.#c.applied ||
      this.#c.readStates.length > 0 ||
      this.#c.droppedReads.length > 0 ||
      !sameHard(this.#c.hardState(), this.#prevHard) ||
      !sameSoft(this.#c.softState(), this.#prevSoft) ||
      this.#c.wantSnapshot()
    );
  }

  ready(): Ready {
    invariant(!this.#inProgress, 'ready() called twice without advance()');
    if (this.#c.role === 'leader') {
      flushBroadcast(this.#c);
      if (readRoundDue(this.#c)) {
        closeReadRound(this.#c);
        bcastHeartbeat(this.#c);
      }
    }
    this.#c.bcastEntries = false;
    this.#c.bcastCommit = false;
    const hs = this.#c.hardState();
    const ss = this.#c.softState();
    const entries = this.#c.log.unstableEntries();
    const committed: Entry[] = [];
    let bytes = 0;
    for (let i = this.#c.applied + 1; i <= this.#c.commit; i++) {
      const e = this.#c.log.entry(i);
      invariant(e !== undefined, () => `committed entry ${i} missing from the log (first ${this.#c.log.firstIndex()})`);
      bytes += e.data.length;
      if (committed.length > 0 && bytes > MAX_COMMITTED_BYTES_PER_READY) break;
      committed.push(e);
    }
    const hardChanged = !sameHard(hs, this.#prevHard);
    const rd: Ready = {
      ...(sameSoft(ss, this.#prevSoft) ? {} : { softState: ss }),
      ...(hardChanged ? { hardState: hs } : {}),
      entries,
      ...(this.#c.pendingSnapshotInstall ? { snapshot: this.#c.pendingSnapshotInstall } : {}),
      messages: this.#c.msgs,
      committedEntries: committed,
      readStates: this.#c.readStates,
      droppedReads: this.#c.droppedReads,
      mustSync:
        entries.length > 0 ||
        this.#c.pendingSnapshotInstall !== undefined ||
        hs.term !== this.#prevHard.term ||
        hs.vote !== this.#prevHard.vote,
      ...(this.#c.wantSnapshot() ? { snapshotRequest: this.#c.applied } : {}),
    };
    if (rd.snapshotRequest !== undefined) this.#c.startSnapshotPeriod(this.#c.applied);
    this.#c.msgs = [];
    this.#c.readStates = [];
    this.#c.droppedReads = [];
    this.#c.pendingSnapshotInstall = undefined;
    const last = committed[committed.length - 1];
    this.#inProgress = {
      lastIndex: this.#c.log.lastIndex(),
      hardState: hs,
      softState: ss,
      appliedTo: last ? last.index : this.#c.applied,
      appliedBytes: bytes,
    };
    return rd;
  }

  advance(): void {
    const p = this.#inProgress;
    invariant(p !== undefined, 'advance() without ready()');
    this.#inProgress = undefined;
    this.#c.log.markStable(p.lastIndex);
    this.#c.applied = Math.max(this.#c.applied, p.appliedTo);
    this.#c.appliedBytesSinceSnapshot += p.appliedBytes;
    this.#prevHard = p.hardState;
    this.#prevSoft = p.softState;
    if (this.#c.role === 'leader') {
      // Our own log is durable up to p.lastIndex only now: count it.
      maybeCommit(this.#c);
    }
  }

  /**
   * The caller learned (from a peer's authenticated handshake) that the
   * cluster records another incarnation for this node, or that it no longer
   * does: while set, this node grants no vote and does not campaign.
   */
  setRejoining(rejoining: boolean): void {
    this.#c.rejoining = rejoining;
  }

  /**
   * Whether this node starts elections by itself when its election timeout
   * elapses (default true). With false it never pre-votes or campaigns on a
   * timeout; it still votes, still campaigns on campaign() (an operator's
   * failover) and on a leader's TimeoutNow (switchover); a leader still steps
   * down without a quorum (CheckQuorum). A follower that hears from no leader
   * for an election timeout forgets it (lead = NONE: no lease, so it grants an
   * operator's candidate its vote), and a candidate whose election times out
   * goes back to follower instead of retrying. Exception: while nothing has
   * ever been committed (a brand-new cluster), timeouts still campaign, so the
   * first leader is elected. This restricts only who starts elections; the
   * vote rule is unchanged, so safety is too.
   */
  setAutoCampaign(on: boolean): void {
    this.#c.autoCampaign = on;
  }

  /** See setAutoCampaign: false while this node's own election timeouts start nothing. */
  get autoCampaign(): boolean {
    return this.#c.autoCampaign;
  }

  /** Who leads and this node's role right now, as status() says them, without building a status (cheap). */
  softState(): SoftState {
    return { lead: this.#c.lead, role: this.#c.role };
  }

  /** The membership in force: the latest in the log, committed or not (cheap; no copy). */
  membership(): Membership {
    return this.#c.log.membership();
  }

  status(): Status {
    const m = this.#c.log.membership();
    const progress = this.#c.role !== 'leader' ? [] : [...this.#c.prs.entries()].map(([id, pr]) => ({
      id,
      role: roleOf(m, id) ?? 'learner',
      match: pr.match,
      next: pr.next,
      state: pr.state,
      recentActive: pr.recentActive,
      ticksSinceContact: pr.ticksSinceContact,
      inContact: pr.ticksSinceContact <= this.#c.cfg.electionTicks,
      diverged: pr.divergedFrom !== 0,
    }));
    return {
      id: this.#c.id,
      term: this.#c.term,
      vote: this.#c.vote,
      commit: this.#c.commit,
      applied: this.#c.applied,
      lastIndex: this.#c.log.lastIndex(),
      lastTerm: this.#c.log.lastTerm(),
      firstIndex: this.#c.log.firstIndex(),
      lead: this.#c.lead,
      role: this.#c.role,
      membership: m,
      leadTransferee: this.#c.leadTransferee,
      progress,
      reachableVoters: this.#c.role === 'leader' ? votersInContact(this.#c) : 0,
      uncommittedBytes: this.#c.uncommittedBytes,
      campaign: this.#c.lastCampaign,
      ...(this.#c.cfg.witness && this.#c.role === 'leader' ? { commitSet: this.#c.witness.commitSet } : {}),
    };
  }

  /** Entry at index if still in the in-memory log (tests, diagnostics). */
  entry(index: number): Entry | undefined {
    return this.#c.log.entry(index);
  }

  #assertNotInReady(what: string): void {
    invariant(!this.#inProgress, () => `${what}() called between ready() and advance()`);
  }



}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}
