// The wiring of a QuorateNode (./node.ts): builds its parts from the config
// and the opened storage and state, and connects them to each other and, through
// NodeHooks, to the node (its methods the parts call back: leading, feature
// level, proposals, the replica's loop hooks). Nothing here acts by itself;
// what each part does is in its own module. ./node.ts keeps the parts in its
// private fields and starts them (QuorateNode.start).
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import { NONE, RawNode, type ConfEntry, type Entry, type Message, type Ready, type SnapshotMeta, type SoftState, type NodeId } from '../raft/index.js';
import { WalStorage } from '../storage/index.js';
import { DEFAULT_AUDIT_MAX, type ApplyResult, type Command, type FailoverMode, type KvState } from '../state/index.js';
import { PeerTransport, loadClusterSecret } from '../transport/index.js';
import type { MetricsRegistry } from '../ops/metrics.js';
import type { NodeError } from './errors.js';
import type { JobsPort, ProposeOptions, SqlService } from '../api/ports.js';
import { LeaderServices, periodicService, type RaftLeadership } from './leadership.js';
import { bootstrapAddresses, bootstrapMembership, loadOrCreateBootstrap, selfId, type Bootstrap } from './members.js';
import { Enroller, RemovedState } from './enroll.js';
import { checkTarget, type ControlContext } from './control.js';
import { SwitchoverScheduler } from './scheduled-switchover.js';
import { HistoryRecorder } from './history-recorder.js';
import { EXPIRY_CHECK_MS, MaintenanceExpiry } from './maintenance-expiry.js';
import { NodeSecurity } from './security.js';
import { NodeDrills } from './drills.js';
import { Modes } from './modes.js';
import { ttlExpiry } from './housekeeping.js';
import { clusterSettingsOf, raftConfigFor, tickMsFor, transportOptionsFor } from './boot.js';
import { nodeMetrics } from './node-metrics.js';
import { MemberRegistry } from './registry.js';
import { REAL_CLOCK, Replica } from './replica.js';
import { memberRole } from './roles.js';
import { SplitBrainWatch } from './split-brain.js';
import { VERSION } from './status.js';
import { scheduledWork } from './scheduled-work.js';
import type { LeaderScheduler } from './scheduler.js';
import type { Backups } from './backups.js';
import { AppServices } from './app-services.js';
import { leaderMirrorFor, type LeaderMirror } from '../coord/index.js';
import { WitnessDriver, usesWitness } from '../coord/witness-driver.js';
import { followRotations, type IsolateDeps } from './isolate.js';
import { virtualIpFor, type VirtualIp } from './vip.js';
import { Fencing } from './fencing.js';
import type { FenceTarget } from './vip-commands.js';
import { AutoTls } from './tls-auto.js';
import { FEATURE_LEVEL, featureLevelFromEnv } from './features.js';
import { createNodeState, type NodeState } from './node-state.js';
import { asPromoted } from './dr-wiring.js';
import { CA_ROTATION_CHECK_MS, CaRotation } from './ca-rotate.js';

/** The feature level from which members dial with per-period handshake keys (src/transport/handshake.ts). */
export const PERIOD_KEYS_FEATURE_LEVEL = 4;

// Below the client library's default timeout (10 s), so the client hears 504 commit_unknown
// from the server rather than timing out itself.
export const DEFAULT_PROPOSE_TIMEOUT_MS = 5_000;
export const HOUSEKEEPING_MS = 250;

/** What the node opened before wiring: config, storage, the core, the replicated state, identity and secrets. */
export interface NodeInputs {
  readonly config: QuorateConfig;
  /** The node's logger (a child with its name). */
  readonly log: Logger;
  readonly storage: WalStorage;
  readonly raw: RawNode;
  readonly state: KvState;
  readonly id: NodeId;
  readonly bootstrap: Bootstrap;
  readonly tickMs: number;
  readonly lastSnapshot: SnapshotMeta | undefined;
  readonly security: { incarnation: string; clusterSecret: Uint8Array; autoTls: AutoTls | undefined };
  readonly featureLevel: number;
  readonly metrics: MetricsRegistry;
  readonly leadership: RaftLeadership;
}

/** The node's methods its parts call back (bound to the node; called only after construction). */
export interface NodeHooks {
  isLeader(): boolean;
  featureLevel(): number;
  notLeader(): NodeError;
  term(): number;
  leaderApiUrl(): string | undefined;
  switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }>;
  readBarrier(timeoutMs?: number): Promise<void>;
  propose(command: Command): Promise<ApplyResult>;
  proposeEnvelope(machine: string, payload: Uint8Array, options: ProposeOptions): Promise<ApplyResult>;
  sqlService(): SqlService;
  /** The leader before this one (what fenceScript is run against). */
  previousLeader(): FenceTarget | undefined;
  writeHaState(): Promise<void>;
  /** The replica's loop hooks (./replica.ts). */
  admit(m: Message): boolean;
  onSoftState(prev: SoftState, next: SoftState): void;
  afterReady(rd: Ready): void;
  onConfApplied(index: number, ce: ConfEntry): void;
  onFatal(e: Error): void;
}

export interface NodeParts {
  readonly leaderChanges: ReturnType<typeof nodeMetrics>['leaderChanges'];
  readonly registry: MemberRegistry;
  readonly transport: PeerTransport;
  readonly replica: Replica;
  readonly splitBrain: SplitBrainWatch;
  readonly control: ControlContext;
  readonly enroller: Enroller;
  readonly removal: RemovedState;
  readonly historyRecorder: HistoryRecorder;
  readonly modes: Modes;
  readonly maintenance: MaintenanceExpiry;
  readonly security: NodeSecurity;
  readonly services: LeaderServices;
  readonly fencing: Fencing;
  readonly vip: VirtualIp | undefined;
  readonly switchoverSchedule: SwitchoverScheduler;
  readonly scheduler: LeaderScheduler;
  readonly backups: Backups;
  readonly jobs: JobsPort;
  readonly appServices: AppServices;
  readonly redisMirror: LeaderMirror | undefined;
  readonly witness: WitnessDriver | undefined;
  readonly witnessConfirm: ((minEpoch?: number) => Promise<{ epoch: number; inSync: readonly number[] }>) | undefined;
  readonly isolate: IsolateDeps;
  readonly caRotation: CaRotation;
  readonly drills: NodeDrills;
}

/** What start opens before the wiring: the data dir's bootstrap and identity, secrets, the replicated state and the storage, recovered, and the core. */
export interface OpenedNode {
  /** The file's config, as promoted (a promoted DR node is a voter whatever its file says: ./dr-wiring.ts). */
  readonly config: QuorateConfig;
  readonly bootstrap: Bootstrap;
  readonly id: NodeId;
  readonly security: { incarnation: string; clusterSecret: Uint8Array; autoTls: AutoTls | undefined };
  readonly featureLevel: number;
  readonly replicated: NodeState;
  readonly storage: WalStorage;
  readonly lastSnapshot: SnapshotMeta | undefined;
  /** The log's entries at start (the modes' scan). */
  readonly entries: readonly Entry[];
  readonly tickMs: number;
  readonly raw: RawNode;
}

export async function openNode(fileConfig: QuorateConfig, logger: Logger, onSqlFatal: (e: Error) => void): Promise<OpenedNode> {
  const dataDir = fileConfig.node.dataDir;
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
  // refuses a composite snapshot, as an old build would. Snapshots are written by the cluster level (set by the node).
  const replicated = await createNodeState({ dataDir, maxFormatVersion: featureLevel, logger: logger.child({ node: config.node.nodeName }), onFatal: onSqlFatal });
  // pendingBytesMax: appended entries are written out once they reach 1 MiB (the buffer is kept between writes: 1 MiB file chunks would keep 8 MiB at the default 4).
  // While the storage opens, the check of a snapshot builds its state too (kept for the snapshot it belongs to):
  // the snapshot the node starts from is read and decoded once, not once to check it and again to restore it.
  let opening = true;
  let prepared: { term: number; index: number; commit: () => void } | undefined;
  const validateSnapshot = async (chunks: AsyncIterable<Uint8Array>, meta: { term: number; index: number }): Promise<void> => {
    if (!opening) return replicated.registry.validate(chunks);
    prepared = undefined;
    prepared = { ...meta, commit: await replicated.registry.prepareRestore(chunks) };
  };
  const { storage, state } = await WalStorage.open(`${dataDir}/raft`, { validateSnapshot, pendingBytesMax: 1024 * 1024 });
  opening = false;
  for (const w of state.warnings) logger.warn({ node: config.node.nodeName, event: 'storage_recovery' }, w);
  const snap = state.snapshot;
  if (snap !== undefined) {
    if (prepared?.term === snap.term && prepared.index === snap.index) prepared.commit();
    else await replicated.registry.restore(state.openSnapshot());
  }
  prepared = undefined; // the validator stays with the storage: let the state built go
  const snapshot = state.snapshot ?? { index: 0, term: 0, membership: bootstrapMembership(bootstrap) };
  const tickMs = tickMsFor(config);
  const raw = new RawNode(raftConfigFor(config, id, tickMs, state.incarnation), { hardState: state.hardState, snapshot, entries: state.entries, applied: snapshot.index });
  return {
    config, bootstrap, id, security: { incarnation: state.incarnation, clusterSecret, autoTls }, featureLevel, replicated, storage,
    lastSnapshot: state.snapshot, entries: state.entries, tickMs, raw,
  };
}

export function buildNode(i: NodeInputs, hooks: NodeHooks): NodeParts {
  const { config, log, storage, raw, state, id, bootstrap, tickMs, lastSnapshot, security, featureLevel } = i;
  const nodeName = config.node.nodeName;
  const autoTls = security.autoTls;
  const metrics = nodeMetrics(i.metrics);
  const registry: MemberRegistry = new MemberRegistry({
    selfId: id,
    self: { nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl, role: memberRole(config.node.role), incarnation: security.incarnation },
    members: bootstrapAddresses(bootstrap),
    logger: log,
    configuredRole: config.node.role,
    fatalIfBroken: (e) => replica.fatalIfBroken(e),
    featureLevel, settings: clusterSettingsOf(config),
  });
  // Peers: from bootstrap.json, then from the membership's records (#syncPeers).
  const peerMap: ReturnType<MemberRegistry['peerAddresses']> = registry.peerAddresses();
  const transport: PeerTransport = new PeerTransport({
    ...transportOptionsFor(config, { id, ...security, featureLevel, logger: log, peerHost: (peer) => peerMap.get(peer)?.host }),
    // The cluster generation (./generation.ts): a peer of another one is refused at the handshake.
    generation: bootstrap.generation ?? 0,
    // Dial with per-period handshake keys once every member applies them (feature level 4); until then the secret itself.
    usePeriodKeys: () => hooks.featureLevel() >= PERIOD_KEYS_FEATURE_LEVEL,
    onSupersededByPeer: (_peer, reason) => removal.mark(`a peer refused it: ${reason}`),
    ...registry.transportHooks(),
    onPeerAck: (peer, info) => {
      registry.hear(peer, info);
      replica.peerConnected(peer);
      const known = info.knownIncarnation;
      if (known !== undefined && known !== security.incarnation) replica.run((r) => registry.markRejoining(r, peer, known));
    },
    onMessages: (msgs) => replica.receive(msgs),
    onPeerDisconnected: (peer, reason) => {
      if (reason !== 'reset') return;
      replica.run(() => historyRecorder.peerReset(peer, replica.soft.lead, replica.soft.role));
      replica.peerReset(peer);
    },
    onSnapshot: (from, meta, source, msg) => replica.receiveSnapshot(from, meta, source, msg, (chunks) => state.registry.validate(chunks)),
    onPeerHello: (peer, info) => {
      registry.hear(peer, info);
      registry.announce(peer, { nodeName: info.nodeName, apiUrl: info.apiUrl === '' ? undefined : info.apiUrl, role: memberRole(info.role), incarnation: info.incarnation });
      registry.queueReconcile(replica);
    },
    onJoin: (ja, jn, ln) => enroller.onJoin(ja, jn, ln),
    isRemovedPeer: (peer) => replica.core.membership().removed.includes(peer),
    onRemovedByPeer: (_peer, reason) => removal.mark(reason),
  });
  const replica: Replica = new Replica({
    raw,
    log: storage,
    net: transport,
    sm: state.registry,
    clock: REAL_CLOCK,
    tickMs,
    logger: log,
    lastSnapshot,
    metrics: metrics.replica,
    hooks: {
      admit: (msg) => hooks.admit(msg),
      onSoftState: (prev, next) => hooks.onSoftState(prev, next),
      afterReady: (rd) => hooks.afterReady(rd),
      onConfApplied: (index, ce) => hooks.onConfApplied(index, ce),
      onFatal: (e) => hooks.onFatal(e),
      notLeader: () => hooks.notLeader(),
      nameOf: (peer) => registry.nameOf(peer),
    },
  });
  const splitBrain = new SplitBrainWatch({ replica, nodeName, nameOf: (peer) => registry.nameOf(peer), logger: log });
  const control: ControlContext = {
    replica, registry, nodeId: id, nodeName, electionTimeoutMs: config.cluster.electionTimeoutMs, tickMs, maxLagEntries: config.cluster.maxLagOnFailover,
    isLeader: () => hooks.isLeader(), notLeader: () => hooks.notLeader(),
    isDrained: (name) => modes.current().drained.includes(name),
    isUnhealthy: (name) => appServices.isUnhealthy(name),
  };
  registry.refresh(raw);
  const enroller: Enroller = new Enroller({
    log, haId: config.cluster.haId, selfId: id, version: VERSION, bootstrap, clusterSecret: security.clusterSecret,
    replica, registry, isLeader: () => hooks.isLeader(),
    notLeader: () => hooks.notLeader(), clusterFeatureLevel: () => hooks.featureLevel(),
    configuredWriteQuorum: config.database.writeQuorum, switchover: () => hooks.switchover(), caEpoch: () => state.secrets.ca.epoch,
  });
  const removal: RemovedState = new RemovedState(config.node.dataDir, log, registry.removed);
  const historyRecorder: HistoryRecorder = new HistoryRecorder({
    log, history: state.history, selfId: id, selfName: nodeName, historyMax: config.cluster.historyMax,
    featureLevel: () => hooks.featureLevel(), appliedIndex: () => state.registry.appliedIndex, status: () => replica.core.status(),
    nameOf: (peer) => registry.nameOf(peer), propose: (entry) => replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS),
  });
  const modes: Modes = new Modes({
    settings: state.settings, fileMode: config.cluster.failover as FailoverMode, nodeName: config.node.nodeName, log,
    node: { ...control, replica, registry, proposeTimeoutMs: DEFAULT_PROPOSE_TIMEOUT_MS, heartbeatMs: config.cluster.heartbeatIntervalMs, clusterSecret: security.clusterSecret,
      appliedIndex: () => state.registry.appliedIndex, featureLevel: () => hooks.featureLevel(), switchover: () => hooks.switchover(),
      appHealthy: () => appServices.checks.view().healthy, settingApplied: (c, by, ended) => maintenance.record(c, by, ended) },
  });
  const maintenance: MaintenanceExpiry = new MaintenanceExpiry({ log, historyMax: config.cluster.historyMax, isLeader: () => hooks.isLeader(), featureLevel: () => hooks.featureLevel(),
    term: () => replica.core.status().term, modes: () => modes.current(), proposeSetting: (c, by) => modes.proposeSetting(c, by),
    proposeEntry: (entry) => replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS) });
  const nodeSecurity = new NodeSecurity({ log, nodeName, tokens: state.tokens, audit: state.audit, clusterSecret: security.clusterSecret, auditMax: DEFAULT_AUDIT_MAX,
    ca: () => {
      const v = autoTls?.view();
      return v === undefined ? undefined : { ...v, pending: caRotation.pending() ?? null };
    },
    caRotate: () => caRotation.rotate(),
    isLeader: () => hooks.isLeader(), notLeader: () => hooks.notLeader(), featureLevel: () => hooks.featureLevel(), appliedIndex: () => state.registry.appliedIndex,
    leaderApiUrl: () => hooks.leaderApiUrl(), propose: (entry) => replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS) });
  const services = new LeaderServices(i.leadership, log);
  const wonByTransfer = (): boolean => replica.core.status().campaign === 'transfer';
  // Fencing first: the VIP, jobs, backups and outbox delivery wait for its gate (./fencing.ts).
  // Witness mode: leader work with external effects also ends at the witness lease's step-down deadline.
  const leaseDeadline = usesWitness(config) ? { leaseDeadline: () => witness?.leaseDeadline() } : {};
  const fencing = new Fencing({ fenceScript: config.cluster.fenceScript, log, wonByTransfer, previousLeader: () => hooks.previousLeader(), ...leaseDeadline });
  services.add(fencing);
  const vip = virtualIpFor(config, { log, confirm: () => hooks.readBarrier(2000), wonByTransfer, previousLeader: () => hooks.previousLeader(), fencing, ...leaseDeadline });
  if (vip) services.add(vip);
  services.add(historyRecorder);
  services.add(periodicService(maintenance.name, EXPIRY_CHECK_MS, () => maintenance.tick()));
  if (autoTls !== undefined) services.add(periodicService('ca-rotation', CA_ROTATION_CHECK_MS, () => caRotation.tick()));
  const switchoverSchedule = new SwitchoverScheduler({ log, nodeName, switchover: (to) => hooks.switchover(to), notLeader: () => hooks.notLeader(),
    checkTarget: (to) => void checkTarget(control, to) });
  services.add(switchoverSchedule);
  services.add(periodicService('ttl-expiry', HOUSEKEEPING_MS, ttlExpiry({ kv: state.kv, isLeader: () => hooks.isLeader(), propose: (c) => hooks.propose(c) })));
  services.add(periodicService('membership-reconciliation', HOUSEKEEPING_MS, () => registry.queueReconcile(replica)));
  const { scheduler, backups, jobs } = scheduledWork({ config, log, version: VERSION, machines: state.registry, claims: state.scheduler,
    run: (op) => replica.run(op), proposeEntry: (e) => replica.propose(e, DEFAULT_PROPOSE_TIMEOUT_MS), featureLevel: () => hooks.featureLevel(),
    isLeader: () => hooks.isLeader(), notLeader: () => hooks.notLeader(), readBarrier: () => hooks.readBarrier(), mayAct: () => fencing.leaseOk() });
  services.add(fencing.gate(scheduler));
  const appServices: AppServices = new AppServices({
    config, logger: log, metrics: i.metrics, leadership: i.leadership, services, gated: (svc) => fencing.gate(svc), app: state.app,
    clockMs: () => state.registry.clockMs, proposeEntry: (data) => replica.propose(data, DEFAULT_PROPOSE_TIMEOUT_MS), readBarrier: () => hooks.readBarrier(),
    featureLevel: () => hooks.featureLevel(), isLeader: () => hooks.isLeader(), notLeader: () => hooks.notLeader(),
    leaderName: () => { const l = replica.core.softState().lead; return l === NONE ? null : registry.nameOf(l); },
    peers: () => replica.core.membership().members.filter((m) => m.id !== id).flatMap((m) => { const u = registry.record(m.id)?.apiUrl; return u === undefined ? [] : [{ nodeName: registry.nameOf(m.id), apiUrl: u }]; }),
    switchover: () => hooks.switchover(),
    sql: () => hooks.sqlService(), redisPing: () => redisMirror?.ping() ?? Promise.reject(new Error('Redis is not used by this node (redis.enabled is false)')),
  });
  transport.setPeers(peerMap);
  const redisMirror: LeaderMirror | undefined = leaderMirrorFor(config, log, () => {
    const lead = replica.core.softState().lead;
    return { leading: hooks.isLeader(), term: replica.term, leaderName: lead === NONE ? undefined : registry.nameOf(lead) };
  });
  const witness: WitnessDriver | undefined = usesWitness(config)
    ? new WitnessDriver({ config, logger: log, nodeId: id, tickMs, run: (op) => replica.run(op),
      voters: raw.membership().members.filter((m) => m.role === 'voter').map((m) => m.id) })
    : undefined;
  const witnessConfirm: NodeParts['witnessConfirm'] = witness ? (minEpoch) => witness.confirm(minEpoch) : undefined;
  const isolateDeps: IsolateDeps = {
    log, enroller, secret: security.clusterSecret, secretFile: config.security.clusterSecretFile, featureLevel: () => hooks.featureLevel(),
    removedIdNamed: (name) => replica.core.membership().removed.find((rid) => registry.nameOf(rid) === name),
    propose: (entry) => replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS),
    setTransportSecret: (sec) => {
      transport.setClusterSecret(sec);
      // The roots derive from the secret: re-root at once (the isolated node could derive the old ones).
      void autoTls?.refresh();
    },
  };
  const caRotation: CaRotation = new CaRotation({
    log, autoTls, selfId: id, featureLevel: () => hooks.featureLevel(), isLeader: () => hooks.isLeader(), caState: () => state.secrets.ca,
    members: () => replica.core.membership().members.map((m) => ({ id: m.id, name: registry.nameOf(m.id) ?? `node id ${m.id}` })),
    propose: (entry) => replica.propose(entry, DEFAULT_PROPOSE_TIMEOUT_MS),
  });
  autoTls?.onMaterial((m, change) => {
    transport.setTlsMaterial(m);
    // A certificate of a new CA epoch: peers see it only in new handshakes (how the leader learns the grace can end).
    if (change.epochChanged) transport.redialAll('this node re-issued its certificate from a new CA epoch (ca rotate)');
    void hooks.writeHaState();
  });
  state.secrets.onCaChange = (ca) => void autoTls?.setCaEpochs(ca);
  if (autoTls !== undefined && state.secrets.ca.epoch !== autoTls.caEpochs.epoch) void autoTls.setCaEpochs(state.secrets.ca);
  const drills = new NodeDrills({ config, log, machine: state.drills, appliedIndex: () => state.registry.appliedIndex, isLeader: () => hooks.isLeader(), notLeader: () => hooks.notLeader(),
    term: () => hooks.term(), featureLevel: () => hooks.featureLevel(), proposeEnvelope: (m, p, k) => hooks.proposeEnvelope(m, p, k === undefined ? {} : { idempotencyKey: k }), switchover: () => hooks.switchover(), dropPeerTraffic: (on) => transport.setDropAll(on) });
  state.secrets.onChange = (rotations) => followRotations(isolateDeps, rotations);
  if (state.secrets.rotations.length > 0) followRotations(isolateDeps, state.secrets.rotations);
  return {
    leaderChanges: metrics.leaderChanges, registry, transport, replica, splitBrain, control, enroller, removal, historyRecorder, modes, maintenance,
    security: nodeSecurity, services, fencing, vip, switchoverSchedule, scheduler, backups, jobs, appServices, redisMirror, witness, witnessConfirm,
    isolate: isolateDeps, caRotation, drills,
  };
}
