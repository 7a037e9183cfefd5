// Cluster generations: DR promotion and forced recovery (SPEC §4 promote-dr,
// §5 `recover --force-new-cluster`; docs/operations.md "DR promotion and
// failback", "Forced recovery").
//
// Both make one node the only voter of a new configuration it writes into its
// own log, without a quorum of the old one. That is only safe if nothing of
// the old configuration can ever reach it again: an old leader with a higher
// term would otherwise append to it and truncate the writes it took since.
// So both also mint a new **cluster generation** (an epoch of the cluster
// identity, kept in bootstrap.json): the peer handshake carries it, covered
// by the MACs, and a node of another generation is refused before any
// message is exchanged (src/transport/handshake.ts judgeHello). A node of an
// older generation is told so and serves no data from then on; it comes back
// only by enrollment, its data moved aside (its history may differ).
//
// The rewrite, on a stopped node's data dir (the DR node stops its own node
// for it, ./promotion.ts):
//   1. bootstrap.json gets generation g+1 (first: a crash after it leaves a
//      node that talks to nobody, never one of the old generation with the
//      new membership);
//   2. one conf entry is appended at lastIndex+1 (term = the stored term):
//      membership = this node alone, as voter; every other member id goes to
//      `removed` (ids are never reused);
//   3. the hard state's commit moves to that entry: every entry in this
//      node's log is committed in the new generation (as etcd's
//      --force-new-cluster does). Entries above the old commit index were not
//      known committed; they are kept, and reported.
// At its next start the node is a one-voter cluster and elects itself.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeConfEntry, encodeConfEntry, type Entry, type HardState, type Member, type Membership, type NodeId } from '../raft/index.js';
import { HA_STATE_FILE, WalStorage } from '../storage/index.js';
import { bootstrapMembership, parseBootstrap, writeBootstrap, type Bootstrap, type PromotionRecord } from './members.js';

/** What a forced new configuration would change, or changed. */
export interface ForceNewClusterReport {
  readonly dataDir: string;
  readonly haId: string;
  readonly nodeId: number;
  readonly nodeName: string | null;
  readonly generation: { readonly from: number; readonly to: number };
  /** The members (other than this node) dropped from the configuration, by name when known. */
  readonly dropped: readonly string[];
  readonly lastIndex: number;
  readonly commitIndex: number;
  /** Entries in this node's log not known committed (commitIndex+1..lastIndex): kept and committed now, though the old cluster may never have acknowledged them. */
  readonly notKnownCommitted: { readonly from: number; readonly to: number; readonly count: number };
  /** Index of the conf entry that makes this node the only voter. */
  readonly confIndex: number;
}

export class ForceNewClusterError extends Error {}

function readBootstrap(dataDir: string): Bootstrap {
  const path = join(dataDir, 'bootstrap.json');
  if (!existsSync(path)) throw new ForceNewClusterError(`${dataDir} holds no cluster data (no bootstrap.json): point --data-dir at the node.dataDir of a stopped node`);
  return parseBootstrap(readFileSync(path, 'utf8'), path);
}

/** This data dir's node id: an enrolled node's bootstrap.json says it; otherwise ha-state.json (written by every running node), or `knownId`. */
function ownId(dataDir: string, b: Bootstrap, knownId: number | undefined): number {
  if (knownId !== undefined) return knownId;
  if (b.self !== undefined) return b.self.id;
  const ha = join(dataDir, HA_STATE_FILE);
  if (existsSync(ha)) {
    const id = Number((JSON.parse(readFileSync(ha, 'utf8')) as { ConsensusID?: unknown }).ConsensusID);
    if (Number.isSafeInteger(id) && id > 0) return id;
  }
  throw new ForceNewClusterError(`cannot tell which node ${dataDir} belongs to (no ${HA_STATE_FILE}): pass --config with the node's config file`);
}

function membershipAtEnd(base: Membership, entries: readonly Entry[]): Membership {
  let m = base;
  for (const e of entries) if (e.type === 'conf') m = decodeConfEntry(e.data).membership;
  return m;
}

/**
 * Makes the stopped node at `dataDir` the only voter of a new generation (see
 * the file comment). With `dryRun`, reports what it would do and changes nothing.
 */
export async function forceNewCluster(o: {
  dataDir: string; kind: PromotionRecord['kind']; nodeId?: number; dryRun?: boolean; now?: Date;
}): Promise<ForceNewClusterReport> {
  const b = readBootstrap(o.dataDir);
  if (existsSync(join(o.dataDir, 'removed'))) {
    throw new ForceNewClusterError(`${o.dataDir} has a "removed" marker: this node was removed from its cluster, or a newer generation superseded it; its data is not the survivor to recover from (enroll it into the running cluster instead)`);
  }
  const id: NodeId = ownId(o.dataDir, b, o.nodeId);
  const { storage, state } = await WalStorage.open(join(o.dataDir, 'raft'));
  try {
    const base = state.snapshot?.membership ?? bootstrapMembership(b);
    const m = membershipAtEnd(base, state.entries);
    const self = m.members.find((x) => x.id === id);
    if (self === undefined) throw new ForceNewClusterError(`node id ${id} is not a member of the configuration in ${o.dataDir} (it was removed); nothing was changed`);
    const last = state.entries.at(-1);
    const lastIndex = last?.index ?? state.snapshot?.index ?? 0;
    const lastTerm = last?.term ?? state.snapshot?.term ?? 0;
    const hs = state.hardState;
    const commit = Math.min(hs.commit, lastIndex);
    const others = m.members.filter((x) => x.id !== id);
    const name = (x: Member) => x.name ?? `node-${x.id}`;
    const from = b.generation ?? 0;
    const report: ForceNewClusterReport = {
      dataDir: o.dataDir, haId: b.haId, nodeId: id, nodeName: self.name ?? null,
      generation: { from, to: from + 1 }, dropped: others.map(name), lastIndex, commitIndex: commit,
      notKnownCommitted: { from: commit + 1, to: lastIndex, count: lastIndex - commit }, confIndex: lastIndex + 1,
    };
    if (o.dryRun) return report;
    const forced = planSoleVoter(m, id, hs, lastIndex, lastTerm);
    // 1. The generation first (see the file comment).
    const promoted: PromotionRecord = { kind: o.kind, at: (o.now ?? new Date()).toISOString(), generation: from + 1, index: forced.entry.index };
    await writeBootstrap(o.dataDir, { ...b, generation: from + 1, promoted });
    await writeSoleVoter(storage, forced);
    return report;
  } finally {
    await storage.close();
  }
}

/** Steps 2 and 3 of the rewrite (see the file comment): the conf entry making `id` the only voter, and the hard state that commits it. */
export interface SoleVoterRewrite {
  readonly entry: Entry;
  readonly membership: Membership;
  readonly hardState: HardState;
}

/** Plans the rewrite of a log whose membership at its end is `m` (pure; the simulator runs it too). */
export function planSoleVoter(m: Membership, id: NodeId, hs: HardState, lastIndex: number, lastTerm: number): SoleVoterRewrite {
  const self = m.members.find((x) => x.id === id);
  if (self === undefined) throw new ForceNewClusterError(`node id ${id} is not a member of the configuration (it was removed); nothing was changed`);
  const { catchUpTo: _gate, ...rest } = self;
  const membership: Membership = {
    members: [{ ...rest, role: 'voter' }],
    removed: [...new Set([...m.removed, ...m.members.filter((x) => x.id !== id).map((x) => x.id)])].sort((a, c) => a - c),
  };
  const term = Math.max(hs.term, lastTerm);
  const entry: Entry = { term, index: lastIndex + 1, type: 'conf', data: encodeConfEntry({ change: { op: 'setRole', id, role: 'voter' }, membership }) };
  return { entry, membership, hardState: { term, vote: term === hs.term ? hs.vote : 0, commit: entry.index } };
}

/** Writes a planned rewrite: the conf entry, durable before the commit index names it. */
export async function writeSoleVoter(storage: WalStorage, r: SoleVoterRewrite): Promise<void> {
  await storage.append([r.entry]);
  await storage.sync();
  storage.setHardState(r.hardState);
  await storage.sync();
}

/** The lines `quorate recover` and the promotion log print about what may be lost. */
export function describeLoss(r: ForceNewClusterReport): string[] {
  const lines = [
    `${r.nodeName ?? `node ${r.nodeId}`} becomes the only voter of cluster ${JSON.stringify(r.haId)}, generation ${r.generation.to} (was ${r.generation.from}); ` +
      `dropped from the configuration: ${r.dropped.length > 0 ? r.dropped.join(', ') : 'nobody'}.`,
    r.notKnownCommitted.count > 0
      ? `Entries ${r.notKnownCommitted.from}..${r.notKnownCommitted.to} (${r.notKnownCommitted.count}) were not known committed here: they are kept and become committed, though the old cluster may never have acknowledged them.`
      : `Every entry in this node's log (up to index ${r.lastIndex}) was known committed.`,
    `Writes the old cluster committed after index ${r.lastIndex} never reached this node and are lost; other members' data is not consulted.`,
    `Nodes of generation ${r.generation.from} are refused from now on; bring them back only with \`quorate enroll … --force\` (their data is moved aside).`,
  ];
  return lines;
}
