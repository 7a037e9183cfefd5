// One quorate node: wiring. The Replica (./replica.ts) runs the loop over
// the WAL, the peer transport and the KV; the MemberRegistry
// (./registry.ts) knows who the members are and reconciles the membership;
// RaftLeadership + LeaderServices (./leadership.ts) run leader-only work
// while this node leads with a quorum; ./status.ts presents it all. This file
// builds them from the config and provides the HTTP API's ports
// (src/api/ports.ts): it is the ClusterControl; `kvService` is the KvService.
// Split out: ./control.ts (switchover, failover-safe), ./node-metrics.ts,
// ./split-brain.ts, ./housekeeping.ts (warnings, ha-state.json, TTL expiry),
// ./boot.ts (transport options); the glue of ./modes.ts (and ./approval.ts), ./history-recorder.ts
// and ./enroll.ts (remove, removed state) lives in those modules.
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { NONE, RawNode, type ConfEntry, type Message, type NodeId, type Ready, type SnapshotMeta, type SoftState } from '../raft/index.js';
import { WalStorage } from '../storage/index.js';
import { encodeEnvelope, type FailoverMode, type SettingsCommand, type KvState, type KvStateMachine, type HistoryRecord, type HistoryStateMachine, type MachineRegistry, type ApplyResult, type Command } from '../state/index.js';
import { PeerTransport, loadClusterSecret } from '../transport/index.js';
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
import { EntryEncoder, FEATURE_LEVEL, featureLevelFromEnv } from './features.js';
import { LeaderServices, RaftLeadership, periodicService } from './leadership.js';
import { bootstrapAddresses, bootstrapMembership, loadOrCreateBootstrap, selfId, type Bootstrap } from './members.js';
import { DEFAULT_JOIN_TOKEN_TTL_MS, Enroller, RemovedState, type EnrollRequest, type EnrollResult } from './enroll.js';
import { kvServiceOf } from './kv-service.js';
import { caughtUpVoters, checkTarget, failoverSafe, switchover, type ControlContext } from './control.js';
import { SwitchoverScheduler } from './scheduled-switchover.js';
import { HistoryRecorder } from './history-recorder.js';
import { EXPIRY_CHECK_MS, MaintenanceExpiry } from './maintenance-expiry.js';
import { NodeSecurity } from './security.js';
import { NodeDrills } from './drills.js';
import { CertificateWatch } from './certificates.js';
import { DEFAULT_AUDIT_MAX } from '../state/index.js';
import { Modes, type ModesView } from './modes.js';
import { HealthWarnings, ttlExpiry, writeNodeHaState } from './housekeeping.js';
import { clusterSettingsOf, raftConfigFor, tickMsFor, transportOptionsFor } from './boot.js';
import { metricsText, nodeMetrics } from './node-metrics.js';
import { MemberRegistry } from './registry.js';
import { REAL_CLOCK, Replica } from './replica.js';
import { memberRole } from './roles.js';
import { SplitBrainWatch } from './split-brain.js';
import { VERSION, buildStatus } from './status.js';
import { scheduledWork } from './scheduled-work.js';
import { createNodeState } from './node-state.js';
import type { LeaderScheduler } from './scheduler.js';
import type { Backups } from './backups.js';
import { AppServices } from './app-services.js';
import { leaderMirrorFor, type LeaderMirror } from '../coord/index.js';
import { WitnessDriver, usesWitness, type WitnessView } from '../coord/witness-driver.js';
import { LagTracker, promoteDr, type PromotionResult } from './promotion.js';
import { asPromoted, memberReachable } from './dr-wiring.js';
import { followRotations, isolate, type IsolateDeps, type IsolateResult } from './isolate.js';
import { virtualIpFor, type VirtualIp } from './vip.js';
import { Fencing } from './fencing.js';
import type { FenceTarget } from './vip-commands.js';
import { AutoTls } from './tls-auto.js';
import { CA_ROTATION_CHECK_MS, CaRotation } from './ca-rotate.js';
import { periodKeyRef } from '../transport/handshake.js';

/** The feature level from which members dial with per-period handshake keys (src/transport/handshake.ts). */
export const PERIOD_KEYS_FEATURE_LEVEL = 4;

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
    security: { incarnation: string; clusterSecret: Uint8Array; autoTls: AutoTls | undefined },
    featureLevel: number,
  ) {
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
    const metrics = nodeMetrics(this.#metrics);
    this.#mLeaderChanges = metrics.leaderChanges;

    this.#registry = new MemberRegistry({
      selfId: id,
      self: { nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl, role: memberRole(config.node.role), incarnation: security.incarnation },
      members: bootstrapAddresses(bootstrap),
      logger: this.#log,
      configuredRole: config.node.role,
      fatalIfBroken: (e) => this.#replica.fatalIfBroken(e),
      featureLevel, settings: clusterSettingsOf(config),
    });
    // Peers: from bootstrap.json, then from the membership's records (#syncPeers).
    const peerMap = this.#registry.peerAddresses();
    this.#transport = new PeerTransport({
      ...transportOptionsFor(config, { id, ...security, featureLevel, logger: this.#log, peerHost: (peer) => peerMap.get(peer)?.host }),
      // The cluster generation (./generation.ts): a peer of another one is refused at the handshake.
      generation: bootstrap.generation ?? 0,
      // Dial with per-period handshake keys once every member applies them (feature level 4); until then the secret itself.
      usePeriodKeys: () => this.featureLevel() >= PERIOD_KEYS_FEATURE_LEVEL,
      onSupersededByPeer: (_peer, reason) => this.#removal.mark(`a peer refused it: ${reason}`),
      ...this.#registry.transportHooks(),
      onPeerAck: (peer, info) => {
        this.#registry.hear(peer, info);
        const known = info.knownIncarnation;
        if (known !== undefined && known !== security.incarnation) this.#replica.run((r) => this.#registry.markRejoining(r, peer, known));
      },
      onMessages: (msgs) => this.#replica.receive(msgs),
      onPeerDisconnected: (peer, reason) => {
        if (reason !== 'reset') return;
        this.#replica.run(() => this.#historyRecorder.peerReset(peer, this.#replica.soft.lead, this.#replica.soft.role));
        this.#replica.peerReset(peer);
      },
      onSnapshot: (from, meta, source, msg) => this.#replica.receiveSnapshot(from, meta, source, msg, (chunks) => this.machines.validate(chunks)),
      onPeerHello: (peer, info) => {
        this.#registry.hear(peer, info);
        this.#registry.announce(peer, { nodeName: info.nodeName, apiUrl: info.apiUrl === '' ? undefined : info.apiUrl, role: memberRole(info.role), incarnation: info.incarnation });
        this.#registry.queueReconcile(this.#replica);
      },
      onJoin: (ja, jn, ln) => this.#enroller.onJoin(ja, jn, ln),
      isRemovedPeer: (peer) => this.#replica.core.membership().removed.includes(peer),
      onRemovedByPeer: (_peer, reason) => this.#removal.mark(reason),
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
      metrics: metrics.replica,
      hooks: {
        admit: (msg) => this.#admit(msg),
        onSoftState: (prev, next) => this.#onSoftState(prev, next),
        afterReady: (rd) => this.#afterReady(raw, rd),
        onConfApplied: (index, ce) => this.#onConfApplied(index, ce),
        onFatal: (e) => this.#onFatal(e),
        notLeader: () => this.#notLeader(),
        nameOf: (peer) => this.#registry.nameOf(peer),
      },
    });
    this.#splitBrain = new SplitBrainWatch({ replica: this.#replica, nodeName: this.nodeName, nameOf: (peer) => this.#registry.nameOf(peer), logger: this.#log });
    this.#control = {
      replica: this.#replica, registry: this.#registry, nodeId: id, nodeName: this.nodeName, electionTimeoutMs: config.cluster.electionTimeoutMs, tickMs, maxLagEntries: config.cluster.maxLagOnFailover,
      isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(),
      isDrained: (name) => this.modes().drained.includes(name),
      isUnhealthy: (name) => this.appServices.isUnhealthy(name),
    };
    this.#registry.refresh(raw);
    this.#enroller = new Enroller({
      log: this.#log, haId: config.cluster.haId, selfId: id, version: VERSION, bootstrap, clusterSecret: security.clusterSecret,
      replica: this.#replica, registry: this.#registry, isLeader: () => this.isLeader(),
      notLeader: () => this.#notLeader(), clusterFeatureLevel: () => this.featureLevel(),
      configuredWriteQuorum: config.database.writeQuorum, switchover: () => this.switchover(), caEpoch: () => state.secrets.ca.epoch,
    });
    this.#removal = new RemovedState(config.node.dataDir, this.#log, this.#registry.removed);
    this.#historyRecorder = new HistoryRecorder({
      log: this.#log, history: state.history, selfId: id, selfName: this.nodeName, historyMax: config.cluster.historyMax,
      featureLevel: () => this.featureLevel(), appliedIndex: () => this.machines.appliedIndex, status: () => this.#replica.core.status(),
      nameOf: (peer) => this.#registry.nameOf(peer), propose: (entry) => this.#replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS),
    });
    this.#modes = new Modes({
      settings: state.settings, fileMode: config.cluster.failover as FailoverMode, nodeName: config.node.nodeName, log: this.#log,
      node: { ...this.#control, replica: this.#replica, registry: this.#registry, proposeTimeoutMs: DEFAULT_PROPOSE_TIMEOUT_MS, heartbeatMs: config.cluster.heartbeatIntervalMs, clusterSecret: security.clusterSecret,
        appliedIndex: () => this.machines.appliedIndex, featureLevel: () => this.featureLevel(), switchover: () => this.switchover(),
        appHealthy: () => this.appServices.checks.view().healthy, settingApplied: (c, by, ended) => this.#maintenance.record(c, by, ended) },
    });
    this.#maintenance = new MaintenanceExpiry({ log: this.#log, historyMax: config.cluster.historyMax, isLeader: () => this.isLeader(), featureLevel: () => this.featureLevel(),
      term: () => this.#replica.core.status().term, modes: () => this.#modes.current(), proposeSetting: (c, by) => this.#modes.proposeSetting(c, by),
      proposeEntry: (entry) => this.#replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS) });
    this.security = new NodeSecurity({ log: this.#log, nodeName: this.nodeName, tokens: state.tokens, audit: state.audit, clusterSecret: security.clusterSecret, auditMax: DEFAULT_AUDIT_MAX,
      ca: () => {
        const v = this.autoTls?.view();
        return v === undefined ? undefined : { ...v, pending: this.#caRotation.pending() ?? null };
      },
      caRotate: () => this.#caRotation.rotate(),
      isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(), featureLevel: () => this.featureLevel(), appliedIndex: () => this.machines.appliedIndex,
      leaderApiUrl: () => this.leaderApiUrl(), propose: (entry) => this.#replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS) });
    this.#services = new LeaderServices(this.#leadership, this.#log);
    const wonByTransfer = (): boolean => this.#replica.core.status().campaign === 'transfer';
    // Fencing first: the VIP, jobs, backups and outbox delivery wait for its gate (./fencing.ts).
    // Witness mode: leader work with external effects also ends at the witness lease's step-down deadline.
    const leaseDeadline = usesWitness(config) ? { leaseDeadline: () => this.witness?.leaseDeadline() } : {};
    this.#fencing = new Fencing({ fenceScript: config.cluster.fenceScript, log: this.#log, wonByTransfer, previousLeader: () => this.#previousLeader, ...leaseDeadline });
    this.#services.add(this.#fencing);
    this.#vip = virtualIpFor(config, { log: this.#log, confirm: () => this.readBarrier(2000), wonByTransfer, previousLeader: () => this.#previousLeader, fencing: this.#fencing, ...leaseDeadline });
    if (this.#vip) this.#services.add(this.#vip);
    this.#services.add(this.#historyRecorder);
    this.#services.add(periodicService(this.#maintenance.name, EXPIRY_CHECK_MS, () => this.#maintenance.tick()));
    if (this.autoTls !== undefined) this.#services.add(periodicService('ca-rotation', CA_ROTATION_CHECK_MS, () => this.#caRotation.tick()));
    this.switchoverSchedule = new SwitchoverScheduler({ log: this.#log, nodeName: this.nodeName, switchover: (to) => this.switchover(to), notLeader: () => this.#notLeader(),
      checkTarget: (to) => void checkTarget(this.#control, to) });
    this.#services.add(this.switchoverSchedule);
    this.#services.add(periodicService('ttl-expiry', HOUSEKEEPING_MS, ttlExpiry({ kv: state.kv, isLeader: () => this.isLeader(), propose: (c) => this.propose(c) })));
    this.#services.add(periodicService('membership-reconciliation', HOUSEKEEPING_MS, () => this.#registry.queueReconcile(this.#replica)));
    ({ scheduler: this.scheduler, backups: this.backups, jobs: this.jobs } = scheduledWork({ config, log: this.#log, version: VERSION, machines: state.registry, claims: state.scheduler,
      run: (op) => this.#replica.run(op), proposeEntry: (e) => this.#replica.propose(e, DEFAULT_PROPOSE_TIMEOUT_MS), featureLevel: () => this.featureLevel(),
      isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(), readBarrier: () => this.readBarrier(), mayAct: () => this.#fencing.leaseOk() }));
    this.#services.add(this.#fencing.gate(this.scheduler));
    this.appServices = new AppServices({
      config, logger: this.#log, metrics: this.#metrics, leadership: this.#leadership, services: this.#services, gated: (svc) => this.#fencing.gate(svc), app: state.app,
      clockMs: () => this.machines.clockMs, proposeEntry: (data) => this.#replica.propose(data, DEFAULT_PROPOSE_TIMEOUT_MS), readBarrier: () => this.readBarrier(),
      featureLevel: () => this.featureLevel(), isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(),
      leaderName: () => { const l = this.#replica.core.softState().lead; return l === NONE ? null : this.#registry.nameOf(l); },
      peers: () => this.#replica.core.membership().members.filter((m) => m.id !== id).flatMap((m) => { const u = this.#registry.record(m.id)?.apiUrl; return u === undefined ? [] : [{ nodeName: this.#registry.nameOf(m.id), apiUrl: u }]; }),
      switchover: () => this.switchover(),
      sql: () => this.sqlService, redisPing: () => this.#redisMirror?.ping() ?? Promise.reject(new Error('Redis is not used by this node (redis.enabled is false)')),
    });
    this.#transport.setPeers(peerMap);
    this.#redisMirror = leaderMirrorFor(config, this.#log, () => {
      const lead = this.#replica.core.softState().lead;
      return { leading: this.isLeader(), term: this.#replica.term, leaderName: lead === NONE ? undefined : this.#registry.nameOf(lead) };
    });
    this.witness = usesWitness(config)
      ? new WitnessDriver({ config, logger: this.#log, nodeId: id, tickMs, run: (op) => this.#replica.run(op),
        voters: raw.membership().members.filter((m) => m.role === 'voter').map((m) => m.id) })
      : undefined;
    const w = this.witness;
    this.witnessConfirm = w ? (minEpoch) => w.confirm(minEpoch) : undefined;
    this.#isolate = {
      log: this.#log, enroller: this.#enroller, secret: security.clusterSecret, secretFile: config.security.clusterSecretFile, featureLevel: () => this.featureLevel(),
      removedIdNamed: (name) => this.#replica.core.membership().removed.find((rid) => this.#registry.nameOf(rid) === name),
      propose: (entry) => this.#replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS),
      setTransportSecret: (sec) => {
        this.#transport.setClusterSecret(sec);
        // The roots derive from the secret: re-root at once (the isolated node could derive the old ones).
        void this.autoTls?.refresh();
      },
    };
    this.#caRotation = new CaRotation({
      log: this.#log, autoTls: this.autoTls, selfId: id, featureLevel: () => this.featureLevel(), isLeader: () => this.isLeader(), caState: () => state.secrets.ca,
      members: () => this.#replica.core.membership().members.map((m) => ({ id: m.id, name: this.#registry.nameOf(m.id) ?? `node id ${m.id}` })),
      propose: (entry) => this.#replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS),
    });
    this.autoTls?.onMaterial((m, change) => {
      this.#transport.setTlsMaterial(m);
      // A certificate of a new CA epoch: peers see it only in new handshakes (how the leader learns the grace can end).
      if (change.epochChanged) this.#transport.redialAll('this node re-issued its certificate from a new CA epoch (ca rotate)');
      void this.#writeHaState();
    });
    state.secrets.onCaChange = (ca) => void this.autoTls?.setCaEpochs(ca);
    if (this.autoTls !== undefined && state.secrets.ca.epoch !== this.autoTls.caEpochs.epoch) void this.autoTls.setCaEpochs(state.secrets.ca);
    this.drills = new NodeDrills({ config, log: this.#log, machine: state.drills, appliedIndex: () => this.machines.appliedIndex, isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(),
      term: () => this.term, featureLevel: () => this.featureLevel(), proposeEnvelope: (m, p, k) => this.proposeEnvelope(m, p, k === undefined ? {} : { idempotencyKey: k }), switchover: () => this.switchover(), dropPeerTraffic: (on) => this.#transport.setDropAll(on) });
    state.secrets.onChange = (rotations) => followRotations(this.#isolate, rotations);
    if (state.secrets.rotations.length > 0) followRotations(this.#isolate, state.secrets.rotations);
  }

  /** Open storage, recover, join the cluster. Throws with an operator-facing message on bad data. */
  static async start(fileConfig: QuorateConfig, logger: Logger, opts: { onFatal?: (e: Error) => void; restart?: (rewrite: () => Promise<void>) => Promise<void> } = {}): Promise<QuorateNode> {
    const dataDir = fileConfig.node.dataDir;
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dataDir, { recursive: true });
    const bootstrap = await loadOrCreateBootstrap(dataDir, fileConfig);
    // A promoted DR node (or a forced recovery's survivor) is a voter whatever its file says (./dr-wiring.ts).
    const config = asPromoted(fileConfig, bootstrap, logger);
    const id = selfId(bootstrap, config);
    const clusterSecret = loadClusterSecret(config.security.clusterSecretFile);
    // security.tls "auto" off loopback: this node's certificate from the cluster CA (./tls-auto.ts).
    const autoTls = await AutoTls.forNode(config, bootstrap, id, clusterSecret, logger);
    // FEATURE_LEVEL unless a test runs this node as the previous release.
    const featureLevel = featureLevelFromEnv();
    if (featureLevel !== FEATURE_LEVEL) logger.warn({ node: config.node.nodeName, event: 'test_feature_level', featureLevel }, `QUORATE_TEST_FEATURE_LEVEL: running as feature level ${featureLevel} (tests only)`);
    // The entry and snapshot formats read are the feature level's: a level-1 node stops on a format-2 entry and
    // refuses a composite snapshot, as an old build would. Snapshots are written by the cluster level (set below).
    // SQLite runs on worker threads; a non-deterministic failure there stops the node (set once it is built).
    let sqlFatal: (e: Error) => void = (e) => logger.fatal({ event: 'sql_failed', err: e.message }, e.message);
    const replicated = await createNodeState({ dataDir, maxFormatVersion: featureLevel, logger: logger.child({ node: config.node.nodeName }), onFatal: (e) => sqlFatal(e) });
    const sql = replicated.sql;
    // pendingBytesMax: appended entries are written out once they reach 1 MiB (the buffer is kept between writes: 1 MiB file chunks would keep 8 MiB at the default 4).
    const { storage, state } = await WalStorage.open(`${dataDir}/raft`, { validateSnapshot: (chunks) => replicated.registry.validate(chunks), pendingBytesMax: 1024 * 1024 });
    for (const w of state.warnings) logger.warn({ node: config.node.nodeName, event: 'storage_recovery' }, w);
    const lastSnapshot = state.snapshot;
    if (state.snapshot) await replicated.registry.restore(state.openSnapshot());
    const snapshot = state.snapshot ?? { index: 0, term: 0, membership: bootstrapMembership(bootstrap) };
    const tickMs = tickMsFor(config);
    const raw = new RawNode(raftConfigFor(config, id, tickMs, state.incarnation), { hardState: state.hardState, snapshot, entries: state.entries, applied: snapshot.index });
    const node = new QuorateNode(config, logger, storage, raw, replicated, id, bootstrap, tickMs, lastSnapshot, { incarnation: state.incarnation, clusterSecret, autoTls }, featureLevel);
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
    node.#modes.scan(raw, state.entries);
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

/**
 * Witness mode (src/coord/WITNESS.md): a leader can write when every node of
 * its commit set is reachable and it holds the lease; `quorumMet` says that.
 */
function witnessStatus(s: NodeStatus, w: WitnessView): NodeStatus {
  const reachable = (id: number) => s.peers.some((p) => p.id === id && (p.self || p.status !== 'unreachable'));
  const quorumMet = s.raftRole === 'leader' ? w.leading && w.commitSet.every(reachable) : s.quorumMet;
  return { ...s, quorumMet, redisConnected: w.redisConnected, witness: w };
}
