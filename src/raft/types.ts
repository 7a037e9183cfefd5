// Public types of the consensus core. Pure data: no I/O, no classes with
// behaviour beyond errors. See ./README.md for the caller's contract.

/** Node ids are positive integers and are never reused after removal. */
export type NodeId = number;
/** 0 means "no node" (no vote, no known leader). */
export const NONE: NodeId = 0;

/**
 * voter: votes, counts toward quorum, may campaign and lead.
 * observer: votes and counts toward quorum; never campaigns while a voter
 *   could win, and never leads for long: only as a last resort (three election
 *   timeouts without a leader) does it stand in, taking no proposals and
 *   handing leadership to the most caught-up voter at once.
 * learner: replicated to; never votes, never counted (the DR role).
 */
export type MemberRole = 'voter' | 'observer' | 'learner';

export interface Member {
  readonly id: NodeId;
  readonly role: MemberRole;
  /**
   * Node-level facts the leader records through the log (the core only
   * carries them): the member's data-dir incarnation, its API URL and name as
   * its authenticated handshake announced them, and, after it came back with
   * a new incarnation, the commit index it must reach before it may vote again.
   */
  readonly incarnation?: string;
  readonly apiUrl?: string;
  /** Its peer address (host:port), recorded by the leader when it is added or announces itself: how every node's transport reaches it. */
  readonly peerUrl?: string;
  readonly name?: string;
  readonly catchUpTo?: number;
}

/** Cluster membership; `removed` keeps ids that may never be re-added. */
export interface Membership {
  readonly members: readonly Member[];
  readonly removed: readonly NodeId[];
}

export type ConfChange =
  /** `member`, when given, is the new member's whole record (its id and role must match the change's). */
  | { readonly op: 'add'; readonly id: NodeId; readonly role: MemberRole; readonly member?: Member }
  | { readonly op: 'remove'; readonly id: NodeId }
  | { readonly op: 'setRole'; readonly id: NodeId; readonly role: MemberRole }
  /** Replace a member's whole record (role and metadata); a single-server change like setRole. */
  | { readonly op: 'setMember'; readonly id: NodeId; readonly member: Member };

/** 'normal' entries carry application data (empty data = the leader's no-op); 'conf' entries carry an encoded ConfChange. */
export type EntryType = 'normal' | 'conf';

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/** Metadata of a snapshot; the snapshot's bytes live with the caller (files, streams). */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly membership: Membership;
}

export type MessageType =
  | 'app' // AppendEntries
  | 'appResp'
  | 'vote'
  | 'voteResp'
  | 'preVote'
  | 'preVoteResp'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'snap' // InstallSnapshot (metadata; the caller streams the bytes)
  | 'timeoutNow';

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** app: prevLogTerm. vote/preVote: candidate's last log term. appResp reject: hint term. */
  readonly logTerm: number;
  /** app: prevLogIndex. vote/preVote: candidate's last index. appResp: match/last index. timeoutNow: leader's last index. */
  readonly index: number;
  readonly entries: readonly Entry[];
  /** Leader's commit index (app, heartbeat). */
  readonly commit: number;
  readonly reject: boolean;
  /** appResp reject: follower's hint for fast backtracking (an index to probe at). */
  readonly rejectHint: number;
  /** heartbeat/heartbeatResp: ReadIndex context round. vote/preVote: 1 = leadership transfer. */
  readonly context: number;
  readonly snapshot?: SnapshotMeta;
}

export type RaftRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly lead: NodeId;
  readonly role: RaftRole;
}

/** A linearizable read may be served once applied >= index. */
export interface ReadState {
  readonly index: number;
  readonly ctx: number;
}

/** Output of the core; see the caller's contract in ./README.md. */
export interface Ready {
  readonly softState?: SoftState;
  /** Persist (fsync) before sending messages. */
  readonly hardState?: HardState;
  /** Entries to append durably; may overwrite a suffix of the stored log from entries[0].index. */
  readonly entries: readonly Entry[];
  /** Install this snapshot (its bytes came with the 'snap' message); replaces state and log. */
  readonly snapshot?: SnapshotMeta;
  /** Send after persisting. */
  readonly messages: readonly Message[];
  /** Apply in order after persisting. */
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** ReadIndex contexts that will never be served (leadership lost); fail them so the client can retry. */
  readonly droppedReads: readonly number[];
  /** True when hardState or entries must be fsynced before messages go out. */
  readonly mustSync: boolean;
  /** The core asks the caller to snapshot the state machine at this applied index, then call `snapshotTaken`. */
  readonly snapshotRequest?: number;
}

export interface ProgressStatus {
  readonly id: NodeId;
  readonly role: MemberRole;
  readonly match: number;
  readonly next: number;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly recentActive: boolean;
  /** Ticks since this leader last heard from the peer. */
  readonly ticksSinceContact: number;
  /**
   * Heard from within the last election timeout (what status counts as
   * reachable). recentActive is cleared at every election timeout and set
   * again by the peer's next reply, so for up to a heartbeat it says false
   * of a live peer: checks made at a random moment use this instead.
   */
  readonly inContact: boolean;
  /**
   * The follower's log went backwards (it rejected entries it had acknowledged:
   * a lost log tail): the leader's match index for it was lowered to what it
   * holds, and it stays diverged until it is back at the old match index.
   */
  readonly diverged: boolean;
}

export interface Status {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  /** The term of the last entry (the vote rule compares (lastTerm, lastIndex)). */
  readonly lastTerm: number;
  readonly firstIndex: number;
  readonly lead: NodeId;
  readonly role: RaftRole;
  readonly membership: Membership;
  readonly leadTransferee: NodeId;
  /** Only on the leader. */
  readonly progress: readonly ProgressStatus[];
  /** Leader: voters (self included) heard from within the last election timeout. */
  readonly reachableVoters: number;
  readonly uncommittedBytes: number;
  /**
   * How this node's latest candidacy (a real vote, not a pre-vote) began:
   * 'transfer' on a TimeoutNow (a leadership transfer), 'election' otherwise;
   * 'none' before any. For a leader: how it won its term.
   */
  readonly campaign: 'none' | 'election' | 'transfer';
  /** Witness mode, on the leader: the commit set it was given (sorted). */
  readonly commitSet?: readonly NodeId[];
}

/** Deterministic random source; `next()` returns a float in [0, 1). */
export interface Random {
  next(): number;
}

export interface RaftConfig {
  readonly id: NodeId;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly random: Random;
  /** Require more acks than a majority (never fewer): the commit quorum is max(majority, writeQuorum) capped at voter count. */
  readonly writeQuorum?: number;
  readonly preVote?: boolean; // default true
  readonly checkQuorum?: boolean; // default true
  /** 'safe' = ReadIndex with a heartbeat round; 'lease' needs checkQuorum and assumes bounded clock drift. */
  readonly readOnly?: 'safe' | 'lease';
  readonly maxInflightMsgs?: number; // default 256
  readonly maxInflightBytes?: number; // default 16 MiB
  readonly maxMsgBytes?: number; // default 1 MiB of entry data per append
  readonly maxUncommittedBytes?: number; // default 64 MiB
  readonly maxEntryBytes?: number; // default 8 MiB
  /** Ask for a snapshot when this many applied entries sit in the log past the last snapshot. */
  readonly snapshotEntries?: number; // default 10000
  readonly snapshotBytes?: number; // default 64 MiB
  /**
   * The bytes threshold grows with the state: after a snapshot of S bytes the next is asked for after
   * max(snapshotBytes, min(S, snapshotBytesMax)) bytes of applied entry data, so a large state is not copied
   * after every few MiB of writes (at most one snapshot's worth of writes per snapshot), while a small one
   * keeps the in-memory log at snapshotBytes.
   */
  readonly snapshotBytesMax?: number; // default 8 × snapshotBytes
  /**
   * Each snapshot period's entries threshold is multiplied by 1 + snapshotJitter × (r − 0.5), r drawn from
   * `random` in [0, 1) when the period starts (0.5: 0.75 to 1.25 times). Nodes applying the same entries then do not all take their snapshot at the
   * same index: a snapshot of many small entries' state is a burst of CPU and disk, and all of a cluster's at
   * once stall every commit (a 3-node cluster needs only one follower while the other snapshots). The bytes
   * threshold is not jittered: it bounds the memory the log holds for large entries (file chunks), whose
   * snapshots are cheap. Default 0.
   */
  readonly snapshotJitter?: number;
  /** Entries kept before the snapshot index when compacting, for slow followers. */
  readonly trailingEntries?: number; // default 1000
  /** ... and at most this many bytes of entry data (large entries, such as replicated file chunks, would otherwise keep up to trailingEntries × their size in memory). */
  readonly trailingBytes?: number; // default 32 MiB
  /** Ticks a leadership transfer may take before it is aborted; default electionTicks. */
  readonly transferTicks?: number;
  /**
   * This node's data-dir incarnation. When the membership records a different
   * one for this node, the node came back with a new data dir (it forgot its
   * votes and what it acknowledged): it grants no vote and never campaigns
   * until the leader has recorded it anew (as a gated learner; see Member).
   */
  readonly incarnation?: string;
  /**
   * Witness mode (`coordination: "redis"`, src/coord/WITNESS.md): no elections.
   * A node leads only when appointed (`appoint(epoch, inSync)`, after it took
   * the witness's lease) at term = epoch, and a leader commits an index of its
   * term when every member of its commit set (`setCommitSet`) holds it
   * durably, instead of a majority. Campaigns, votes and leadership transfer
   * are refused; a leader never steps down by itself (the lease decides:
   * `stepDown()`), and a follower forgets a leader it has not heard from for
   * an election timeout.
   */
  readonly witness?: boolean;
  /** Test-only: a deliberately broken variant (see TestMutation). */
  readonly testMutation?: TestMutation;
}

/** State recovered from durable storage on start. */
export interface RaftStorageState {
  readonly hardState: HardState;
  /** The last snapshot (index 0 with the bootstrap membership for a new cluster). */
  readonly snapshot: SnapshotMeta;
  /** The log's entries, contiguous; those at or before snapshot.index are ignored. */
  readonly entries: readonly Entry[];
  /** Index already applied by the state machine (>= snapshot.index); defaults to snapshot.index. */
  readonly applied?: number;
}

/**
 * Deliberately broken variants, used only by the simulator's mutation checks
 * (test/sim) to prove the oracles catch real bugs. Never set in production.
 */
export type TestMutation = 'voteWithoutLogCheck' | 'commitPreviousTermByCounting' | 'ignoreCommitQuorum';
