// Elections: pre-vote and vote campaigns, the tally, the vote rule
// (§5.4.1 up-to-date check, §4.2.3 lease, the crossed pre-vote tie-break,
// amnesiac nodes that withhold their vote), and becoming leader.
import { invariant } from './errors.js';
import type { RaftCore } from './core.js';
import { votingIds } from './membership.js';
import { majority } from './quorum.js';
import { appendEntry, syncProgress } from './replication.js';
import type { Message, MessageType } from './types.js';
import { NONE } from './types.js';

/** Vote/preVote context marking a leadership transfer (bypasses the leader lease). */
export const CTX_TRANSFER = 1;
const EMPTY = new Uint8Array(0);

export function becomeLeader(c: RaftCore): void {
  invariant(c.role === 'candidate', 'only a candidate becomes leader');
  c.reset(c.term);
  c.role = 'leader';
  c.lead = c.id;
  c.leaderlessTimeouts = 0;
  syncProgress(c);
  for (const pr of c.prs.values()) pr.recentActive = true;
  // Entries past the commit index from earlier terms count toward the bound
  // too, so it holds across leader changes.
  c.uncommittedBytes = c.log.bytesAfter(c.commit);
  // The no-op of the new term: committing it commits everything before it
  // (§5.4.2) and opens ReadIndex and membership changes.
  appendEntry(c, 'normal', EMPTY);
}

export function campaign(c: RaftCore, kind: 'pre' | 'election' | 'transfer'): void {
  const voters = votingIds(c.log.membership());
  let term: number;
  let type: MessageType;
  if (kind === 'pre') {
    c.reset(c.term);
    c.role = 'preCandidate';
    term = c.term + 1;
    type = 'preVote';
  } else {
    c.reset(c.term + 1);
    c.lastCampaign = kind === 'transfer' ? 'transfer' : 'election';
    c.role = 'candidate';
    c.vote = c.id;
    term = c.term;
    type = 'vote';
  }
  c.votes.set(c.id, true);
  if (tally(c) === 'won') {
    wonElection(c);
    return;
  }
  for (const id of voters) {
    if (id === c.id) continue;
    c.send({
      type,
      to: id,
      term,
      index: c.log.lastIndex(),
      logTerm: c.log.lastTerm(),
      context: kind === 'transfer' ? CTX_TRANSFER : 0,
    });
  }
}

function wonElection(c: RaftCore): void {
  if (c.role === 'preCandidate') campaign(c, 'election');
  else becomeLeader(c);
}

function tally(c: RaftCore): 'won' | 'lost' | 'pending' {
  const voters = votingIds(c.log.membership());
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = c.votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const q = majority(voters.length);
  if (granted >= q) return 'won';
  if (rejected > voters.length - q) return 'lost';
  return 'pending';
}

export function handleVoteRequest(c: RaftCore, m: Message): void {
  const isPre = m.type === 'preVote';
  if (c.cfg.witness) {
    c.send({ type: isPre ? 'preVoteResp' : 'voteResp', to: m.from, term: c.term, reject: true });
    return;
  }
  const canVote =
    c.vote === m.from ||
    (c.vote === NONE && c.lead === NONE) ||
    (isPre && m.term > c.term);
  const upToDate =
    c.cfg.mutation === 'voteWithoutLogCheck' ||
    m.logTerm > c.log.lastTerm() ||
    (m.logTerm === c.log.lastTerm() && m.index >= c.log.lastIndex());
  // Two followers that lose the leader at the same moment pre-vote at once
  // and would grant each other, then split the real vote and wait a whole
  // election timeout. A pre-candidate whose log is exactly as up to date
  // yields only to a lower id, so one of them goes on. (Pre-votes change no
  // state; the real vote keeps every check.)
  const crossedPreVote = isPre && c.role === 'preCandidate' && m.from > c.id &&
    m.logTerm === c.log.lastTerm() && m.index === c.log.lastIndex();
  const respType = isPre ? 'preVoteResp' : 'voteResp';
  if (canVote && upToDate && !crossedPreVote && !c.withholdsVote()) {
    c.send({ type: respType, to: m.from, term: m.term });
    if (!isPre) {
      c.electionElapsed = 0;
      c.vote = m.from;
    }
  } else {
    c.send({ type: respType, to: m.from, term: c.term, reject: true });
  }
}

export function stepCandidate(c: RaftCore, m: Message): void {
  switch (m.type) {
    case 'voteResp':
    case 'preVoteResp': {
      if ((m.type === 'voteResp') !== (c.role === 'candidate')) return;
      c.votes.set(m.from, !m.reject);
      const r = tally(c);
      if (r === 'won') wonElection(c);
      else if (r === 'lost') c.becomeFollower(c.term, NONE);
      return;
    }
    default:
      return;
  }
}
