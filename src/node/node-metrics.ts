// The node's metrics: the counters and histograms the replica feeds, and the
// gauges set from the node's status at each scrape (`GET /metrics`), in the
// node's MetricsRegistry (src/ops/metrics.ts).
import { governorStats } from '../lib/memory-governor.js';
import { statfsSync } from 'node:fs';
import type { CertificateInfo, NodeStatus } from '../api/ports.js';
import type { RttSample } from '../api/ports-ops.js';
import type { DrillSchedule } from '../drill/schedule.js';
import type { Counter, MetricsRegistry } from '../ops/metrics.js';
import { NONE } from '../raft/index.js';
import type { MachineRegistry } from '../state/index.js';
import type { ModesView } from './modes.js';
import type { ReplicaMetrics } from './replica.js';

/** Register the node's counters and histograms: the leader changes it sees, and what the replica reports. */
export function nodeMetrics(m: MetricsRegistry): { leaderChanges: Counter; replica: ReplicaMetrics } {
  const snapshotDuration = m.histogram('quorate_snapshot_duration_seconds', 'Duration of writing a snapshot of the applied state (kind="take") or of storing and restoring one received from the leader (kind="install")', [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], ['kind']);
  const snapshotBytes = m.gauge('quorate_snapshot_bytes', 'Size in bytes of the newest snapshot this node took (kind="take") or installed from the leader (kind="install")', ['kind']);
  const leaderChanges = m.counter('quorate_leader_changes_seen_total', 'Leader changes seen by this node');
  const committed = m.counter('quorate_proposals_committed_total', 'Proposals committed and applied');
  const failed = m.counter('quorate_proposals_failed_total', 'Proposals that failed', ['reason']);
  const commitLatency = m.histogram('quorate_commit_latency_seconds', 'Proposal to apply latency on the leader', [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
  const fsyncLatency = m.histogram('quorate_fsync_latency_seconds', 'Latency of one persist (write + fdatasync) per Ready', [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);
  return {
    leaderChanges,
    replica: {
      committed: () => committed.inc(),
      failed: (reason) => failed.inc({ reason }),
      commitLatency: (s) => commitLatency.observe(s),
      fsyncLatency: (s) => fsyncLatency.observe(s),
      snapshot: (kind, s, bytes) => {
        snapshotDuration.observe(s, { kind });
        snapshotBytes.set({ kind }, bytes);
      },
    },
  };
}

/** Set the gauges from `st` (and the process's memory), then render every metric as text. */
export interface MetricsExtra {
  /** The drill schedule (drills.maxIntervalHours) from the replicated reports. */
  readonly drills?: DrillSchedule;
  /** The certificates this node serves (src/node/certificates.ts). */
  readonly certificates?: readonly CertificateInfo[];
  /** Leader only: a voter is fully caught up now (caughtUpVoters of ./control.ts, the failover-safe rule); undefined on other nodes. */
  readonly failoverSafe?: boolean;
  /** Client proposals waiting in the replica: in its inbox or proposed and not yet applied. */
  readonly pendingProposals?: number;
  /** Bytes of the peer message connections, per peer (cumulative; a peer's link made anew starts at 0). */
  readonly peerTraffic?: readonly PeerTraffic[];
  /** The newest round trip to every other member (./netdisk.ts); ms null: no answer. */
  readonly peerRtt?: readonly RttSample[];
}

export interface PeerTraffic {
  readonly peer: string;
  readonly sentBytes: number;
  readonly receivedBytes: number;
}

/** Per registry: the transport's byte totals last added to the counters, by peer and direction. */
const trafficSeen = new WeakMap<MetricsRegistry, Map<string, number>>();

/**
 * quorate_peer_{sent,received}_bytes_total from the transport's cumulative
 * per-link totals: each scrape adds what grew since the last one (a link made
 * anew, its totals back at 0, adds its new total), so the counters never go back.
 */
export function peerTrafficCounters(m: MetricsRegistry, traffic: readonly PeerTraffic[]): void {
  const sent = m.counter('quorate_peer_sent_bytes_total', 'Bytes sent to a peer on its message connection (framed Raft messages; snapshot streams not included)', ['peer']);
  const received = m.counter('quorate_peer_received_bytes_total', 'Bytes received from a peer on its message connection (framed Raft messages; snapshot streams not included)', ['peer']);
  let seen = trafficSeen.get(m);
  if (seen === undefined) trafficSeen.set(m, seen = new Map());
  for (const t of traffic) {
    for (const [c, dir, total] of [[sent, 'sent', t.sentBytes], [received, 'received', t.receivedBytes]] as const) {
      const key = `${dir}\0${t.peer}`;
      const before = seen.get(key) ?? 0;
      const grew = total >= before ? total - before : total;
      if (grew > 0 || !seen.has(key)) c.inc({ peer: t.peer }, grew);
      seen.set(key, total);
    }
  }
}

/** quorate_peer_round_trip_seconds: the newest answered ping per peer; a peer that did not answer has no series. */
export function peerRttGauge(m: MetricsRegistry, rtt: readonly RttSample[]): void {
  const g = m.gauge('quorate_peer_round_trip_seconds', 'Round trip of the newest HTTP ping from this node to a member\'s API (/system/health/ping, every 5 s); absent while the member does not answer', ['peer']);
  g.reset();
  for (const r of rtt) if (r.ms !== null) g.set({ peer: r.nodeName }, r.ms / 1000);
}

/** The drill gauges: the period, the last drill and the last passing one (0 when none is kept). */
export function drillGauges(m: MetricsRegistry, d: DrillSchedule): void {
  const g = (name: string, help: string, v: number) => m.gauge(name, help, []).set({}, v);
  g('quorate_drill_period_seconds', 'drills.maxIntervalHours of this node in seconds: a passing drill is due at least this often (0: no period)', d.maxIntervalHours * 3600);
  g('quorate_drill_last_success_timestamp_seconds', 'When the newest passing drill report was recorded, as a Unix time (0: none kept)', d.lastPassedAt === null ? 0 : Date.parse(d.lastPassedAt) / 1000);
  g('quorate_drill_last_timestamp_seconds', 'When the newest drill report was recorded, as a Unix time (0: none kept)', d.last === null ? 0 : Date.parse(d.last.at) / 1000);
  g('quorate_drill_last_passed', '1 if the newest drill passed (RTO within target, no acknowledged write lost), 0 if it failed or none is kept (see quorate_drill_last_timestamp_seconds)', d.last?.passed === true ? 1 : 0);
  g('quorate_drill_last_lost_writes', 'Acknowledged writes the newest drill lost (RPO; must be 0)', d.last?.lost ?? 0);
  g('quorate_drill_last_rto_seconds', 'Worst RTO of the newest drill\'s rounds in seconds (0: none kept, or no write was acknowledged after a fault)', (d.last?.rtoMsMax ?? 0) / 1000);
}

/** quorate_certificate_expiry_timestamp_seconds per certificate, and the renewal period of auto ones. */
export function certificateGauges(m: MetricsRegistry, certs: readonly CertificateInfo[]): void {
  const expiry = m.gauge('quorate_certificate_expiry_timestamp_seconds', 'When a certificate this node serves expires, as a Unix time (cert: peer, api or peer+api; source: auto = cluster CA, renewed by the node; file = a configured certFile)', ['cert', 'source', 'file']);
  const period = m.gauge('quorate_certificate_renew_period_seconds', 'How often the cluster CA renews an auto certificate (security.caRotationSeconds): one with less than this left was not renewed', ['cert']);
  expiry.reset();
  period.reset();
  for (const c of certs) {
    if (c.notAfter === null) continue;
    expiry.set({ cert: c.cert, source: c.source, file: c.file ?? '' }, Date.parse(c.notAfter) / 1000);
    if (c.renewPeriodSeconds !== undefined) period.set({ cert: c.cert }, c.renewPeriodSeconds);
  }
}

/** What of the (process-wide) memory governor's counts each registry has been given. */
const governorReported = new WeakMap<MetricsRegistry, { forced: number; seconds: number }>();

function reportGovernor(m: MetricsRegistry): void {
  const was = governorReported.get(m) ?? { forced: 0, seconds: 0 };
  m.counter('quorate_gc_forced_total', 'Full garbage collections the memory governor started because Buffers outside the V8 heap grew quickly (uploads, snapshot streams)').inc(governorStats.forced - was.forced);
  m.counter('quorate_gc_forced_seconds_total', 'Event-loop time spent in those collections').inc(Math.max(0, governorStats.forcedSeconds - was.seconds));
  governorReported.set(m, { forced: governorStats.forced, seconds: governorStats.forcedSeconds });
}

export async function metricsText(m: MetricsRegistry, st: NodeStatus, machines: MachineRegistry, dataDir?: string, modes?: ModesView, extra: MetricsExtra = {}): Promise<string> {
  const g = (name: string, help: string, v: number, labels?: Record<string, string>) => m.gauge(name, help, labels ? Object.keys(labels) : []).set(labels ?? {}, v);
  g('quorate_has_leader', '1 if a leader is known', st.leaderId !== NONE ? 1 : 0);
  g('quorate_is_leader', '1 if this node leads', st.raftRole === 'leader' ? 1 : 0);
  g('quorate_term', 'Current Raft term', st.term);
  g('quorate_commit_index', 'Commit index', st.commitIndex);
  g('quorate_applied_index', 'Applied index', st.appliedIndex);
  g('quorate_apply_lag_entries', 'Committed but not yet applied entries', st.commitIndex - st.appliedIndex);
  g('quorate_quorum_met', '1 if a write quorum of voters is reachable', st.quorumMet ? 1 : 0);
  g('quorate_failure_tolerance', 'Voters the cluster can lose now and keep a quorum (as this node sees it; the leader\'s view is authoritative)', st.failureTolerance);
  g('quorate_storage_healthy', '1 while the data dir accepts writes and fsyncs', st.storageHealthy ? 1 : 0);
  g('quorate_split_brain_warning', '1 while this node has seen two leaders for one term (see the split_brain log line)', st.splitBrainWarning !== undefined ? 1 : 0);
  g('quorate_feature_level', 'Cluster feature level as this node computes it (lowest level announced by the members)', st.featureLevel);
  for (const f of [1, 2]) g('quorate_applied_commands_by_format', 'Commands applied since start, by entry format', machines.appliedByFormat(f), { format: String(f) });
  const mem = process.memoryUsage();
  g('process_resident_memory_bytes', 'Resident memory size in bytes', mem.rss);
  g('nodejs_heap_used_bytes', 'V8 heap used in bytes', mem.heapUsed);
  g('nodejs_heap_total_bytes', 'V8 heap allocated in bytes', mem.heapTotal);
  g('nodejs_external_memory_bytes', 'Memory of buffers and other objects outside the V8 heap (Buffers and ArrayBuffers included)', mem.external);
  reportGovernor(m);
  g('quorate_log_entries_in_memory', 'Raft log entries held in memory (since the compaction point)', st.lastIndex - st.firstIndex + 1);
  for (const p of st.peers) {
    if (p.self) continue;
    g('quorate_replication_lag_entries', 'Entries a peer is behind the leader (leader only)', p.replicationLagEntries, { peer: p.nodeName });
    g('quorate_replication_lag_seconds', 'How long a peer has been behind the leader\'s last index (leader only; 0 when caught up)', p.replicationLagMs / 1000, { peer: p.nodeName });
  }
  if (modes !== undefined) {
    g('quorate_paused', '1 while the cluster is paused (maintenance: no node starts an election by itself)', modes.paused ? 1 : 0);
    const drained = m.gauge('quorate_drained', '1 for each drained node (never starts an election, never a switchover target)', ['node']);
    drained.reset();
    for (const n of modes.drained) drained.set({ node: n }, 1);
    const expiry = m.gauge('quorate_maintenance_expiry_timestamp_seconds', 'When a pause (kind="pause") or a node\'s drain (kind="drain") given an expiry ends, as a Unix time; the leader ends it then', ['kind', 'node']);
    expiry.reset();
    if (modes.paused && modes.pause?.expiresAt !== undefined) expiry.set({ kind: 'pause', node: '' }, modes.pause.expiresAt / 1000);
    for (const [n, h] of Object.entries(modes.drains ?? {})) if (h.expiresAt !== undefined) expiry.set({ kind: 'drain', node: n }, h.expiresAt / 1000);
  }
  if (st.vip !== undefined) g('quorate_vip_held', '1 while this node holds the virtual IP (cluster.virtualIp); absent when none is configured', st.vip.holding ? 1 : 0);
  if (extra.pendingProposals !== undefined) g('quorate_proposals_pending', 'Client proposals waiting on this node: queued for the Raft loop or proposed and not yet applied', extra.pendingProposals);
  g('quorate_failover_safe', 'Leader only: 1 while another voter is fully caught up and in contact, so losing this leader loses no acknowledged write (0 on other nodes)', extra.failoverSafe === true ? 1 : 0);
  if (extra.peerTraffic !== undefined) peerTrafficCounters(m, extra.peerTraffic);
  if (extra.peerRtt !== undefined) peerRttGauge(m, extra.peerRtt);
  if (extra.drills !== undefined) drillGauges(m, extra.drills);
  if (extra.certificates !== undefined) certificateGauges(m, extra.certificates);
  if (dataDir !== undefined) {
    try {
      const fs = statfsSync(dataDir);
      g('quorate_data_dir_free_bytes', 'Free bytes (for unprivileged users) on the data dir\'s file system', fs.bavail * fs.bsize);
      g('quorate_data_dir_size_bytes', 'Size in bytes of the data dir\'s file system', fs.blocks * fs.bsize);
    } catch {
      // the storage health gauge and the node's log say what is wrong with the data dir
    }
  }
  return await m.text();
}
