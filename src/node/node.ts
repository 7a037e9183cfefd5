// One quorate node: the loop that drives a RawNode and wires it to durable
// storage, the peer transport and the replicated KV, in the order of the
// core's contract (persist → send → apply → advance). Everything that touches
// the core runs inside #run(), one Ready at a time; inputs that arrive while a
// Ready is being persisted queue up and go into the next one, so one fsync
// covers every proposal that arrived meanwhile (group commit).
import type { Logger } from 'pino';
import { isLoopback, type QuorateConfig } from '../config/index.js';
import {
  NONE,
  RawNode,
  RaftError,
  decodeConfEntry,
  majority,
  writeQuorum,
  failureTolerance,
  quorumMet,
  roleOf,
  isVoting,
  type ConfChange,
  type Entry,
  type Member,
  type MemberRole,
  type Message,
  type NodeId,
  type Ready,
  type SnapshotMeta,
  type SoftState,
} from '../raft/index.js';
import { SeededRandom } from '../raft/prng.js';
import { WalStorage, writeHaState } from '../storage/index.js';
import { KvStateMachine, encodeCommand, type ApplyResult, type Command } from '../state/index.js';
import { PeerTransport, loadClusterSecret } from '../transport/index.js';
import { MetricsRegistry } from '../ops/metrics.js';
import { NodeError, notLeader } from './errors.js';
import type { NodeHandle, NodeRoleName, NodeStatus, PeerInfo, ProposeOptions } from './handle.js';
import { bootstrapMembership, loadOrCreateBootstrap, normalizePeerUrl, selfId, type Bootstrap } from './members.js';

export const VERSION = '0.1.0';

interface ProposalWaiter {
  readonly term: number;
  readonly startedAt: number;
  resolve(r: ApplyResult): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

interface ReadWaiter {
  index: number;
  resolve(): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** What a member announced in its last authenticated handshake (or, for this node, its own config). */
interface Announced {
  readonly nodeName: string;
  readonly apiUrl: string | undefined;
  /** The role the node's own config asks for (dr = learner). */
  readonly role: MemberRole | undefined;
  /** Its data dir's incarnation id. */
  readonly incarnation: string | undefined;
}

interface PeerMeta {
  peerUrl: string;
  lastCaughtUpAt: number;
  /**
   * Announced facts are never used as they are: the leader records them in
   * the membership through the log (setMember), and forwarding, status and
   * vote counting use the recorded ones.
   */
  announced: Announced | undefined;
}

/** Config role → membership role. */
function memberRole(r: string | undefined): MemberRole | undefined {
  if (r === 'voter' || r === 'observer') return r;
  if (r === 'dr') return 'learner';
  return undefined;
}

/** Bounds on client work waiting in this node (beyond them: 429 overloaded). */
const MAX_INBOX_OPS = 50_000;
const MAX_PENDING_READS = 20_000;

/** Messages that count toward a quorum (elections, commits, leadership checks). */
const COUNTED = new Set<Message['type']>(['voteResp', 'preVoteResp', 'appResp', 'heartbeatResp']);

// Below the client library's default timeout (10 s), so the client hears 504 commit_unknown
// from the server rather than timing out itself.
const DEFAULT_PROPOSE_TIMEOUT_MS = 5_000;

export class QuorateNode implements NodeHandle {
  readonly config: QuorateConfig;
  readonly nodeName: string;
  readonly nodeId: number;
  readonly kv: KvStateMachine;
  readonly #log: Logger;
  readonly #storage: WalStorage;
  readonly #raw: RawNode;
  readonly #transport: PeerTransport;
  readonly #metrics = new MetricsRegistry();
  readonly #tickMs: number;
  readonly #peers = new Map<NodeId, PeerMeta>();
  readonly #startedAt = new Date().toISOString();

  #inbox: Array<() => void> = [];
  #running = false;
  #stopped = false;
  #fatal: Error | undefined;
  #timers: NodeJS.Timeout[] = [];
  #proposals = new Map<number, ProposalWaiter>();
  #reads = new Map<number, ReadWaiter>();
  #readCtx = 0;
  #soft: SoftState = { lead: NONE, role: 'follower' };
  #term = 0;
  #durableTerm = 0;
  #durableVote: NodeId = NONE;
  #lastSnapshot: { meta: SnapshotMeta; data: Uint8Array } | undefined;
  /** Snapshots received from leaders, by "term/index", until the core asks to install one (at most 2 kept). */
  #incoming = new Map<string, { meta: SnapshotMeta; data: Uint8Array }>();
  #snapshotInFlight = false;
  #expireInFlight = false;
  #leaderSince = 0;
  #noLeaderSince = Date.now();
  #lastWarnAt = 0;
  #termLeaders = new Map<number, NodeId>();
  #splitBrain: string | undefined;
  #onFatal: (e: Error) => void = () => undefined;
  readonly #incarnation: string;
  /** The membership's member records by id (refreshed when the membership changes). */
  #records = new Map<NodeId, Member>();
  /**
   * Voting members that came back with a new data dir (their authenticated
   * incarnation differs from the recorded one): until the leader records them
   * as learners, nothing they answer counts toward any quorum.
   */
  #fenced = new Set<NodeId>();
  #fencedLogAt = new Map<NodeId, number>();
  #reconcileQueued = false;
  /** This node came back with a new data dir (see #markRejoining). */
  #rejoining = false;
  #catchUpSample: { at: number; lastIndex: number } | undefined;
  /** Something the reconciliation looks at changed (a handshake, leadership, a committed membership change). */
  #membersDirty = true;

  // metrics
  readonly #mLeaderChanges;
  readonly #mCommitted;
  readonly #mFailed;
  readonly #mCommitLatency;
  readonly #mFsyncLatency;

  private constructor(
    config: QuorateConfig,
    logger: Logger,
    storage: WalStorage,
    raw: RawNode,
    kv: KvStateMachine,
    id: NodeId,
    bootstrap: Bootstrap,
    tickMs: number,
    lastSnapshot: { meta: SnapshotMeta; data: Uint8Array } | undefined,
    security: { incarnation: string; clusterSecret: Uint8Array },
  ) {
    this.config = config;
    this.nodeName = config.node.nodeName;
    this.nodeId = id;
    this.kv = kv;
    this.#storage = storage;
    this.#raw = raw;
    this.#tickMs = tickMs;
    this.#lastSnapshot = lastSnapshot;
    this.#incarnation = security.incarnation;
    this.#term = raw.status().term;
    this.#durableTerm = this.#term;
    this.#durableVote = raw.status().vote;
    // The agent's root logger adds the current term to every line (pino mixin).
    this.#log = logger.child({ node: config.node.nodeName });
    for (const m of bootstrap.members) {
      this.#peers.set(m.id, {
        peerUrl: m.peerUrl,
        lastCaughtUpAt: Date.now(),
        announced: m.id === id
          ? { nodeName: config.node.nodeName, apiUrl: config.node.advertiseApiUrl, role: memberRole(config.node.role), incarnation: security.incarnation }
          : undefined,
      });
    }
    this.#refreshMembership();
    this.#mLeaderChanges = this.#metrics.counter('quorate_leader_changes_seen_total', 'Leader changes seen by this node');
    this.#mCommitted = this.#metrics.counter('quorate_proposals_committed_total', 'Proposals committed and applied');
    this.#mFailed = this.#metrics.counter('quorate_proposals_failed_total', 'Proposals that failed', ['reason']);
    this.#mCommitLatency = this.#metrics.histogram('quorate_commit_latency_seconds', 'Proposal to apply latency on the leader', [
      0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    ]);
    this.#mFsyncLatency = this.#metrics.histogram('quorate_fsync_latency_seconds', 'Latency of one persist (write + fdatasync) per Ready', [
      0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
    ]);
    const peerMap = new Map<number, { host: string; port: number }>();
    for (const m of bootstrap.members) {
      if (m.id === id) continue;
      const u = new URL(`tcp://${m.peerUrl}`);
      peerMap.set(m.id, { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) });
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
      recordedIncarnation: (peer) => this.#records.get(peer)?.incarnation,
      onPeerAck: (peer, info) => {
        if (info.knownIncarnation !== undefined && info.knownIncarnation !== security.incarnation) {
          this.#enqueue(() => this.#markRejoining(peer, info.knownIncarnation!));
        }
      },
      ...(typeof tls === 'object' ? { expectedPeerHost: (peer: number) => peerMap.get(peer)?.host } : {}),
      apiUrl: config.node.advertiseApiUrl,
      role: config.node.role,
      logger: this.#log,
      onMessages: (msgs) => this.#enqueue(() => this.#stepAll(msgs)),
      onPeerDisconnected: (peer, reason) => {
        if (reason === 'reset') this.#enqueue(() => this.#peerReset(peer));
      },
      onSnapshot: (from, meta, data, msg) => {
        // Verified in full (checksums by the transport, a complete decode
        // here) before the core hears of it: a snapshot that does not decode
        // is dropped and changes nothing; the leader sends it again.
        try {
          new KvStateMachine().restore(data);
        } catch (e) {
          this.#log.error({ event: 'snapshot_rejected', peer: from, index: meta.index, term: meta.term, bytes: data.length, err: (e as Error).message },
            `rejected the snapshot at index ${meta.index} from ${this.#nameOf(from)}: its contents do not decode (${(e as Error).message}); nothing was changed`);
          return;
        }
        this.#incoming.set(`${meta.term}/${meta.index}`, { meta, data });
        while (this.#incoming.size > 2) this.#incoming.delete(this.#incoming.keys().next().value!);
        this.#enqueue(() => this.#stepAll([msg]));
      },
      onPeerHello: (peer, info) => {
        const p = this.#peers.get(peer);
        if (!p) return;
        p.announced = { nodeName: info.nodeName, apiUrl: info.apiUrl === '' ? undefined : info.apiUrl, role: memberRole(info.role), incarnation: info.incarnation };
        this.#refreshFenced();
        this.#membersDirty = true;
        this.#queueReconcile();
      },
      allowedPeerIds: 'peers',
    });
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
      const remote = bootstrap.members.map((m) => m.peerUrl).filter((u) => !isLoopback(new URL(`tcp://${u}`).hostname.replace(/^\[|\]$/g, '')));
      if (remote.length > 0) {
        throw new Error(
          `security.tls is "auto", but automatic certificate issuance is not available in this release and peer ${remote[0]} is not on loopback: set security.tls to {"certFile","keyFile","caFile"} (your own PKI) to encrypt peer traffic`,
        );
      }
      logger.warn({ node: config.node.nodeName, event: 'tls_auto_loopback' }, 'security.tls "auto" on a loopback-only cluster: peer traffic is plain TCP on this machine');
    }
    const clusterSecret = loadClusterSecret(config.security.clusterSecretFile);
    const { storage, state } = await WalStorage.open(`${dataDir}/raft`, { validateSnapshot: (data) => void new KvStateMachine().restore(data) });
    for (const w of state.warnings) logger.warn({ node: config.node.nodeName, event: 'storage_recovery' }, w);
    const kv = new KvStateMachine();
    let lastSnapshot: { meta: SnapshotMeta; data: Uint8Array } | undefined;
    if (state.snapshot && state.snapshotData) {
      kv.restore(state.snapshotData);
      lastSnapshot = { meta: state.snapshot, data: state.snapshotData };
    }
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
    const node = new QuorateNode(config, logger, storage, raw, kv, id, bootstrap, tickMs, lastSnapshot, { incarnation: state.incarnation, clusterSecret });
    if (opts.onFatal) node.#onFatal = opts.onFatal;
    await node.#transport.listen();
    node.#startTimers();
    node.#log.info(
      { event: 'node_started', term: raw.status().term, id, members: bootstrap.members.length, firstIndex: raw.status().firstIndex, lastIndex: raw.status().lastIndex, tickMs },
      `node ${config.node.nodeName} (id ${id}) started; log ${raw.status().firstIndex}..${raw.status().lastIndex}`,
    );
    node.#enqueue(() => undefined);
    void node.#writeHaState();
    return node;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    // Let the loop finish the Ready it is persisting.
    for (let i = 0; i < 200 && this.#running; i++) await new Promise((r) => setTimeout(r, 5));
    for (const [, w] of this.#proposals) {
      clearTimeout(w.timer);
      w.reject(new NodeError('commit_unknown', 'the node is shutting down; the write may or may not have been applied'));
    }
    this.#proposals.clear();
    for (const [, r] of this.#reads) {
      clearTimeout(r.timer);
      r.reject(new NodeError('shutting_down', 'the node is shutting down; retry on another node'));
    }
    this.#reads.clear();
    await this.#transport.close();
    await this.#storage.close();
    this.#log.info({ event: 'node_stopped' }, 'node stopped cleanly');
  }

  // ------------------------------------------------------------ NodeHandle

  /** The current Raft term (durable), for log lines and fencing tokens. */
  get term(): number {
    return this.#term;
  }

  isLeader(): boolean {
    return this.#soft.role === 'leader';
  }

  /** The leader's API URL as recorded in the membership (never one merely announced on a connection). */
  leaderApiUrl(): string | undefined {
    const lead = this.#soft.lead;
    if (lead === NONE) return undefined;
    if (lead === this.nodeId) return this.config.node.advertiseApiUrl;
    return this.#records.get(lead)?.apiUrl;
  }

  propose(command: Command, options: ProposeOptions = {}): Promise<ApplyResult> {
    const data = encodeCommand({
      at: Date.now(),
      ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}),
      command,
    });
    const timeoutMs = options.timeoutMs ?? DEFAULT_PROPOSE_TIMEOUT_MS;
    const busy = this.#overloaded();
    if (busy) {
      this.#mFailed.inc({ reason: 'overloaded' });
      return Promise.reject(busy);
    }
    return new Promise<ApplyResult>((resolve, reject) => {
      this.#enqueue(() => {
        const fail = this.#unavailable();
        if (fail) return reject(fail);
        let r: { index: number; term: number };
        try {
          r = this.#raw.propose(data);
        } catch (e) {
          if (this.#fatalIfBroken(e)) return reject(new NodeError('commit_unknown', `the node stopped on an internal error (${(e as Error).message}); retry on another node`));
          this.#mFailed.inc({ reason: (e as RaftError).code ?? 'error' });
          return reject(this.#mapRaftError(e));
        }
        const startedAt = performance.now();
        const timer = setTimeout(() => {
          if (this.#proposals.get(r.index) !== w) return;
          this.#proposals.delete(r.index);
          this.#mFailed.inc({ reason: 'commit_unknown' });
          reject(
            new NodeError('commit_unknown', `the write was proposed at index ${r.index} but not applied within ${timeoutMs} ms; it may or may not be applied. Retry with the same Idempotency-Key to learn its result`),
          );
        }, timeoutMs);
        const w: ProposalWaiter = { term: r.term, startedAt, resolve, reject, timer };
        const displaced = this.#proposals.get(r.index);
        if (displaced) {
          // Our log was truncated at this index and we lead again: the old
          // entry was overwritten, so it was never committed. Settle it.
          clearTimeout(displaced.timer);
          this.#mFailed.inc({ reason: 'proposal_dropped' });
          displaced.reject(new NodeError('proposal_dropped', `the write proposed at index ${r.index} in term ${displaced.term} was overwritten by a later leader and was not applied; retry`));
        }
        this.#proposals.set(r.index, w);
      });
    });
  }

  readBarrier(timeoutMs = 5000): Promise<void> {
    const busy = this.#overloaded();
    if (busy) return Promise.reject(busy);
    return new Promise<void>((resolve, reject) => {
      this.#enqueue(() => {
        const fail = this.#unavailable();
        if (fail) return reject(fail);
        const ctx = ++this.#readCtx;
        try {
          this.#raw.readIndex(ctx);
        } catch (e) {
          if (this.#fatalIfBroken(e)) return reject(new NodeError('shutting_down', `the node stopped on an internal error (${(e as Error).message}); retry on another node`));
          return reject(this.#mapRaftError(e));
        }
        const timer = setTimeout(() => {
          if (!this.#reads.delete(ctx)) return;
          reject(new NodeError('quorum_not_met', `a linearizable read could not confirm leadership with a quorum within ${timeoutMs} ms; retry, or read with consistency=stale`));
        }, timeoutMs);
        this.#reads.set(ctx, { index: -1, resolve, reject, timer });
      });
    });
  }

  async switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }> {
    if (!this.isLeader()) throw notLeader(this.#leaderName(), this.leaderApiUrl());
    const st = this.#raw.status();
    let target: NodeId | undefined;
    if (to !== undefined) {
      target = [...this.#peers.keys()].find((id) => this.#nameOf(id) === to);
      if (target === undefined) throw new NodeError('invalid_transfer', `no member named "${to}"; see \`quorate peers\` for names`);
    } else {
      const candidates = st.progress.filter((p) => p.role === 'voter' && p.recentActive).sort((a, b) => b.match - a.match);
      target = candidates[0]?.id;
      if (target === undefined) throw new NodeError('invalid_transfer', 'no other reachable voter can take over; add or start a voter first');
    }
    const started = performance.now();
    await new Promise<void>((resolve, reject) =>
      this.#enqueue(() => {
        try {
          this.#raw.transferLeadership(target);
          resolve();
        } catch (e) {
          if (this.#fatalIfBroken(e)) return reject(new NodeError('shutting_down', `the node stopped on an internal error (${(e as Error).message})`));
          reject(this.#mapRaftError(e));
        }
      }),
    );
    const deadline = Date.now() + 2 * this.config.cluster.electionTimeoutMs + 500;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
      const s = this.#raw.status();
      if (s.lead !== NONE && s.lead !== this.nodeId) {
        return { from: this.nodeName, to: this.#nameOf(s.lead), term: s.term, pauseMs: Math.round(performance.now() - started) };
      }
    }
    throw new NodeError('transfer_failed', `leadership did not move to ${this.#nameOf(target)} in time; it may be lagging or unreachable. This node still leads: check \`quorate peers\` (lag, status), then retry or pick another target with \`quorate switchover --to NAME\``);
  }

  async failoverSafe(waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }> {
    if (!this.isLeader()) throw notLeader(this.#leaderName(), this.leaderApiUrl());
    const deadline = Date.now() + Math.min(Math.max(0, waitMs), 5000);
    for (;;) {
      const st = this.#raw.status();
      const caughtUp = st.progress.filter((p) => p.role === 'voter' && !p.diverged && !this.#fenced.has(p.id) && p.match >= st.lastIndex && p.ticksSinceContact * this.#tickMs < this.config.cluster.electionTimeoutMs);
      if (caughtUp.length > 0 || Date.now() >= deadline) {
        return { safe: caughtUp.length > 0, caughtUp: caughtUp.map((p) => this.#nameOf(p.id)) };
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async snapshotNow(): Promise<{ index: number }> {
    return new Promise((resolve, reject) =>
      this.#enqueue(() => {
        void this.#takeSnapshot().then(resolve, reject);
      }),
    );
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
    const st = this.#raw.status();
    const m = st.membership;
    const voters = m.members.filter((x) => isVoting(x.role));
    const now = Date.now();
    const electionMs = this.config.cluster.electionTimeoutMs;
    const maxLag = this.config.cluster.maxLagOnFailover;
    const stats = this.#transport.stats();
    const progress = new Map(st.progress.map((p) => [p.id, p]));
    const peers: PeerInfo[] = m.members.map((mem) => {
      const meta = this.#peers.get(mem.id);
      const self = mem.id === this.nodeId;
      const pr = progress.get(mem.id);
      let matchIndex: number;
      let lagEntries = 0;
      let lagMs = 0;
      let lastHeartbeat: string | undefined;
      let status: PeerInfo['status'];
      if (self) {
        matchIndex = st.lastIndex;
        status = st.role === 'leader' || st.lead !== NONE ? 'healthy' : 'isolated';
        lastHeartbeat = new Date(now).toISOString();
      } else if (pr) {
        matchIndex = pr.match;
        lagEntries = Math.max(0, st.lastIndex - pr.match);
        // lastCaughtUpAt is kept by the loop (#trackCatchUp); status() only reads.
        lagMs = lagEntries === 0 ? 0 : now - (meta?.lastCaughtUpAt ?? now);
        const contactMs = pr.ticksSinceContact * this.#tickMs;
        lastHeartbeat = new Date(now - contactMs).toISOString();
        status = contactMs > electionMs ? 'unreachable' : pr.diverged || this.#fenced.has(mem.id) ? 'diverged' : lagEntries > maxLag ? 'lagging' : 'healthy';
      } else {
        matchIndex = 0;
        const s = stats.get(mem.id);
        status = s && (s.connected || s.inboundConnected) ? 'healthy' : 'unreachable';
      }
      return {
        id: mem.id,
        nodeName: this.#nameOf(mem.id),
        apiUrl: self ? this.config.node.advertiseApiUrl : mem.apiUrl,
        peerUrl: meta?.peerUrl ?? '',
        role: this.#roleName(mem.id, st.role, st.lead, mem.role),
        status,
        matchIndex,
        replicationLagEntries: lagEntries,
        replicationLagMs: lagMs,
        lastHeartbeat,
        self,
      };
    });
    const wq = writeQuorum(voters.length, this.config.database.writeQuorum);
    let reachable: number;
    if (st.role === 'leader') reachable = st.reachableVoters;
    else {
      reachable = voters.filter((v) => v.id === this.nodeId || stats.get(v.id)?.connected || stats.get(v.id)?.inboundConnected).length;
    }
    const quorumOk = st.role === 'leader' ? quorumMet(reachable, wq) : st.lead !== NONE;
    const storageError = this.#fatal?.message;
    return {
      id: this.nodeId,
      nodeName: this.nodeName,
      haId: this.config.cluster.haId,
      role: this.#roleName(this.nodeId, st.role, st.lead, roleOf(m, this.nodeId)),
      raftRole: st.role,
      term: st.term,
      leaderId: st.lead,
      leaderName: st.lead === NONE ? undefined : this.#nameOf(st.lead),
      leaderApiUrl: this.leaderApiUrl(),
      commitIndex: st.commit,
      appliedIndex: st.applied,
      lastIndex: st.lastIndex,
      firstIndex: st.firstIndex,
      snapshotIndex: this.#lastSnapshot?.meta.index ?? 0,
      revision: this.kv.revision,
      quorumMet: quorumOk,
      votersReachable: reachable,
      votersTotal: voters.length,
      writeQuorum: wq,
      failureTolerance: failureTolerance(reachable, wq),
      peers,
      storageHealthy: this.#fatal === undefined,
      storageError,
      splitBrainWarning: this.#splitBrain,
      startedAt: this.#startedAt,
      version: VERSION,
    };
  }

  // ------------------------------------------------------------ the loop

  #enqueue(op: () => void): void {
    if (this.#stopped) return;
    this.#inbox.push(op);
    if (!this.#running) {
      this.#running = true;
      setImmediate(() => void this.#run());
    }
  }

  async #run(): Promise<void> {
    try {
      for (;;) {
        if (this.#fatal) return;
        const ops = this.#inbox;
        this.#inbox = [];
        for (const op of ops) op();
        if (!this.#raw.hasReady()) {
          if (this.#inbox.length === 0) return;
          continue;
        }
        await this.#handleReady(this.#raw.ready());
      }
    } catch (e) {
      this.#die(e as Error);
    } finally {
      this.#running = false;
      if (this.#inbox.length > 0 && !this.#fatal && !this.#stopped) {
        this.#running = true;
        setImmediate(() => void this.#run());
      }
    }
  }

  async #handleReady(rd: Ready): Promise<void> {
    // A leader whose term and vote are already durable may send its appends
    // before its own fsync (as etcd does): followers persist before they ack,
    // and the core counts the leader's own entries only after advance(), that
    // is after this fsync. Anything else (votes, acks, a new term) waits.
    const role = rd.softState?.role ?? this.#soft.role;
    const early = role === 'leader' && !rd.snapshot && (!rd.hardState || (rd.hardState.term === this.#durableTerm && rd.hardState.vote === this.#durableVote));
    if (early) this.#send(rd.messages);
    // 1. Persist.
    if (rd.snapshot) await this.#installSnapshot(rd.snapshot);
    if (rd.entries.length > 0 || rd.hardState || rd.mustSync) {
      const t0 = performance.now();
      await this.#storage.save(rd.hardState, rd.entries, rd.mustSync);
      if (rd.mustSync) this.#mFsyncLatency.observe((performance.now() - t0) / 1000);
    }
    if (rd.hardState) {
      this.#durableTerm = rd.hardState.term;
      this.#durableVote = rd.hardState.vote;
    }
    if (rd.hardState) this.#term = rd.hardState.term;
    // 2. Send.
    if (!early) this.#send(rd.messages);
    // 3. Apply.
    for (const e of rd.committedEntries) this.#apply(e);
    for (const rs of rd.readStates) {
      const w = this.#reads.get(rs.ctx);
      if (w) w.index = rs.index;
    }
    for (const ctx of rd.droppedReads) {
      const w = this.#reads.get(ctx);
      if (!w) continue;
      this.#reads.delete(ctx);
      clearTimeout(w.timer);
      w.reject(new NodeError('no_leader', 'leadership changed during a linearizable read; retry (the read was not served)'));
    }
    this.#releaseReads();
    // 4. Advance.
    this.#raw.advance();
    if (rd.softState) this.#onSoftState(rd.softState);
    if (rd.snapshot || rd.entries.some((e) => e.type === 'conf')) this.#refreshMembership();
    if (rd.snapshotRequest !== undefined && !this.#snapshotInFlight) void this.#takeSnapshot().catch(() => undefined);
    if (rd.softState?.role === 'leader' || rd.committedEntries.some((e) => e.type === 'conf')) this.#membersDirty = true;
    if (this.#soft.role === 'leader' && this.#membersDirty && rd.committedEntries.length > 0) this.#queueReconcile();
  }

  #send(messages: readonly Message[]): void {
    const plain: Message[] = [];
    for (const m of messages) {
      if (m.type === 'snap') this.#sendSnapshot(m);
      else plain.push(m);
    }
    if (plain.length > 0) this.#transport.send(plain);
  }

  #apply(e: Entry): void {
    let result: ApplyResult | undefined;
    if (e.type === 'conf') {
      const ce = decodeConfEntry(e.data);
      this.#log.info({ event: 'membership_applied', index: e.index, change: ce.change }, `membership change applied at index ${e.index}: ${ce.change.op} node ${ce.change.id}`);
      this.kv.apply(e.index, new Uint8Array(0));
    } else {
      result = this.kv.apply(e.index, e.data);
    }
    const w = this.#proposals.get(e.index);
    if (w) {
      this.#proposals.delete(e.index);
      clearTimeout(w.timer);
      if (w.term === e.term && result) {
        this.#mCommitted.inc();
        this.#mCommitLatency.observe((performance.now() - w.startedAt) / 1000);
        w.resolve(result);
      } else {
        this.#mFailed.inc({ reason: 'proposal_dropped' });
        w.reject(new NodeError('proposal_dropped', `the write was overwritten by a new leader at index ${e.index} and was not applied; retry`));
      }
    }
  }

  #releaseReads(): void {
    const applied = this.kv.appliedIndex;
    for (const [ctx, w] of this.#reads) {
      if (w.index >= 0 && w.index <= applied) {
        this.#reads.delete(ctx);
        clearTimeout(w.timer);
        w.resolve();
      }
    }
  }

  #stepAll(msgs: Message[]): void {
    for (const m of msgs) {
      if (this.#fenced.has(m.from) && COUNTED.has(m.type)) {
        this.#noteFenced(m);
        continue;
      }
      if (m.type === 'app' || m.type === 'heartbeat') this.#watchSplitBrain(m);
      try {
        this.#raw.step(m);
      } catch (e) {
        if (e instanceof RaftError && e.code !== 'invariant_violation') {
          this.#log.warn({ event: 'step_rejected', from: m.from, type: m.type, err: e.message }, `message from peer ${m.from} rejected: ${e.message}`);
        } else throw e;
      }
    }
  }

  #watchSplitBrain(m: Message): void {
    const seen = this.#termLeaders.get(m.term);
    const selfLeads = this.#soft.role === 'leader' && this.#term === m.term;
    if ((seen !== undefined && seen !== m.from) || selfLeads) {
      const other = selfLeads ? this.nodeName : this.#nameOf(seen!);
      this.#splitBrain = `${this.#nameOf(m.from)} and ${other} both claimed leadership of term ${m.term}`;
      this.#log.error({ event: 'split_brain', term: m.term }, `Split-brain warning: ${this.#splitBrain}`);
    } else if (seen === undefined) {
      this.#termLeaders.set(m.term, m.from);
      if (this.#termLeaders.size > 64) this.#termLeaders.delete(this.#termLeaders.keys().next().value!);
    }
  }

  #peerReset(peer: NodeId): void {
    if (this.#soft.lead === peer && this.#soft.role === 'follower') {
      this.#log.info({ event: 'leader_connection_reset', peer }, `connection to leader ${this.#nameOf(peer)} was reset; starting a pre-vote now`);
      this.#raw.leaderUnreachable();
    }
  }

  #onSoftState(s: SoftState): void {
    const prev = this.#soft;
    this.#soft = s;
    if (s.lead !== prev.lead) {
      this.#mLeaderChanges.inc();
      if (s.lead === NONE) {
        this.#noLeaderSince = Date.now();
        this.#log.warn({ event: 'leader_lost', previous: prev.lead }, `lost leader ${prev.lead === NONE ? '' : this.#nameOf(prev.lead)}`);
      } else {
        this.#log.info({ event: 'leader_changed', leader: s.lead, leaderName: this.#nameOf(s.lead) }, `leader is now ${this.#nameOf(s.lead)}`);
      }
      void this.#writeHaState();
    }
    if (s.role === 'leader' && prev.role !== 'leader') {
      this.#leaderSince = Date.now();
      this.#log.info({ event: 'became_leader' }, `${this.nodeName} became the leader`);
    }
  }

  // ------------------------------------------------------------ snapshots

  async #takeSnapshot(): Promise<{ index: number }> {
    if (this.#snapshotInFlight) throw new NodeError('snapshot_in_progress', 'a snapshot is already being written; try again shortly');
    this.#snapshotInFlight = true;
    try {
      const index = this.kv.appliedIndex;
      if (index <= (this.#lastSnapshot?.meta.index ?? 0)) return { index: this.#lastSnapshot?.meta.index ?? 0 };
      const data = this.kv.snapshot();
      const meta = this.#raw.snapshotMeta(index);
      try {
        await this.#storage.saveSnapshot(meta, data);
      } catch (e) {
        // Disk full or an I/O error: the storage is no longer trusted; stop
        // through the fatal path (logged, exit) rather than an unhandled rejection.
        this.#die(new Error(`writing the snapshot at index ${index} failed: ${(e as Error).message}`, { cause: e }));
        throw new NodeError('storage_failed', `writing the snapshot at index ${index} failed (${(e as Error).message}); the node is stopping`);
      }
      this.#lastSnapshot = { meta, data };
      const compactedTo = await new Promise<number>((resolve, reject) =>
        this.#enqueue(() => {
          try {
            resolve(this.#raw.snapshotTaken(index).compactedTo);
          } catch (e) {
            this.#fatalIfBroken(e);
            reject(e as Error);
          }
        }),
      );
      if (compactedTo > 0) {
        try {
          await this.#storage.compact(compactedTo);
        } catch (e) {
          this.#die(new Error(`compacting the log through index ${compactedTo} failed: ${(e as Error).message}`, { cause: e }));
          throw new NodeError('storage_failed', `compacting the log failed (${(e as Error).message}); the node is stopping`);
        }
      }
      this.#log.info({ event: 'snapshot_taken', index, bytes: data.length, compactedTo }, `snapshot at index ${index} (${data.length} bytes); log compacted to ${compactedTo}`);
      return { index };
    } finally {
      this.#snapshotInFlight = false;
    }
  }

  async #installSnapshot(meta: SnapshotMeta): Promise<void> {
    const inc = this.#incoming.get(`${meta.term}/${meta.index}`);
    if (!inc) throw new Error(`snapshot ${meta.term}/${meta.index} to install has no received data`);
    // Its contents were decoded in full when it arrived (onSnapshot), so the
    // restore below cannot fail half-way; storage makes the install atomic.
    await this.#storage.installSnapshot(meta, inc.data);
    this.kv.restore(inc.data);
    this.#lastSnapshot = inc;
    this.#incoming.clear();
    this.#log.info({ event: 'snapshot_installed', index: meta.index, bytes: inc.data.length }, `installed snapshot at index ${meta.index} (${inc.data.length} bytes) from the leader`);
  }

  #sendSnapshot(m: Message): void {
    const snap = this.#lastSnapshot;
    if (!snap || !m.snapshot || snap.meta.index !== m.snapshot.index) {
      this.#enqueue(() => this.#raw.reportSnapshot(m.to, false));
      return;
    }
    const total = snap.data.length;
    let lastLog = 0;
    this.#log.info({ event: 'snapshot_send_start', to: m.to, index: snap.meta.index, bytes: total }, `sending snapshot at index ${snap.meta.index} (${total} bytes) to ${this.#nameOf(m.to)}`);
    this.#transport
      .sendSnapshot(m.to, m, snap.data, (sent) => {
        const now = Date.now();
        if (now - lastLog > 1000) {
          lastLog = now;
          this.#log.info({ event: 'snapshot_send_progress', to: m.to, sent, total }, `snapshot to ${this.#nameOf(m.to)}: ${Math.round((100 * sent) / Math.max(1, total))}%`);
        }
      })
      .then(
        () => this.#enqueue(() => this.#raw.reportSnapshot(m.to, true)),
        (e: Error) => {
          this.#log.warn({ event: 'snapshot_send_failed', to: m.to, err: e.message }, `snapshot to ${this.#nameOf(m.to)} failed: ${e.message}`);
          this.#enqueue(() => this.#raw.reportSnapshot(m.to, false));
        },
      );
  }

  // ------------------------------------------------------------ timers

  #startTimers(): void {
    this.#timers.push(setInterval(() => this.#enqueue(() => this.#raw.tick()), this.#tickMs));
    this.#timers.push(setInterval(() => this.#housekeeping(), 250));
  }

  /** When each follower was last fully caught up (the leader's view), for replicationLagMs. */
  // A follower that holds everything the leader had at the previous sample
  // was caught up then: lagMs is the age of what it misses (±250 ms), also
  // under a steady stream of writes where it is never exactly at lastIndex.
  #trackCatchUp(now: number): void {
    const st = this.#raw.status();
    const prev = this.#catchUpSample;
    for (const pr of st.progress) {
      const meta = this.#peers.get(pr.id);
      if (!meta) continue;
      if (pr.match >= st.lastIndex) meta.lastCaughtUpAt = now;
      else if (prev !== undefined && pr.match >= prev.lastIndex) meta.lastCaughtUpAt = Math.max(meta.lastCaughtUpAt, prev.at);
    }
    this.#catchUpSample = { at: now, lastIndex: st.lastIndex };
  }

  #housekeeping(): void {
    if (this.#fatal || this.#stopped) return;
    const now = Date.now();
    this.#trackCatchUp(now);
    const st = this.status();
    // TTL: the leader proposes expiry with its clock; followers never expire on their own.
    if (st.raftRole === 'leader' && !this.#expireInFlight && now - this.#leaderSince > 0) {
      const keys = this.kv.expiredKeys(now, 1000);
      if (keys.length > 0) {
        this.#expireInFlight = true;
        this.propose({ type: 'expire', keys })
          .catch(() => undefined)
          .finally(() => (this.#expireInFlight = false));
      }
    }
    if (st.raftRole === 'leader') this.#queueReconcile();
    if (now - this.#lastWarnAt < 5000) return;
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

  /**
   * The leader brings the membership in line with what each member announced
   * in its authenticated handshake, one single-server change at a time:
   * 1. a voting member that came back with a new data dir (new incarnation)
   *    becomes a learner gated at the current commit index (an amnesiac node
   *    never votes or counts until it holds what it may have acknowledged);
   * 2. facts not yet recorded (incarnation, API URL, name) are recorded;
   * 3. roles follow each node's config (voter / observer / dr); a gated
   *    learner is promoted only once its match index reaches the gate. A
   *    leader configured as observer or dr first hands leadership to a voter.
   */
  #reconcileMembers(): void {
    if (this.#fatal || this.#stopped) return;
    const st = this.#raw.status();
    if (st.role !== 'leader' || st.leadTransferee !== NONE) return;
    this.#membersDirty = false;
    const match = new Map(st.progress.map((p) => [p.id, p.match]));
    match.set(this.nodeId, st.lastIndex);
    for (const mem of st.membership.members) {
      const said = this.#peers.get(mem.id)?.announced;
      if (said === undefined) continue;
      const name = said.nodeName;
      const apiUrl = said.apiUrl ?? mem.apiUrl;
      const incarnation = said.incarnation ?? mem.incarnation;
      let next: Member | undefined;
      let why = '';
      if (mem.incarnation !== undefined && said.incarnation !== undefined && said.incarnation !== mem.incarnation && mem.id !== this.nodeId) {
        const gate = isVoting(mem.role) ? st.commit : mem.catchUpTo;
        next = { id: mem.id, role: isVoting(mem.role) ? 'learner' : mem.role, incarnation: said.incarnation, name, ...(apiUrl ? { apiUrl } : {}), ...(gate !== undefined ? { catchUpTo: gate } : {}) };
        why = `${name} came back with a new data dir (incarnation ${mem.incarnation} → ${said.incarnation}): it is a non-voting learner until it has caught up to index ${gate ?? st.commit}`;
        this.#log.warn({ event: 'member_rejoined', id: mem.id, previous: mem.incarnation, incarnation: said.incarnation, catchUpTo: gate }, why);
      } else if (incarnation !== mem.incarnation || apiUrl !== mem.apiUrl || name !== mem.name) {
        next = { ...mem, name, ...(incarnation !== undefined ? { incarnation } : {}), ...(apiUrl !== undefined ? { apiUrl } : {}) };
        why = `recording ${name}'s identity (incarnation ${incarnation ?? '-'}, API ${apiUrl ?? '-'})`;
      } else {
        const want = said.role ?? mem.role;
        if (mem.catchUpTo !== undefined) {
          if ((match.get(mem.id) ?? 0) < mem.catchUpTo) continue; // still catching up: stays a learner
          if (want === mem.role) {
            const { catchUpTo: _done, ...rest } = mem;
            next = rest;
            why = `${name} has caught up to index ${mem.catchUpTo}`;
          }
        }
        if (next === undefined && want !== mem.role) {
          if (mem.id === this.nodeId && want !== 'voter') {
            this.#handOver(st);
            return;
          }
          this.#proposeMemberChange({ op: 'setRole', id: mem.id, role: want }, `setting ${name}'s role to ${want === 'learner' ? 'dr' : want}`);
          return;
        }
        if (next === undefined) continue;
      }
      this.#proposeMemberChange({ op: 'setMember', id: mem.id, member: next }, why);
      return;
    }
  }

  #handOver(st: ReturnType<RawNode['status']>): void {
    const target = st.progress
      .filter((p) => p.role === 'voter' && p.recentActive && !p.diverged && (this.#peers.get(p.id)?.announced?.role ?? 'voter') === 'voter')
      .sort((a, b) => b.match - a.match)[0];
    if (target === undefined) {
      this.#warnOnce('role_handover', `configured as ${this.config.node.role} but no other reachable voter can take over leadership yet`);
      return;
    }
    this.#log.info({ event: 'role_handover', to: target.id }, `configured as ${this.config.node.role}: handing leadership to ${this.#nameOf(target.id)}`);
    try {
      this.#raw.transferLeadership(target.id);
    } catch (e) {
      if (this.#fatalIfBroken(e)) return;
      this.#warnOnce('role_handover', (e as Error).message);
    }
  }

  #proposeMemberChange(change: ConfChange, why: string): void {
    try {
      const r = this.#raw.proposeConfChange(change);
      this.#log.info({ event: 'membership_change_proposed', change, index: r.index }, `${why} (index ${r.index})`);
    } catch (e) {
      if (this.#fatalIfBroken(e)) return;
      const code = (e as RaftError).code;
      if (code === 'conf_change_in_progress') this.#membersDirty = true; // retried when the next entry commits
      if (code !== 'conf_change_in_progress' && code !== 'transfer_in_progress' && code !== 'not_leader') {
        this.#warnOnce(`member_${change.id}`, `cannot change ${this.#nameOf(change.id)}'s membership record: ${(e as Error).message}`);
      }
    }
  }

  /** Run the reconciliation in the loop soon (at most one queued). */
  #queueReconcile(): void {
    if (this.#reconcileQueued) return;
    this.#reconcileQueued = true;
    this.#enqueue(() => {
      this.#reconcileQueued = false;
      this.#reconcileMembers();
    });
  }

  #refreshMembership(): void {
    this.#records = new Map(this.#raw.membership().members.map((m) => [m.id, m]));
    this.#refreshFenced();
    if (this.#rejoining && this.#records.get(this.nodeId)?.incarnation === this.#incarnation) {
      this.#rejoining = false;
      this.#raw.setRejoining(false);
      this.#log.info({ event: 'rejoin_recorded', incarnation: this.#incarnation }, `the cluster has recorded this node's new data dir (incarnation ${this.#incarnation}); it votes again once the leader promotes it`);
    }
  }

  /**
   * A peer records another incarnation for this node: this data dir is new
   * under an id the cluster knows (wiped or replaced). Withhold votes and
   * candidacy until the membership records this incarnation.
   */
  #markRejoining(peer: NodeId, known: string): void {
    if (this.#rejoining || this.#records.get(this.nodeId)?.incarnation === this.#incarnation) return;
    this.#rejoining = true;
    this.#raw.setRejoining(true);
    this.#log.warn({ event: 'rejoining', peer, recorded: known, incarnation: this.#incarnation },
      `${this.#nameOf(peer)} knows this node with another data dir (incarnation ${known}; this one is ${this.#incarnation}): this node grants no vote and does not campaign until the leader has recorded it and it has caught up`);
  }

  #refreshFenced(): void {
    const fenced = new Set<NodeId>();
    for (const [id, rec] of this.#records) {
      if (id === this.nodeId || !isVoting(rec.role) || rec.incarnation === undefined) continue;
      const said = this.#peers.get(id)?.announced?.incarnation;
      if (said !== undefined && said !== rec.incarnation) fenced.add(id);
    }
    for (const id of fenced) {
      if (!this.#fenced.has(id)) {
        this.#log.warn({ event: 'member_fenced', id, recorded: this.#records.get(id)?.incarnation, announced: this.#peers.get(id)?.announced?.incarnation },
          `${this.#nameOf(id)} came back with a new data dir: its votes and acknowledgements do not count until the leader records it as a learner and it has caught up`);
      }
    }
    this.#fenced = fenced;
  }

  #noteFenced(m: Message): void {
    const now = Date.now();
    if (now - (this.#fencedLogAt.get(m.from) ?? 0) < 5000) return;
    this.#fencedLogAt.set(m.from, now);
    this.#log.info({ event: 'fenced_message_ignored', from: m.from, type: m.type }, `ignoring ${m.type} from ${this.#nameOf(m.from)}: it has a new data dir and does not count yet`);
  }

  #warned = new Set<string>();
  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log.warn({ event: 'role_reconcile' }, message);
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

  // ------------------------------------------------------------ helpers

  #die(e: Error): void {
    this.#fatal = e;
    this.#log.fatal({ event: 'node_failed', err: e.message, stack: e.stack }, `node stopped serving: ${e.message}`);
    for (const [, w] of this.#proposals) {
      clearTimeout(w.timer);
      w.reject(new NodeError('commit_unknown', `the node failed (${e.message}); the write may or may not have been applied`));
    }
    this.#proposals.clear();
    // A broken invariant or a failed fsync: this process must not go on.
    this.#onFatal(e);
  }

  /**
   * A broken invariant in the core (or anything the core throws that is not
   * one of its documented refusals) means this process can no longer be
   * trusted: stop it through the fatal path. Returns true when it did.
   */
  #fatalIfBroken(e: unknown): boolean {
    if (e instanceof RaftError && e.code !== 'invariant_violation') return false;
    this.#die(e instanceof Error ? e : new Error(String(e)));
    return true;
  }

  /** Client work beyond these bounds is refused at once (429, retry) rather than queued without limit. */
  #overloaded(): NodeError | undefined {
    if (this.#inbox.length >= MAX_INBOX_OPS) {
      return new NodeError('overloaded', `this node has ${this.#inbox.length} operations waiting for its loop (limit ${MAX_INBOX_OPS}); retry shortly`, { retryAfterMs: 100 });
    }
    if (this.#reads.size >= MAX_PENDING_READS) {
      return new NodeError('overloaded', `this node has ${this.#reads.size} linearizable reads waiting (limit ${MAX_PENDING_READS}); retry shortly, or read with consistency=stale`, { retryAfterMs: 100 });
    }
    return undefined;
  }

  #unavailable(): NodeError | undefined {
    if (this.#fatal) return new NodeError('storage_failed', `this node's storage failed (${this.#fatal.message}); restart it`);
    if (this.#stopped) return new NodeError('shutting_down', 'the node is shutting down; retry on another node');
    return undefined;
  }

  #mapRaftError(e: unknown): Error {
    if (!(e instanceof RaftError)) return e as Error;
    switch (e.code) {
      case 'not_leader':
        return notLeader(this.#leaderName(), this.leaderApiUrl());
      case 'overloaded':
        return new NodeError('overloaded', `${e.message}`, { retryAfterMs: 100 });
      case 'proposal_dropped':
      case 'transfer_in_progress':
      case 'invalid_transfer':
      case 'conf_change_in_progress':
      case 'invalid_conf_change':
      case 'entry_too_large':
        return new NodeError(e.code, e.message);
      default:
        // invariant_violation is a bug and fatal: it is never a client error,
        // so it (like any code not listed above) is passed on unchanged and
        // answered 500 internal with its stack logged.
        return e;
    }
  }

  #leaderName(): string | undefined {
    const lead = this.#raw.status().lead;
    return lead === NONE ? undefined : this.#nameOf(lead);
  }

  #nameOf(id: NodeId): string {
    if (id === this.nodeId) return this.nodeName;
    return this.#records.get(id)?.name ?? this.#peers.get(id)?.announced?.nodeName ?? `node-${id}`;
  }

  #roleName(id: NodeId, raftRole: string, lead: NodeId, memberRole: string | undefined): NodeRoleName {
    if (memberRole === undefined) return 'removed';
    if (id === lead) return 'primary';
    if (memberRole === 'learner') return this.#records.get(id)?.catchUpTo !== undefined ? 'rejoining' : 'dr';
    if (memberRole === 'observer') return 'observer';
    if (id === this.nodeId && (raftRole === 'candidate' || raftRole === 'preCandidate')) return 'candidate';
    return 'standby';
  }
}
