// DR promotion on the running DR node (`POST /v1/cluster/promote-dr`,
// `quorate promote-dr --node NAME --confirm`): the checks, the replication
// lag at promotion, then the rewrite of ./generation.ts on this node's own
// data dir while its node is stopped (the agent's NodeHost restarts it, the
// HTTP API stays up). See docs/operations.md "DR promotion and failback".
import type { Logger } from 'pino';
import { isVoting, majority, type Membership, type NodeId } from '../raft/index.js';
import { NodeError } from './errors.js';
import { describeLoss, forceNewCluster, type ForceNewClusterReport } from './generation.js';
import type { PromotionResult } from '../api/ports.js';

export type { PromotionResult } from '../api/ports.js';

/**
 * How far behind the cluster this node's log is: the highest commit index a
 * leader told it (app and heartbeat messages), when it heard it, and the last
 * time its own log held every entry up to the commit index it had heard of.
 */
export class LagTracker {
  #heardCommit = 0;
  #heardAt: number | undefined;
  #lastIndex = 0;
  #caughtUpAt: number | undefined;

  /** A leader's commit index, from a message it sent. */
  heard(commit: number, now = Date.now()): void {
    if (commit > this.#heardCommit) this.#heardCommit = commit;
    this.#heardAt = now;
    this.#check(now);
  }

  /** This node's log now ends at `lastIndex` (persisted entries or an installed snapshot). */
  appended(lastIndex: number, now = Date.now()): void {
    this.#lastIndex = Math.max(this.#lastIndex, lastIndex);
    this.#check(now);
  }

  #check(now: number): void {
    if (this.#lastIndex >= this.#heardCommit) this.#caughtUpAt = now;
  }

  /**
   * Entries and milliseconds behind the last commit index heard of: the
   * entries are those committed but never received; the milliseconds run
   * from the last time the log held everything heard committed to the last
   * time a commit index was heard (0 when nothing is missing).
   */
  report(lastIndex: number): { entries: number; ms: number; lastCommitHeard: number; lastHeardAt: string | null; lastIndex: number } {
    this.appended(lastIndex);
    const entries = Math.max(0, this.#heardCommit - this.#lastIndex);
    const ms = entries === 0 || this.#heardAt === undefined ? 0 : Math.max(0, this.#heardAt - (this.#caughtUpAt ?? this.#heardAt));
    return { entries, ms, lastCommitHeard: this.#heardCommit, lastHeardAt: this.#heardAt === undefined ? null : new Date(this.#heardAt).toISOString(), lastIndex: this.#lastIndex };
  }
}

export interface PromotionDeps {
  readonly log: Logger;
  readonly nodeName: string;
  readonly nodeId: NodeId;
  readonly dataDir: string;
  readonly configuredRole: string;
  readonly lag: LagTracker;
  membership(): Membership;
  lastIndex(): number;
  nameOf(id: NodeId): string;
  /** Is member `id` reachable from here now (its API answers, or a peer connection is up)? */
  reachable(id: NodeId): Promise<boolean>;
  /** Stop this node, run `rewrite` on its stopped data dir, start it again (the agent's NodeHost); absent: not supported by this process. */
  readonly restart: ((rewrite: () => Promise<void>) => Promise<void>) | undefined;
}

let promoting = false;

/** Promote this DR node: the only voter of a new cluster generation. */
export async function promoteDr(d: PromotionDeps, req: { nodeName: string; force: boolean }): Promise<PromotionResult> {
  if (req.nodeName !== d.nodeName) throw new NodeError('promotion_refused', `this is ${d.nodeName}, not ${req.nodeName}: send promote-dr to the DR node itself (quorate promote-dr --url ITS_API_URL --node ${req.nodeName} --confirm)`);
  const m = d.membership();
  const self = m.members.find((x) => x.id === d.nodeId);
  if (self === undefined || self.role !== 'learner' || d.configuredRole !== 'dr') {
    throw new NodeError('promotion_refused', `${d.nodeName} is not a DR node (membership role ${self?.role ?? 'none'}, node.role ${d.configuredRole}): only a node with node.role "dr" is promoted; nothing was changed`);
  }
  if (d.restart === undefined) throw new NodeError('promotion_refused', 'this process cannot restart its node (promotion runs in `quorate agent`); nothing was changed');
  if (promoting) throw new NodeError('conf_change_in_progress', `a promotion of ${d.nodeName} is already under way`);
  promoting = true;
  try {
    const voters = m.members.filter((x) => isVoting(x.role) && x.id !== d.nodeId);
    const reachable = (await Promise.all(voters.map(async (v) => ((await d.reachable(v.id)) ? d.nameOf(v.id) : undefined)))).filter((x): x is string => x !== undefined);
    const quorum = majority(voters.length);
    if (reachable.length >= quorum && !req.force) {
      throw new NodeError('promotion_refused',
        `${reachable.length} of the ${voters.length} old voters (${reachable.join(', ')}) are reachable from ${d.nodeName}, a quorum of ${quorum}: the primary site may still be serving. ` +
        'Use `quorate switchover` there instead, or stop those nodes first; pass --force only if you know they are cut off from their clients; nothing was changed',
        { reachable: reachable.join(','), quorum });
    }
    const lag = d.lag.report(d.lastIndex());
    let report: ForceNewClusterReport | undefined;
    d.log.warn({ event: 'promotion_started', lag, reachable, forced: req.force }, `promoting ${d.nodeName}: ${lag.entries} entries (${lag.ms} ms) behind the last commit index heard of (${lag.lastCommitHeard}); stopping the node to rewrite its membership`);
    await d.restart(async () => {
      report = await forceNewCluster({ dataDir: d.dataDir, kind: 'promote-dr', nodeId: d.nodeId });
    });
    const r = report!;
    const message = `${d.nodeName} is the primary of generation ${r.generation.to}; it was ${lag.entries} entries (${lag.ms} ms) behind the last commit index it had heard of (${lag.lastCommitHeard}). ` +
      `Point clients at it; enroll the old nodes back when their site returns (docs/operations.md "DR promotion and failback")`;
    d.log.warn({ event: 'promoted', generation: r.generation.to, lag, loss: describeLoss(r) }, message);
    return {
      nodeName: d.nodeName, generation: r.generation.to, previousGeneration: r.generation.from, lag,
      oldVoters: { total: voters.length, reachable }, dropped: r.dropped, notKnownCommitted: r.notKnownCommitted, forced: req.force, message,
    };
  } finally {
    promoting = false;
  }
}
