// The follower's side: accepting a leader's appends (with fast
// backtracking on a mismatch), heartbeats (commit, and telling the leader
// about a lost log tail), snapshots, and TimeoutNow.
import { invariant } from './errors.js';
import type { RaftCore } from './core.js';
import { campaign } from './elections.js';
import type { Message } from './types.js';

/** A message from the leader of this term: it is the leader, and the election timer starts again. */
function heardFromLeader(c: RaftCore, m: Message): void {
  c.electionElapsed = 0;
  c.lead = m.from;
  c.leaderCommitSeen = m.commit;
  c.leaderlessTimeouts = 0;
}

export function stepFollower(c: RaftCore, m: Message): void {
  switch (m.type) {
    case 'app':
      heardFromLeader(c, m);
      handleAppend(c, m);
      return;
    case 'heartbeat':
      heardFromLeader(c, m);
      if (m.commit > c.commit) c.commitTo(Math.min(m.commit, c.log.lastIndex()));
      if (m.commit > c.log.lastIndex()) {
        // The leader knows we acknowledged entries we no longer hold (a lost
        // log tail): say so, with where our log ends, so it re-replicates.
        c.send({ type: 'heartbeatResp', to: m.from, term: c.term, context: m.context, reject: true, rejectHint: c.log.lastIndex() });
      } else {
        c.send({ type: 'heartbeatResp', to: m.from, term: c.term, context: m.context });
      }
      return;
    case 'snap':
      heardFromLeader(c, m);
      handleSnapshot(c, m);
      return;
    case 'timeoutNow':
      // Observers and learners refuse to lead. A TimeoutNow carries the
      // leader's last index when it was sent; a late one (its transfer may have
      // been aborted) reaching a node whose log is behind that is ignored
      // rather than forcing an election it cannot win.
      if (!c.cfg.witness && c.mayCampaign() && c.log.lastIndex() >= m.index) campaign(c, 'transfer');
      return;
    default:
      return;
  }
}

function handleAppend(c: RaftCore, m: Message): void {
  if (m.index < c.commit) {
    c.send({ type: 'appResp', to: m.from, term: c.term, index: c.commit });
    return;
  }
  if (c.log.matchTerm(m.index, m.logTerm)) {
    const lastNew = m.index + m.entries.length;
    const conflict = c.log.findConflict(m.entries);
    if (conflict !== 0) {
      invariant(conflict > c.commit, () => `leader ${m.from} overwrites committed entry ${conflict} (commit ${c.commit})`);
      c.log.append(m.entries.slice(conflict - m.index - 1), c.commit);
    }
    c.commitTo(Math.min(m.commit, lastNew));
    c.send({ type: 'appResp', to: m.from, term: c.term, index: lastNew });
    return;
  }
  // Fast backtracking: point the leader at the last index whose term is not
  // above the leader's prevLogTerm, skipping a whole divergent term at once.
  const hint = c.log.findConflictByTerm(Math.min(m.index, c.log.lastIndex()), m.logTerm);
  c.send({
    type: 'appResp',
    to: m.from,
    term: c.term,
    index: m.index,
    reject: true,
    rejectHint: hint,
    logTerm: c.log.term(hint) ?? 0,
  });
}

function handleSnapshot(c: RaftCore, m: Message): void {
  const s = m.snapshot;
  if (!s) return;
  if (s.index <= c.commit) {
    c.send({ type: 'appResp', to: m.from, term: c.term, index: c.commit });
    return;
  }
  if (c.log.matchTerm(s.index, s.term)) {
    // We already hold the snapshot's entries: fast-forward the commit index.
    c.commitTo(s.index);
    c.send({ type: 'appResp', to: m.from, term: c.term, index: c.commit });
    return;
  }
  c.log.restore(s);
  c.commit = s.index;
  c.applied = s.index;
  c.snapshotRequestedAt = s.index;
  c.pendingSnapshotInstall = s;
  c.send({ type: 'appResp', to: m.from, term: c.term, index: s.index });
}
