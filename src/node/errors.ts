// Errors a running node reports to the API layer. `code` is stable and mapped
// to an HTTP status in one table (src/api/errors.ts, ERROR_STATUS); that table
// must have an entry for every code below or the build fails.

/**
 * Every code a NodeError can carry. Raft errors reach the API only through
 * the node's #mapRaftError, which maps each one to a code of this list (a
 * broken invariant is the exception: it is fatal, never a client error).
 */
export const NODE_ERROR_CODES = [
  // Leadership and quorum.
  'not_leader',
  'no_leader',
  'quorum_not_met',
  // Writes.
  'commit_unknown',
  'proposal_dropped',
  'overloaded',
  'entry_too_large',
  // Leadership transfer (switchover).
  'invalid_transfer',
  'transfer_in_progress',
  'transfer_failed',
  // The switchover target is behind (the message names by how much) or not in contact.
  'target_not_caught_up',
  // A scheduled switchover is already pending (src/node/scheduled-switchover.ts).
  'switchover_scheduled',
  // An operator's failover elected no leader (src/node/modes.ts).
  'failover_failed',
  // Membership changes.
  'conf_change_in_progress',
  'invalid_conf_change',
  // Enroll and remove (src/node/enroll.ts).
  'enroll_refused',
  'removal_unsafe',
  // DR promotion refused: not a DR node, or a quorum of the old voters is still reachable (./promotion.ts).
  'promotion_refused',
  // This node was removed from the cluster: it serves no data.
  'removed',
  // Snapshots.
  'snapshot_in_progress',
  // Backups (src/node/backups.ts): one is being written into the backup dir now.
  'backup_in_progress',
  // Managed API tokens (src/node/security.ts): the name is taken; the bound is reached.
  'token_exists',
  'too_many_tokens',
  // A replicated feature (queues, locks, outbox, tokens, audit) needs a higher cluster feature level (a member runs an older build).
  'feature_unavailable',
  // `quorate ca rotate` (./ca-rotate.ts): the previous rotation's grace is still open, or this node does not use the cluster CA.
  'ca_rotation_refused',
  // Jobs (src/node/scheduler.ts): the job is running now, or its slot could not be claimed.
  'job_running',
  // Drills (./drills.ts): drills.enabled is false in this node's config.
  'drills_disabled',
  // The node itself.
  'storage_failed',
  'shutting_down',
] as const;

export type NodeErrorCode = (typeof NODE_ERROR_CODES)[number];

export function isNodeErrorCode(code: unknown): code is NodeErrorCode {
  return typeof code === 'string' && (NODE_ERROR_CODES as readonly string[]).includes(code);
}

export class NodeError extends Error {
  readonly code: NodeErrorCode;
  readonly extra: Readonly<Record<string, unknown>>;
  constructor(code: NodeErrorCode, message: string, extra: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NodeError';
    this.code = code;
    this.extra = extra;
  }
}

export function notLeader(leaderName: string | undefined, leaderApiUrl: string | undefined): NodeError {
  if (leaderName === undefined) {
    return new NodeError('no_leader', 'no leader is known right now (an election may be in progress); retry in a moment and check `quorate status`');
  }
  return new NodeError('not_leader', `this node is not the leader; ${leaderName} leads`, {
    leaderName,
    ...(leaderApiUrl ? { leaderApiUrl } : {}),
  });
}
