// An in-memory cluster of RawNodes that follows the caller's contract
// synchronously: the scenario tests (src/raft/rawnode.test.ts) and the
// datadriven scripts drive the core through it. Pure (no I/O, no clock): the
// lint fence of src/raft covers this file too.
import { RawNode } from '../../src/raft/rawnode.js';
import { SeededRandom } from '../../src/raft/prng.js';
import type { Entry, HardState, Membership, Message, NodeId, RaftConfig, ReadState, Ready, SnapshotMeta } from '../../src/raft/types.js';

/** What a caller keeps for one core: its durable state and its (toy) application state. */
export interface CallerState {
  raw: RawNode;
  /** Durable state as the caller would keep it. */
  hardState: HardState;
  snapshot: SnapshotMeta;
  entries: Entry[];
  /** Application state: applied normal entries with data, in order. */
  applied: Entry[];
  /** The application state at `snapshot.index` (what a snapshot's bytes would hold). */
  snapshotData: Entry[];
  /** Bytes of the last snapshot received, installed when its Ready arrives. */
  incoming: Entry[];
}

export interface MemNode extends CallerState {
  readStates: ReadState[];
  droppedReads: number[];
  snapshotsTaken: number;
}

/**
 * Handle one Ready per the caller's contract: persist (snapshot, entries,
 * hard state) → send (into `outbox`) → apply → advance, then take a snapshot
 * if the core asked for one. Returns where the log was compacted to, if it was.
 */
export function handleReady(n: CallerState, rd: Ready, outbox: Message[]): number | undefined {
  if (rd.snapshot) {
    n.snapshot = rd.snapshot;
    n.entries = [];
    n.applied = [...n.incoming];
    n.snapshotData = [...n.incoming];
  }
  if (rd.entries.length > 0) {
    const first = rd.entries[0]!.index;
    n.entries = n.entries.filter((e) => e.index < first).concat(rd.entries);
  }
  if (rd.hardState) n.hardState = rd.hardState;
  outbox.push(...rd.messages);
  for (const e of rd.committedEntries) if (e.type === 'normal' && e.data.length > 0) n.applied.push(e);
  n.raw.advance();
  if (rd.snapshotRequest === undefined) return undefined;
  const idx = rd.snapshotRequest;
  const meta = n.raw.snapshotMeta(idx);
  const data = n.applied.filter((e) => e.index <= idx);
  // The toy state's size: the data of every entry applied (it only grows, as a KV of distinct keys).
  const { compactedTo } = n.raw.snapshotTaken(idx, data.reduce((s, e) => s + e.data.length, 0));
  n.snapshot = meta;
  n.entries = n.entries.filter((e) => e.index > compactedTo);
  n.snapshotData = data;
  return compactedTo;
}

export type ConfigOverrides = Omit<Partial<RaftConfig>, 'id' | 'random'>;

export class MemCluster {
  readonly nodes = new Map<NodeId, MemNode>();
  /** Messages sent and not yet delivered, in order. */
  inflight: Message[] = [];
  readonly #rand: SeededRandom;
  readonly #overrides: ConfigOverrides;
  /** Pairs "a-b" whose messages a→b are dropped. */
  readonly cut = new Set<string>();

  constructor(opts: { voters: NodeId[]; learners?: NodeId[]; observers?: NodeId[]; seed?: number; config?: ConfigOverrides }) {
    this.#rand = new SeededRandom(opts.seed ?? 1);
    this.#overrides = opts.config ?? {};
    const membership: Membership = {
      members: [
        ...opts.voters.map((id) => ({ id, role: 'voter' as const })),
        ...(opts.observers ?? []).map((id) => ({ id, role: 'observer' as const })),
        ...(opts.learners ?? []).map((id) => ({ id, role: 'learner' as const })),
      ].sort((a, b) => a.id - b.id),
      removed: [],
    };
    for (const m of membership.members) this.addNode(m.id, membership);
  }

  /** Add a node with the given bootstrap membership (empty for a node joining later). */
  addNode(id: NodeId, membership: Membership = { members: [], removed: [] }): MemNode {
    const snapshot: SnapshotMeta = { index: 0, term: 0, membership };
    const hardState: HardState = { term: 0, vote: 0, commit: 0 };
    const node: MemNode = {
      raw: this.#newRaw(id, { hardState, snapshot, entries: [] }),
      hardState,
      snapshot,
      entries: [],
      applied: [],
      readStates: [],
      droppedReads: [],
      snapshotsTaken: 0,
      snapshotData: [],
      incoming: [],
    };
    this.nodes.set(id, node);
    return node;
  }

  #newRaw(id: NodeId, st: { hardState: HardState; snapshot: SnapshotMeta; entries: Entry[] }): RawNode {
    const cfg: RaftConfig = { electionTicks: 10, heartbeatTicks: 1, ...this.#overrides, id, random: this.#rand.fork() };
    return new RawNode(cfg, { ...st, entries: [...st.entries] });
  }

  node(id: NodeId): MemNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Restart a node from its durable state (its in-memory core is discarded). */
  restart(id: NodeId): void {
    const n = this.node(id);
    n.raw = this.#newRaw(id, { hardState: n.hardState, snapshot: n.snapshot, entries: n.entries });
    n.applied = [...n.snapshotData];
  }

  /** Process every node's Ready once; returns true if anything happened. */
  processReady(): boolean {
    let any = false;
    for (const [, n] of this.nodes) {
      while (n.raw.hasReady()) {
        any = true;
        const rd = n.raw.ready();
        n.readStates.push(...rd.readStates);
        n.droppedReads.push(...rd.droppedReads);
        if (handleReady(n, rd, this.inflight) !== undefined) n.snapshotsTaken++;
      }
    }
    return any;
  }

  /** Deliver the current in-flight messages (subject to `cut` and `filter`); returns how many. */
  deliver(filter?: (m: Message) => boolean): number {
    const batch = this.inflight;
    this.inflight = [];
    let n = 0;
    for (const m of batch) {
      if (this.cut.has(`${m.from}-${m.to}`)) continue;
      if (filter && !filter(m)) continue;
      const dst = this.nodes.get(m.to);
      if (!dst) continue;
      n++;
      if (m.type === 'snap') dst.incoming = [...this.node(m.from).snapshotData];
      dst.raw.step(m);
      // The snapshot "stream" completes at once here.
      if (m.type === 'snap') this.nodes.get(m.from)?.raw.reportSnapshot(m.to, true);
    }
    return n;
  }

  /** Repeat Ready processing and delivery until no messages remain. */
  stabilize(filter?: (m: Message) => boolean, maxRounds = 10000): void {
    for (let i = 0; i < maxRounds; i++) {
      this.processReady();
      if (this.inflight.length === 0) return;
      this.deliver(filter);
    }
    throw new Error('cluster did not stabilize');
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).raw.tick();
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) for (const [, node] of this.nodes) node.raw.tick();
  }

  /** Campaign on `id` and stabilize; returns the leader id afterwards (0 if none). */
  elect(id: NodeId): NodeId {
    this.node(id).raw.campaign();
    this.stabilize();
    return this.leader();
  }

  leader(): NodeId {
    let lead = 0;
    let term = -1;
    for (const [id, n] of this.nodes) {
      const st = n.raw.status();
      if (st.role === 'leader' && st.term > term) {
        lead = id;
        term = st.term;
      }
    }
    return lead;
  }

  propose(id: NodeId, text: string): { index: number; term: number } {
    return this.node(id).raw.propose(new TextEncoder().encode(text));
  }

  appliedText(id: NodeId): string[] {
    return this.node(id).applied.map((e) => new TextDecoder().decode(e.data));
  }
}
