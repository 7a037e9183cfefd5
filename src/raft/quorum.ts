// Quorum arithmetic, in one place: the core (elections, commits, CheckQuorum)
// and the node (status, health, failover-safety) use these and nothing else.
// Pure functions of counts; see quorum.test.ts for the table.

/** Votes needed to elect a leader (and to keep leading under CheckQuorum) among `voters`. */
export function majority(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/**
 * Acknowledgements (the leader's own included) a write needs: a majority, or
 * the configured `database.writeQuorum` when that is larger, but never more
 * than there are voters. Unset (or 0) means a majority.
 */
export function writeQuorum(voters: number, configured: number | undefined): number {
  if (voters <= 0) return 0;
  return Math.min(voters, Math.max(majority(voters), configured ?? 0));
}

/**
 * How many more voters the cluster can lose *now* and still commit writes:
 * reachable voters beyond the write quorum (0 when it is already at, or
 * below, the quorum). Three voters, one down, majority quorum: 0.
 */
export function failureTolerance(reachableVoters: number, quorum: number): number {
  return Math.max(0, reachableVoters - quorum);
}

/** Whether `reachableVoters` meet `quorum` (an empty voter set never does). */
export function quorumMet(reachableVoters: number, quorum: number): boolean {
  return quorum > 0 && reachableVoters >= quorum;
}
