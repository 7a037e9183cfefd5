// The mutable state of one Raft peer, shared by the RawNode facade
// (./rawnode.ts: inputs, Ready, step dispatch) and the modules that act on
// it (./replication.ts, ./follower.ts, ./elections.ts, ./ticks.ts,
// ./readindex.ts, ./transfer.ts, ./propose.ts). Internal to src/raft: the
// fields are plain so those modules can reach them; nothing outside
// src/raft sees a RaftCore (RawNode keeps it in a private field). Only the
// primitives every module needs live here: sending, committing, resetting
// on a role change, and who may campaign.
import { invariant } from './errors.js';
import { RaftLog } from './log.js';
import { roleOf } from './membership.js';
import type { Progress } from './progress.js';
import { WitnessSets } from './witness.js';
import { normalize, type Normalized } from './config.js';
import type {
  HardState,
  Message,
  MessageType,
  NodeId,
  RaftConfig,
  RaftRole,
  RaftStorageState,
  ReadState,
  SnapshotMeta,
  SoftState,
} from './types.js';
import { NONE } from './types.js';

/** How far past its snapshot thresholds a node catching up may apply before it snapshots anyway (wantSnapshot). */
const CATCH_UP_SNAPSHOT_DEFER = 4;
/**
 * A follower this many entries behind (or a quarter of snapshotEntries, if
 * fewer) is catching up: a few milliseconds of applying. Past it, a snapshot
 * taken now would run beside the rest of the catch-up (at the default
 * snapshotEntries, a quarter was 2500 entries: about 50 ms of work left when
 * a restarted follower's snapshot began).
 */
const CATCH_UP_ENTRIES = 256;

export interface PendingRead {
  readonly ctx: number;
  readonly index: number;
  readonly round: number;
}

export class RaftCore {
  readonly id: NodeId;
  readonly cfg: Normalized;
  readonly random: RaftConfig['random'];
  readonly log: RaftLog;

  term: number;
  vote: NodeId;
  commit: number;
  applied: number;
  lead: NodeId = NONE;
  /** Set by the caller when a peer's authenticated handshake says this node's incarnation is not the one it records. */
  rejoining = false;
  /** Campaign on election timeout (false: manual failover, paused, drained; see RawNode.setAutoCampaign). */
  autoCampaign = true;
  role: RaftRole = 'follower';

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;

  votes = new Map<NodeId, boolean>();
  prs = new Map<NodeId, Progress>();
  msgs: Message[] = [];
  bcastEntries = false;
  bcastCommit = false;

  readStates: ReadState[] = [];
  droppedReads: number[] = [];
  pendingReads: PendingRead[] = [];
  readsAwaitingTermCommit: number[] = [];
  /**
   * The last ReadIndex heartbeat round sent (heartbeats carry it as their
   * context). Reads registered while `readHeartbeatPending` wait for round
   * `readRound + 1`, which is sent at the next Ready once no earlier round
   * is still unconfirmed (readindex.ts).
   */
  readRound = 0;

  leadTransferee: NodeId = NONE;
  transferElapsed = 0;
  /** Election timeouts in a row that elapsed without a leader (an observer's last resort counts them). */
  leaderlessTimeouts = 0;
  /** How the latest real candidacy began (Status.campaign). */
  lastCampaign: 'none' | 'election' | 'transfer' = 'none';
  uncommittedBytes = 0;

  pendingSnapshotInstall: SnapshotMeta | undefined;
  snapshotRequestedAt = 0;
  /** This snapshot period's factor on the entries threshold (RaftConfig.snapshotJitter; 1 without jitter). */
  snapshotFactor = 1;
  /** Bytes of entry data applied since the last snapshot request. */
  appliedBytesSinceSnapshot = 0;
  /** The size of the caller's last snapshot (snapshotTaken), which moves the bytes threshold (RaftConfig.snapshotBytesMax). */
  lastSnapshotBytes = 0;
  /** The commit index in the latest message from the leader (catchingUp: how far this node's log is behind it). */
  leaderCommitSeen = 0;
  /** Reads wait for a round not yet sent (round `readRound + 1`). */
  readHeartbeatPending = false;
  /** Witness mode: the leader's commit set and in-sync set (./witness.ts). */
  readonly witness: WitnessSets;

  constructor(config: RaftConfig, storage: RaftStorageState) {
    this.id = config.id;
    this.cfg = normalize(config);
    this.random = config.random;
    this.witness = new WitnessSets(config.id);
    this.log = new RaftLog(storage.snapshot, storage.entries);
    const hs = storage.hardState;
    this.term = hs.term;
    this.vote = hs.vote;
    // A commit index may be durable while the tail it covered was lost before its
    // fsync (a crash between writes); commit is knowledge, so clamp it.
    this.commit = Math.max(storage.snapshot.index, Math.min(hs.commit, this.log.lastIndex()));
    this.applied = Math.max(storage.applied ?? storage.snapshot.index, storage.snapshot.index);
    invariant(this.applied <= this.commit, () => `applied ${this.applied} exceeds commit ${this.commit}`);
    this.startSnapshotPeriod(storage.snapshot.index);
    this.resetTimers();
  }

  send(partial: Partial<Message> & { type: MessageType; to: NodeId; term: number }): void {
    this.msgs.push({
      from: this.id,
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

  commitTo(index: number): void {
    if (index > this.commit) {
      invariant(index <= this.log.lastIndex(), () => `commit ${index} beyond last index ${this.log.lastIndex()}`);
      this.commit = index;
    }
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.role = 'follower';
    this.lead = lead;
    this.witness.clear();
  }

  reset(term: number): void {
    if (term !== this.term) {
      invariant(term > this.term, () => `term moving backwards from ${this.term} to ${term}`);
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.resetTimers();
    this.votes.clear();
    this.prs.clear();
    this.bcastEntries = false;
    this.bcastCommit = false;
    this.leadTransferee = NONE;
    this.transferElapsed = 0;
    this.uncommittedBytes = 0;
    for (const r of this.pendingReads) this.droppedReads.push(r.ctx);
    for (const ctx of this.readsAwaitingTermCommit) this.droppedReads.push(ctx);
    this.pendingReads = [];
    this.readsAwaitingTermCommit = [];
    this.readHeartbeatPending = false;
  }

  resetTimers(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    const t = this.cfg.electionTicks;
    this.randomizedElectionTimeout = t + Math.floor(this.random.next() * t);
  }

  promotable(): boolean {
    return roleOf(this.log.membership(), this.id) === 'voter';
  }

  /** May this node start an election (pre-vote, vote, or on TimeoutNow)? */
  mayCampaign(): boolean {
    return this.promotable() && !this.withholdsVote();
  }

  /**
   * An amnesiac node (new data dir under a known id) neither votes nor
   * campaigns: its peers told it so (RawNode.setRejoining), or its own log's
   * membership records another incarnation for it.
   */
  withholdsVote(): boolean {
    if (this.rejoining) return true;
    const mine = this.cfg.incarnation;
    if (mine === undefined) return false;
    const recorded = this.log.membership().members.find((x) => x.id === this.id)?.incarnation;
    return recorded !== undefined && recorded !== mine;
  }

  wantSnapshot(): boolean {
    const since = this.applied - this.snapshotRequestedAt;
    if (since <= 0) return false;
    if (since < this.cfg.snapshotEntries * this.snapshotFactor && this.appliedBytesSinceSnapshot < this.snapshotBytesThreshold()) return false;
    // A node that is catching up applies first and snapshots once caught up: a
    // snapshot costs the loop about as long as applying 10000 entries, and taking
    // it mid-way delayed a restarted follower's catch-up by ~100 ms. Not forever:
    // past CATCH_UP_SNAPSHOT_DEFER times the entry threshold, or twice the bytes
    // threshold, it snapshots anyway (the memory the log holds stays bounded).
    if (this.catchingUp()) return since >= CATCH_UP_SNAPSHOT_DEFER * this.cfg.snapshotEntries || this.appliedBytesSinceSnapshot >= 2 * this.snapshotBytesThreshold();
    return true;
  }

  /** The next snapshot is counted from `index` (a snapshot asked for, or installed); its thresholds' factor is drawn now. */
  startSnapshotPeriod(index: number): void {
    this.snapshotRequestedAt = index;
    this.appliedBytesSinceSnapshot = 0;
    // No draw without jitter: the random stream (elections) stays as it was.
    // Centred on 1: on average as many entries between snapshots (and to replay after a restart) as without.
    this.snapshotFactor = this.cfg.snapshotJitter > 0 ? 1 + this.cfg.snapshotJitter * (this.random.next() - 0.5) : 1;
  }

  /**
   * A node that is not the leader and has no leader yet (it just restarted and
   * replays its log), or is at least CATCH_UP_ENTRIES (or a quarter of
   * snapshotEntries, if fewer) behind: its log ends that far before the
   * leader's commit, or it has that many committed entries still to apply (a
   * large batch from the leader). A follower keeping up, even one a few
   * entries behind the other (pipelined large entries such as file chunks),
   * is not catching up.
   */
  catchingUp(): boolean {
    if (this.role === 'leader') return false;
    const far = Math.max(1, Math.min(CATCH_UP_ENTRIES, this.cfg.snapshotEntries / 4));
    return this.lead === NONE || this.leaderCommitSeen - this.log.lastIndex() >= far || this.commit - this.applied >= far;
  }

  /** Bytes of applied entry data that ask for the next snapshot: the last snapshot's size, within [snapshotBytes, snapshotBytesMax]. */
  snapshotBytesThreshold(): number {
    return Math.max(this.cfg.snapshotBytes, Math.min(this.lastSnapshotBytes, this.cfg.snapshotBytesMax));
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.commit };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }
}
