// The leader's side of log replication: appending its own entries, keeping
// one Progress per member (./progress.ts) in step with the membership,
// sending appends, snapshots and heartbeats per each follower's flow-control
// state, handling their replies, and advancing the commit index (a write
// quorum of voters, or witness mode's commit set) with what follows a commit.
import { invariant } from './errors.js';
import type { RaftCore } from './core.js';
import { isVoting, roleOf } from './membership.js';
import { writeQuorum } from './quorum.js';
import { Progress } from './progress.js';
import { registerRead, releaseReads } from './readindex.js';
import type { Entry, EntryType, Message, NodeId } from './types.js';
import { NONE } from './types.js';

export interface ProposeResult {
  readonly index: number;
  readonly term: number;
}

export function stepLeader(c: RaftCore, m: Message): void {
  const pr = c.prs.get(m.from);
  if (!pr) return;
  switch (m.type) {
    case 'appResp': {
      pr.recentActive = true;
      pr.ticksSinceContact = 0;
      if (m.reject) {
        const probeAt = c.log.findConflictByTerm(m.rejectHint, m.logTerm);
        if (pr.maybeDecrTo(m.index, probeAt)) {
          if (pr.state === 'replicate') pr.becomeProbe();
          sendAppend(c, m.from, true);
        }
        return;
      }
      const wasPaused = pr.isPaused();
      if (!pr.maybeUpdate(m.index)) {
        if (wasPaused && !pr.isPaused()) sendAppend(c, m.from, false);
        return;
      }
      if (pr.state === 'probe') pr.becomeReplicate();
      else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
      if (!maybeCommit(c) && (wasPaused || pr.match < c.log.lastIndex())) {
        // Replicate: fill the window (count and bytes in flight) with what the
        // follower lacks, rather than one message per acknowledgement, so a
        // follower far behind (restarted) is caught up pipelined.
        while (sendAppend(c, m.from, false) && pr.state === 'replicate');
      }
      if (m.from === c.leadTransferee && pr.match === c.log.lastIndex()) {
        c.send({ type: 'timeoutNow', to: m.from, term: c.term, index: c.log.lastIndex() });
      }
      return;
    }
    case 'heartbeatResp': {
      pr.recentActive = true;
      pr.ticksSinceContact = 0;
      pr.probeSent = false;
      if (m.reject && m.rejectHint < pr.match) pr.markDiverged(m.rejectHint);
      if (pr.state === 'replicate' && pr.isPaused()) pr.freeFirstOne();
      // Even when entries look in flight, an empty append probes for ones the
      // network dropped: a follower missing them rejects and we fall back to probe.
      if (pr.match < c.log.lastIndex()) sendAppend(c, m.from, true);
      if (m.context > pr.readAckRound) {
        pr.readAckRound = m.context;
        releaseReads(c);
      }
      return;
    }
    default:
      return;
  }
}

export function appendEntry(c: RaftCore, type: EntryType, data: Uint8Array): ProposeResult {
  const e: Entry = { term: c.term, index: c.log.lastIndex() + 1, type, data };
  c.log.append([e], c.commit);
  c.uncommittedBytes += data.length;
  c.bcastEntries = true;
  if (type === 'conf') syncProgress(c);
  return { index: e.index, term: e.term };
}

/** Make the progress set match the membership at the end of the log. */
export function syncProgress(c: RaftCore): void {
  const m = c.log.membership();
  for (const mem of m.members) {
    if (mem.id === c.id || c.prs.has(mem.id)) continue;
    const pr = new Progress(c.log.lastIndex() + 1, c.cfg.maxInflightMsgs, c.cfg.maxInflightBytes);
    pr.recentActive = true;
    c.prs.set(mem.id, pr);
  }
  for (const id of [...c.prs.keys()]) {
    if (roleOf(m, id) === undefined) c.prs.delete(id);
  }
  // Membership entries are never appended during a transfer (proposals are
  // refused then), so the transferee is still a voter.
  invariant(c.leadTransferee === NONE || roleOf(m, c.leadTransferee) === 'voter', () => `transferee ${c.leadTransferee} is no longer a voter`);
}

/** Advance commit to the highest index held by a write quorum, if of this term. */
export function maybeCommit(c: RaftCore): boolean {
  const candidate = c.cfg.witness ? witnessCandidate(c) : quorumCandidate(c);
  if (candidate === undefined || candidate <= c.commit) return false;
  // §5.4.2: only entries of the current term are committed by counting.
  if (c.cfg.mutation !== 'commitPreviousTermByCounting' && c.log.term(candidate) !== c.term) return false;
  const before = c.commit;
  c.commitTo(candidate);
  c.bcastCommit = true;
  onCommitted(c, before);
  return true;
}

function quorumSize(c: RaftCore, voters: number): number {
  if (c.cfg.mutation === 'ignoreCommitQuorum') return 1;
  return writeQuorum(voters, c.cfg.writeQuorum);
}

/** Witness mode: every member of the commit set holds it durably, or of the in-sync set up to the no-op (./witness.ts). */
function witnessCandidate(c: RaftCore): number | undefined {
  return c.witness.commitCandidate((id) => (id === c.id ? c.log.stableIndex() : c.prs.get(id)?.match ?? 0));
}

function quorumCandidate(c: RaftCore): number | undefined {
  const matches: number[] = [];
  for (const mem of c.log.membership().members) {
    if (!isVoting(mem.role)) continue;
    if (mem.id === c.id) matches.push(c.log.stableIndex());
    else matches.push(c.prs.get(mem.id)?.match ?? 0);
  }
  if (matches.length === 0) return undefined;
  matches.sort((a, b) => b - a);
  return matches[quorumSize(c, matches.length) - 1]!;
}

function onCommitted(c: RaftCore, before: number): void {
  let freed = 0;
  for (let i = before + 1; i <= c.commit; i++) freed += c.log.entry(i)?.data.length ?? 0;
  c.uncommittedBytes = Math.max(0, c.uncommittedBytes - freed);
  if (c.log.term(before) !== c.term && c.log.term(c.commit) === c.term) {
    const waiting = c.readsAwaitingTermCommit;
    c.readsAwaitingTermCommit = [];
    for (const ctx of waiting) registerRead(c, ctx);
  }
  // A leader that is no longer a voter steps down once that change commits
  // (dissertation §4.2.2); it keeps leading until then so the change commits.
  if (!c.promotable() && c.log.lastConfIndex() <= c.commit) {
    c.bcastCommit = false;
    flushAppendsForCommit(c);
    c.becomeFollower(c.term, NONE);
  }
}

/** Tell followers the new commit index before stepping down. */
function flushAppendsForCommit(c: RaftCore): void {
  for (const id of c.prs.keys()) sendAppend(c, id, true);
}

export function bcastHeartbeat(c: RaftCore): void {
  c.heartbeatElapsed = 0;
  for (const id of c.prs.keys()) sendHeartbeat(c, id);
}

/** A heartbeat to one follower (its commit capped at what it is known to hold). */
export function sendHeartbeat(c: RaftCore, to: NodeId): void {
  const pr = c.prs.get(to);
  if (!pr) return;
  c.send({ type: 'heartbeat', to, term: c.term, commit: Math.min(pr.match, c.commit), context: c.readRound });
}

export function flushBroadcast(c: RaftCore): void {
  if (!c.bcastEntries && !c.bcastCommit) return;
  const ifEmpty = c.bcastCommit;
  c.bcastEntries = false;
  c.bcastCommit = false;
  for (const id of c.prs.keys()) sendAppend(c, id, ifEmpty);
}

/** Send entries (or a snapshot) to a follower per its flow-control state. */
export function sendAppend(c: RaftCore, to: NodeId, sendIfEmpty: boolean): boolean {
  const pr = c.prs.get(to);
  if (!pr || pr.isPaused()) return false;
  const prevIndex = pr.next - 1;
  const prevTerm = c.log.term(prevIndex);
  const entries = c.log.slice(pr.next, c.log.lastIndex(), c.cfg.maxMsgBytes);
  if (prevTerm === undefined || entries === undefined) return sendSnapshot(c, to, pr);
  if (entries.length === 0 && !sendIfEmpty) return false;
  let bytes = 0;
  for (const e of entries) bytes += e.data.length;
  c.send({ type: 'app', to, term: c.term, index: prevIndex, logTerm: prevTerm, entries, commit: c.commit });
  const last = entries[entries.length - 1];
  if (last) pr.sentEntries(last.index, bytes);
  else if (pr.state === 'probe') pr.probeSent = true;
  return true;
}

function sendSnapshot(c: RaftCore, to: NodeId, pr: Progress): boolean {
  if (!pr.recentActive) return false;
  const snap = c.log.snapshot();
  pr.becomeSnapshot(snap.index);
  c.send({ type: 'snap', to, term: c.term, snapshot: snap });
  return true;
}
