// The surface the HTTP API (src/api) uses to reach one running node. The
// node (src/node/node.ts) implements it; the API never touches raft, storage
// or transport directly.
import type { QuorateConfig } from '../config/index.js';
import type { ApplyResult, Command, KvReader } from '../state/index.js';

/** rejoining: a member that came back with a new data dir, a non-voting learner until it has caught up. */
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
}

export interface ProposeOptions {
  readonly idempotencyKey?: string;
  /** How long to wait for the entry to apply before answering commit_unknown. */
  readonly timeoutMs?: number;
}

/**
 * Errors thrown by NodeHandle methods carry a stable `code` (mapped to HTTP in
 * src/api/errors.ts): not_leader (with leaderApiUrl/leaderName), no_leader,
 * quorum_not_met, commit_unknown, overloaded (with retryAfterMs),
 * proposal_dropped, transfer_in_progress, invalid_transfer, shutting_down,
 * storage_failed, timeout.
 */
export interface NodeHandle {
  readonly config: QuorateConfig;
  readonly nodeName: string;
  readonly nodeId: number;
  /** Reads of the replicated KV (writes go through propose). */
  readonly kv: KvReader;

  isLeader(): boolean;
  /** Leader's API URL (undefined when no leader is known or its URL is unknown). */
  leaderApiUrl(): string | undefined;
  status(): NodeStatus;

  /** Propose a KV command on the leader; resolves with the applied result. Throws not_leader on a follower. */
  propose(command: Command, options?: ProposeOptions): Promise<ApplyResult>;
  /** Linearizable read barrier (ReadIndex) on the leader: resolves once local state reflects every write acknowledged before the call. */
  readBarrier(timeoutMs?: number): Promise<void>;

  /** Planned leadership transfer; `to` is a node name (default: the most caught-up voter). Resolves when the new leader is known. */
  switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }>;
  /** True when at least one voter other than the leader is fully caught up; waits up to waitMs for it. */
  failoverSafe(waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }>;
  /** Prometheus text exposition of this node's metrics. */
  metricsText(): string;
  /** Snapshot and compact the log now. */
  snapshotNow(): Promise<{ index: number }>;
}
