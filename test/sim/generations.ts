// Cluster generations in the simulator (src/node/generation.ts): the oracle
// state of one generation, and the pieces of the "promote-dr, then the old
// site comes back" scenario that need no access to the simulation's insides.
//
// Promotion (and `quorate recover --force-new-cluster`) makes one node the
// only voter of a new configuration without a quorum of the old one; its
// history then forks from the old generation's. Election safety, log
// matching, leader completeness and state-machine safety are claims about
// one cluster: the simulator keeps them per generation (never weaker inside
// one), and the network, like the transport's handshake, never delivers a
// message between nodes of different generations.
import { decodeConfEntry, type Entry, type Membership, type NodeId } from '../../src/raft/index.js';
import type { RecoveredState } from '../../src/storage/index.js';
import { LogView } from './logview.js';

const posKey = (index: number, term: number): number => index * 1048576 + term;

/** What the oracles remember about one cluster generation. */
export class GenOracles {
  readonly leaderOfTerm = new Map<number, NodeId>();
  /** Chain hash of the log up to (index, term), as first written by any node of this generation. */
  readonly chainAt = new Map<number, number>([[posKey(0, 0), 0]]);
  /**
   * Which node alone has written the entry at a key of chainAt (the others
   * are shared: written by two nodes or more, or this generation's seed).
   */
  readonly #soleWriter = new Map<number, { readonly node: NodeId; readonly term: number }>();
  readonly committedHash: number[] = [];
  maxCommitted = 0;
  readonly checkpoints: { index: number; term: number }[] = [];
  readonly appliedAt = new Map<number, number>();
  readonly digestAt = new Map<number, string>();
  /** The conf entry the forced rewrite wrote (this generation's first entry), or none for generation 0. */
  forced: { readonly index: number; readonly membership: Membership } | undefined;
  /** When the generation began (virtual ms). */
  readonly since: number;
  /** The client keys' values once the promoted node applied the forced entry: the new generation's initial state. */
  initial: Map<string, string | null> | undefined;

  constructor(since: number) {
    this.since = since;
  }

  /** Records that `node` wrote the entry (index, term) whose chain hash is `hash`: false if another chain holds that place. */
  recordWrite(node: NodeId, index: number, term: number, hash: number): boolean {
    const key = posKey(index, term);
    const had = this.chainAt.get(key);
    if (had === undefined) {
      this.chainAt.set(key, hash);
      this.#soleWriter.set(key, { node, term });
      return true;
    }
    if (had !== hash) return false;
    if (this.#soleWriter.get(key)?.node !== node) this.#soleWriter.delete(key);
    return true;
  }

  /**
   * `node` restarts with `durableTerm` as its stored term: the entries of later
   * terms that only it ever wrote were in its memory (and page cache) alone,
   * in a term its crash forgot. The shipped node sends nothing of a term
   * before that term is durable (src/node/replica.ts), so no other node can
   * hold them; they were never part of any log but its lost one, and a leader
   * it becomes again in that term writes its own. One that another node
   * persisted is shared and stays: a second chain at its place is still a
   * violation, as is one such entry that reaches another node later.
   */
  forgetLostTerms(node: NodeId, durableTerm: number): void {
    for (const [key, w] of this.#soleWriter) {
      if (w.node !== node || w.term <= durableTerm) continue;
      this.#soleWriter.delete(key);
      this.chainAt.delete(key);
    }
  }

  /**
   * A new generation starts from the promoted node's durable log: the chain of
   * every entry it recovers (and the forced entry after them) is this
   * generation's history so far. `baseHash` is the chain hash at its snapshot,
   * known to the old generation.
   */
  seed(state: RecoveredState, baseHash: number, forced: Entry): void {
    const snap = state.snapshot;
    const view = new LogView();
    view.reset(snap?.index ?? 0, snap?.term ?? 0, baseHash);
    this.chainAt.set(posKey(view.baseIndex, view.baseTerm), baseHash);
    for (const e of [...state.entries, forced]) {
      const h = view.append(e);
      if (h !== undefined) this.chainAt.set(posKey(e.index, e.term), h);
    }
    // As the replicas will decode it (the membership oracle compares JSON).
    this.forced = { index: forced.index, membership: decodeConfEntry(forced.data).membership };
  }
}

/** The membership at the end of a recovered log (its snapshot's, then each conf entry's), as generation.ts computes it. */
export function membershipAtEnd(state: RecoveredState, bootstrap: Membership): Membership {
  let m = state.snapshot?.membership ?? bootstrap;
  for (const e of state.entries) if (e.type === 'conf') m = decodeConfEntry(e.data).membership;
  return m;
}

export { posKey };
