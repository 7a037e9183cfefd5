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
  // Every read registered before a round is sent waits for that round: one
  // heartbeat to each peer confirms them all (closeReadRound).
  c.readHeartbeatPending = true;
  c.pendingReads.push({ ctx, index: c.commit, round: c.readRound + 1 });
}

/**
 * Whether the leader sends the next read round now: reads wait for it, and
 * no earlier round is still unconfirmed. With one round in flight at a time,
 * a busy leader sends one heartbeat per peer per round trip, not per Ready,
 * and the reads that arrive meanwhile share the next round. A lost heartbeat
 * or response stalls the round only until the periodic heartbeat, which
 * carries the same round.
 */
export function readRoundDue(c: RaftCore): boolean {
  if (!c.readHeartbeatPending) return false;
  const oldest = c.pendingReads[0];
  return oldest === undefined || oldest.round > c.readRound;
}

/**
 * Round `readRound + 1` is being sent (the caller broadcasts the heartbeat
 * that carries it): later reads wait for the next one. A heartbeat carries
 * the last round sent, and every read of a round registered before its first
 * heartbeat left (messages leave only with a Ready), so a quorum's
 * acknowledgement of a heartbeat carrying round r confirms this leader after
 * every read of round r arrived.
 */
export function closeReadRound(c: RaftCore): void {
  c.readRound++;
  c.readHeartbeatPending = false;
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
