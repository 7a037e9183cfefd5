// What the HTTP API needs from whatever runs behind it, declared here, by the
// API (the consumer), so the API never imports the node's implementation:
//
// - ClusterControl: this node's identity and the cluster-level operations
//   (status, switchover, failover-safe, snapshot, metrics);
// - KvService: the replicated KV as a service (reads of this node's copy,
//   writes, a linearizable read barrier), with nothing of Raft in it.
//
// QuorateNode (src/node/node.ts) provides both today (it is the
// ClusterControl; `node.kvService` is the KvService). A PostgreSQL-backed
// implementation (the external-shared mode) is meant to stand behind the same
// two interfaces. The dependency points one way: src/node imports these
// types, src/api imports nothing of src/node but its error codes
// (src/node/errors.ts, mapped to HTTP in ./errors.ts).
import type { QuorateConfig } from '../config/index.js';
import type { ApplyResult, Command, HistoryRecord, KvReader } from '../state/index.js';

/**
 * The role a node shows in status (`role` of /v1/cluster/status, of each
 * peer, and of /system/health/*). How config roles and membership roles map
 * to these: docs/concepts.md "Roles" (code: src/node/roles.ts).
 */
export type NodeRoleName = 'primary' | 'standby' | 'observer' | 'dr' | 'rejoining' | 'candidate' | 'removed';
/** diverged: the peer lost log entries it had acknowledged (a damaged log tail); the leader re-replicates them. */
export type PeerHealth = 'healthy' | 'lagging' | 'diverged' | 'unreachable' | 'isolated';

export interface PeerInfo {
  readonly id: number;
  readonly nodeName: string;
  /** API URL recorded for the member in the membership (taken from its authenticated handshake by the leader), when known. */
  readonly apiUrl: string | undefined;
  readonly peerUrl: string;
  readonly role: NodeRoleName;
  readonly status: PeerHealth;
  readonly matchIndex: number;
  readonly replicationLagEntries: number;
  readonly replicationLagMs: number;
  /** ISO time of the last message from this peer (leader's view), or undefined. */
  readonly lastHeartbeat: string | undefined;
  readonly self: boolean;
}

/** One node's view of the cluster: what /v1/cluster/status and /system/health/* present. */
export interface NodeStatus {
  readonly id: number;
  readonly nodeName: string;
  readonly haId: string;
  readonly role: NodeRoleName;
  readonly raftRole: 'follower' | 'preCandidate' | 'candidate' | 'leader';
  readonly term: number;
  readonly leaderId: number;
  readonly leaderName: string | undefined;
  readonly leaderApiUrl: string | undefined;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly snapshotIndex: number;
  readonly revision: number;
  readonly quorumMet: boolean;
  readonly votersReachable: number;
  readonly votersTotal: number;
  readonly writeQuorum: number;
  readonly failureTolerance: number;
  readonly peers: readonly PeerInfo[];
  readonly storageHealthy: boolean;
  readonly storageError: string | undefined;
  readonly splitBrainWarning: string | undefined;
  readonly startedAt: string;
  readonly version: string;
  /** The cluster feature level as this node computes it: the lowest feature level its members announced (1 for one not heard from); entry format 2 is proposed only at 2 or more. */
  readonly featureLevel: number;
  /** Config keys that must agree across members but differ on a peer (src/node/config-check.ts); empty when all agree. */
  readonly configWarnings?: readonly string[];
  /** Whether this node's Redis connection works; absent when the node does not use Redis. */
  readonly redisConnected?: boolean;
  /** database.mode "external-shared": the fencing token of the current leader (the fence row's value it writes under; 0: none known). */
  readonly fencingToken?: number;
  /** external-shared with coordination "raft": the leader group's Raft term (the fencing token is not the term: ../external/README.md). */
  readonly raftTerm?: number;
  /** Witness mode (src/coord/WITNESS.md): the lease, the in-sync set, and why this node does not lead. */
  readonly witness?: { readonly leading: boolean; readonly epoch: number; readonly inSync: readonly number[]; readonly commitSet: readonly number[]; readonly waiting: string | undefined; readonly redisConnected: boolean; readonly problem: string | undefined };
  /** The virtual IP on this node (cluster.virtualIp), when one is configured (src/node/vip.ts). */
  readonly vip?: VipView;
  /** With cluster.fenceScript: the last fencing of a previous leader; leader work with external effects waits for it. */
  readonly fencing?: FenceView;
}

/** The last run of cluster.fenceScript against the previous leader (src/node/fencing.ts). */
export interface FenceView {
  readonly target: string;
  readonly term: number;
  readonly attempts: number;
  readonly ok: boolean;
  readonly lastError?: string;
}

/** This node's side of the virtual IP: whether it holds the address, or waits / fences before taking it. */
export interface VipView {
  readonly address: string;
  readonly interface: string;
  readonly script: string;
  /** standby: not leading; waiting: leading, waiting out the previous leader's lease; fencing: running fenceScript; holding: on this node; released: handed over in a switchover. */
  readonly state: 'standby' | 'waiting' | 'fencing' | 'holding' | 'released';
  readonly holding: boolean;
  /** When a waiting leader takes the address (ISO). */
  readonly takeAt?: string;
  readonly fence?: FenceView;
  readonly lastError?: string;
  /** T: the kernel lifetime of the address, in seconds, from the leader's last quorum confirmation. */
  readonly leaseSeconds: number;
}

/** The config values the API reads through ClusterControl (a QuorateConfig is one). */
export interface ClusterConfigView {
  readonly cluster: Pick<QuorateConfig['cluster'], 'maxLagOnFailover'>;
  readonly database: Pick<QuorateConfig['database'], 'mode'>;
}

/**
 * This node and the cluster as the API sees them. Errors carry a stable
 * `code` of NODE_ERROR_CODES (src/node/errors.ts; mapped to HTTP in
 * ./errors.ts): not_leader (with leaderApiUrl/leaderName), no_leader,
 * invalid_transfer, transfer_in_progress, transfer_failed,
 * snapshot_in_progress, storage_failed, shutting_down.
 */
/** A certificate the node serves (src/node/certificates.ts): the automatic cluster CA's node certificate or a configured file. */
export interface CertificateInfo {
  /** What it secures: peer traffic, the HTTP API, or both (the auto node certificate with security.apiTls "auto"). */
  readonly cert: 'peer' | 'api' | 'peer+api';
  /** "auto": issued by the cluster CA and renewed every renewPeriodSeconds; "file": a configured certFile nobody renews for you. */
  readonly source: 'auto' | 'file';
  readonly file: string | null;
  /** ISO time it stops being valid (null: unreadable, see error). */
  readonly notAfter: string | null;
  readonly subject: string | null;
  /** security.caRotationSeconds (auto only): an auto certificate with less than this left was not renewed. */
  readonly renewPeriodSeconds?: number;
  readonly error?: string;
}

export interface ClusterControl {
  readonly nodeName: string;
  readonly nodeId: number;
  readonly config: ClusterConfigView;
  /** Witness mode only (src/coord/WITNESS.md): the operator's confirm on this node. */
  readonly witnessConfirm?: ((minEpoch?: number) => Promise<{ epoch: number; inSync: readonly number[] }>) | undefined;

  isLeader(): boolean;
  /** Leader's API URL (undefined when no leader is known or its URL is unknown). */
  leaderApiUrl(): string | undefined;
  status(): NodeStatus;

  /** Planned leadership transfer; `to` is a node name (default: the most caught-up voter). Resolves when the new leader is known. Throws not_leader on a follower. */
  switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }>;
  /** True when at least one voter other than the leader is fully caught up; waits up to waitMs for it. Throws not_leader on a follower. */
  failoverSafe(waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }>;
  /** Prometheus text exposition of this node's metrics. */
  metricsText(): Promise<string>;
  /** Snapshot and compact the log now. */
  snapshotNow(): Promise<{ index: number }>;
  /** The newest `limit` (default all) cluster history records of this node's applied state, oldest first, with the applied index they reflect. */
  clusterHistory(limit?: number): { records: readonly HistoryRecord[]; appliedIndex: number };

  // Membership (src/node/enroll.ts; docs/operations.md runbooks). The three operations run on the leader and throw not_leader elsewhere.
  /** Removed from the cluster: data calls answer 503 `removed`. */
  isRemoved(): boolean;
  /** A one-time join token valid for ttlMs, kept in the leader's memory. */
  createJoinToken(ttlMs?: number): { token: string; expiresAt: string; ttlMs: number };
  /** Enroll a node started with `quorate agent --join-token`: checks it, it joins as a learner, promoted once caught up. Throws enroll_refused with what to do. */
  enroll(req: EnrollRequest): Promise<EnrollResult>;
  /** Remove a member by name; removal_unsafe (with the arithmetic) when the remaining reachable voters could not commit. */
  removeMember(nodeName: string): Promise<{ nodeName: string; nodeId: number; message: string }>;

  // Failover modes, pause, drain (src/node/modes.ts).
  /** The cluster's failover mode, paused, drained nodes, and whether this node campaigns by itself. */
  modes(): ModesInfo;
  /** The certificates this node serves, with their expiry (absent: none to report, e.g. a test double). */
  certificates?(): readonly CertificateInfo[];
  /** An operator's failover on this node: it stands for election; resolves with who leads after it, or throws failover_failed. */
  failoverHere(): Promise<{ campaigned: string; leader: string; term: number; elected: boolean }>;
  /** Leader only (not_leader elsewhere): put a cluster-wide setting in the log and wait until it applies. */
  proposeSetting(c: SettingChange): Promise<void>;
  /** Scheduled switchover, kept in the leader's memory (src/node/scheduled-switchover.ts); each call throws not_leader on a follower. */
  readonly switchoverSchedule?: SwitchoverSchedulePort;
  /** Backups of the replicated state (src/node/backups.ts; routes-backup.ts). */
  readonly backups?: BackupPort;
  /** Restoring a backup into this running cluster through the log (src/node/cluster-restore.ts; POST /v1/cluster/restore). */
  readonly clusterRestore?: ClusterRestorePort;
  /** Leader-only scheduled jobs of the config (src/node/jobs.ts; routes-jobs.ts). */
  readonly jobs?: JobsPort;
  /** Failover mode approval (src/node/approval.ts): the answer to another voter's probe (undefined: bad proof), and a fresh proposal. */
  readonly approval?: {
    probe(proof: string | undefined): object | undefined;
    /** Polls the voters now; `mismatch` says why NAME/term are not the proposal (absent when they are). */
    check(name: string, term: number): Promise<{ proposal: ApprovalInfo; mismatch?: string }>;
  };
}

/** POST /v1/cluster/restore: leader only (not_leader elsewhere); checks the archive, then replaces the data machines' state through the log. */
export interface ClusterRestorePort {
  restore(archive: AsyncIterable<Uint8Array>): Promise<{ restored: true; clusterId: string; backupIndex: number; takenAt: string; index: number; machines: readonly string[]; bytes: number }>;
}

/** One backup archive in a node's backup dir (src/node/backups.ts). */
export interface BackupInfo {
  readonly file: string;
  readonly path: string;
  readonly bytes: number;
  /** ISO time the state was captured (the manifest's). */
  readonly takenAt: string;
  readonly index: number;
  readonly term: number;
  /** scheduled | catch-up | manual | download */
  readonly kind: string;
  readonly takenBy: string;
  readonly clusterId: string;
  /** The scheduler slot of a scheduled run (ISO). */
  readonly slot?: string;
  /** The file is not a readable archive: why. */
  readonly error?: string;
}

export interface BackupPort {
  /** This node's backup dir (database.backup.dir). */
  readonly dir: string;
  /** A consistent backup of this node's applied state (the leader's after a read barrier), streamed; the manifest is at its end. */
  open(): Promise<{ filename: string; index: number; chunks: AsyncIterable<Uint8Array> }>;
  /** Leader only (not_leader elsewhere): write one archive into the backup dir now. backup_in_progress while one is being written. */
  writeToDir(kind: 'manual'): Promise<BackupInfo>;
  /** The archives in this node's backup dir, newest first. */
  list(): Promise<BackupInfo[]>;
}

/** A configured job and where it stands (src/node/jobs.ts). */
export interface JobInfo {
  readonly name: string;
  readonly schedule: string;
  readonly catchUp: 'once' | 'skip';
  readonly timeoutSeconds: number;
  /** The next slot (ISO), by this node's clock. */
  readonly nextRunAt: string | null;
  /** The newest slot claimed (or the slot it was armed at), from the replicated record. */
  readonly lastSlot: string | null;
  /** Runs ever claimed. */
  readonly runs: number;
  /** Running now on this node (meaningful on the leader). */
  readonly running: boolean;
}

/** One run of a job, from the replicated, bounded history. */
export interface JobRunInfo {
  readonly seq: number;
  readonly slot: string;
  /** The leader term that claimed and ran it (its QUORATE_FENCING_TOKEN). */
  readonly term: number;
  readonly node: string;
  /** scheduled | catch-up | manual */
  readonly kind: string;
  readonly startedAt: string;
  readonly endedAt: string | null;
  /** running (or its leader died without a word yet) | ran | failed | timed-out | interrupted | skipped (the slot was decided without a run: catchUp skip, or the previous run was still going) */
  readonly outcome: string;
  readonly exitCode: number | null;
  /** Exit code or reason, and the output tail. */
  readonly message: string | null;
}

export interface JobsPort {
  list(): JobInfo[];
  /** Newest first; undefined for a job not in the config. */
  runs(name: string, limit?: number): JobRunInfo[] | undefined;
  /** Leader only (not_leader elsewhere): claim the current time as a slot and start the job; resolves once started. */
  runNow(name: string): Promise<{ seq: number; slot: string }>;
}

export interface ScheduledSwitchoverInfo {
  readonly to: string | undefined;
  /** Epoch ms. */
  readonly at: number;
  readonly scheduledBy: string | undefined;
  readonly scheduledAt: number;
}

export interface SwitchoverSchedulePort {
  /** Throws switchover_scheduled when one is pending, invalid_transfer for a past time or an unknown target. */
  schedule(at: number, to: string | undefined, by?: string): ScheduledSwitchoverInfo;
  current(): { scheduled: ScheduledSwitchoverInfo | undefined; last: (ScheduledSwitchoverInfo & { outcome: { ok: boolean; from: string; to?: string; term?: number; pauseMs?: number; error?: { code: string; message: string } } }) | undefined };
  /** The cancelled schedule, or undefined when none was pending. */
  cancel(by?: string): ScheduledSwitchoverInfo | undefined;
}

export type SettingChange =
  | { readonly key: 'failover'; readonly value: 'automatic' | 'manual' | 'approval' }
  | ({ readonly key: 'paused'; readonly value: boolean } & HoldChange)
  | ({ readonly key: 'drained'; readonly nodeName: string; readonly value: boolean } & HoldChange);

/** A pause's or drain's operator reason and expiry (ms since the epoch); cluster feature level 3. */
export interface HoldChange {
  readonly reason?: string;
  readonly expiresAt?: number;
}

/** A pause's or drain's reason, expiry and start (ms since the epoch, the leader's clock). */
export interface HoldInfo extends HoldChange {
  readonly since: number;
}

export interface ModesInfo {
  readonly failoverMode: 'automatic' | 'manual' | 'approval';
  readonly failoverModeSource: 'replicated' | 'file';
  readonly paused: boolean;
  readonly drained: readonly string[];
  /** The pause's reason and expiry, when given. */
  readonly pause?: HoldInfo;
  /** Drained nodes' reasons and expiries, for those given one. */
  readonly drains?: Readonly<Record<string, HoldInfo>>;
  readonly autoFailover: boolean;
  readonly notice: string | undefined;
  /** Failover mode approval with no leader known: the proposal. */
  readonly approval?: ApprovalInfo;
}

/** The proposed candidate and term (null while there is none; `reason` says why), and the exact command. */
export interface ApprovalInfo {
  readonly candidate: string | null;
  readonly term: number | null;
  /** When this node first computed this (candidate, term) (ISO time). */
  readonly since: string | null;
  /** The exact command to run. */
  readonly command: string | null;
  readonly reason?: string;
  /** The voters that answered (this node included), as seen. */
  readonly seen: readonly { nodeName: string; term: number; lastTerm: number; lastIndex: number; eligible: boolean }[];
}

export interface EnrollRequest {
  readonly apiUrl: string;
  readonly peerUrl: string;
  readonly role: 'voter' | 'observer' | 'dr';
  readonly force: boolean;
}

export interface EnrollResult {
  readonly nodeName: string;
  readonly nodeId: number;
  readonly role: 'voter' | 'observer' | 'dr';
  readonly catchUpTo: number;
  /** Where the joiner moved its old data (null when its data dir was fresh). */
  readonly backupDir: string | null;
  readonly warnings: string[];
}

export interface ProposeOptions {
  readonly idempotencyKey?: string;
  /** How long to wait for the entry to apply before answering commit_unknown. */
  readonly timeoutMs?: number;
}

/**
 * The KV as a service. Reads (the KvReader surface) are of this node's copy,
 * as of now; `propose` and `readBarrier` run on the leader and throw
 * not_leader elsewhere (the API then forwards). Errors carry a stable `code`
 * of NODE_ERROR_CODES: not_leader, no_leader, quorum_not_met,
 * commit_unknown, proposal_dropped, overloaded (with retryAfterMs),
 * entry_too_large, storage_failed, shutting_down.
 *
 * Reads are synchronous: the dump route reads appliedIndex, revision and
 * checksum in one tick, and a watch replays its history inside watch() so a
 * compacted start can still answer 410.
 */
export interface KvService extends KvReader {
  /** Apply a command (put, delete, txn); resolves with the applied result (a revision mismatch is a result, not an error). */
  propose(command: Command, options?: ProposeOptions): Promise<ApplyResult>;
  /** Linearizable read barrier: resolves once this node's copy reflects every write acknowledged before the call. */
  readBarrier(timeoutMs?: number): Promise<void>;
}

/** An SQL parameter or value of a statement (blobs as bytes). */
export type SqlParamValue = null | number | string | Uint8Array;

export interface SqlExecuteRequest {
  readonly statements: readonly { readonly sql: string; readonly params: readonly SqlParamValue[] }[];
  /** true: all statements or none; false: each on its own, stopping at the first that fails. */
  readonly transaction: boolean;
}

/** The limits the SQL service enforces (named in its errors; docs/api.md). */
export interface SqlServiceLimits {
  readonly statementBytes: number;
  readonly statementsPerRequest: number;
  readonly paramsPerStatement: number;
  readonly queryRows: number;
  readonly queryBytes: number;
  readonly queryTimeoutMs: number;
}

/**
 * Replicated SQL (src/node/sql-service.ts, src/sql). `execute` runs on the
 * leader and throws not_leader elsewhere (the API forwards); `query` reads
 * this node's copy as of now (after `readBarrier` for a linearizable read).
 * Errors carry codes sql_refused, sql_error, sql_result_too_large,
 * sql_query_timeout, sql_unavailable, overloaded, and the node's codes.
 */
export interface SqlService {
  readonly limits: SqlServiceLimits;
  /** Whose SQL the statements are: the replicated SQLite machine (absent), or PostgreSQL's (external-shared mode, src/external/pg-sql.ts). */
  readonly dialect?: 'postgresql';
  /** Resolves with the applied result: `{sql: [...]}` (with `failed` when a statement failed deterministically) or an idempotency/invalid-command error result. */
  execute(req: SqlExecuteRequest, options?: ProposeOptions): Promise<ApplyResult>;
  query(sql: string, params: readonly SqlParamValue[]): Promise<{ columns: string[]; rows: unknown[][] }>;
  /** Linearizable: resolves once this node's database reflects every write acknowledged before the call. */
  readBarrier(timeoutMs?: number): Promise<void>;
  /** Content checksum of the database at the applied index it names. */
  checksum(): Promise<{ appliedIndex: number; checksum: string }>;
}

/**
 * DR promotion and isolation (src/node/promotion.ts, src/node/isolate.ts;
 * docs/operations.md "DR promotion and failback", "Isolate a node"). A
 * separate port: the API serves these routes only when the server was given it.
 */
export interface DrControl {
  /** Make this DR node the only voter of a new cluster generation; throws promotion_refused with the reason. */
  promoteDr(req: { nodeName: string; force: boolean }): Promise<PromotionResult>;
  /** Leader only (throws not_leader elsewhere): remove a suspected-compromised node and rotate the cluster secret. */
  isolate(nodeName: string): Promise<{ nodeName: string; nodeId: number; removed: string; secretRotated: boolean; message: string }>;
}

/** What promote-dr answers: the lag at promotion and what the new configuration dropped. */
export interface PromotionResult {
  readonly nodeName: string;
  readonly generation: number;
  readonly previousGeneration: number;
  /** Replication lag at promotion: entries committed but never received, ms between the last time this node held everything it had heard committed and the last commit index heard (lastCommitHeard, at lastHeardAt); lastIndex = its own log's end. */
  readonly lag: { readonly entries: number; readonly ms: number; readonly lastCommitHeard: number; readonly lastHeardAt: string | null; readonly lastIndex: number };
  readonly oldVoters: { readonly total: number; readonly reachable: readonly string[] };
  readonly dropped: readonly string[];
  /** Entries of this node's log not known committed: kept, and committed in the new generation. */
  readonly notKnownCommitted: { readonly from: number; readonly to: number; readonly count: number };
  readonly forced: boolean;
  readonly message: string;
}
