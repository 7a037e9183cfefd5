// The witness record and its transitions as a pure function (design:
// ./WITNESS.md). The Lua scripts in ./witness.ts implement exactly this; the
// simulator's witness (test/sim/witness-sim.ts) runs this function, and
// witness.test.ts runs one table of cases against both, so the model the
// simulator checks is the one Redis executes.

export interface WitnessRecord {
  /** Node id holding the lease, 0 when none. */
  readonly leader: number;
  /** Strictly increasing; the leader's Raft term and fencing token. */
  readonly epoch: number;
  /** End of the lease in the witness's own clock (ms). */
  readonly expires: number;
  /** The in-sync set: sorted node ids, never empty. */
  readonly insync: readonly number[];
  /** Identity of the Redis that last wrote the record (`run_id/master_replid`). */
  readonly stamp: string;
}

export type WitnessOp =
  | { readonly op: 'acquire'; readonly me: number; readonly floor: number; readonly ttl: number }
  | { readonly op: 'renew'; readonly me: number; readonly epoch: number; readonly ttl: number }
  | { readonly op: 'shrink' | 'grow'; readonly me: number; readonly epoch: number; readonly from: readonly number[]; readonly to: readonly number[] }
  | { readonly op: 'release'; readonly me: number; readonly epoch: number }
  /** A brand-new cluster: the caller has never committed an entry. */
  | { readonly op: 'create'; readonly me: number; readonly voters: readonly number[]; readonly floor: number }
  /**
   * The operator's `quorate witness confirm` on node `me`. No node may acquire
   * the lease for `ttl` ms after it: a leader cut off from the witness when it
   * lost or changed its record may act until its own deadline, which is at most
   * one lease TTL away (WITNESS.md, "confirm").
   */
  | { readonly op: 'confirm'; readonly me: number; readonly floor: number; readonly ttl: number };

export type WitnessRefusal =
  | 'missing' // no record: a new cluster creates it; otherwise an operator must confirm
  | 'untrusted' // the record was written by another Redis (restart, failover, restored backup)
  | 'not_in_sync' // acquire by a node outside the in-sync set
  | 'held' // acquire while another node's lease runs
  | 'not_leader' // renew/shrink/grow/release by a node that is not the recorded leader at that epoch
  | 'expired' // renew/shrink/grow after the lease's end
  | 'set_changed' // shrink/grow whose `from` is not the recorded set (and `to` is not either)
  | 'invalid' // a malformed shrink/grow (not a subset/superset, leader not kept)
  | 'exists'; // create over an existing record

export type WitnessResult =
  | { readonly ok: true; readonly record: WitnessRecord; readonly now: number }
  | { readonly ok: false; readonly refused: WitnessRefusal; readonly record: WitnessRecord | undefined; readonly now: number };

export function setKey(ids: readonly number[]): string {
  return [...new Set(ids)].sort((a, b) => a - b).join(',');
}

export function parseSet(s: string): number[] {
  return s === '' ? [] : s.split(',').map(Number);
}

/**
 * One transition at witness time `now`, given the stamp of the Redis that
 * executes it. Returns the new record (unchanged on refusal).
 */
export function transition(rec: WitnessRecord | undefined, op: WitnessOp, now: number, stamp: string): WitnessResult {
  const no = (refused: WitnessRefusal): WitnessResult => ({ ok: false, refused, record: rec, now });
  const yes = (record: WitnessRecord): WitnessResult => ({ ok: true, record, now });
  if (op.op === 'confirm') {
    if (rec === undefined) return yes({ leader: 0, epoch: op.floor, expires: now + op.ttl, insync: [op.me], stamp });
    return yes({ ...rec, leader: 0, epoch: Math.max(rec.epoch, op.floor), expires: Math.max(rec.expires, now + op.ttl), stamp });
  }
  if (op.op === 'create') {
    if (rec !== undefined) return no('exists');
    return yes({ leader: 0, epoch: op.floor, expires: 0, insync: parseSet(setKey(op.voters)), stamp });
  }
  if (rec === undefined) return no('missing');
  if (rec.stamp !== stamp) return no('untrusted');
  switch (op.op) {
    case 'acquire': {
      if (!rec.insync.includes(op.me)) return no('not_in_sync');
      // Another node's lease runs, or (leader 0) the quiet period after a confirm.
      if (rec.leader !== op.me && now < rec.expires) return no('held');
      return yes({ ...rec, leader: op.me, epoch: Math.max(rec.epoch, op.floor) + 1, expires: now + op.ttl });
    }
    case 'renew':
    case 'release':
    case 'shrink':
    case 'grow': {
      if (rec.leader !== op.me || rec.epoch !== op.epoch) return no('not_leader');
      if (op.op === 'release') return yes({ ...rec, leader: 0, expires: 0 });
      if (now >= rec.expires) return no('expired');
      if (op.op === 'renew') return yes({ ...rec, expires: now + op.ttl });
      const from = setKey(op.from);
      const to = setKey(op.to);
      const cur = setKey(rec.insync);
      // Idempotent: a retry after a lost answer finds its own result.
      if (cur === to) return yes(rec);
      if (cur !== from) return no('set_changed');
      const f = parseSet(from);
      const t = parseSet(to);
      const ok = op.op === 'shrink'
        ? t.length > 0 && t.includes(op.me) && t.every((x) => f.includes(x)) && t.length < f.length
        : f.every((x) => t.includes(x)) && t.length > f.length;
      if (!ok) return no('invalid');
      return yes({ ...rec, insync: t });
    }
  }
}
