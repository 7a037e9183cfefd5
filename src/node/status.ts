// The presentation model: one node's view of the cluster (NodeStatus), built
// from the core's status, the member registry and the transport's
// connection state. Pure: reads its inputs, changes nothing.
import type { QuorateConfig } from '../config/index.js';
import { NONE, failureTolerance, isVoting, quorumMet, roleOf, writeQuorum, type MemberRole, type NodeId, type RawNode } from '../raft/index.js';
import type { PeerStats } from '../transport/index.js';
import type { NodeRoleName, NodeStatus, PeerInfo } from '../api/ports.js';
import type { MemberRegistry } from './registry.js';
import { statusRole } from './roles.js';
import type { WitnessView } from '../coord/witness-driver.js';

export const VERSION = '0.1.0';

export interface StatusInput {
  readonly st: ReturnType<RawNode['status']>;
  readonly config: QuorateConfig;
  readonly registry: MemberRegistry;
  readonly stats: ReadonlyMap<number, PeerStats>;
  readonly tickMs: number;
  readonly leaderApiUrl: string | undefined;
  readonly snapshotIndex: number;
  readonly revision: number;
  readonly fatal: Error | undefined;
  readonly splitBrain: string | undefined;
  readonly startedAt: string;
  /** The cluster feature level as this node computes it. */
  readonly featureLevel: number;
}

/** The status role of member `id` (the vocabulary: ./roles.ts, docs/concepts.md "Roles"). */
export function roleName(registry: MemberRegistry, id: NodeId, raftRole: string, lead: NodeId, memberRole: MemberRole | undefined): NodeRoleName {
  return statusRole(memberRole, {
    leads: id === lead,
    catchingUp: registry.record(id)?.catchUpTo !== undefined,
    campaigning: id === registry.selfId && (raftRole === 'candidate' || raftRole === 'preCandidate'),
  });
}

export function buildStatus(i: StatusInput): NodeStatus {
  const { st, config, registry, stats } = i;
  const self = registry.selfId;
  const m = st.membership;
  const voters = m.members.filter((x) => isVoting(x.role));
  const now = Date.now();
  const electionMs = config.cluster.electionTimeoutMs;
  const maxLag = config.cluster.maxLagOnFailover;
  const progress = new Map(st.progress.map((p) => [p.id, p]));
  const peers: PeerInfo[] = m.members.map((mem) => {
    const meta = registry.peers.get(mem.id);
    const isSelf = mem.id === self;
    const pr = progress.get(mem.id);
    let matchIndex: number;
    let lagEntries = 0;
    let lagMs = 0;
    let lastHeartbeat: string | undefined;
    let status: PeerInfo['status'];
    if (isSelf) {
      matchIndex = st.lastIndex;
      status = st.role === 'leader' || st.lead !== NONE ? 'healthy' : 'isolated';
      lastHeartbeat = new Date(now).toISOString();
    } else if (pr) {
      matchIndex = pr.match;
      lagEntries = Math.max(0, st.lastIndex - pr.match);
      lagMs = lagEntries === 0 ? 0 : now - (meta?.lastCaughtUpAt ?? now);
      const contactMs = pr.ticksSinceContact * i.tickMs;
      lastHeartbeat = new Date(now - contactMs).toISOString();
      status = contactMs > electionMs ? 'unreachable' : pr.diverged || registry.isFenced(mem.id) ? 'diverged' : lagEntries > maxLag ? 'lagging' : 'healthy';
    } else {
      matchIndex = 0;
      const s = stats.get(mem.id);
      status = s && (s.connected || s.inboundConnected) ? 'healthy' : 'unreachable';
    }
    return {
      id: mem.id,
      nodeName: registry.nameOf(mem.id),
      apiUrl: isSelf ? config.node.advertiseApiUrl : mem.apiUrl,
      peerUrl: meta?.peerUrl ?? '',
      role: roleName(registry, mem.id, st.role, st.lead, mem.role),
      status,
      matchIndex,
      replicationLagEntries: lagEntries,
      replicationLagMs: lagMs,
      lastHeartbeat,
      self: isSelf,
    };
  });
  const wq = writeQuorum(voters.length, config.database.writeQuorum);
  const reachable = st.role === 'leader'
    ? st.reachableVoters
    : voters.filter((v) => v.id === self || stats.get(v.id)?.connected || stats.get(v.id)?.inboundConnected).length;
  return {
    id: self,
    nodeName: config.node.nodeName,
    haId: config.cluster.haId,
    role: roleName(registry, self, st.role, st.lead, roleOf(m, self)),
    raftRole: st.role,
    term: st.term,
    leaderId: st.lead,
    leaderName: st.lead === NONE ? undefined : registry.nameOf(st.lead),
    leaderApiUrl: i.leaderApiUrl,
    commitIndex: st.commit,
    appliedIndex: st.applied,
    lastIndex: st.lastIndex,
    firstIndex: st.firstIndex,
    snapshotIndex: i.snapshotIndex,
    revision: i.revision,
    quorumMet: st.role === 'leader' ? quorumMet(reachable, wq) : st.lead !== NONE,
    votersReachable: reachable,
    votersTotal: voters.length,
    writeQuorum: wq,
    failureTolerance: failureTolerance(reachable, wq),
    peers,
    storageHealthy: i.fatal === undefined,
    storageError: i.fatal?.message,
    splitBrainWarning: i.splitBrain,
    startedAt: i.startedAt,
    version: VERSION,
    featureLevel: i.featureLevel,
    configWarnings: registry.configWarnings(),
  };
}

/**
 * Witness mode (src/coord/WITNESS.md): a leader can write when every node of
 * its commit set is reachable and it holds the lease; `quorumMet` says that.
 */
export function witnessStatus(s: NodeStatus, w: WitnessView): NodeStatus {
  const reachable = (id: number) => s.peers.some((p) => p.id === id && (p.self || p.status !== 'unreachable'));
  const quorumMet = s.raftRole === 'leader' ? w.leading && w.commitSet.every(reachable) : s.quorumMet;
  return { ...s, quorumMet, redisConnected: w.redisConnected, witness: w };
}
