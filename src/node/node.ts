// One quorate node: wiring. The Replica (./replica.ts) runs the loop over
// the WAL, the peer transport and the KV; the MemberRegistry
// (./registry.ts) knows who the members are and reconciles the membership;
// RaftLeadership + LeaderServices (./leadership.ts) run leader-only work
// while this node leads with a quorum; ./status.ts presents it all.
// ./node-build.ts opens the data dir and builds and connects them; this file
// holds them, starts and stops them, and provides the HTTP API's ports
// (src/api/ports.ts): it is the ClusterControl; `kvService` is the KvService.
// Split out: ./control.ts (switchover, failover-safe), ./node-metrics.ts,
// ./split-brain.ts, ./housekeeping.ts (warnings, ha-state.json, TTL expiry),
// ./boot.ts (transport options); the glue of ./modes.ts (and ./approval.ts), ./history-recorder.ts
// and ./enroll.ts (remove, removed state) lives in those modules.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { NONE, type ConfEntry, type Message, type NodeId, type RawNode, type Ready, type SoftState } from '../raft/index.js';
import type { WalStorage } from '../storage/index.js';
import { encodeEnvelope, type SettingsCommand, type KvStateMachine, type HistoryRecord, type HistoryStateMachine, type MachineRegistry, type ApplyResult, type Command } from '../state/index.js';
import type { PeerTransport } from '../transport/index.js';
import { MetricsRegistry } from '../ops/metrics.js';
import { NodeError, notLeader } from './errors.js';
import type { CertificateInfo, ClusterControl, JobsPort, KvService, NodeStatus, ProposeOptions } from '../api/ports.js';
import type { RttSample } from '../api/ports-ops.js';
import { sqlServiceOf } from './sql-service.js';
import { filesServiceOf } from './files-service.js';
import { ClusterRestore } from './cluster-restore.js';
import type { FilesStateMachine } from '../files/machine.js';
import type { FilesService } from '../api/ports-files.js';
import type { SqlStateMachine } from '../sql/machine.js';
import type { SqlService } from '../api/ports.js';
import { EntryEncoder } from './features.js';
import { RaftLeadership, type LeaderServices } from './leadership.js';
import { DEFAULT_JOIN_TOKEN_TTL_MS, type Enroller, type RemovedState, type EnrollRequest, type EnrollResult } from './enroll.js';
import { kvServiceOf } from './kv-service.js';
import { caughtUpVoters, failoverSafe, switchover, type ControlContext } from './control.js';
import type { SwitchoverScheduler } from './scheduled-switchover.js';
import type { HistoryRecorder } from './history-recorder.js';
import type { MaintenanceExpiry } from './maintenance-expiry.js';
import type { NodeSecurity } from './security.js';
import type { NodeDrills } from './drills.js';
import { CertificateWatch } from './certificates.js';
import type { Modes, ModesView } from './modes.js';
import { HealthWarnings, writeNodeHaState } from './housekeeping.js';
import { metricsText } from './node-metrics.js';
import type { MemberRegistry } from './registry.js';
import type { Replica } from './replica.js';
import type { SplitBrainWatch } from './split-brain.js';
import { buildStatus, witnessStatus } from './status.js';
import type { LeaderScheduler } from './scheduler.js';
import type { Backups } from './backups.js';
import type { AppServices } from './app-services.js';
import type { LeaderMirror } from '../coord/index.js';
import type { WitnessDriver } from '../coord/witness-driver.js';
import { LagTracker, promoteDr, type PromotionResult } from './promotion.js';
import { memberReachable } from './dr-wiring.js';
import { isolate, type IsolateDeps, type IsolateResult } from './isolate.js';
import type { VirtualIp } from './vip.js';
import type { Fencing } from './fencing.js';
import type { FenceTarget } from './vip-commands.js';
import type { AutoTls } from './tls-auto.js';
import type { CaRotation } from './ca-rotate.js';
import { periodKeyRef } from '../transport/handshake.js';
import { DEFAULT_PROPOSE_TIMEOUT_MS, HOUSEKEEPING_MS, PERIOD_KEYS_FEATURE_LEVEL, buildNode, openNode, type OpenedNode } from './node-build.js';

export { VERSION } from './status.js';
export { PERIOD_KEYS_FEATURE_LEVEL } from './node-build.js';

export class QuorateNode implements ClusterControl {
  readonly config: QuorateConfig;
  readonly nodeName: string;
  readonly nodeId: number;
  readonly kv: KvStateMachine;
  /** The cluster history (the "history" machine): leadership and membership events. */
  readonly history: HistoryStateMachine;
  /** The replicated state (the Replica's state machine): applies entries to the KV, owns the applied index, writes snapshots. */
  readonly machines: MachineRegistry;
  /** The replicated KV as the HTTP API's KvService (./kv-service.ts). */
  readonly kvService: KvService = kvServiceOf(this);
  /** Replicated SQL (the "sql" machine, src/sql) and its API service (./sql-service.ts); set by start(). */
  sql!: SqlStateMachine;
  sqlService!: SqlService;
  /** Replicated files (the "files" machine, src/files) and their API service (./files-service.ts); set by start(). */
  files!: FilesStateMachine;
  filesService!: FilesService;
  /** POST /v1/cluster/restore (./cluster-restore.ts); set by start(). */
  clusterRestore!: ClusterRestore;
  readonly #log: Logger;
  readonly #storage: WalStorage;
  readonly #replica: Replica;
  readonly #registry: MemberRegistry;
  readonly #leadership = new RaftLeadership();
  readonly #services: LeaderServices;
  readonly #transport: PeerTransport;
  readonly #metrics = new MetricsRegistry({ processMetrics: true });
  readonly #tickMs: number;
  readonly #startedAt = new Date().toISOString();
  #stopped = false;
  #housekeepingTimer: NodeJS.Timeout | undefined;
  readonly #warnings: HealthWarnings;
  readonly #splitBrain: SplitBrainWatch;
  readonly #control: ControlContext;
  #peerRtt: readonly RttSample[] = [];
  #onFatal: (e: Error) => void = () => undefined;
  readonly #entries: EntryEncoder;
  readonly #mLeaderChanges;
  readonly #enroller: Enroller;
  readonly #historyRecorder: HistoryRecorder;
  /** Pauses and drains that end by themselves, and their history records (./maintenance-expiry.ts). */
  readonly #maintenance: MaintenanceExpiry;
  /** Failover mode, paused, drained: whether this node campaigns by itself (./modes.ts). */
  readonly #modes: Modes;
  /** Removed from the cluster: serves no data (./enroll.ts). */
  readonly #removal: RemovedState;
  /** `switchover --at`: kept in the leader's memory, a leader service (./scheduled-switchover.ts). */
  readonly switchoverSchedule: SwitchoverScheduler;
  /** The leader-only scheduler (./scheduler.ts) and backups (./backups.ts), wired in ./scheduled-work.ts. */
  readonly scheduler: LeaderScheduler;
  readonly backups: Backups;
  /** Health checks, role-change hooks, queues/locks/outbox (./app-services.ts): the API's AppCoordination. */
  readonly appServices: AppServices;
  /** With redis.enabled: the Raft leader mirrored to Redis and cross-checked (src/coord/redis-mirror.ts). */
  readonly #redisMirror: LeaderMirror | undefined;
  /** coordination "redis" with local-sync: Redis as the witness of the in-sync set (src/coord/WITNESS.md). */
  readonly witness: WitnessDriver | undefined;
  readonly witnessConfirm: ((minEpoch?: number) => Promise<{ epoch: number; inSync: readonly number[] }>) | undefined;
  /** Managed API tokens and the audit log (./security.ts); `security.recordAudit(...)` audits an action. */
  readonly security: NodeSecurity;
  /** security.tls "auto" off loopback: the node's certificate from the cluster CA (./tls-auto.ts). */
  readonly autoTls: AutoTls | undefined;
  readonly #certs: CertificateWatch;
  readonly jobs: JobsPort;
  /** Drill faults on this node and the replicated drill reports (./drills.ts): the API's DrillPort. */
  readonly drills: NodeDrills;
  /** DR promotion (./promotion.ts): the replication lag, and the agent's restart (absent outside `quorate agent`). */
  readonly #lag = new LagTracker();
  #restart: ((rewrite: () => Promise<void>) => Promise<void>) | undefined;
  /** `quorate ca rotate` and the end of its grace (./ca-rotate.ts). */
  readonly #caRotation: CaRotation;
  /** Isolate and the cluster-secret rotations it makes (./isolate.ts). */
  readonly #isolate: IsolateDeps;
  /** cluster.virtualIp: a leader service (./vip.ts); the previous leader is what fenceScript is run against. */
  readonly #vip: VirtualIp | undefined;
  /** cluster.fenceScript: the gate for leader work with external effects. */
  readonly #fencing: Fencing;
  #previousLeader: FenceTarget | undefined;

  private constructor(o: OpenedNode, logger: Logger) {
    const { config, storage, raw, replicated: state, id, bootstrap, tickMs, lastSnapshot, security, featureLevel } = o;
    this.autoTls = security.autoTls;
    this.#certs = new CertificateWatch(config, () => this.autoTls);
    this.config = config;
    this.nodeName = config.node.nodeName;
    this.nodeId = id;
    this.kv = state.kv;
    this.history = state.history;
    this.machines = state.registry;
    this.#storage = storage;
    this.#tickMs = tickMs;
    // The agent's root logger adds the current term to every line (pino mixin).
    this.#log = logger.child({ node: config.node.nodeName });
    this.#entries = new EntryEncoder(this.#log);
    this.#warnings = new HealthWarnings(this.#log, config.cluster.electionTimeoutMs);
    ({
      leaderChanges: this.#mLeaderChanges, registry: this.#registry, transport: this.#transport, replica: this.#replica, splitBrain: this.#splitBrain,
      control: this.#control, enroller: this.#enroller, removal: this.#removal, historyRecorder: this.#historyRecorder, modes: this.#modes,
      maintenance: this.#maintenance, security: this.security, services: this.#services, fencing: this.#fencing, vip: this.#vip,
      switchoverSchedule: this.switchoverSchedule, scheduler: this.scheduler, backups: this.backups, jobs: this.jobs, appServices: this.appServices,
      redisMirror: this.#redisMirror, witness: this.witness, witnessConfirm: this.witnessConfirm, isolate: this.#isolate, caRotation: this.#caRotation,
      drills: this.drills,
    } = buildNode({ config, log: this.#log, storage, raw, state, id, bootstrap, tickMs, lastSnapshot, security, featureLevel, metrics: this.#metrics, leadership: this.#leadership }, {
      isLeader: () => this.isLeader(),
      featureLevel: () => this.featureLevel(),
      notLeader: () => this.#notLeader(),
      term: () => this.term,
      leaderApiUrl: () => this.leaderApiUrl(),
      switchover: (to) => this.switchover(to),
      readBarrier: (timeoutMs) => this.readBarrier(timeoutMs),
      propose: (c) => this.propose(c),
      proposeEnvelope: (m, p, o) => this.proposeEnvelope(m, p, o),
      sqlService: () => this.sqlService,
      previousLeader: () => this.#previousLeader,
      writeHaState: () => this.#writeHaState(),
      admit: (m) => this.#admit(m),
      onSoftState: (prev, next) => this.#onSoftState(prev, next),
      afterReady: (rd) => this.#afterReady(raw, rd),
      onConfApplied: (index, ce) => this.#onConfApplied(index, ce),
      onFatal: (e) => this.#onFatal(e),
    }));
  }

  /** Open storage, recover, join the cluster. Throws with an operator-facing message on bad data. */
  static async start(fileConfig: QuorateConfig, logger: Logger, opts: { onFatal?: (e: Error) => void; restart?: (rewrite: () => Promise<void>) => Promise<void> } = {}): Promise<QuorateNode> {
    // SQLite runs on worker threads; a non-deterministic failure there stops the node (set once it is built).
    let sqlFatal: (e: Error) => void = (e) => logger.fatal({ event: 'sql_failed', err: e.message }, e.message);
    const o = await openNode(fileConfig, logger, (e) => sqlFatal(e));
    const { config, replicated, raw, bootstrap, id, tickMs } = o;
    const dataDir = config.node.dataDir;
    const sql = replicated.sql;
    const node = new QuorateNode(o, logger);
    // Snapshots in the composite format only once every member reads it (cluster feature level >= 2).
    replicated.registry.useClusterFeatureLevel(() => node.featureLevel());
    if (opts.onFatal) node.#onFatal = opts.onFatal;
    node.sql = sql;
    node.sqlService = sqlServiceOf(node, sql);
    node.files = replicated.files;
    node.filesService = filesServiceOf(node, replicated.files, config.files.maxFileBytes);
    node.clusterRestore = new ClusterRestore({ node: { featureLevel: () => node.featureLevel(), proposeEnvelope: (m, p, o) => node.proposeEnvelope(m, p, o), readBarrier: (t) => node.readBarrier(t), isLeader: () => node.isLeader(), notLeader: () => node.#notLeader() },
      machine: replicated.restore, dataDir, clusterId: config.cluster.haId, logger: node.#log });
    sqlFatal = (e) => node.#replica.die(e);
    node.#restart = opts.restart;
    if (bootstrap.promoted !== undefined && raw.status().lastIndex === bootstrap.promoted.index) node.#historyRecorder.promotionPending();
    node.#modes.scan(raw, o.entries);
    // A one-node cluster elects itself at the first tick, not after an election timeout (RawNode.soleVoterFastStart).
    raw.soleVoterFastStart();
    await node.#vip?.cleanupAtStart();
    await node.#transport.listen();
    node.autoTls?.start();
    node.#replica.start();
    node.#redisMirror?.start();
    node.witness?.start();
    node.#housekeepingTimer = setInterval(() => node.#housekeeping(), HOUSEKEEPING_MS);
    node.appServices.start();
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
    await this.appServices.stop();
    this.#services.close();
    this.security.close();
    this.autoTls?.close();
    await this.#vip?.close();
    await this.witness?.stop();
    await this.#replica.stop();
    await this.#transport.close();
    await this.#redisMirror?.stop();
    await this.#storage.close();
    await this.sql.close();
    await this.files.close();
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

  /** The core's view now, as health and status report it (the replica's soft state follows one Ready later). */
  isLeader(): boolean {
    return this.#replica.core.softState().role === 'leader';
  }

  /** The leader's API URL as recorded in the membership (never one merely announced on a connection). */
  leaderApiUrl(): string | undefined {
    const lead = this.#replica.core.softState().lead;
    if (lead === NONE) return undefined;
    if (lead === this.nodeId) return this.config.node.advertiseApiUrl;
    return this.#registry.record(lead)?.apiUrl;
  }

  /** The cluster feature level as this node computes it (features.ts): the lowest level heard from the current members. */
  featureLevel(): number {
    return this.#registry.clusterFeatureLevel(this.#replica.core.membership().members);
  }

  propose(command: Command, options: ProposeOptions = {}): Promise<ApplyResult> {
    const data = this.#entries.encodeKv(command, Date.now(), options.idempotencyKey, this.featureLevel());
    return this.#replica.propose(data, options.timeoutMs ?? DEFAULT_PROPOSE_TIMEOUT_MS);
  }

  /** A format-2 entry for `machine` (callers check the cluster feature level: ./sql-service.ts). */
  proposeEnvelope(machine: string, payload: Uint8Array, options: ProposeOptions = {}): Promise<ApplyResult> {
    const data = encodeEnvelope({ machine, at: Date.now(), ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}), payload });
    return this.#replica.propose(data, options.timeoutMs ?? DEFAULT_PROPOSE_TIMEOUT_MS);
  }

  /** The newest `limit` history records of this node's applied state, oldest first (./history-recorder.ts). */
  clusterHistory(limit?: number): { records: readonly HistoryRecord[]; appliedIndex: number } {
    return this.#historyRecorder.clusterHistory(limit);
  }

  async readBarrier(timeoutMs = 5000): Promise<void> {
    await this.#replica.readBarrier(timeoutMs);
    // Witness mode: a read is confirmed by the witness lease this leader holds at the moment it answers
    // (with the in-sync set shrunk to it, no peer confirms it: src/raft/witness.ts).
    const w = this.witness;
    if (w !== undefined && !w.mayAct()) {
      throw new NodeError('no_leader', 'this leader\'s witness lease was not renewed in time and it is stepping down; retry in a moment (the next leader answers) and check `quorate status`');
    }
  }

  async switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }> {
    // A clean switchover: the VIP is removed before leadership moves, so the new leader takes it at once (./vip.ts).
    if (this.isLeader()) await this.#vip?.releaseForSwitchover();
    try {
      return await switchover(this.#control, to);
    } finally {
      if (this.isLeader()) this.#vip?.resumeAfterSwitchover();
    }
  }

  /** Failover mode, paused, drained nodes, and whether this node campaigns by itself. */
  modes(): ModesView {
    return this.#modes.current();
  }

  /** Failover mode approval: the probe answered to other voters, and the proposal (./approval.ts). */
  get approval(): Modes['approval'] { return this.#modes.approval; }

  /** An operator's failover on this node: stand for election now (./modes.ts). */
  failoverHere(): Promise<{ campaigned: string; leader: string; term: number; elected: boolean }> {
    this.#historyRecorder.failoverRequested();
    return this.#modes.failoverHere();
  }

  /** Leader only: puts a cluster-wide setting in the log and waits until it applies (./modes.ts). */
  proposeSetting(c: SettingsCommand): Promise<void> {
    return this.#modes.proposeSetting(c);
  }

  failoverSafe(waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }> {
    return failoverSafe(this.#control, waitMs);
  }

  snapshotNow(): Promise<{ index: number }> {
    return this.#replica.snapshotNow();
  }

  /** One metric alone, in the text exposition format ('' when not registered): ./netdisk.ts samples the fsync histogram. */
  metricText(name: string): Promise<string> {
    return this.#metrics.metricText(name);
  }

  metricsText(): Promise<string> {
    const st = this.status();
    // The other members, once their names are known (a counter's series keeps its label for good).
    const stats = this.#transport.stats();
    const peerTraffic = st.peers.flatMap((p) => {
      const s = p.self ? undefined : stats.get(p.id);
      const name = this.#registry.knownName(p.id);
      return s === undefined || name === undefined ? [] : [{ peer: name, sentBytes: s.bytesSent, receivedBytes: s.bytesReceived }];
    });
    return metricsText(this.#metrics, st, this.machines, this.config.node.dataDir, this.#modes.current(), {
      drills: this.drills.schedule(), certificates: this.certificates(),
      failoverSafe: this.isLeader() && caughtUpVoters(this.#control).length > 0,
      pendingProposals: this.#replica.pendingProposals, peerTraffic, peerRtt: this.#peerRtt,
    });
  }

  /** The newest round trips to the other members (./netdisk.ts, wired in ./ops-wiring.ts), for quorate_peer_round_trip_seconds. */
  recordPeerRtt(samples: readonly RttSample[]): void {
    this.#peerRtt = samples;
  }

  /** The certificates this node serves and their expiry (./certificates.ts). */
  certificates(): readonly CertificateInfo[] {
    return this.#certs.list();
  }

  /** Removed from the cluster: the API serves no data (503 removed) and health shows role removed. */
  isRemoved(): boolean {
    return this.#removal.removed;
  }

  createJoinToken(ttlMs = DEFAULT_JOIN_TOKEN_TTL_MS): { token: string; expiresAt: string; ttlMs: number } {
    return this.#enroller.createToken(ttlMs);
  }

  enroll(req: EnrollRequest): Promise<EnrollResult> {
    return this.#enroller.enroll(req);
  }

  removeMember(nodeName: string): Promise<{ nodeName: string; nodeId: number; message: string }> {
    return this.#enroller.remove(nodeName);
  }

  /** Leader only: remove a suspected-compromised node and rotate the cluster secret (./isolate.ts). */
  isolate(nodeName: string): Promise<IsolateResult> {
    return isolate(this.#isolate, nodeName);
  }

  /** Promote this DR node: the only voter of a new cluster generation (./promotion.ts). */
  promoteDr(req: { nodeName: string; force: boolean }): Promise<PromotionResult> {
    return promoteDr({
      log: this.#log, nodeName: this.nodeName, nodeId: this.nodeId, dataDir: this.config.node.dataDir, configuredRole: this.config.node.role, lag: this.#lag,
      membership: () => this.#replica.core.membership(), lastIndex: () => this.#replica.core.status().lastIndex, nameOf: (id) => this.#registry.nameOf(id),
      reachable: (id) => memberReachable(this.#registry.record(id)?.apiUrl, this.#transport.stats().get(id)), restart: this.#restart,
    }, req);
  }

  status(): NodeStatus {
    const s = buildStatus({
      st: this.#replica.core.status(), config: this.config, registry: this.#registry, stats: this.#transport.stats(), tickMs: this.#tickMs,
      leaderApiUrl: this.leaderApiUrl(), snapshotIndex: this.#replica.snapshotIndex, revision: this.kv.revision, fatal: this.#replica.fatal,
      splitBrain: this.#splitBrain.warning ?? this.#redisMirror?.warning, startedAt: this.#startedAt, featureLevel: this.featureLevel(),
    });
    const withRedis = this.#redisMirror ? { ...s, redisConnected: this.#redisMirror.connected } : this.witness ? witnessStatus(s, this.witness.view()) : s;
    const fence = this.#fencing.status();
    const withVip = { ...withRedis, ...(this.#vip ? { vip: this.#vip.status() } : {}), ...(fence ? { fencing: fence } : {}) };
    return this.#removal.removed ? { ...withVip, role: 'removed' } : withVip;
  }

  // ------------------------------------------------------------ hooks (in the loop)

  #admit(m: Message): boolean {
    if (!this.#registry.admit(m)) return false;
    if (m.type === 'app' || m.type === 'heartbeat') {
      this.#splitBrain.watch(m);
      this.#lag.heard(m.commit);
    }
    return true;
  }

  #afterReady(raw: RawNode, rd: Ready): void {
    this.#modes.scan(raw, rd.entries);
    const last = rd.entries.at(-1)?.index ?? rd.snapshot?.index;
    if (last !== undefined) this.#lag.appended(last);
    if (rd.snapshot || rd.entries.some((e) => e.type === 'conf')) {
      this.#registry.refresh(raw);
      this.#transport.setPeers(this.#registry.peerAddresses());
      if (this.#registry.removed) this.#removal.mark('its membership records the removal');
    }
    if (rd.softState?.role === 'leader' || rd.committedEntries.some((e) => e.type === 'conf')) this.#registry.dirty = true;
    if (this.#replica.soft.role === 'leader' && this.#registry.dirty && rd.committedEntries.length > 0) this.#registry.queueReconcile(this.#replica);
  }

  #onConfApplied(index: number, ce: ConfEntry): void {
    this.#log.info({ event: 'membership_applied', index, change: ce.change }, `membership change applied at index ${index}: ${ce.change.op} node ${ce.change.id}`);
    this.#historyRecorder.confApplied(index, ce, (id) => this.#registry.nameOf(id));
  }

  #onSoftState(prev: SoftState, s: SoftState): void {
    const name = (id: NodeId) => this.#registry.nameOf(id);
    if (s.lead !== prev.lead) {
      if (s.lead !== NONE && s.lead !== this.nodeId) this.#previousLeader = { nodeName: name(s.lead), apiUrl: this.#registry.record(s.lead)?.apiUrl ?? '', peerUrl: this.#registry.peers.get(s.lead)?.peerUrl ?? '', term: this.#replica.core.status().term };
      this.#mLeaderChanges.inc();
      this.#warnings.leaderChanged(prev.lead, s.lead, name);
      void this.#writeHaState();
    }
    if (s.role === 'leader' && prev.role !== 'leader') this.#log.info({ event: 'became_leader' }, `${this.nodeName} became the leader`);
    this.#historyRecorder.softState(prev, s);
    this.#redisMirror?.poke();
    this.#leadership.updateFrom(this.#replica.core.status());
  }

  // ------------------------------------------------------------ leader-only work and housekeeping

  #housekeeping(): void {
    if (this.#replica.fatal || this.#stopped) return;
    const now = Date.now();
    this.#registry.trackCatchUp(this.#replica.core.status(), now);
    this.#leadership.updateFrom(this.#replica.core.status());
    this.#warnings.check(now, () => this.status());
    this.#modes.approval.tick(now);
    // ha-state.json Token follows the period token (and the cluster reaching feature level 4).
    if (this.autoTls !== undefined && this.#periodToken() !== this.#haStateToken) void this.#writeHaState();
  }

  /** Per-period handshake keys (feature level 4): the current period's token reference (a hash; never the key or the secret). */
  #periodToken(): string | undefined {
    if (this.featureLevel() < PERIOD_KEYS_FEATURE_LEVEL) return undefined;
    return periodKeyRef(this.#isolate.secret, this.config.cluster.haId, Math.floor(Date.now() / (this.config.security.caRotationSeconds * 1000)));
  }

  #haStateToken: string | undefined;

  #writeHaState(): Promise<void> {
    this.#haStateToken = this.#periodToken();
    return writeNodeHaState({ config: this.config, nodeId: this.nodeId, logger: this.#log, leaderApiUrl: () => this.leaderApiUrl(), isLeader: () => this.isLeader(), tls: this.autoTls,
      periodToken: () => this.#haStateToken });
  }

  #notLeader(): NodeError {
    const lead = this.#replica.core.softState().lead;
    return notLeader(lead === NONE ? undefined : this.#registry.nameOf(lead), this.leaderApiUrl());
  }
}
