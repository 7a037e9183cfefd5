// Core benchmark: entries per second through an in-memory cluster of
// RawNodes (no disk, no network), with batching. Each round the leader
// proposes `batch` entries of `entryBytes`, then every Ready is handled per the
// caller's contract (persist = no-op, send = in-memory queue, apply = count,
// advance) and messages are delivered until the cluster is quiet, so every
// round commits and applies its batch on every node. The state machine
// snapshots when the core asks, so the log stays bounded.
//
// Usage: npm run bench:core  (or node dist/bench/core.js [seconds])
// Prints one JSON object.
import { performance } from 'node:perf_hooks';
import { RawNode, SeededRandom } from '../src/raft/index.js';
import type { Membership, Message, NodeId } from '../src/raft/index.js';

const ENTRY_BYTES = 256;
const BATCH = 64;
const WARMUP_SECONDS = 0.5;

interface Cluster {
  readonly nodes: Map<NodeId, RawNode>;
  readonly leader: RawNode;
  /** Entries applied on the leader (each node applies the same). */
  applied: number;
}

function pump(nodes: Map<NodeId, RawNode>, leaderId: NodeId, c?: { applied: number }): void {
  let queue: Message[] = [];
  for (let round = 0; round < 10000; round++) {
    for (const [id, n] of nodes) {
      while (n.hasReady()) {
        const rd = n.ready();
        // persist: nothing to do in memory; send:
        for (const m of rd.messages) queue.push(m);
        // apply:
        if (c && id === leaderId) c.applied += rd.committedEntries.length;
        n.advance();
        if (rd.snapshotRequest !== undefined) n.snapshotTaken(rd.snapshotRequest);
      }
    }
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    for (const m of batch) nodes.get(m.to)?.step(m);
  }
  throw new Error('cluster did not quiesce');
}

function makeCluster(size: number): Cluster {
  const ids = Array.from({ length: size }, (_, i) => i + 1);
  const membership: Membership = { members: ids.map((id) => ({ id, role: 'voter' as const })), removed: [] };
  const nodes = new Map<NodeId, RawNode>();
  for (const id of ids) {
    nodes.set(
      id,
      new RawNode(
        { id, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(id) },
        { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership }, entries: [] },
      ),
    );
  }
  const leader = nodes.get(1)!;
  leader.campaign();
  pump(nodes, 1);
  if (leader.status().role !== 'leader') throw new Error('node 1 did not become leader');
  return { nodes, leader, applied: 0 };
}

function run(size: number, seconds: number): { nodes: number; entries: number; seconds: number; entriesPerSecond: number; mbPerSecond: number } {
  const c = makeCluster(size);
  const payloads = Array.from({ length: BATCH }, (_, i) => new Uint8Array(ENTRY_BYTES).fill(i & 0xff));
  const round = () => {
    for (const p of payloads) c.leader.propose(p);
    pump(c.nodes, 1, c);
  };
  const warmEnd = performance.now() + WARMUP_SECONDS * 1000;
  while (performance.now() < warmEnd) round();
  const startApplied = c.applied;
  const start = performance.now();
  const end = start + seconds * 1000;
  let now = start;
  while (now < end) {
    round();
    now = performance.now();
  }
  const elapsed = (now - start) / 1000;
  const entries = c.applied - startApplied;
  return {
    nodes: size,
    entries,
    seconds: Number(elapsed.toFixed(3)),
    entriesPerSecond: Math.round(entries / elapsed),
    mbPerSecond: Number(((entries * ENTRY_BYTES) / elapsed / (1024 * 1024)).toFixed(2)),
  };
}

const seconds = Number(process.argv[2] ?? '3');
const three = run(3, seconds);
const one = run(1, seconds);
console.log(
  JSON.stringify({
    benchmark: 'core',
    nodes: 3,
    entryBytes: ENTRY_BYTES,
    batch: BATCH,
    entries: three.entries,
    seconds: three.seconds,
    entriesPerSecond: three.entriesPerSecond,
    mbPerSecond: three.mbPerSecond,
    singleNode: { nodes: 1, entries: one.entries, seconds: one.seconds, entriesPerSecond: one.entriesPerSecond, mbPerSecond: one.mbPerSecond },
    nodeVersion: process.version,
  }),
);
