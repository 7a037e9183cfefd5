// Witness mode inside the core (src/coord/WITNESS.md): no elections; a node
// leads only when appointed through the witness, and what counts as committed
// comes from sets the caller gives it, not from a majority. Pure: the caller
// (src/coord/witness-agent.ts) decides when to appoint, which sets to use and
// when to step down; this module checks the inputs and answers the core's two
// questions (up to where may the leader commit, and who confirms a read).
import { InvalidAppointment, invariant } from './errors.js';
import type { NodeId } from './types.js';

/** Why the core refuses a transfer in this mode (the error names it). */
export const WITNESS_TRANSFER_REFUSED = 'leadership moves through the witness in this mode (the leader releases its lease; an in-sync standby takes it)';

/**
 * Checks an appointment (`RawNode.appoint`): the epoch must be above the
 * node's term and the node must be a voter in the in-sync set it is given.
 * Throws InvalidAppointment naming what is wrong; changes nothing.
 */
export function checkAppointment(witness: boolean, id: NodeId, term: number, epoch: number, inSync: readonly NodeId[], promotable: boolean): void {
  if (!witness) throw new InvalidAppointment('this node is not in witness mode (cluster.coordination "redis")');
  if (!Number.isSafeInteger(epoch) || epoch <= term) throw new InvalidAppointment(`epoch ${epoch} is not above this node's term ${term}`);
  if (!inSync.includes(id)) throw new InvalidAppointment(`node ${id} is not in the in-sync set (${inSync.join(',')})`);
  if (!promotable) throw new InvalidAppointment(`node ${id} is not a voter`);
}

/**
 * A leader's two sets, both including the leader:
 *
 * - the **commit set**: every member must hold an index durably before it
 *   commits (the caller keeps it a superset of the witness's in-sync set);
 * - the **in-sync set** as far as the caller knows it (a superset of what
 *   the witness records: it shrinks only after the witness's CAS succeeded).
 *   It is a subset of the commit set; they differ only in the default mode
 *   (`inSyncDegrade: false`), where every voter stays in the commit set.
 *
 * Entries up to the leader's no-op (the tail of earlier epochs and the no-op)
 * commit once every member of the in-sync set holds them: no node outside the
 * set can lead (I3) until the leader grows it back, which it does only once
 * that node holds everything committed (I2). So a leader whose set was shrunk
 * to itself commits its no-op alone, and serves linearizable reads alone
 * (nobody else may lead while the set is itself), while its own new entries
 * still wait for the whole commit set.
 */
export class WitnessSets {
  readonly #id: NodeId;
  #commitSet: readonly NodeId[] = [];
  #inSync: readonly NodeId[] = [];
  /** Index of the no-op this leader appended when appointed. */
  #termStart = 0;

  constructor(id: NodeId) {
    this.#id = id;
  }

  get commitSet(): readonly NodeId[] {
    return this.#commitSet;
  }

  get inSync(): readonly NodeId[] {
    return this.#inSync;
  }

  /** Appointed with the witness's `inSync`; the caller appends the no-op next and reports its index with `started`. */
  appointed(inSync: readonly NodeId[]): void {
    this.#commitSet = normalizeSet(inSync);
    this.#inSync = this.#commitSet;
  }

  started(noopIndex: number): void {
    this.#termStart = noopIndex;
  }

  /** The caller's new sets (`inSync` defaults to `ids`). */
  set(ids: readonly NodeId[], inSync: readonly NodeId[] = ids): void {
    invariant(ids.includes(this.#id), () => `the commit set (${ids.join(',')}) must include the leader ${this.#id}`);
    invariant(inSync.includes(this.#id), () => `the in-sync set (${inSync.join(',')}) must include the leader ${this.#id}`);
    invariant(inSync.every((x) => ids.includes(x)), () => `the in-sync set (${inSync.join(',')}) must be within the commit set (${ids.join(',')})`);
    this.#commitSet = normalizeSet(ids);
    this.#inSync = normalizeSet(inSync);
  }

  /** No longer leading. */
  clear(): void {
    this.#commitSet = [];
    this.#inSync = [];
    this.#termStart = 0;
  }

  /**
   * The highest index the leader may commit (before the §5.4.2 term check),
   * given each member's durable match (`matchOf`, the leader's own stable
   * index for itself). Undefined while no set is known.
   */
  commitCandidate(matchOf: (id: NodeId) => number): number | undefined {
    if (this.#commitSet.length === 0) return undefined;
    const all = minOver(this.#commitSet, matchOf);
    const sync = Math.min(minOver(this.#inSync, matchOf), this.#termStart);
    return Math.max(all, sync);
  }

  /** A read needs no confirmation round: the in-sync set is this leader alone, so nobody else can be appointed. */
  readsAlone(): boolean {
    return this.#inSync.length === 1 && this.#inSync[0] === this.#id;
  }

  /**
   * Who confirms a read round: every member of the commit set (one that took
   * a higher epoch answers with it instead), or this leader alone when
   * `readsAlone()`.
   */
  readConfirmers(): readonly NodeId[] {
    return this.readsAlone() ? this.#inSync : this.#commitSet;
  }
}

function minOver(ids: readonly NodeId[], matchOf: (id: NodeId) => number): number {
  let m = Infinity;
  for (const id of ids) m = Math.min(m, matchOf(id));
  return m === Infinity ? 0 : m;
}

export function normalizeSet(ids: readonly NodeId[]): readonly NodeId[] {
  return [...new Set(ids)].sort((a, b) => a - b);
}
