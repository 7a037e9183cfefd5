// One node of an external-shared cluster (`database.mode: "external-shared"`):
// the same HTTP API ports as a Raft node (src/api/ports.ts: ClusterControl,
// KvService, SqlService, SecurityPort, AppCoordination), built on
// - who leads, with its fencing token as the term: the Redis leader lease
//   (`cluster.coordination: "redis"`, src/coord/redis-lease.ts), or a Raft
//   group of the configured members whose log is the token counter
//   (`cluster.coordination: "raft"`, ./raft-lead.ts);
// - the PostgreSQL log (./pg-log.ts, ./shared-log.ts) for what is
//   replicated: every node applies it to the same MachineRegistry the Raft
//   node uses (KV, history, settings, tokens, audit, app machine, files),
//   so reads work on every node and writes are forwarded to the lease
//   holder as in local-sync mode;
// - `/v1/db/*` as PostgreSQL's SQL on the shared database (./pg-sql.ts),
//   each execute fenced by the same row in its own transaction (the log's
//   "sql" machine stays registered: entries of earlier releases apply).
// The machines' state is rebuilt at every start (in `<dataDir>/external-state`,
// emptied first) from the newest snapshot in PostgreSQL and the log after it:
// PostgreSQL holds the truth. The leader compacts the log (./pg-snapshot.ts;
// POST /v1/cluster/snapshot on the leader compacts now).
// Raft-only operations (enroll, remove, DR promotion, isolate, failover
// modes) answer `feature_unavailable` naming the mode.
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DrillPort } from '../api/ports-drill.js';
import type { FilesService } from '../api/ports-files.js';
import { filesServiceOf } from '../node/files-service.js';
import type { FilesStateMachine } from '../files/machine.js';
import type { CertificateInfo, ClusterControl, DrControl, KvService, NodeStatus, ProposeOptions, SqlService, ModesInfo, PeerInfo } from '../api/ports.js';
import { CertificateWatch } from '../node/certificates.js';
import type { QuorateConfig } from '../config/index.js';
import { RedisLease, RedisLink, parseRedisConnectionString } from '../coord/index.js';
import { RaftLead, type ExternalLeadership } from './raft-lead.js';
import { MetricsRegistry } from '../ops/metrics.js';
import { DEFAULT_AUDIT_MAX, encodeEnvelope, type ApplyResult, type Command, type HistoryRecord, type HistoryStateMachine, type KvStateMachine, type MachineRegistry } from '../state/index.js';
import type { SqlStateMachine } from '../sql/machine.js';
import { AppServices } from '../node/app-services.js';
import { NodeError, notLeader } from '../node/errors.js';
import { EntryEncoder, FEATURE_LEVEL } from '../node/features.js';
import { ttlExpiry } from '../node/housekeeping.js';
import { kvServiceOf } from '../node/kv-service.js';
import { LeaderServices, periodicService, type LeaderService } from '../node/leadership.js';
import { createNodeState } from '../node/node-state.js';
import { NodeSecurity } from '../node/security.js';
import { VERSION } from '../node/status.js';
import { loadClusterSecret } from '../transport/index.js';
import { isConnectionError, PgLog } from './pg-log.js';
import { PgSqlService } from './pg-sql.js';
import { SharedLog } from './shared-log.js';

const DEFAULT_PROPOSE_TIMEOUT_MS = 5_000;
const HOUSEKEEPING_MS = 250;
/** How long a starting node waits for an unreachable database before it gives up (exit 1, naming the key). */
const START_WAIT_MS = 30_000;

/** Tests only: QUORATE_TEST_APPEND_DELAY_MS delays every append batch (a pause between accepting writes and writing them). */
function testAppendDelayMs(): number {
  const v = Number(process.env['QUORATE_TEST_APPEND_DELAY_MS'] ?? 0);
  return Number.isFinite(v) && v > 0 ? Math.min(v, 10_000) : 0;
}

function unavailable(what: string): NodeError {
  return new NodeError('feature_unavailable', `${what} is not available with database.mode "external-shared": membership is whoever connects to the shared PostgreSQL (led by the Redis lease or by the Raft group of cluster.peerEndpoints); leadership moves when the leader's lease is released or expires, or when the Raft leader stops or loses its quorum (stop the leader's agent to move it)`);
}

export class ExternalNode implements ClusterControl, DrControl {
  readonly config: QuorateConfig;
  readonly nodeName: string;
  /** 1 with the Redis lease; led by Raft, this node's member id in the group. */
  readonly nodeId: number;
  readonly kv: KvStateMachine;
  readonly history: HistoryStateMachine;
  readonly machines: MachineRegistry;
  readonly kvService: KvService = kvServiceOf(this);
  readonly sql: SqlStateMachine;
  /** `/v1/db/*`: PostgreSQL's SQL on the shared database, fenced (./pg-sql.ts); the log's "sql" machine stays registered for entries written before. */
  readonly sqlService: SqlService;
  readonly #pgSql: PgSqlService;
  /** Replicated files, through the shared log like every other machine. */
  readonly filesService: FilesService;
  readonly #files: FilesStateMachine;
  readonly security: NodeSecurity;
  readonly appServices: AppServices;
  /** Who leads: the Redis lease (coordination "redis") or the Raft group (coordination "raft", ./raft-lead.ts). */
  readonly lease: ExternalLeadership;
  /** coordination "raft": the group (for the status's Raft term and voters). */
  readonly #raft: RaftLead | undefined;
  /** No automatic cluster CA in this mode (security.apiTls "auto" is refused at load). */
  readonly autoTls = undefined;
  /** Drills are refused at load in this mode (drills.enabled); the routes answer what this mode lacks. */
  readonly drills: DrillPort = {
    enabled: false,
    rtoTargetMs: 0,
    maxIntervalHours: 0,
    schedule: () => ({ maxIntervalHours: 0, last: null, lastPassedAt: null, dueAt: null, overdue: false }),
    fault: () => Promise.reject(unavailable('A drill fault')),
    reports: () => ({ reports: [], seq: 0, appliedIndex: this.machines.appliedIndex }),
    record: () => Promise.reject(unavailable('The drill report history')),
  };
  readonly log: SharedLog;
  readonly #pg: PgLog;
  /** coordination "redis" only. */
  readonly #link: RedisLink | undefined;
  readonly #services: LeaderServices;
  readonly #entries: EntryEncoder;
  readonly #logger: Logger;
  readonly #metrics = new MetricsRegistry();
  readonly #startedAt = new Date().toISOString();
  #stopped = false;

  private constructor(config: QuorateConfig, logger: Logger, state: Awaited<ReturnType<typeof createNodeState>>, clusterSecret: Uint8Array, onFatal: (e: Error) => void, raft: RaftLead | undefined) {
    this.config = config;
    this.nodeName = config.node.nodeName;
    this.#certs = new CertificateWatch(config, () => undefined);
    this.#logger = logger;
    this.kv = state.kv;
    this.history = state.history;
    this.machines = state.registry;
    this.sql = state.sql;
    this.#files = state.files;
    this.#entries = new EntryEncoder(logger);
    const cl = config.cluster;
    const ttlMs = cl.leaderLockTtlSeconds * 1000;
    const renewMs = cl.leaderRenewalIntervalSeconds * 1000;
    this.#pg = new PgLog({
      connectionString: config.database.external.connectionString, logger,
      poolSize: config.database.external.poolSize, statementTimeoutMs: config.database.external.statementTimeoutMs,
      // A leader paused inside an append transaction holds the fence's share lock: PostgreSQL ends that session
      // before the next leader's takeover would wait long (the paused leader's lease expired by then; led by Raft,
      // the next leader is elected after about an election timeout).
      idleInTransactionTimeoutMs: config.cluster.coordination === 'raft' ? Math.max(1000, 2 * cl.electionTimeoutMs) : Math.max(1000, Math.floor(ttlMs / 2)),
    });
    this.#raft = raft;
    this.nodeId = raft?.id ?? 1;
    const link = raft ? undefined : new RedisLink(parseRedisConnectionString(config.redis.connectionString, config.redis.tlsEnabled), logger, { commandTimeoutMs: Math.min(1000, renewMs), name: `quorate-${this.nodeName}` });
    this.#link = link;
    this.lease = raft ?? new RedisLease({
      link: link!, logger, keyPrefix: config.redis.keyPrefix, nodeName: this.nodeName, apiUrl: config.node.advertiseApiUrl, ttlMs, renewMs,
      // The token never goes backwards, also when Redis lost its data: the fence row holds the highest that took over.
      // PostgreSQL unreachable: the highest token this node saw (a lower token than the row's would be refused at
      // takeover, and the node would contend again above it); never an error, which the lease would blame on Redis.
      minToken: async () => {
        try {
          return Math.max(await this.#pg.fenceToken(), this.log.highestToken);
        } catch {
          return this.log.highestToken;
        }
      },
    });
    this.log = new SharedLog({ log: this.#pg, sm: state.registry, leadership: this.lease, logger, notLeader: () => this.#notLeader(), owner: `${this.nodeName}/${randomUUID().slice(0, 8)}`, stepDown: (why) => this.lease.stepDown(why), onFatal,
      snapshotEntries: cl.snapshotEntries, snapshotTrailingEntries: cl.snapshotTrailingEntries,
      ...(testAppendDelayMs() > 0 ? { testAppendDelayMs: testAppendDelayMs() } : {}) });
    if (testAppendDelayMs() > 0) logger.warn({ event: 'test_append_delay', ms: testAppendDelayMs() }, `QUORATE_TEST_APPEND_DELAY_MS: every append waits ${testAppendDelayMs()} ms (tests only)`);
    this.#services = new LeaderServices(this.lease, logger);
    this.#services.add(periodicService('ttl-expiry', HOUSEKEEPING_MS, ttlExpiry({ kv: state.kv, isLeader: () => this.isLeader(), propose: (c) => this.propose(c) })));
    this.security = new NodeSecurity({
      log: logger, nodeName: this.nodeName, tokens: state.tokens, audit: state.audit, clusterSecret, auditMax: DEFAULT_AUDIT_MAX,
      isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(), featureLevel: () => FEATURE_LEVEL, appliedIndex: () => this.machines.appliedIndex,
      leaderApiUrl: () => this.leaderApiUrl(), propose: (entry) => this.log.propose(entry),
    });
    this.#pgSql = new PgSqlService({
      connectionString: config.database.external.connectionString, schema: config.database.external.sqlSchema, limits: state.sql.limits, logger,
      poolSize: config.database.external.poolSize, statementTimeoutMs: config.database.external.statementTimeoutMs,
      fence: () => ({ writable: this.log.writable, token: this.log.fencedToken }),
      fenced: (token, message) => this.log.fenceRefused(token, message),
      notLeader: () => this.#notLeader(), appliedIndex: () => this.machines.appliedIndex,
      ...(testAppendDelayMs() > 0 ? { testDelayMs: testAppendDelayMs() } : {}),
    });
    this.sqlService = this.#pgSql;
    this.filesService = filesServiceOf(this, state.files, config.files.maxFileBytes);
    this.appServices = new AppServices({
      config, logger, metrics: this.#metrics, leadership: this.lease, services: this.#services, gated: (svc) => this.#afterFence(svc), app: state.app,
      clockMs: () => this.machines.clockMs, proposeEntry: (data) => this.log.propose(data), readBarrier: () => this.readBarrier(),
      featureLevel: () => FEATURE_LEVEL, isLeader: () => this.isLeader(), notLeader: () => this.#notLeader(),
      leaderName: () => this.lease.holder()?.nodeName ?? null,
      peers: () => { const h = this.lease.holder(); return h && h.nodeName !== this.nodeName ? [{ nodeName: h.nodeName, apiUrl: h.apiUrl }] : []; },
      switchover: () => Promise.reject(unavailable('a switchover')),
      sql: () => this.sqlService,
      redisPing: async () => {
        if (!this.#link) throw new Error('Redis is not used by this node (cluster.coordination is "raft")');
        await this.#link.client.ping();
      },
      databasePing: () => this.#pg.ping(),
    });
  }

  static async start(config: QuorateConfig, logger: Logger, opts: { onFatal?: (e: Error) => void } = {}): Promise<ExternalNode> {
    const log = logger.child({ node: config.node.nodeName });
    // The machines' files are rebuilt from the PostgreSQL log: start empty.
    const stateDir = join(config.node.dataDir, 'external-state');
    await rm(stateDir, { recursive: true, force: true });
    let fatal: (e: Error) => void = (e) => log.fatal({ event: 'node_failed', err: e.message }, e.message);
    const state = await createNodeState({ dataDir: stateDir, logger: log, onFatal: (e) => fatal(e) });
    // coordination "raft": the leader group (./raft-lead.ts); its claims read the fencing row through this node's pool.
    const ref: { node?: ExternalNode } = {};
    const raft = config.cluster.coordination === 'raft'
      ? await RaftLead.open({ config, logger: log, rootLogger: logger, onFatal: (e) => fatal(e), fenceFloor: () => ref.node!.#pg.fenceToken() })
      : undefined;
    const node = new ExternalNode(config, log, state, loadClusterSecret(config.security.clusterSecretFile), (e) => fatal(e), raft);
    ref.node = node;
    fatal = (e) => opts.onFatal?.(e);
    // A database that is restarting when the node starts is waited for (with backoff), up to START_WAIT_MS.
    const deadline = performance.now() + START_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        const version = await node.#pg.migrate();
        await node.#pgSql.prepare();
        log.info({ event: 'pg_schema', version, target: node.#pg.target }, `external PostgreSQL at ${node.#pg.target}: schema version ${version}`);
        break;
      } catch (e) {
        const why = `cannot prepare the external PostgreSQL database at ${node.#pg.target} (${(e as Error).message})`;
        if (performance.now() >= deadline || !isConnectionError(e)) {
          await node.#raft?.stop();
          await node.#pg.close();
          await node.#pgSql.close();
          await state.sql.close();
          await state.files.close();
          throw new Error(`${why}; check database.external.connectionString and that the database accepts this node`);
        }
        if (attempt === 0) log.error({ event: 'database_unreachable', target: node.#pg.target, err: (e as Error).message }, `${why}; retrying for up to ${START_WAIT_MS / 1000} s`);
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
    await node.log.start();
    await node.lease.start();
    node.appServices.start();
    const led = node.#link ? `leader lease in Redis at ${node.#link.target.display}` : `led by the Raft group of ${config.cluster.peerEndpoints.length + 1} members`;
    log.info({ event: 'node_started', mode: 'external-shared', coordination: config.cluster.coordination, appliedIndex: node.machines.appliedIndex }, `node ${config.node.nodeName} started (external-shared on ${node.#pg.target}, ${led}); log applied up to ${node.machines.appliedIndex}`);
    return node;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.appServices.stop();
    this.#services.close();
    this.security.close();
    await this.lease.stop();
    await this.log.stop();
    await this.#link?.close();
    await this.#pg.close();
    await this.#pgSql.close();
    await this.sql.close();
    await this.#files.close();
    this.#logger.info({ event: 'node_stopped' }, 'node stopped cleanly');
  }

  /** The fencing token this node last wrote under (0 before it first led), for log lines; reads no clock, changes nothing. */
  get term(): number {
    return this.log.fencedToken;
  }

  isLeader(): boolean {
    return this.log.writable;
  }

  leaderApiUrl(): string | undefined {
    return this.lease.holder()?.apiUrl;
  }

  featureLevel(): number {
    return FEATURE_LEVEL;
  }

  propose(command: Command, options: ProposeOptions = {}): Promise<ApplyResult> {
    return this.#timed(this.log.propose(this.#entries.encodeKv(command, Date.now(), options.idempotencyKey, FEATURE_LEVEL)), options.timeoutMs);
  }

  proposeEnvelope(machine: string, payload: Uint8Array, options: ProposeOptions = {}): Promise<ApplyResult> {
    const data = encodeEnvelope({ machine, at: Date.now(), ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}), payload });
    return this.#timed(this.log.propose(data), options.timeoutMs);
  }

  readBarrier(timeoutMs = 5000): Promise<void> {
    return this.log.readBarrier(timeoutMs);
  }

  clusterHistory(limit = 100): { records: readonly HistoryRecord[]; appliedIndex: number } {
    return { records: this.history.records(limit), appliedIndex: this.machines.appliedIndex };
  }

  status(): NodeStatus {
    const lease = this.lease.current();
    const holder = this.lease.holder();
    const writable = this.log.writable;
    const dbOk = this.log.databaseOk && this.log.fatal === undefined;
    const applied = this.machines.appliedIndex;
    const last = this.log.lastIndex;
    const snapIdx = this.log.compaction.snapshot?.idx ?? 0;
    const self: PeerInfo = {
      id: this.nodeId, nodeName: this.nodeName, apiUrl: this.config.node.advertiseApiUrl, peerUrl: '', role: writable ? 'primary' : lease.leading ? 'candidate' : 'standby',
      status: dbOk ? 'healthy' : 'unreachable', matchIndex: applied, replicationLagEntries: Math.max(0, last - applied), replicationLagMs: 0, lastHeartbeat: undefined, self: true,
    };
    const peers: PeerInfo[] = [self];
    if (this.#raft) {
      // Led by Raft: every member of the group, reachable or not over the peer transport.
      for (const m of this.#raft.others()) {
        const leads = holder?.nodeName === m.nodeName;
        peers.push({ id: m.id, nodeName: m.nodeName, apiUrl: leads ? holder.apiUrl : m.apiUrl, peerUrl: m.peerUrl, role: leads ? 'primary' : 'standby', status: m.connected ? 'healthy' : 'unreachable',
          matchIndex: leads ? last : 0, replicationLagEntries: 0, replicationLagMs: 0, lastHeartbeat: undefined, self: false });
      }
    } else if (holder && holder.nodeName !== this.nodeName) {
      peers.push({ id: 0, nodeName: holder.nodeName, apiUrl: holder.apiUrl, peerUrl: '', role: 'primary', status: 'healthy', matchIndex: last, replicationLagEntries: 0, replicationLagMs: 0, lastHeartbeat: undefined, self: false });
    }
    const storageError = this.log.fatal?.message ?? this.#raft?.fatal?.message ?? this.log.databaseError;
    const raft = this.#raft;
    const voters = raft?.voters;
    return {
      id: this.nodeId, nodeName: this.nodeName, haId: this.config.cluster.haId, role: self.role, raftRole: writable ? 'leader' : lease.leading ? 'candidate' : 'follower',
      term: holder?.term ?? lease.term, leaderId: holder ? (holder.nodeName === this.nodeName ? this.nodeId : peers.find((p) => p.nodeName === holder.nodeName)?.id ?? 0) : 0, leaderName: holder?.nodeName, leaderApiUrl: holder?.apiUrl,
      commitIndex: last, appliedIndex: applied, lastIndex: last, firstIndex: snapIdx > 0 ? Math.max(1, snapIdx - Math.max(1, this.config.cluster.snapshotTrailingEntries) + 1) : 1, snapshotIndex: snapIdx, revision: this.kv.revision,
      // The "quorum" of this mode: the lease holder raised the fence and PostgreSQL answers.
      quorumMet: writable ? dbOk : holder !== undefined,
      // coordination "raft": the leader group's voters (the leader hears them all; a follower counts itself and the leader).
      votersReachable: voters ? voters.reachable : holder !== undefined ? 1 : 0, votersTotal: voters?.total ?? 1, writeQuorum: voters ? Math.floor(voters.total / 2) + 1 : 1,
      failureTolerance: voters ? Math.floor((voters.total - 1) / 2) : 0,
      fencingToken: holder?.term ?? this.log.fencedToken, ...(raft ? { raftTerm: raft.raftTerm } : {}),
      peers, storageHealthy: dbOk, storageError, splitBrainWarning: this.log.splitBrainWarning ?? this.lease.warning, startedAt: this.#startedAt, version: VERSION,
      featureLevel: FEATURE_LEVEL, ...(this.#link ? { redisConnected: this.#link.connected } : {}),
    };
  }

  /** One metric alone ('' when not registered: this mode has no fsync histogram, PostgreSQL keeps the log). */
  metricText(name: string): Promise<string> {
    return this.#metrics.metricText(name);
  }

  metricsText(): Promise<string> {
    return this.#metrics.text();
  }

  /** The API's certificate file (security.apiTls.certFile), when it serves HTTPS: status `certificates`, `quorate doctor`. */
  certificates(): readonly CertificateInfo[] {
    return this.#certs.list();
  }

  readonly #certs: CertificateWatch;

  modes(): ModesInfo {
    return { failoverMode: 'automatic', failoverModeSource: 'file', paused: false, drained: [], autoFailover: true, notice: undefined };
  }

  isRemoved(): boolean { return false; }
  switchover(): Promise<{ from: string; to: string; term: number; pauseMs: number }> { return Promise.reject(unavailable('a switchover')); }
  failoverSafe(): Promise<{ safe: boolean; caughtUp: string[] }> { return Promise.reject(unavailable('failover-safe')); }
  /** Leader only: a snapshot stored in PostgreSQL now, and the log compacted behind it. */
  async snapshotNow(): Promise<{ index: number }> {
    const s = await this.log.snapshotNow();
    return { index: s.idx };
  }
  createJoinToken(): { token: string; expiresAt: string; ttlMs: number } { throw unavailable('a join token'); }
  enroll(): ReturnType<ClusterControl['enroll']> { return Promise.reject(unavailable('enrolling a node')); }
  removeMember(): ReturnType<ClusterControl['removeMember']> { return Promise.reject(unavailable('removing a member')); }
  failoverHere(): ReturnType<ClusterControl['failoverHere']> { return Promise.reject(unavailable('an operator failover')); }
  proposeSetting(): Promise<void> { return Promise.reject(unavailable('a failover-mode setting')); }
  promoteDr(): ReturnType<DrControl['promoteDr']> { return Promise.reject(unavailable('DR promotion')); }
  isolate(): ReturnType<DrControl['isolate']> { return Promise.reject(unavailable('isolate')); }

  /**
   * Leader work with external effects (outbox deliveries) starts only once this node raised the fencing row with
   * the lease's token: a leader that has the lease but not the log yet does not act.
   */
  #afterFence(svc: LeaderService): LeaderService {
    let timer: NodeJS.Timeout | undefined;
    let started = false;
    return {
      name: svc.name,
      start: (term) => {
        const check = () => {
          if (this.log.fencedToken === term && this.lease.current().term === term) {
            timer = undefined;
            started = true;
            svc.start(term);
          } else timer = setTimeout(check, 100);
        };
        check();
      },
      stop: () => {
        if (timer) clearTimeout(timer);
        timer = undefined;
        if (started) svc.stop();
        started = false;
      },
    };
  }

  #timed(p: Promise<ApplyResult>, timeoutMs = DEFAULT_PROPOSE_TIMEOUT_MS): Promise<ApplyResult> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NodeError('commit_unknown', `the write did not complete within ${timeoutMs} ms (PostgreSQL at ${this.#pg.target} is slow or unreachable); it may or may not have been applied`)), timeoutMs);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }

  #notLeader(): NodeError {
    const h = this.lease.holder();
    if (h && h.nodeName === this.nodeName && !this.log.writable) return new NodeError('no_leader', 'this node holds the leader lease but has not taken over the PostgreSQL log yet; retry in a moment');
    return h && h.nodeName !== this.nodeName ? notLeader(h.nodeName, h.apiUrl) : notLeader(undefined, undefined);
  }
}
