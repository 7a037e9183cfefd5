// Leadership transfer (§3.10): catch the transferee up, then TimeoutNow;
// aborted after transferTicks. And the observer stand-in, which leads only to
// hand over to a voter by the same transfer.
import { InvalidTransfer, NotLeader } from './errors.js';
import type { RaftCore } from './core.js';
import { roleOf, votingIds } from './membership.js';
import { sendAppend } from './replication.js';
import { WITNESS_TRANSFER_REFUSED } from './witness.js';
import type { NodeId } from './types.js';
import { NONE } from './types.js';

/** Leaderless election timeouts before an observer stands in (see mayStandIn). */
const OBSERVER_STAND_IN_TIMEOUTS = 3;

/** RawNode.transferLeadership: validate (throws NotLeader, InvalidTransfer), then start unless already under way. */
export function transferLeadership(c: RaftCore, to: NodeId): void {
  if (c.role !== 'leader') throw new NotLeader(c.lead);
  if (c.cfg.witness) throw new InvalidTransfer(WITNESS_TRANSFER_REFUSED);
  if (to === c.id) throw new InvalidTransfer(`node ${to} is already the leader`);
  const role = roleOf(c.log.membership(), to);
  if (role !== 'voter') {
    throw new InvalidTransfer(role === undefined ? `node ${to} is not a member` : `node ${to} is ${role === 'observer' ? 'an observer' : 'a learner'} and may not lead`);
  }
  if (c.leadTransferee === to) return;
  startTransfer(c, to);
}

function startTransfer(c: RaftCore, to: NodeId): void {
  c.leadTransferee = to;
  c.transferElapsed = 0;
  c.electionElapsed = 0;
  const pr = c.prs.get(to)!;
  if (pr.match === c.log.lastIndex()) c.send({ type: 'timeoutNow', to, term: c.term, index: c.log.lastIndex() });
  else sendAppend(c, to, true);
}

export function abortTransfer(c: RaftCore): void {
  c.leadTransferee = NONE;
  c.transferElapsed = 0;
}

/**
 * An observer's last resort. Observers vote and count toward the quorum, so
 * an entry held only by a dead leader and an observer can be committed, and
 * then no voter can win a vote (the observer's log is more up to date than
 * theirs). After OBSERVER_STAND_IN_TIMEOUTS election timeouts in a row
 * without a leader, an observer campaigns itself; once elected it serves no
 * proposals and hands leadership to the most caught-up voter
 * (tickLeader in ./ticks.ts). Voters campaign after one timeout, so where a voter can
 * win, it does first. The vote rule is unchanged, so safety is too.
 */
export function mayStandIn(c: RaftCore): boolean {
  return roleOf(c.log.membership(), c.id) === 'observer' && !c.withholdsVote() &&
    c.leaderlessTimeouts >= OBSERVER_STAND_IN_TIMEOUTS;
}

/** A stand-in leader (an observer) hands over to the reachable voter with the longest log. */
export function handOff(c: RaftCore): void {
  let best: NodeId = NONE;
  let bestMatch = -1;
  for (const id of votingIds(c.log.membership())) {
    if (roleOf(c.log.membership(), id) !== 'voter') continue;
    const pr = c.prs.get(id);
    if (!pr || !pr.recentActive) continue;
    if (pr.match > bestMatch) {
      best = id;
      bestMatch = pr.match;
    }
  }
  if (best !== NONE) startTransfer(c, best);
}
