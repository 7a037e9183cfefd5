// One quorate node: wiring. The Replica (./replica.ts) runs the loop over
// the WAL, the peer transport and the KV; the MemberRegistry
// (./registry.ts) knows who the members are and reconciles the membership;
// RaftLeadership + LeaderServices (./leadership.ts) run leader-only work
// while this node leads with a quorum; ./status.ts presents it all. This file
// builds them from the config and provides the HTTP API's ports
// (src/api/ports.ts): it is the ClusterControl; `kvService` is the KvService.
import type { Logger } from 'pino';
import { isLoopback, type QuorateConfig } from '../config/index.js';
import { NONE, RawNode, majority, votingIds, type ConfEntry, type Message, type NodeId, type Ready, type SnapshotMeta, type SoftState } from '../raft/index.js';
import { SeededRandom } from '../raft/prng.js';
import { WalStorage, writeHaState } from '../storage/index.js';
import { KV_MACHINE_ID, createKvState, type KvState, type KvStateMachine, type MachineRegistry, encodeCommand, encodeEnvelope, encodeKvPayload, type ApplyResult, type Command } from '../state/index.js';
import { PeerTransport, loadClusterSecret } from '../transport/index.js';
import { MetricsRegistry } from '../ops/metrics.js';
import { NodeError, notLeader } from './errors.js';
import type { ClusterControl, KvService, NodeStatus, ProposeOptions } from '../api/ports.js';
import { FEATURE_LEVEL, featureLevelFromEnv } from './features.js';
import { LeaderServices, RaftLeadership, periodicService } from './leadership.js';
import { bootstrapMembership, loadOrCreateBootstrap, normalizePeerUrl, selfId, type Bootstrap } from './members.js';
import { kvServiceOf } from './kv-service.js';
import { MemberRegistry } from './registry.js';
import { REAL_CLOCK, Replica } from './replica.js';
import { memberRole } from './roles.js';
import { buildStatus } from './status.js';

export { VERSION } from './status.js';

// Below the client library's default timeout (10 s), so the client hears 504 commit_unknown
// from the server rather than timing out itself.
const DEFAULT_PROPOSE_TIMEOUT_MS = 5_000;
const HOUSEKEEPING_MS = 250;

export class QuorateNode implements ClusterControl {
  readonly config: QuorateConfig;
  readonly nodeName: string;
  readonly nodeId: number;
  readonly kv: KvStateMachine;
  /** The replicated state (the Replica's state machine): applies entries to the KV, owns the applied index, writes snapshots. */
  readonly machines: MachineRegistry;
  /** The replicated KV as the HTTP API's KvService (./kv-service.ts). */
  readonly kvService: KvService = kvServiceOf(this);
  readonly #log: Logger;
  readonly #storage: WalStorage;
  readonly #replica: Replica;
  readonly #registry: MemberRegistry;
  readonly #leadership = new RaftLeadership();
  readonly #services: LeaderServices;
  readonly #transport: PeerTransport;
  readonly #metrics = new MetricsRegistry();
  readonly #tickMs: number;
  readonly #startedAt = new Date().toISOString();
  #stopped = false;
  #housekeepingTimer: NodeJS.Timeout | undefined;
  #noLeaderSince = Date.now();
  #lastWarnAt = 0;
  #termLeaders = new Map<number, NodeId>();
  #splitBrain: string | undefined;
  #reconcileQueued = false;
  #onFatal: (e: Error) => void = () => undefined;
  /** The cluster feature level last computed when proposing (for the log line when it changes). */
  #proposedLevel = 0;
  readonly #mLeaderChanges;

  private constructor(
    config: QuorateConfig,
    logger: Logger,
    storage: WalStorage,
    raw: RawNode,
    state: KvState,
    id: NodeId,
    bootstrap: Bootstrap,
    tickMs: number,
    lastSnapshot: SnapshotMeta | undefined,
    security: { incarnation: string; clusterSecret: Uint8Array },
    featureLevel: number,
  ) {
    this.config = config;
    this.nodeName = config.node.nodeName;
    this.nodeId = id;
    this.kv = state.kv;
    this.machines = state.registry;
    this.#storage = storage;
    this.#tickMs = tickMs;
    // The agent's root logger adds the current term to every line (pino mixin).
    this.#log = logger.child({ node: config.node.nodeName });
    const m = this.#metrics;
    this.#mLeaderChanges = m.counter('quorate_leader_changes_seen_total', 'Leader changes seen by this node');
    const committed = m.counter('quorate_proposals_committed_total', 'Proposals committed and applied');
    const failed = m.counter('quorate_proposals_failed_total', 'Proposals that failed', ['reason']);
    const commitLatency = m.histogram('quorate_commit_latency_seconds', 'Proposal to apply latency on the leader', [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
    const fsyncLatency = m.histogram('quorate_fsync_latency_seconds', 'Latency of one persist (write + fdatasync) per Ready', [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);

    this.#registry = new MemberRegistry({
      selfId: id,
      self: { nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl, role: memberRole(config.node.role), incarnation: security.incarnation },
      members: new Map(bootstrap.members.map((b) => [b.id, b.peerUrl])),
      logger: this.#log,
      configuredRole: config.node.role,
      fatalIfBroken: (e) => this.#replica.fatalIfBroken(e),
      featureLevel,
    });
    const peerMap = new Map<number, { host: string; port: number }>();
    for (const b of bootstrap.members) {
      if (b.id === id) continue;
      const u = new URL(`tcp://${b.peerUrl}`);
      peerMap.set(b.id, { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) });
    }
    const tls = config.security.tls;
    const peerAddr = new URL(`tcp://${config.node.peerAddress}`);
    this.#transport = new PeerTransport({
      nodeId: id,
      nodeName: config.node.nodeName,
      haId: config.cluster.haId,
      listenHost: peerAddr.hostname.replace(/^\[|\]$/g, ''),
      listenPort: Number(peerAddr.port),
      tls: tls === 'auto' ? 'off' : tls,
      clusterSecret: security.clusterSecret,
      incarnation: security.incarnation,
      featureLevel,
      recordedIncarnation: (peer) => this.#registry.record(peer)?.incarnation,
      onPeerAck: (peer, info) => {
        this.#registry.hearFeatureLevel(peer, info.featureLevel);
        const known = info.knownIncarnation;
        if (known !== undefined && known !== security.incarnation) this.#replica.run((r) => this.#registry.markRejoining(r, peer, known));
      },
      ...(typeof tls === 'object' ? { expectedPeerHost: (peer: number) => peerMap.get(peer)?.host } : {}),
      apiUrl: config.node.advertiseApiUrl,
      role: config.node.role,
      logger: this.#log,
      onMessages: (msgs) => this.#replica.receive(msgs),
      onPeerDisconnected: (peer, reason) => {
        // It may come back as another build: count it as level 1 until it says again.
        this.#registry.hearFeatureLevel(peer, undefined);
        if (reason === 'reset') this.#replica.peerReset(peer);
      },
      // Incoming snapshots land beside the stored ones (same file system);
      // recovery removes a *.tmp left there by a crash.
      snapshotSpoolDir: `${config.node.dataDir}/raft/snap`,
      onSnapshot: (from, meta, source, msg) => this.#replica.receiveSnapshot(from, meta, source, msg, (chunks) => this.machines.validate(chunks)),
      onPeerHello: (peer, info) => {
        this.#registry.hearFeatureLevel(peer, info.featureLevel);
        this.#registry.announce(peer, { nodeName: info.nodeName, apiUrl: info.apiUrl === '' ? undefined : info.apiUrl, role: memberRole(info.role), incarnation: info.incarnation });
        this.#queueReconcile();
      },
      allowedPeerIds: 'peers',
    });
    this.#replica = new Replica({
      raw,
      log: storage,
      net: this.#transport,
      sm: state.registry,
      clock: REAL_CLOCK,
      tickMs,
      logger: this.#log,
      lastSnapshot,
      metrics: {
        committed: () => committed.inc(),
        failed: (reason) => failed.inc({ reason }),
        commitLatency: (s) => commitLatency.observe(s),
        fsyncLatency: (s) => fsyncLatency.observe(s),
      },
      hooks: {
        admit: (msg) => this.#admit(msg),
        onSoftState: (prev, next) => this.#onSoftState(prev, next),
        afterReady: (rd) => this.#afterReady(raw, rd),
        onConfApplied: (index, ce) => this.#onConfApplied(index, ce),
        onFatal: (e) => this.#onFatal(e),
        notLeader: () => notLeader(this.#leaderName(), this.leaderApiUrl()),
        nameOf: (peer) => this.#registry.nameOf(peer),
      },
    });
    this.#registry.refresh(raw);
    this.#services = new LeaderServices(this.#leadership, this.#log);
    this.#services.add(periodicService('ttl-expiry', HOUSEKEEPING_MS, () => this.#expireKeys()));
    this.#services.add(periodicService('membership-reconciliation', HOUSEKEEPING_MS, () => this.#queueReconcile()));
    this.#transport.setPeers(peerMap);
  }

  /** Open storage, recover, join the cluster. Throws with an operator-facing message on bad data. */
  static async start(config: QuorateConfig, logger: Logger, opts: { onFatal?: (e: Error) => void } = {}): Promise<QuorateNode> {
    const dataDir = config.node.dataDir;
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dataDir, { recursive: true });
    const bootstrap = await loadOrCreateBootstrap(dataDir, config);
    const id = selfId(bootstrap, config);
    if (config.security.tls === 'auto') {
      // Automatic certificates (the cluster CA) are not in this release: "auto"
      // runs plain TCP only where that is safe, on loopback.
      const remote = bootstrap.members.map((b) => b.peerUrl).filter((u) => !isLoopback(new URL(`tcp://${u}`).hostname.replace(/^\[|\]$/g, '')));
      if (remote.length > 0) {
        throw new Error(
          `security.tls is "auto", but automatic certificate issuance is not available in this release and peer ${remote[0]} is not on loopback: set security.tls to {"certFile","keyFile","caFile"} (your own PKI) to encrypt peer traffic`,
        );
      }
      logger.warn({ node: config.node.nodeName, event: 'tls_auto_loopback' }, 'security.tls "auto" on a loopback-only cluster: peer traffic is plain TCP on this machine');
    }
    const clusterSecret = loadClusterSecret(config.security.clusterSecretFile);
    // FEATURE_LEVEL unless a test runs this node as the previous release.
    const featureLevel = featureLevelFromEnv();
    if (featureLevel !== FEATURE_LEVEL) logger.warn({ node: config.node.nodeName, event: 'test_feature_level', featureLevel }, `QUORATE_TEST_FEATURE_LEVEL: running as feature level ${featureLevel} (tests only)`);
    // The entry and snapshot formats read are the feature level's: a level-1 node stops on a format-2 entry and
    // refuses a composite snapshot, as an old build would. Snapshots are written by the cluster level (set below).
    const replicated = createKvState({ maxFormatVersion: featureLevel });
    const { storage, state } = await WalStorage.open(`${dataDir}/raft`, { validateSnapshot: (chunks) => replicated.registry.validate(chunks) });
    for (const w of state.warnings) logger.warn({ node: config.node.nodeName, event: 'storage_recovery' }, w);
    const lastSnapshot = state.snapshot;
    if (state.snapshot) await replicated.registry.restore(state.openSnapshot());
    const snapshot = state.snapshot ?? { index: 0, term: 0, membership: bootstrapMembership(bootstrap) };
    const tickMs = Math.max(1, Math.min(10, Math.floor(config.cluster.heartbeatIntervalMs / 5)));
    const raw = new RawNode(
      {
        id,
        electionTicks: Math.max(2, Math.round(config.cluster.electionTimeoutMs / tickMs)),
        heartbeatTicks: Math.max(1, Math.round(config.cluster.heartbeatIntervalMs / tickMs)),
        random: new SeededRandom((Date.now() ^ (id * 2654435761)) >>> 0),
        ...(config.database.writeQuorum !== undefined ? { writeQuorum: config.database.writeQuorum } : {}),
        snapshotEntries: config.cluster.snapshotEntries,
        incarnation: state.incarnation,
        trailingEntries: config.cluster.snapshotTrailingEntries,
      },
      { hardState: state.hardState, snapshot, entries: state.entries, applied: snapshot.index },
    );
    const node = new QuorateNode(config, logger, storage, raw, replicated, id, bootstrap, tickMs, lastSnapshot, { incarnation: state.incarnation, clusterSecret }, featureLevel);
    // Snapshots in the composite format only once every member reads it (cluster feature level >= 2).
    replicated.registry.useClusterFeatureLevel(() => node.featureLevel());
    if (opts.onFatal) node.#onFatal = opts.onFatal;
    await node.#transport.listen();
    node.#replica.start();
    node.#housekeepingTimer = setInterval(() => node.#housekeeping(), HOUSEKEEPING_MS);
    const st = raw.status();
    node.#log.info(
      { event: 'node_started', term: st.term, id, members: bootstrap.members.length, firstIndex: st.firstIndex, lastIndex: st.lastIndex, tickMs },
      `node ${config.node.nodeName} (id ${id}) started; log ${st.firstIndex}..${st.lastIndex}`,
    );
    void node.#writeHaState();
    return node;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#housekeepingTimer) clearInterval(this.#housekeepingTimer);
    this.#services.close();
    await this.#replica.stop();
    await this.#transport.close();
    await this.#storage.close();
    this.#log.info({ event: 'node_stopped' }, 'node stopped cleanly');
  }

  // ------------------------------------------------------------ ClusterControl (src/api/ports.ts), propose, readBarrier

  /** The current Raft term (durable), for log lines and fencing tokens. */
  get term(): number {
    return this.#replica.term;
  }

  /** Who leads, with which term, and whether it has a quorum (the Leadership seam). */
  get leadership(): RaftLeadership {
    return this.#leadership;
  }

  isLeader(): boolean {
    return this.#replica.soft.role === 'leader';
  }

  /** The leader's API URL as recorded in the membership (never one merely announced on a connection). */
  leaderApiUrl(): string | undefined {
    const lead = this.#replica.soft.lead;
    if (lead === NONE) return undefined;
    if (lead === this.nodeId) return this.config.node.advertiseApiUrl;
    return this.#registry.record(lead)?.apiUrl;
  }

  /** The cluster feature level as this node computes it (features.ts): the lowest level heard from the current members. */
  featureLevel(): number {
    return this.#registry.clusterFeatureLevel(this.#replica.core.membership().members);
  }

  propose(command: Command, options: ProposeOptions = {}): Promise<ApplyResult> {
    const at = Date.now();
    const ik = options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {};
    // Format-2 envelopes only once every member applies them; else the KV's format 1.
    const level = this.featureLevel();
    if (level !== this.#proposedLevel) {
      if (this.#proposedLevel !== 0 || level !== FEATURE_LEVEL) {
        this.#log.info({ event: 'feature_level_changed', from: this.#proposedLevel, to: level }, `cluster feature level is ${level}: proposing entry format ${level >= 2 ? 2 : 1}`);
      }
      this.#proposedLevel = level;
    }
    const data = level >= 2
      ? encodeEnvelope({ machine: KV_MACHINE_ID, at, ...ik, payload: encodeKvPayload(command) })
      : encodeCommand({ at, ...ik, command });
    return this.#replica.propose(data, options.timeoutMs ?? DEFAULT_PROPOSE_TIMEOUT_MS);
  }

  readBarrier(timeoutMs = 5000): Promise<void> {
    return this.#replica.readBarrier(timeoutMs);
  }

  async switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }> {
    if (!this.isLeader()) throw notLeader(this.#leaderName(), this.leaderApiUrl());
    const st = this.#replica.core.status();
    let target: NodeId | undefined;
    if (to !== undefined) {
      target = [...this.#registry.peers.keys()].find((id) => this.#registry.nameOf(id) === to);
      if (target === undefined) throw new NodeError('invalid_transfer', `no member named "${to}"; see \`quorate peers\` for names`);
    } else {
      const candidates = st.progress.filter((p) => p.role === 'voter' && p.recentActive).sort((a, b) => b.match - a.match);
      target = candidates[0]?.id;
      if (target === undefined) throw new NodeError('invalid_transfer', 'no other reachable voter can take over; add or start a voter first');
    }
    const started = performance.now();
    await new Promise<void>((resolve, reject) =>
      this.#replica.run((raw) => {
        try {
          raw.transferLeadership(target);
          resolve();
        } catch (e) {
          if (this.#replica.fatalIfBroken(e)) return reject(new NodeError('shutting_down', `the node stopped on an internal error (${(e as Error).message})`));
          reject(this.#replica.mapRaftError(e));
        }
      }),
    );
    const deadline = Date.now() + 2 * this.config.cluster.electionTimeoutMs + 500;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
      const s = this.#replica.core.status();
      if (s.lead !== NONE && s.lead !== this.nodeId) {
        return { from: this.nodeName, to: this.#registry.nameOf(s.lead), term: s.term, pauseMs: Math.round(performance.now() - started) };
      }
    }
    throw new NodeError('transfer_failed', `leadership did not move to ${this.#registry.nameOf(target)} in time; it may be lagging or unreachable. This node still leads: check \`quorate peers\` (lag, status), then retry or pick another target with \`quorate switchover --to NAME\``);
  }

  async failoverSafe(waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }> {
    if (!this.isLeader()) throw notLeader(this.#leaderName(), this.leaderApiUrl());
    const deadline = Date.now() + Math.min(Math.max(0, waitMs), 5000);
    for (;;) {
      const st = this.#replica.core.status();
      const caughtUp = st.progress.filter((p) => p.role === 'voter' && !p.diverged && !this.#registry.isFenced(p.id) && p.match >= st.lastIndex && p.ticksSinceContact * this.#tickMs < this.config.cluster.electionTimeoutMs);
      if (caughtUp.length > 0 || Date.now() >= deadline) {
        return { safe: caughtUp.length > 0, caughtUp: caughtUp.map((p) => this.#registry.nameOf(p.id)) };
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  snapshotNow(): Promise<{ index: number }> {
    return this.#replica.snapshotNow();
  }

  metricsText(): string {
    const st = this.status();
    const g = (name: string, help: string, v: number, labels?: Record<string, string>) => this.#metrics.gauge(name, help, labels ? Object.keys(labels) : []).set(labels ?? {}, v);
    g('quorate_has_leader', '1 if a leader is known', st.leaderId !== NONE ? 1 : 0);
    g('quorate_is_leader', '1 if this node leads', st.raftRole === 'leader' ? 1 : 0);
    g('quorate_term', 'Current Raft term', st.term);
    g('quorate_commit_index', 'Commit index', st.commitIndex);
    g('quorate_applied_index', 'Applied index', st.appliedIndex);
    g('quorate_apply_lag_entries', 'Committed but not yet applied entries', st.commitIndex - st.appliedIndex);
    g('quorate_quorum_met', '1 if a write quorum of voters is reachable', st.quorumMet ? 1 : 0);
    g('quorate_feature_level', 'Cluster feature level as this node computes it (lowest level announced by the members)', st.featureLevel);
    for (const f of [1, 2]) g('quorate_applied_commands_by_format', 'Commands applied since start, by entry format', this.machines.appliedByFormat(f), { format: String(f) });
    const mem = process.memoryUsage();
    g('process_resident_memory_bytes', 'Resident memory size in bytes', mem.rss);
    g('nodejs_heap_used_bytes', 'V8 heap used in bytes', mem.heapUsed);
    g('nodejs_heap_total_bytes', 'V8 heap allocated in bytes', mem.heapTotal);
    g('nodejs_external_memory_bytes', 'Memory of buffers and other objects outside the V8 heap', mem.external + mem.arrayBuffers);
    g('quorate_log_entries_in_memory', 'Raft log entries held in memory (since the compaction point)', st.lastIndex - st.firstIndex + 1);
    for (const p of st.peers) {
      if (p.self) continue;
      g('quorate_replication_lag_entries', 'Entries a peer is behind the leader (leader only)', p.replicationLagEntries, { peer: p.nodeName });
    }
    return this.#metrics.text();
  }

  status(): NodeStatus {
    return buildStatus({
      st: this.#replica.core.status(),
      config: this.config,
      registry: this.#registry,
      stats: this.#transport.stats(),
      tickMs: this.#tickMs,
      leaderApiUrl: this.leaderApiUrl(),
      snapshotIndex: this.#replica.snapshotIndex,
      revision: this.kv.revision,
      fatal: this.#replica.fatal,
      splitBrain: this.#splitBrain,
      startedAt: this.#startedAt,
      featureLevel: this.featureLevel(),
    });
  }

  // ------------------------------------------------------------ hooks (in the loop)

  #admit(m: Message): boolean {
    if (!this.#registry.admit(m)) return false;
    if (m.type === 'app' || m.type === 'heartbeat') this.#watchSplitBrain(m);
    return true;
  }

  #afterReady(raw: RawNode, rd: Ready): void {
    if (rd.snapshot || rd.entries.some((e) => e.type === 'conf')) this.#registry.refresh(raw);
    if (rd.softState?.role === 'leader' || rd.committedEntries.some((e) => e.type === 'conf')) this.#registry.dirty = true;
    if (this.#replica.soft.role === 'leader' && this.#registry.dirty && rd.committedEntries.length > 0) this.#queueReconcile();
  }

  #onConfApplied(index: number, ce: ConfEntry): void {
    this.#log.info({ event: 'membership_applied', index, change: ce.change }, `membership change applied at index ${index}: ${ce.change.op} node ${ce.change.id}`);
  }

  #onSoftState(prev: SoftState, s: SoftState): void {
    const name = (id: NodeId) => this.#registry.nameOf(id);
    if (s.lead !== prev.lead) {
      this.#mLeaderChanges.inc();
      if (s.lead === NONE) {
        this.#noLeaderSince = Date.now();
        this.#log.warn({ event: 'leader_lost', previous: prev.lead }, `lost leader ${prev.lead === NONE ? '' : name(prev.lead)}`);
      } else {
        this.#log.info({ event: 'leader_changed', leader: s.lead, leaderName: name(s.lead) }, `leader is now ${name(s.lead)}`);
      }
      void this.#writeHaState();
    }
    if (s.role === 'leader' && prev.role !== 'leader') this.#log.info({ event: 'became_leader' }, `${this.nodeName} became the leader`);
    this.#updateLeadership();
  }

  #watchSplitBrain(m: Message): void {
    const seen = this.#termLeaders.get(m.term);
    const selfLeads = this.#replica.soft.role === 'leader' && this.#replica.term === m.term;
    if ((seen !== undefined && seen !== m.from) || selfLeads) {
      const other = selfLeads ? this.nodeName : this.#registry.nameOf(seen!);
      this.#splitBrain = `${this.#registry.nameOf(m.from)} and ${other} both claimed leadership of term ${m.term}`;
      this.#log.error({ event: 'split_brain', term: m.term }, `Split-brain warning: ${this.#splitBrain}`);
    } else if (seen === undefined) {
      this.#termLeaders.set(m.term, m.from);
      if (this.#termLeaders.size > 64) this.#termLeaders.delete(this.#termLeaders.keys().next().value!);
    }
  }

  // ------------------------------------------------------------ leader-only work and housekeeping

  /** Leading, the term, and a quorum in the sense CheckQuorum keeps leadership: a majority of voters heard from. */
  #updateLeadership(): void {
    const st = this.#replica.core.status();
    const leading = st.role === 'leader';
    const quorum = leading && st.reachableVoters >= majority(votingIds(st.membership).length);
    this.#leadership.update({ leading, term: st.term, quorum });
  }

  /** TTL: the leader proposes expiry with its clock; followers never expire on their own. */
  #expireInFlight = false;
  #expireKeys(): void {
    if (this.#expireInFlight || !this.isLeader()) return;
    const keys = this.kv.expiredKeys(Date.now(), 1000);
    if (keys.length === 0) return;
    this.#expireInFlight = true;
    this.propose({ type: 'expire', keys })
      .catch(() => undefined)
      .finally(() => (this.#expireInFlight = false));
  }

  /** Run the membership reconciliation in the loop soon (at most one queued). */
  #queueReconcile(): void {
    if (this.#reconcileQueued) return;
    this.#reconcileQueued = true;
    this.#replica.run((raw) => {
      this.#reconcileQueued = false;
      if (!this.#replica.fatal) this.#registry.reconcile(raw);
    });
  }

  #housekeeping(): void {
    if (this.#replica.fatal || this.#stopped) return;
    const now = Date.now();
    this.#registry.trackCatchUp(this.#replica.core.status(), now);
    this.#updateLeadership();
    if (now - this.#lastWarnAt < 5000) return;
    const st = this.status();
    const electionMs = this.config.cluster.electionTimeoutMs;
    if (st.leaderId === NONE && now - this.#noLeaderSince > 2 * electionMs) {
      this.#lastWarnAt = now;
      const q = majority(st.votersTotal);
      this.#log.warn(
        { event: 'election_failed', votersReachable: st.votersReachable, votersTotal: st.votersTotal },
        `Leader election failed: no leader for ${now - this.#noLeaderSince} ms in term ${st.term}; ${st.votersReachable} of ${st.votersTotal} voters reachable, an election needs ${q}. Start the missing nodes or check that peers can reach each other's peer addresses`,
      );
    } else if (st.raftRole === 'leader' && !st.quorumMet) {
      this.#lastWarnAt = now;
      this.#log.warn(
        { event: 'quorum_not_met', votersReachable: st.votersReachable, votersTotal: st.votersTotal, writeQuorum: st.writeQuorum },
        `Quorum not met: ${st.votersReachable} of ${st.votersTotal} voters reachable (writes need ${st.writeQuorum}); writes wait until enough voters return`,
      );
    }
  }

  async #writeHaState(): Promise<void> {
    try {
      const leaderUrl = this.leaderApiUrl();
      await writeHaState(this.config.node.dataDir, {
        ConsensusID: String(this.nodeId),
        ConsensusAddr: normalizePeerUrl(this.config.node.advertisePeerUrl),
        ConsensusEnabled: true,
        HaID: this.config.cluster.haId,
        Observer: this.config.node.role === 'observer',
        Passive: !this.isLeader(),
        ApiUrl: this.config.node.advertiseApiUrl,
        ...(leaderUrl ? { ActiveUri: leaderUrl } : {}),
        Enabled: true,
        LoadBalanced: this.config.cluster.loadBalanced,
      });
    } catch (e) {
      this.#log.warn({ event: 'ha_state_write_failed', err: (e as Error).message }, `could not write ha-state.json: ${(e as Error).message}`);
    }
  }

  #leaderName(): string | undefined {
    const lead = this.#replica.soft.lead;
    return lead === NONE ? undefined : this.#registry.nameOf(lead);
  }
}
