// Linearizable reads on the leader (ReadIndex, dissertation §6.4): a read
// is registered at the commit index once an entry of the leader's term has
// committed, and released when a quorum (witness mode: the commit set) has
// acknowledged a heartbeat round sent after it; with the lease option, or a
// leader alone, it is served at once.
import type { RaftCore } from './core.js';
import { votingIds } from './membership.js';
import { majority } from './quorum.js';

/** RawNode.readIndex on a leader: register now, or once this term's first entry commits. */
export function requestRead(c: RaftCore, ctx: number): void {
  if (c.log.term(c.commit) !== c.term) {
    // §6.4: the commit index is only known to be current once an entry of
    // this term has committed.
    c.readsAwaitingTermCommit.push(ctx);
    return;
  }
  registerRead(c, ctx);
}

export function registerRead(c: RaftCore, ctx: number): void {
  const voters = votingIds(c.log.membership());
  const selfVotes = voters.includes(c.id) ? 1 : 0;
  const alone = c.cfg.witness ? c.witness.readsAlone() : selfVotes === 1 && voters.length === 1;
  if ((c.cfg.readOnly === 'lease' && !c.cfg.witness) || alone) {
    c.readStates.push({ index: c.commit, ctx });
    return;
  }
  // One heartbeat round per Ready confirms every read registered before it.
  if (!c.readHeartbeatPending) c.readRound++;
  c.readHeartbeatPending = true;
  c.pendingReads.push({ ctx, index: c.commit, round: c.readRound });
}

export function releaseReads(c: RaftCore): void {
  const m = c.log.membership();
  // Witness mode: every member of the commit set confirms this leader's epoch
  // (one that took a higher epoch would answer with it instead).
  const voters = c.cfg.witness ? c.witness.readConfirmers() : votingIds(m);
  const q = c.cfg.witness ? voters.length : majority(voters.length);
  while (c.pendingReads.length > 0) {
    const r = c.pendingReads[0]!;
    let acks = voters.includes(c.id) ? 1 : 0;
    for (const id of voters) {
      if (id !== c.id && (c.prs.get(id)?.readAckRound ?? 0) >= r.round) acks++;
    }
    if (acks < q) break;
    c.pendingReads.shift();
    c.readStates.push({ index: r.index, ctx: r.ctx });
  }
}
