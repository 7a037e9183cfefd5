// The logical clock: what an election timeout does on a follower or
// candidate (campaign, or not: witness mode, autoCampaign off, observers
// before their stand-in), and a leader's tick (transfer timeout, hand-off,
// CheckQuorum, heartbeats).
import type { RaftCore } from './core.js';
import { campaign } from './elections.js';
import { isVoting, roleOf, votingIds } from './membership.js';
import { majority } from './quorum.js';
import { bcastHeartbeat } from './replication.js';
import { abortTransfer, handOff, mayStandIn } from './transfer.js';
import { NONE } from './types.js';

export function tickElection(c: RaftCore): void {
  c.electionElapsed++;
  if (c.electionElapsed >= c.randomizedElectionTimeout) {
    c.electionElapsed = 0;
    if (c.cfg.witness) {
      // No elections: a leader is appointed through the witness.
      c.lead = NONE;
      return;
    }
    if (!c.autoCampaign && c.commit > 0) {
      // Manual failover / paused / drained: no election of our own.
      if (c.role !== 'follower') c.becomeFollower(c.term, NONE);
      else c.lead = NONE;
      return;
    }
    c.leaderlessTimeouts++;
    if (c.mayCampaign() || mayStandIn(c)) campaign(c, c.cfg.preVote ? 'pre' : 'election');
    else c.resetTimers();
  }
}

export function tickLeader(c: RaftCore): void {
  c.heartbeatElapsed++;
  c.electionElapsed++;
  if (c.leadTransferee !== NONE && ++c.transferElapsed >= c.cfg.transferTicks) {
    abortTransfer(c);
  }
  if (c.leadTransferee === NONE && !c.promotable()) handOff(c);
  if (c.electionElapsed >= c.cfg.electionTicks) {
    c.electionElapsed = 0;
    if (c.cfg.checkQuorum && !c.cfg.witness) {
      if (reachableVoters(c) < majority(votingIds(c.log.membership()).length)) {
        c.becomeFollower(c.term, NONE);
        return;
      }
      for (const pr of c.prs.values()) pr.recentActive = false;
    }
  }
  if (c.heartbeatElapsed >= c.cfg.heartbeatTicks) {
    c.heartbeatElapsed = 0;
    bcastHeartbeat(c);
  }
}

/** Voters (self included) heard from within the last election timeout, for status reports. */
export function votersInContact(c: RaftCore): number {
  const m = c.log.membership();
  let n = isVoting(roleOf(m, c.id)) ? 1 : 0;
  for (const [id, pr] of c.prs) if (pr.ticksSinceContact <= c.cfg.electionTicks && isVoting(roleOf(m, id))) n++;
  return n;
}

function reachableVoters(c: RaftCore): number {
  const m = c.log.membership();
  let n = isVoting(roleOf(m, c.id)) ? 1 : 0;
  for (const [id, pr] of c.prs) if (pr.recentActive && isVoting(roleOf(m, id))) n++;
  return n;
}
