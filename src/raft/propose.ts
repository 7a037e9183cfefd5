// Proposals on the leader: who may propose (not during a transfer, not a
// stand-in observer), the entry and uncommitted-bytes bounds, and membership
// changes (one at a time, only once this term has committed an entry; the
// entry carries the whole resulting membership, see ./membership.ts).
import { ConfChangeInProgress, EntryTooLarge, NotLeader, Overloaded, TransferInProgress } from './errors.js';
import type { RaftCore } from './core.js';
import { applyConfChange, encodeConfEntry } from './membership.js';
import { appendEntry, type ProposeResult } from './replication.js';
import type { ConfChange, EntryType } from './types.js';
import { NONE } from './types.js';

function checkCanPropose(c: RaftCore): void {
  if (c.role !== 'leader') throw new NotLeader(c.lead);
  if (c.leadTransferee !== NONE) throw new TransferInProgress(c.leadTransferee);
  // A stand-in (observer) leader takes no proposals: it is handing over to a voter.
  if (!c.promotable()) throw new NotLeader(NONE);
}

/** RawNode.propose: throws NotLeader, TransferInProgress, EntryTooLarge, Overloaded; else appends. */
export function proposeEntry(c: RaftCore, type: EntryType, data: Uint8Array): ProposeResult {
  checkCanPropose(c);
  if (data.length > c.cfg.maxEntryBytes) throw new EntryTooLarge(data.length, c.cfg.maxEntryBytes);
  if (c.uncommittedBytes > 0 && c.uncommittedBytes + data.length > c.cfg.maxUncommittedBytes) {
    throw new Overloaded(c.uncommittedBytes, c.cfg.maxUncommittedBytes);
  }
  return appendEntry(c, type, data);
}

/** RawNode.proposeConfChange: also throws ConfChangeInProgress and InvalidConfChange. */
export function proposeConfChange(c: RaftCore, cc: ConfChange): ProposeResult {
  checkCanPropose(c);
  if (c.log.term(c.commit) !== c.term) {
    throw new ConfChangeInProgress('the leader has not yet committed an entry in its term; retry shortly');
  }
  if (c.log.lastConfIndex() > c.commit) {
    throw new ConfChangeInProgress(`the previous membership change (index ${c.log.lastConfIndex()}) is not committed yet`);
  }
  // Validate first (throws InvalidConfChange); the entry carries the whole
  // resulting membership so any node, even one that joined later, applies it alone.
  const membership = applyConfChange(c.log.membership(), cc);
  return proposeEntry(c, 'conf', encodeConfEntry({ change: cc, membership }));
}
