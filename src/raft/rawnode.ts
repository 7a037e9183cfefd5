// RawNode: one Raft peer as a pure state machine. Input: tick(), step(),
// propose(), readIndex(), transferLeadership(), proposeConfChange().
// Output: ready(). The caller's contract (persist → send → apply → advance)
// is in ./README.md; the state diagram in ./DESIGN.md.
import {
  ConfChangeInProgress,
  EntryTooLarge,
  InvalidTransfer,
  NotLeader,
  Overloaded,
  TransferInProgress,
  invariant,
} from './errors.js';
import { RaftLog } from './log.js';
import { applyConfChange, encodeConfEntry, isVoting, roleOf, votingIds } from './membership.js';
import { majority, writeQuorum } from './quorum.js';
import { Progress } from './progress.js';
import { WITNESS_TRANSFER_REFUSED, WitnessSets, checkAppointment } from './witness.js';
import { normalize, type Normalized } from './config.js';
import type {
  ConfChange,
  Entry,
  EntryType,
  HardState,
  Membership,
  Message,
  MessageType,
  NodeId,
  RaftConfig,
  RaftRole,
  RaftStorageState,
  ReadState,
  Ready,
  SnapshotMeta,
  SoftState,
  Status,
} from './types.js';
import { NONE } from './types.js';

/** Vote/preVote context marking a leadership transfer (bypasses the leader lease). */
const CTX_TRANSFER = 1;
/** Leaderless election timeouts before an observer stands in (see #mayStandIn). */
const OBSERVER_STAND_IN_TIMEOUTS = 3;
const MAX_COMMITTED_BYTES_PER_READY = 16 * 1024 * 1024;
const EMPTY = new Uint8Array(0);

interface PendingRead {
  readonly ctx: number;
  readonly index: number;
  readonly round: number;
}

interface InProgress {
  readonly lastIndex: number;
  readonly hardState: HardState;
  readonly softState: SoftState;
  readonly appliedTo: number;
  readonly appliedBytes: number;
}

export interface ProposeResult {
  readonly index: number;
  readonly term: number;
}

export class RawNode {
  readonly #id: NodeId;
  readonly #cfg: Normalized;
  readonly #random: RaftConfig['random'];
  readonly #log: RaftLog;

  #term: number;
  #vote: NodeId;
  #commit: number;
  #applied: number;
  #lead: NodeId = NONE;
  /** Set by the caller when a peer's authenticated handshake says this node's incarnation is not the one it records. */
  #rejoining = false;
  /** Campaign on election timeout (false: manual failover, paused, drained; see setAutoCampaign). */
  #autoCampaign = true;
  #role: RaftRole = 'follower';

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;

  #votes = new Map<NodeId, boolean>();
  #prs = new Map<NodeId, Progress>();
  #msgs: Message[] = [];
  #bcastEntries = false;
  #bcastCommit = false;

  #readStates: ReadState[] = [];
  #droppedReads: number[] = [];
  #pendingReads: PendingRead[] = [];
  #readsAwaitingTermCommit: number[] = [];
  #readRound = 0;

  #leadTransferee: NodeId = NONE;
  #transferElapsed = 0;
  /** Election timeouts in a row that elapsed without a leader (an observer's last resort counts them). */
  #leaderlessTimeouts = 0;
  /** How the latest real candidacy began (Status.campaign). */
  #lastCampaign: 'none' | 'election' | 'transfer' = 'none';
  #uncommittedBytes = 0;

  #pendingSnapshotInstall: SnapshotMeta | undefined;
  #snapshotRequestedAt = 0;
  /** Bytes of entry data applied since the last snapshot request. */
  #appliedBytesSinceSnapshot = 0;
  #readHeartbeatPending = false;
  /** Witness mode: the leader's commit set and in-sync set (./witness.ts). */
  readonly #witness: WitnessSets;

  #prevHard: HardState;
  #prevSoft: SoftState;
  #inProgress: InProgress | undefined;

  constructor(config: RaftConfig, storage: RaftStorageState) {
    this.#id = config.id;
    this.#cfg = normalize(config);
    this.#random = config.random;
    this.#witness = new WitnessSets(config.id);
    this.#log = new RaftLog(storage.snapshot, storage.entries);
    const hs = storage.hardState;
    this.#term = hs.term;
    this.#vote = hs.vote;
    // A commit index may be durable while the tail it covered was lost before its
    // fsync (a crash between writes); commit is knowledge, so clamp it.
    this.#commit = Math.max(storage.snapshot.index, Math.min(hs.commit, this.#log.lastIndex()));
    this.#applied = Math.max(storage.applied ?? storage.snapshot.index, storage.snapshot.index);
    invariant(this.#applied <= this.#commit, () => `applied ${this.#applied} exceeds commit ${this.#commit}`);
    this.#prevHard = { term: this.#term, vote: this.#vote, commit: this.#commit };
    this.#prevSoft = { lead: NONE, role: 'follower' };
    this.#snapshotRequestedAt = storage.snapshot.index;
    this.#resetTimers();
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.#assertNotInReady('tick');
    for (const pr of this.#prs.values()) pr.ticksSinceContact++;
    if (this.#role === 'leader') this.#tickLeader();
    else this.#tickElection();
  }

  step(m: Message): void {
    this.#assertNotInReady('step');
    if (m.to !== this.#id) return;
    if (m.term > this.#term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        // §4.2.3: ignore disruptive candidates while we hear from a live leader.
        const inLease = this.#cfg.checkQuorum && this.#lead !== NONE && this.#electionElapsed < this.#cfg.electionTicks;
        if (m.context !== CTX_TRANSFER && inLease) return;
      }
      if (m.type === 'preVote' || (m.type === 'preVoteResp' && !m.reject)) {
        // A pre-vote carries a future term; it does not change ours.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.#becomeFollower(m.term, m.from);
      } else {
        this.#becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.#term) {
      if (m.type === 'app' || m.type === 'heartbeat') {
        // Tell a stale leader about the newer term so it steps down (needed with
        // CheckQuorum and PreVote, where our term may be ahead of its).
        this.#send({ type: 'appResp', to: m.from, term: this.#term });
      } else if (m.type === 'preVote') {
        this.#send({ type: 'preVoteResp', to: m.from, term: this.#term, reject: true });
      }
      return;
    }

    if (m.type === 'vote' || m.type === 'preVote') {
      this.#handleVoteRequest(m);
      return;
    }
    switch (this.#role) {
      case 'leader':
        this.#stepLeader(m);
        break;
      case 'candidate':
      case 'preCandidate':
        this.#stepCandidate(m);
        break;
      case 'follower':
        this.#stepFollower(m);
        break;
    }
  }

  propose(data: Uint8Array): ProposeResult {
    return this.#proposeEntry('normal', data);
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    this.#assertCanPropose();
    if (this.#log.term(this.#commit) !== this.#term) {
      throw new ConfChangeInProgress('the leader has not yet committed an entry in its term; retry shortly');
    }
    if (this.#log.lastConfIndex() > this.#commit) {
      throw new ConfChangeInProgress(`the previous membership change (index ${this.#log.lastConfIndex()}) is not committed yet`);
    }
    // Validate first (throws InvalidConfChange); the entry carries the whole
    // resulting membership so any node, even one that joined later, applies it alone.
    const membership = applyConfChange(this.#log.membership(), cc);
    return this.#proposeEntry('conf', encodeConfEntry({ change: cc, membership }));
  }

  readIndex(ctx: number): void {
    this.#assertNotInReady('readIndex');
    if (this.#role !== 'leader') throw new NotLeader(this.#lead);
    if (this.#log.term(this.#commit) !== this.#term) {
      // §6.4: the commit index is only known to be current once an entry of
      // this term has committed.
      this.#readsAwaitingTermCommit.push(ctx);
      return;
    }
    this.#registerRead(ctx);
  }

  transferLeadership(to: NodeId): void {
    this.#assertNotInReady('transferLeadership');
    if (this.#role !== 'leader') throw new NotLeader(this.#lead);
    if (this.#cfg.witness) throw new InvalidTransfer(WITNESS_TRANSFER_REFUSED);
    if (to === this.#id) throw new InvalidTransfer(`node ${to} is already the leader`);
    const role = roleOf(this.#log.membership(), to);
    if (role !== 'voter') {
      throw new InvalidTransfer(role === undefined ? `node ${to} is not a member` : `node ${to} is ${role === 'observer' ? 'an observer' : 'a learner'} and may not lead`);
    }
    if (this.#leadTransferee === to) return;
    this.#startTransfer(to);
  }

  #startTransfer(to: NodeId): void {
    this.#leadTransferee = to;
    this.#transferElapsed = 0;
    this.#electionElapsed = 0;
    const pr = this.#prs.get(to)!;
    if (pr.match === this.#log.lastIndex()) this.#send({ type: 'timeoutNow', to, term: this.#term, index: this.#log.lastIndex() });
    else this.#sendAppend(to, true);
  }

  /** Start an election now (tests, and operator-forced failover on a voter). */
  campaign(): void {
    this.#assertNotInReady('campaign');
    if (this.#role === 'leader' || !this.#mayCampaign() || this.#cfg.witness) return;
    this.#campaign(this.#cfg.preVote ? 'pre' : 'election');
  }

  /** The transport saw the leader's connection reset: the leader's process is gone. */
  leaderUnreachable(): void {
    this.#assertNotInReady('leaderUnreachable');
    if (this.#role !== 'follower' || this.#lead === NONE) return;
    this.#lead = NONE;
    if (this.#cfg.witness) return;
    // Campaign after a short random delay (spread so two followers rarely collide).
    this.#electionElapsed = 0;
    this.#randomizedElectionTimeout = 1 + Math.floor(this.#random.next() * 2 * this.#cfg.heartbeatTicks);
  }

  reportUnreachable(id: NodeId): void {
    const pr = this.#prs.get(id);
    if (this.#role === 'leader' && pr && pr.state === 'replicate') pr.becomeProbe();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.#prs.get(id);
    if (this.#role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the follower's reply (or a heartbeat response) before probing.
    pr.probeSent = true;
  }

  /** Metadata for a snapshot of the state machine at applied index `index` (term and membership there). */
  snapshotMeta(index: number): SnapshotMeta {
    invariant(index <= this.#applied, () => `snapshot index ${index} is beyond applied ${this.#applied}`);
    const term = this.#log.term(index);
    invariant(term !== undefined, () => `snapshot index ${index} is not in the log`);
    return { index, term, membership: this.#log.membershipAt(index) };
  }

  /** The caller persisted a snapshot of its state machine at `index`; compact the log. */
  snapshotTaken(index: number): { compactedTo: number } {
    this.#assertNotInReady('snapshotTaken');
    invariant(index <= this.#applied, () => `snapshot index ${index} is beyond applied ${this.#applied}`);
    if (index <= this.#log.snapshot().index) return { compactedTo: this.#log.firstIndex() - 1 };
    const meta = this.snapshotMeta(index);
    let keepAfter = Math.max(this.#log.firstIndex() - 1, index - this.#cfg.trailingEntries);
    // The trailing entries are bounded in bytes too: keep the newest ones whose data fits trailingBytes.
    let bytes = 0;
    for (let i = index; i > keepAfter; i--) {
      bytes += this.#log.entry(i)?.data.length ?? 0;
      if (bytes > this.#cfg.trailingBytes) {
        keepAfter = i;
        break;
      }
    }
    const compactTo = Math.min(keepAfter, this.#log.stableIndex());
    this.#log.compact(meta, compactTo);
    return { compactedTo: this.#log.firstIndex() - 1 };
  }

  /**
   * Witness mode: this node took the witness's lease at `epoch` with in-sync
   * set `inSync` (it must be in it). It becomes leader at term = epoch without
   * a vote, with `inSync` as its commit set, and appends the no-op of its
   * term. The new term is durable before any message leaves (Ready.mustSync).
   */
  appoint(epoch: number, inSync: readonly NodeId[]): void {
    this.#assertNotInReady('appoint');
    checkAppointment(this.#cfg.witness, this.#id, this.#term, epoch, inSync, this.#promotable());
    this.#reset(epoch);
    this.#vote = this.#id;
    this.#role = 'candidate';
    this.#lastCampaign = 'election';
    this.#witness.appointed(inSync);
    this.#becomeLeader();
    this.#witness.started(this.#log.lastIndex());
  }

  /**
   * Witness mode: the leader's commit set `ids` (every member holds an index
   * durably before it commits; a superset of the witness's in-sync set) and
   * the in-sync set as the caller knows it (`inSync` ⊆ `ids`, default `ids`).
   * Rules and invariants: ./witness.ts. Ignored on a follower's commits.
   */
  setCommitSet(ids: readonly NodeId[], inSync: readonly NodeId[] = ids): void {
    this.#assertNotInReady('setCommitSet');
    invariant(this.#cfg.witness, 'setCommitSet() outside witness mode');
    if (this.#role !== 'leader') throw new NotLeader(this.#lead);
    this.#witness.set(ids, inSync);
    this.#maybeCommit();
    this.#releaseReads();
  }

  /** Witness mode: the lease is lost (or this node stops): the leader becomes a follower of no one, keeping its term. */
  stepDown(): void {
    this.#assertNotInReady('stepDown');
    if (this.#role === 'leader') this.#becomeFollower(this.#term, NONE);
  }

  // ---------------------------------------------------------------- output

  hasReady(): boolean {
    if (this.#inProgress) return false;
    return (
      this.#msgs.length > 0 ||
      this.#bcastEntries ||
      this.#bcastCommit ||
      this.#readHeartbeatPending ||
      this.#log.hasUnstable() ||
      this.#pendingSnapshotInstall !== undefined ||
      this.#commit > this.#applied ||
      this.#readStates.length > 0 ||
      this.#droppedReads.length > 0 ||
      !sameHard(this.#hardState(), this.#prevHard) ||
      !sameSoft(this.#softState(), this.#prevSoft) ||
      this.#wantSnapshot()
    );
  }

  ready(): Ready {
    invariant(!this.#inProgress, 'ready() called twice without advance()');
    if (this.#role === 'leader') {
      this.#flushBroadcast();
      if (this.#readHeartbeatPending) this.#bcastHeartbeat();
    }
    this.#readHeartbeatPending = false;
    this.#bcastEntries = false;
    this.#bcastCommit = false;
    const hs = this.#hardState();
    const ss = this.#softState();
    const entries = this.#log.unstableEntries();
    const committed: Entry[] = [];
    let bytes = 0;
    for (let i = this.#applied + 1; i <= this.#commit; i++) {
      const e = this.#log.entry(i);
      invariant(e !== undefined, () => `committed entry ${i} missing from the log (first ${this.#log.firstIndex()})`);
      bytes += e.data.length;
      if (committed.length > 0 && bytes > MAX_COMMITTED_BYTES_PER_READY) break;
      committed.push(e);
    }
    const hardChanged = !sameHard(hs, this.#prevHard);
    const rd: Ready = {
      ...(sameSoft(ss, this.#prevSoft) ? {} : { softState: ss }),
      ...(hardChanged ? { hardState: hs } : {}),
      entries,
      ...(this.#pendingSnapshotInstall ? { snapshot: this.#pendingSnapshotInstall } : {}),
      messages: this.#msgs,
      committedEntries: committed,
      readStates: this.#readStates,
      droppedReads: this.#droppedReads,
      mustSync:
        entries.length > 0 ||
        this.#pendingSnapshotInstall !== undefined ||
        hs.term !== this.#prevHard.term ||
        hs.vote !== this.#prevHard.vote,
      ...(this.#wantSnapshot() ? { snapshotRequest: this.#applied } : {}),
    };
    if (rd.snapshotRequest !== undefined) {
      this.#snapshotRequestedAt = this.#applied;
      this.#appliedBytesSinceSnapshot = 0;
    }
    this.#msgs = [];
    this.#readStates = [];
    this.#droppedReads = [];
    this.#pendingSnapshotInstall = undefined;
    const last = committed[committed.length - 1];
    this.#inProgress = {
      lastIndex: this.#log.lastIndex(),
      hardState: hs,
      softState: ss,
      appliedTo: last ? last.index : this.#applied,
      appliedBytes: bytes,
    };
    return rd;
  }

  advance(): void {
    const p = this.#inProgress;
    invariant(p !== undefined, 'advance() without ready()');
    this.#inProgress = undefined;
    this.#log.markStable(p.lastIndex);
    this.#applied = Math.max(this.#applied, p.appliedTo);
    this.#appliedBytesSinceSnapshot += p.appliedBytes;
    this.#prevHard = p.hardState;
    this.#prevSoft = p.softState;
    if (this.#role === 'leader') {
      // Our own log is durable up to p.lastIndex only now: count it.
      this.#maybeCommit();
    }
  }

  /**
   * The caller learned (from a peer's authenticated handshake) that the
   * cluster records another incarnation for this node, or that it no longer
   * does: while set, this node grants no vote and does not campaign.
   */
  setRejoining(rejoining: boolean): void {
    this.#rejoining = rejoining;
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
    this.#autoCampaign = on;
  }

  /** See setAutoCampaign: false while this node's own election timeouts start nothing. */
  get autoCampaign(): boolean {
    return this.#autoCampaign;
  }

  /** Who leads and this node's role right now, as status() says them, without building a status (cheap). */
  softState(): SoftState {
    return { lead: this.#lead, role: this.#role };
  }

  /** The membership in force: the latest in the log, committed or not (cheap; no copy). */
  membership(): Membership {
    return this.#log.membership();
  }

  status(): Status {
    const m = this.#log.membership();
    const progress = this.#role !== 'leader' ? [] : [...this.#prs.entries()].map(([id, pr]) => ({
      id,
      role: roleOf(m, id) ?? 'learner',
      match: pr.match,
      next: pr.next,
      state: pr.state,
      recentActive: pr.recentActive,
      ticksSinceContact: pr.ticksSinceContact,
      diverged: pr.divergedFrom !== 0,
    }));
    return {
      id: this.#id,
      term: this.#term,
      vote: this.#vote,
      commit: this.#commit,
      applied: this.#applied,
      lastIndex: this.#log.lastIndex(),
      lastTerm: this.#log.lastTerm(),
      firstIndex: this.#log.firstIndex(),
      lead: this.#lead,
      role: this.#role,
      membership: m,
      leadTransferee: this.#leadTransferee,
      progress,
      reachableVoters: this.#role === 'leader' ? this.#votersInContact() : 0,
      uncommittedBytes: this.#uncommittedBytes,
      campaign: this.#lastCampaign,
      ...(this.#cfg.witness && this.#role === 'leader' ? { commitSet: this.#witness.commitSet } : {}),
    };
  }

  /** Entry at index if still in the in-memory log (tests, diagnostics). */
  entry(index: number): Entry | undefined {
    return this.#log.entry(index);
  }

  // ---------------------------------------------------------------- roles

  #becomeFollower(term: number, lead: NodeId): void {
    this.#reset(term);
    this.#role = 'follower';
    this.#lead = lead;
    this.#witness.clear();
  }

  #becomeLeader(): void {
    invariant(this.#role === 'candidate', 'only a candidate becomes leader');
    this.#reset(this.#term);
    this.#role = 'leader';
    this.#lead = this.#id;
    this.#leaderlessTimeouts = 0;
    this.#syncProgress();
    for (const pr of this.#prs.values()) pr.recentActive = true;
    // Entries past the commit index from earlier terms count toward the bound
    // too, so it holds across leader changes.
    this.#uncommittedBytes = this.#log.bytesAfter(this.#commit);
    // The no-op of the new term: committing it commits everything before it
    // (§5.4.2) and opens ReadIndex and membership changes.
    this.#appendEntry('normal', EMPTY);
  }

  #reset(term: number): void {
    if (term !== this.#term) {
      invariant(term > this.#term, () => `term moving backwards from ${this.#term} to ${term}`);
      this.#term = term;
      this.#vote = NONE;
    }
    this.#lead = NONE;
    this.#resetTimers();
    this.#votes.clear();
    this.#prs.clear();
    this.#bcastEntries = false;
    this.#bcastCommit = false;
    this.#leadTransferee = NONE;
    this.#transferElapsed = 0;
    this.#uncommittedBytes = 0;
    for (const r of this.#pendingReads) this.#droppedReads.push(r.ctx);
    for (const ctx of this.#readsAwaitingTermCommit) this.#droppedReads.push(ctx);
    this.#pendingReads = [];
    this.#readsAwaitingTermCommit = [];
  }

  #resetTimers(): void {
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    const t = this.#cfg.electionTicks;
    this.#randomizedElectionTimeout = t + Math.floor(this.#random.next() * t);
  }

  #promotable(): boolean {
    return roleOf(this.#log.membership(), this.#id) === 'voter';
  }

  /** May this node start an election (pre-vote, vote, or on TimeoutNow)? */
  #mayCampaign(): boolean {
    return this.#promotable() && !this.#withholdsVote();
  }

  /**
   * An amnesiac node (new data dir under a known id) neither votes nor
   * campaigns: its peers told it so (setRejoining), or its own log's
   * membership records another incarnation for it.
   */
  #withholdsVote(): boolean {
    if (this.#rejoining) return true;
    const mine = this.#cfg.incarnation;
    if (mine === undefined) return false;
    const recorded = this.#log.membership().members.find((x) => x.id === this.#id)?.incarnation;
    return recorded !== undefined && recorded !== mine;
  }

  #campaign(kind: 'pre' | 'election' | 'transfer'): void {
    const voters = votingIds(this.#log.membership());
    let term: number;
    let type: MessageType;
    if (kind === 'pre') {
      this.#reset(this.#term);
      this.#role = 'preCandidate';
      term = this.#term + 1;
      type = 'preVote';
    } else {
      this.#reset(this.#term + 1);
      this.#lastCampaign = kind === 'transfer' ? 'transfer' : 'election';
      this.#role = 'candidate';
      this.#vote = this.#id;
      term = this.#term;
      type = 'vote';
    }
    this.#votes.set(this.#id, true);
    if (this.#tally() === 'won') {
      this.#wonElection();
      return;
    }
    for (const id of voters) {
      if (id === this.#id) continue;
      this.#send({
        type,
        to: id,
        term,
        index: this.#log.lastIndex(),
        logTerm: this.#log.lastTerm(),
        context: kind === 'transfer' ? CTX_TRANSFER : 0,
      });
    }
  }

  #wonElection(): void {
    if (this.#role === 'preCandidate') this.#campaign('election');
    else this.#becomeLeader();
  }

  #tally(): 'won' | 'lost' | 'pending' {
    const voters = votingIds(this.#log.membership());
    let granted = 0;
    let rejected = 0;
    for (const id of voters) {
      const v = this.#votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = majority(voters.length);
    if (granted >= q) return 'won';
    if (rejected > voters.length - q) return 'lost';
    return 'pending';
  }

  // ---------------------------------------------------------------- ticks

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#electionElapsed = 0;
      if (this.#cfg.witness) {
        // No elections: a leader is appointed through the witness.
        this.#lead = NONE;
        return;
      }
      if (!this.#autoCampaign && this.#commit > 0) {
        // Manual failover / paused / drained: no election of our own.
        if (this.#role !== 'follower') this.#becomeFollower(this.#term, NONE);
        else this.#lead = NONE;
        return;
      }
      this.#leaderlessTimeouts++;
      if (this.#mayCampaign() || this.#mayStandIn()) this.#campaign(this.#cfg.preVote ? 'pre' : 'election');
      else this.#resetTimers();
    }
  }

  /**
   * An observer's last resort. Observers vote and count toward the quorum, so
   * an entry held only by a dead leader and an observer can be committed, and
   * then no voter can win a vote (the observer's log is more up to date than
   * theirs). After OBSERVER_STAND_IN_TIMEOUTS election timeouts in a row
   * without a leader, an observer campaigns itself; once elected it serves no
   * proposals and hands leadership to the most caught-up voter
   * (#tickLeader). Voters campaign after one timeout, so where a voter can
   * win, it does first. The vote rule is unchanged, so safety is too.
   */
  #mayStandIn(): boolean {
    return roleOf(this.#log.membership(), this.#id) === 'observer' && !this.#withholdsVote() &&
      this.#leaderlessTimeouts >= OBSERVER_STAND_IN_TIMEOUTS;
  }

  /** A stand-in leader (an observer) hands over to the reachable voter with the longest log. */
  #handOff(): void {
    let best: NodeId = NONE;
    let bestMatch = -1;
    for (const id of votingIds(this.#log.membership())) {
      if (roleOf(this.#log.membership(), id) !== 'voter') continue;
      const pr = this.#prs.get(id);
      if (!pr || !pr.recentActive) continue;
      if (pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best !== NONE) this.#startTransfer(best);
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#leadTransferee !== NONE && ++this.#transferElapsed >= this.#cfg.transferTicks) {
      this.#abortTransfer();
    }
    if (this.#leadTransferee === NONE && !this.#promotable()) this.#handOff();
    if (this.#electionElapsed >= this.#cfg.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#cfg.checkQuorum && !this.#cfg.witness) {
        if (this.#reachableVoters() < majority(votingIds(this.#log.membership()).length)) {
          this.#becomeFollower(this.#term, NONE);
          return;
        }
        for (const pr of this.#prs.values()) pr.recentActive = false;
      }
    }
    if (this.#heartbeatElapsed >= this.#cfg.heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#bcastHeartbeat();
    }
  }

  /** Voters (self included) heard from within the last election timeout, for status reports. */
  #votersInContact(): number {
    const m = this.#log.membership();
    let n = isVoting(roleOf(m, this.#id)) ? 1 : 0;
    for (const [id, pr] of this.#prs) if (pr.ticksSinceContact <= this.#cfg.electionTicks && isVoting(roleOf(m, id))) n++;
    return n;
  }

  #reachableVoters(): number {
    const m = this.#log.membership();
    let n = isVoting(roleOf(m, this.#id)) ? 1 : 0;
    for (const [id, pr] of this.#prs) if (pr.recentActive && isVoting(roleOf(m, id))) n++;
    return n;
  }

  // ---------------------------------------------------------------- votes

  #handleVoteRequest(m: Message): void {
    const isPre = m.type === 'preVote';
    if (this.#cfg.witness) {
      this.#send({ type: isPre ? 'preVoteResp' : 'voteResp', to: m.from, term: this.#term, reject: true });
      return;
    }
    const canVote =
      this.#vote === m.from ||
      (this.#vote === NONE && this.#lead === NONE) ||
      (isPre && m.term > this.#term);
    const upToDate =
      this.#cfg.mutation === 'voteWithoutLogCheck' ||
      m.logTerm > this.#log.lastTerm() ||
      (m.logTerm === this.#log.lastTerm() && m.index >= this.#log.lastIndex());
    // Two followers that lose the leader at the same moment pre-vote at once
    // and would grant each other, then split the real vote and wait a whole
    // election timeout. A pre-candidate whose log is exactly as up to date
    // yields only to a lower id, so one of them goes on. (Pre-votes change no
    // state; the real vote keeps every check.)
    const crossedPreVote = isPre && this.#role === 'preCandidate' && m.from > this.#id &&
      m.logTerm === this.#log.lastTerm() && m.index === this.#log.lastIndex();
    const respType = isPre ? 'preVoteResp' : 'voteResp';
    if (canVote && upToDate && !crossedPreVote && !this.#withholdsVote()) {
      this.#send({ type: respType, to: m.from, term: m.term });
      if (!isPre) {
        this.#electionElapsed = 0;
        this.#vote = m.from;
      }
    } else {
      this.#send({ type: respType, to: m.from, term: this.#term, reject: true });
    }
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case 'app':
      case 'heartbeat':
      case 'snap':
        this.#becomeFollower(m.term, m.from);
        this.#stepFollower(m);
        return;
      case 'voteResp':
      case 'preVoteResp': {
        if ((m.type === 'voteResp') !== (this.#role === 'candidate')) return;
        this.#votes.set(m.from, !m.reject);
        const r = this.#tally();
        if (r === 'won') this.#wonElection();
        else if (r === 'lost') this.#becomeFollower(this.#term, NONE);
        return;
      }
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- follower

  #stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.#electionElapsed = 0;
        this.#lead = m.from;
        this.#leaderlessTimeouts = 0;
        this.#handleAppend(m);
        return;
      case 'heartbeat':
        this.#electionElapsed = 0;
        this.#lead = m.from;
        this.#leaderlessTimeouts = 0;
        if (m.commit > this.#commit) this.#commitTo(Math.min(m.commit, this.#log.lastIndex()));
        if (m.commit > this.#log.lastIndex()) {
          // The leader knows we acknowledged entries we no longer hold (a lost
          // log tail): say so, with where our log ends, so it re-replicates.
          this.#send({ type: 'heartbeatResp', to: m.from, term: this.#term, context: m.context, reject: true, rejectHint: this.#log.lastIndex() });
        } else {
          this.#send({ type: 'heartbeatResp', to: m.from, term: this.#term, context: m.context });
        }
        return;
      case 'snap':
        this.#electionElapsed = 0;
        this.#lead = m.from;
        this.#leaderlessTimeouts = 0;
        this.#handleSnapshot(m);
        return;
      case 'timeoutNow':
        // Observers and learners refuse to lead. A TimeoutNow carries the
        // leader's last index when it was sent; a late one (its transfer may have
        // been aborted) reaching a node whose log is behind that is ignored
        // rather than forcing an election it cannot win.
        if (!this.#cfg.witness && this.#mayCampaign() && this.#log.lastIndex() >= m.index) this.#campaign('transfer');
        return;
      default:
        return;
    }
  }

  #handleAppend(m: Message): void {
    if (m.index < this.#commit) {
      this.#send({ type: 'appResp', to: m.from, term: this.#term, index: this.#commit });
      return;
    }
    if (this.#log.matchTerm(m.index, m.logTerm)) {
      const lastNew = m.index + m.entries.length;
      const conflict = this.#log.findConflict(m.entries);
      if (conflict !== 0) {
        invariant(conflict > this.#commit, () => `leader ${m.from} overwrites committed entry ${conflict} (commit ${this.#commit})`);
        this.#log.append(m.entries.slice(conflict - m.index - 1), this.#commit);
      }
      this.#commitTo(Math.min(m.commit, lastNew));
      this.#send({ type: 'appResp', to: m.from, term: this.#term, index: lastNew });
      return;
    }
    // Fast backtracking: point the leader at the last index whose term is not
    // above the leader's prevLogTerm, skipping a whole divergent term at once.
    const hint = this.#log.findConflictByTerm(Math.min(m.index, this.#log.lastIndex()), m.logTerm);
    this.#send({
      type: 'appResp',
      to: m.from,
      term: this.#term,
      index: m.index,
      reject: true,
      rejectHint: hint,
      logTerm: this.#log.term(hint) ?? 0,
    });
  }

  #handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s) return;
    if (s.index <= this.#commit) {
      this.#send({ type: 'appResp', to: m.from, term: this.#term, index: this.#commit });
      return;
    }
    if (this.#log.matchTerm(s.index, s.term)) {
      // We already hold the snapshot's entries: fast-forward the commit index.
      this.#commitTo(s.index);
      this.#send({ type: 'appResp', to: m.from, term: this.#term, index: this.#commit });
      return;
    }
    this.#log.restore(s);
    this.#commit = s.index;
    this.#applied = s.index;
    this.#snapshotRequestedAt = s.index;
    this.#pendingSnapshotInstall = s;
    this.#send({ type: 'appResp', to: m.from, term: this.#term, index: s.index });
  }

  #commitTo(index: number): void {
    if (index > this.#commit) {
      invariant(index <= this.#log.lastIndex(), () => `commit ${index} beyond last index ${this.#log.lastIndex()}`);
      this.#commit = index;
    }
  }

  // ---------------------------------------------------------------- leader

  #stepLeader(m: Message): void {
    const pr = this.#prs.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case 'appResp': {
        pr.recentActive = true;
        pr.ticksSinceContact = 0;
        if (m.reject) {
          const probeAt = this.#log.findConflictByTerm(m.rejectHint, m.logTerm);
          if (pr.maybeDecrTo(m.index, probeAt)) {
            if (pr.state === 'replicate') pr.becomeProbe();
            this.#sendAppend(m.from, true);
          }
          return;
        }
        const wasPaused = pr.isPaused();
        if (!pr.maybeUpdate(m.index)) {
          if (wasPaused && !pr.isPaused()) this.#sendAppend(m.from, false);
          return;
        }
        if (pr.state === 'probe') pr.becomeReplicate();
        else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
        if (!this.#maybeCommit() && (wasPaused || pr.match < this.#log.lastIndex())) {
          // Replicate: fill the window (count and bytes in flight) with what the
          // follower lacks, rather than one message per acknowledgement, so a
          // follower far behind (restarted) is caught up pipelined.
          while (this.#sendAppend(m.from, false) && pr.state === 'replicate');
        }
        if (m.from === this.#leadTransferee && pr.match === this.#log.lastIndex()) {
          this.#send({ type: 'timeoutNow', to: m.from, term: this.#term, index: this.#log.lastIndex() });
        }
        return;
      }
      case 'heartbeatResp': {
        pr.recentActive = true;
        pr.ticksSinceContact = 0;
        pr.probeSent = false;
        if (m.reject && m.rejectHint < pr.match) pr.markDiverged(m.rejectHint);
        if (pr.state === 'replicate' && pr.isPaused()) pr.freeFirstOne();
        // Even when entries look in flight, an empty append probes for ones the
        // network dropped: a follower missing them rejects and we fall back to probe.
        if (pr.match < this.#log.lastIndex()) this.#sendAppend(m.from, true);
        if (m.context > pr.readAckRound) {
          pr.readAckRound = m.context;
          this.#releaseReads();
        }
        return;
      }
      default:
        return;
    }
  }

  #assertNotInReady(what: string): void {
    invariant(!this.#inProgress, () => `${what}() called between ready() and advance()`);
  }

  #assertCanPropose(): void {
    this.#assertNotInReady('propose');
    if (this.#role !== 'leader') throw new NotLeader(this.#lead);
    if (this.#leadTransferee !== NONE) throw new TransferInProgress(this.#leadTransferee);
    // A stand-in (observer) leader takes no proposals: it is handing over to a voter.
    if (!this.#promotable()) throw new NotLeader(NONE);
  }

  #proposeEntry(type: EntryType, data: Uint8Array): ProposeResult {
    this.#assertCanPropose();
    if (data.length > this.#cfg.maxEntryBytes) throw new EntryTooLarge(data.length, this.#cfg.maxEntryBytes);
    if (this.#uncommittedBytes > 0 && this.#uncommittedBytes + data.length > this.#cfg.maxUncommittedBytes) {
      throw new Overloaded(this.#uncommittedBytes, this.#cfg.maxUncommittedBytes);
    }
    return this.#appendEntry(type, data);
  }

  #appendEntry(type: EntryType, data: Uint8Array): ProposeResult {
    const e: Entry = { term: this.#term, index: this.#log.lastIndex() + 1, type, data };
    this.#log.append([e], this.#commit);
    this.#uncommittedBytes += data.length;
    this.#bcastEntries = true;
    if (type === 'conf') this.#syncProgress();
    return { index: e.index, term: e.term };
  }

  /** Make the progress set match the membership at the end of the log. */
  #syncProgress(): void {
    const m = this.#log.membership();
    for (const mem of m.members) {
      if (mem.id === this.#id || this.#prs.has(mem.id)) continue;
      const pr = new Progress(this.#log.lastIndex() + 1, this.#cfg.maxInflightMsgs, this.#cfg.maxInflightBytes);
      pr.recentActive = true;
      this.#prs.set(mem.id, pr);
    }
    for (const id of [...this.#prs.keys()]) {
      if (roleOf(m, id) === undefined) this.#prs.delete(id);
    }
    // Membership entries are never appended during a transfer (proposals are
    // refused then), so the transferee is still a voter.
    invariant(this.#leadTransferee === NONE || roleOf(m, this.#leadTransferee) === 'voter', () => `transferee ${this.#leadTransferee} is no longer a voter`);
  }

  #abortTransfer(): void {
    this.#leadTransferee = NONE;
    this.#transferElapsed = 0;
  }

  #quorumSize(voters: number): number {
    if (this.#cfg.mutation === 'ignoreCommitQuorum') return 1;
    return writeQuorum(voters, this.#cfg.writeQuorum);
  }

  /** Advance commit to the highest index held by a write quorum, if of this term. */
  #maybeCommit(): boolean {
    const candidate = this.#cfg.witness ? this.#witnessCandidate() : this.#quorumCandidate();
    if (candidate === undefined || candidate <= this.#commit) return false;
    // §5.4.2: only entries of the current term are committed by counting.
    if (this.#cfg.mutation !== 'commitPreviousTermByCounting' && this.#log.term(candidate) !== this.#term) return false;
    const before = this.#commit;
    this.#commitTo(candidate);
    this.#bcastCommit = true;
    this.#onCommitted(before);
    return true;
  }

  /** Witness mode: every member of the commit set holds it durably, or of the in-sync set up to the no-op (./witness.ts). */
  #witnessCandidate(): number | undefined {
    return this.#witness.commitCandidate((id) => (id === this.#id ? this.#log.stableIndex() : this.#prs.get(id)?.match ?? 0));
  }

  #quorumCandidate(): number | undefined {
    const matches: number[] = [];
    for (const mem of this.#log.membership().members) {
      if (!isVoting(mem.role)) continue;
      if (mem.id === this.#id) matches.push(this.#log.stableIndex());
      else matches.push(this.#prs.get(mem.id)?.match ?? 0);
    }
    if (matches.length === 0) return undefined;
    matches.sort((a, b) => b - a);
    return matches[this.#quorumSize(matches.length) - 1]!;
  }

  #onCommitted(before: number): void {
    let freed = 0;
    for (let i = before + 1; i <= this.#commit; i++) freed += this.#log.entry(i)?.data.length ?? 0;
    this.#uncommittedBytes = Math.max(0, this.#uncommittedBytes - freed);
    if (this.#log.term(before) !== this.#term && this.#log.term(this.#commit) === this.#term) {
      const waiting = this.#readsAwaitingTermCommit;
      this.#readsAwaitingTermCommit = [];
      for (const ctx of waiting) this.#registerRead(ctx);
    }
    // A leader that is no longer a voter steps down once that change commits
    // (dissertation §4.2.2); it keeps leading until then so the change commits.
    if (!this.#promotable() && this.#log.lastConfIndex() <= this.#commit) {
      this.#bcastCommit = false;
      this.#flushAppendsForCommit();
      this.#becomeFollower(this.#term, NONE);
    }
  }

  /** Tell followers the new commit index before stepping down. */
  #flushAppendsForCommit(): void {
    for (const id of this.#prs.keys()) this.#sendAppend(id, true);
  }

  #registerRead(ctx: number): void {
    const voters = votingIds(this.#log.membership());
    const selfVotes = voters.includes(this.#id) ? 1 : 0;
    const alone = this.#cfg.witness ? this.#witness.readsAlone() : selfVotes === 1 && voters.length === 1;
    if ((this.#cfg.readOnly === 'lease' && !this.#cfg.witness) || alone) {
      this.#readStates.push({ index: this.#commit, ctx });
      return;
    }
    // One heartbeat round per Ready confirms every read registered before it.
    if (!this.#readHeartbeatPending) this.#readRound++;
    this.#readHeartbeatPending = true;
    this.#pendingReads.push({ ctx, index: this.#commit, round: this.#readRound });
  }

  #releaseReads(): void {
    const m = this.#log.membership();
    // Witness mode: every member of the commit set confirms this leader's epoch
    // (one that took a higher epoch would answer with it instead).
    const voters = this.#cfg.witness ? this.#witness.readConfirmers() : votingIds(m);
    const q = this.#cfg.witness ? voters.length : majority(voters.length);
    while (this.#pendingReads.length > 0) {
      const r = this.#pendingReads[0]!;
      let acks = voters.includes(this.#id) ? 1 : 0;
      for (const id of voters) {
        if (id !== this.#id && (this.#prs.get(id)?.readAckRound ?? 0) >= r.round) acks++;
      }
      if (acks < q) break;
      this.#pendingReads.shift();
      this.#readStates.push({ index: r.index, ctx: r.ctx });
    }
  }

  #bcastHeartbeat(): void {
    this.#heartbeatElapsed = 0;
    for (const [id, pr] of this.#prs) {
      this.#send({
        type: 'heartbeat',
        to: id,
        term: this.#term,
        commit: Math.min(pr.match, this.#commit),
        context: this.#readRound,
      });
    }
  }

  #flushBroadcast(): void {
    if (!this.#bcastEntries && !this.#bcastCommit) return;
    const ifEmpty = this.#bcastCommit;
    this.#bcastEntries = false;
    this.#bcastCommit = false;
    for (const id of this.#prs.keys()) this.#sendAppend(id, ifEmpty);
  }

  /** Send entries (or a snapshot) to a follower per its flow-control state. */
  #sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.#prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    const entries = this.#log.slice(pr.next, this.#log.lastIndex(), this.#cfg.maxMsgBytes);
    if (prevTerm === undefined || entries === undefined) return this.#sendSnapshot(to, pr);
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of entries) bytes += e.data.length;
    this.#send({ type: 'app', to, term: this.#term, index: prevIndex, logTerm: prevTerm, entries, commit: this.#commit });
    const last = entries[entries.length - 1];
    if (last) pr.sentEntries(last.index, bytes);
    else if (pr.state === 'probe') pr.probeSent = true;
    return true;
  }

  #sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    const snap = this.#log.snapshot();
    pr.becomeSnapshot(snap.index);
    this.#send({ type: 'snap', to, term: this.#term, snapshot: snap });
    return true;
  }

  #wantSnapshot(): boolean {
    const since = this.#applied - this.#snapshotRequestedAt;
    if (since <= 0) return false;
    return since >= this.#cfg.snapshotEntries || this.#appliedBytesSinceSnapshot >= this.#cfg.snapshotBytes;
  }

  // ---------------------------------------------------------------- misc

  #send(partial: Partial<Message> & { type: MessageType; to: NodeId; term: number }): void {
    this.#msgs.push({
      from: this.#id,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: 0,
      ...partial,
    });
  }

  #hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#commit };
  }

  #softState(): SoftState {
    return { lead: this.#lead, role: this.#role };
  }
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}
