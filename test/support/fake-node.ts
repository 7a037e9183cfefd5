// An in-memory node for API tests, behind the API's two ports
// (src/api/ports.ts): the FakeNode itself is the ClusterControl, and
// `kvService` is the KvService over a real KvStateMachine (in its registry, createKvState) whose proposals
// apply at once. It can play leader or follower (pointing at another test
// server as the leader), and every NodeStatus field and failure can be set by
// the test. Methods are looked up at call time, so a test may replace one
// (`h.node.switchover = ...`).
import { parseConfig } from '../../src/config/index.js';
import type { QuorateConfig } from '../../src/config/index.js';
import type { ClusterControl, EnrollResult, KvService, NodeStatus, PeerInfo, ProposeOptions, SettingChange } from '../../src/api/ports.js';
import { NodeError } from '../../src/node/errors.js';
import { NodeSecurity, forwardSignature } from '../../src/node/security.js';
import pino from 'pino';
import { MetricsRegistry } from '../../src/ops/metrics.js';
import { createKvState, encodeCommand } from '../../src/state/index.js';
import type { ApplyResult, Command, HistoryRecord, HistoryStateMachine, KvStateMachine, KvStateOptions, MachineRegistry } from '../../src/state/index.js';

export interface FakeNodeOptions {
  readonly nodeName: string;
  readonly nodeId?: number;
  readonly dataDir: string;
  /** Start as leader (default) or follower. */
  readonly leader?: boolean;
  readonly kv?: KvStateOptions;
}

export class FakeNode implements ClusterControl {
  readonly config: QuorateConfig;
  readonly nodeName: string;
  readonly nodeId: number;
  readonly kv: KvStateMachine;
  readonly machines: MachineRegistry;
  /** The KvService the API is given: reads of `kv`, writes through propose(), barriers through readBarrier(). */
  readonly kvService: KvService;
  /** The real NodeSecurity over this node's "tokens" and "audit" machines; its proposals apply at once (leader) or go to leaderUrl (follower). */
  readonly security: NodeSecurity;
  /** The cluster secret that signs audit entries sent to the leader (equal on every FakeNode). */
  static readonly CLUSTER_SECRET = new Uint8Array(32).fill(7);
  readonly metrics = new MetricsRegistry();
  readonly #proposals = this.metrics.counter('quorate_proposals_total', 'Proposals applied by the fake node.', ['type']);

  leader: boolean;
  /** When a follower: the leader it knows (undefined = none). */
  leaderName: string | undefined;
  leaderUrl: string | undefined;
  /** Fields merged into status(). */
  statusOverrides: Partial<NodeStatus> = {};
  /** Thrown by the next propose() instead of applying (then cleared). */
  failNextPropose: Error | undefined;
  /** Called before each propose applies (may throw or wait). */
  beforePropose: ((command: Command, options: ProposeOptions) => Promise<void> | void) | undefined;
  readBarriers = 0;
  /** Proposals seen, with their idempotency keys. */
  readonly proposals: { command: Command; idempotencyKey: string | undefined }[] = [];
  failoverSafeResult = { safe: true, caughtUp: ['node2'] };
  #index = 0;
  #term = 1;

  constructor(options: FakeNodeOptions) {
    this.nodeName = options.nodeName;
    this.nodeId = options.nodeId ?? 1;
    this.config = parseConfig({ node: { nodeName: options.nodeName, dataDir: options.dataDir } }, {});
    const state = createKvState(options.kv ?? {});
    this.kv = state.kv;
    this.machines = state.registry;
    this.history = state.history;
    const kv = this.kv;
    const machines = this.machines;
    this.kvService = {
      get appliedIndex() {
        return machines.appliedIndex;
      },
      get revision() {
        return kv.revision;
      },
      get: (key) => kv.get(key),
      range: (prefix, limit, startAfter) => kv.range(prefix, limit, startAfter),
      watch: (prefix, fromRevision, listener, opts) => kv.watch(prefix, fromRevision, listener, opts),
      checksum: () => kv.checksum(),
      propose: (command, opts) => this.propose(command, opts),
      readBarrier: () => this.readBarrier(),
    };
    this.leader = options.leader ?? true;
    this.security = new NodeSecurity({
      log: pino({ level: 'silent' }), nodeName: this.nodeName, tokens: state.tokens, audit: state.audit, clusterSecret: FakeNode.CLUSTER_SECRET, auditMax: 1000,
      isLeader: () => this.leader, notLeader: () => this.#notLeader(), featureLevel: () => 2, appliedIndex: () => machines.appliedIndex,
      leaderApiUrl: () => this.leaderApiUrl(),
      propose: async (entry) => {
        if (!this.leader) throw this.#notLeader();
        return this.machines.apply(++this.#index, entry) ?? { revision: this.kv.revision };
      },
    });
  }

  isLeader(): boolean {
    return this.leader;
  }

  leaderApiUrl(): string | undefined {
    return this.leader ? undefined : this.leaderUrl;
  }

  #notLeader(): NodeError {
    if (this.leaderName === undefined) return new NodeError('no_leader', 'no leader is known right now; retry and check `quorate status`');
    return new NodeError('not_leader', `this node is not the leader; ${this.leaderName} leads`, { leaderName: this.leaderName });
  }

  /** Other members this node reports in its status (dashboard views, CORS origins). */
  otherPeers: PeerInfo[] = [];

  status(): NodeStatus {
    const self: PeerInfo = {
      id: this.nodeId,
      nodeName: this.nodeName,
      apiUrl: undefined,
      peerUrl: 'http://127.0.0.1:5201',
      role: this.leader ? 'primary' : 'standby',
      status: 'healthy',
      matchIndex: this.#index,
      replicationLagEntries: 0,
      replicationLagMs: 0,
      lastHeartbeat: '2026-04-06T10:30:00.000Z',
      self: true,
    };
    const base: NodeStatus = {
      id: this.nodeId,
      nodeName: this.nodeName,
      haId: 'test-ha',
      role: this.leader ? 'primary' : 'standby',
      raftRole: this.leader ? 'leader' : 'follower',
      term: this.#term,
      leaderId: this.leader ? this.nodeId : this.leaderName !== undefined ? 99 : 0,
      leaderName: this.leader ? this.nodeName : this.leaderName,
      leaderApiUrl: this.leaderApiUrl(),
      commitIndex: this.#index,
      appliedIndex: this.#index,
      lastIndex: this.#index,
      firstIndex: 1,
      snapshotIndex: 0,
      revision: this.kv.revision,
      quorumMet: true,
      votersReachable: 3,
      votersTotal: 3,
      writeQuorum: 2,
      failureTolerance: 1,
      peers: [self, ...this.otherPeers],
      storageHealthy: true,
      storageError: undefined,
      splitBrainWarning: undefined,
      startedAt: '2026-04-06T10:00:00.000Z',
      version: '0.1.0',
      featureLevel: 2,
    };
    return { ...base, ...this.statusOverrides };
  }

  async propose(command: Command, options: ProposeOptions = {}): Promise<ApplyResult> {
    if (!this.leader) throw this.#notLeader();
    this.proposals.push({ command, idempotencyKey: options.idempotencyKey });
    const fail = this.failNextPropose;
    if (fail !== undefined) {
      this.failNextPropose = undefined;
      throw fail;
    }
    await this.beforePropose?.(command, options);
    const data = encodeCommand({ at: Date.now(), command, ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}) });
    this.#proposals.inc({ type: command.type });
    return this.machines.apply(++this.#index, data) ?? { revision: this.kv.revision };
  }

  async readBarrier(): Promise<void> {
    if (!this.leader) throw this.#notLeader();
    this.readBarriers++;
  }

  async switchover(to?: string): Promise<{ from: string; to: string; term: number; pauseMs: number }> {
    if (!this.leader) throw this.#notLeader();
    if (to === 'nobody') throw new NodeError('invalid_transfer', 'leadership transfer refused: no voter named nobody');
    this.#term++;
    return { from: this.nodeName, to: to ?? 'node2', term: this.#term, pauseMs: 12 };
  }

  async failoverSafe(_waitMs: number): Promise<{ safe: boolean; caughtUp: string[] }> {
    if (!this.leader) throw this.#notLeader();
    return this.failoverSafeResult;
  }

  metricsText(): Promise<string> {
    return this.metrics.text();
  }

  async snapshotNow(): Promise<{ index: number }> {
    return { index: this.#index };
  }

  /** The "history" machine of the fake's registry (apply records through machines.apply with a format-2 envelope). */
  history: HistoryStateMachine;

  clusterHistory(limit?: number): { records: readonly HistoryRecord[]; appliedIndex: number } {
    return { records: this.history.records(limit), appliedIndex: this.machines.appliedIndex };
  }

  removed = false;

  isRemoved(): boolean {
    return this.removed;
  }

  createJoinToken(ttlMs = 600_000): { token: string; expiresAt: string; ttlMs: number } {
    if (!this.leader) throw this.#notLeader();
    return { token: `qjt-${'ab'.repeat(32)}`, expiresAt: new Date(Date.now() + ttlMs).toISOString(), ttlMs };
  }

  async enroll(): Promise<EnrollResult> {
    if (!this.leader) throw this.#notLeader();
    throw new NodeError('enroll_refused', 'the fake node enrolls nobody');
  }

  async removeMember(nodeName: string): Promise<{ nodeName: string; nodeId: number; message: string }> {
    if (!this.leader) throw this.#notLeader();
    throw new NodeError('invalid_conf_change', `no member named ${JSON.stringify(nodeName)}`);
  }

  modes(): { failoverMode: 'automatic'; failoverModeSource: 'file'; paused: boolean; drained: string[]; autoFailover: boolean; notice: undefined } {
    return { failoverMode: 'automatic', failoverModeSource: 'file', paused: false, drained: [], autoFailover: true, notice: undefined };
  }

  /** The fake always has a leader (itself or node1): a failover is refused as on a real node that knows one. */
  failoverHere(): Promise<{ campaigned: string; leader: string; term: number; elected: boolean }> {
    return Promise.reject(new NodeError('invalid_transfer', `${this.leader ? this.nodeName : 'node1'} leads (term ${this.#term}); a failover is for when there is no leader`));
  }

  /** Settings are not modelled by the fake (always automatic): a change is refused. */
  proposeSetting(_c: SettingChange): Promise<void> {
    if (!this.leader) return Promise.reject(this.#notLeader());
    return Promise.reject(new NodeError('invalid_transfer', 'the fake node keeps failover mode automatic'));
  }
}

/** The headers a member (sharing the fake nodes' cluster secret, or `secret`) puts on a request it forwards. */
export function signedForward(node: string, method: string, url: string, o: { secret?: Uint8Array; sentAt?: number; forwardedFor?: string } = {}): Record<string, string> {
  const sentAt = o.sentAt ?? Date.now();
  const forwardedFor = o.forwardedFor ?? '127.0.0.1';
  const signature = forwardSignature(o.secret ?? FakeNode.CLUSTER_SECRET, { node, sentAt, method, url, forwardedFor });
  return { 'x-quorate-forwarded': node, 'x-quorate-forward-at': String(sentAt), 'x-quorate-forward-signature': signature, 'x-quorate-forwarded-for': forwardedFor };
}
