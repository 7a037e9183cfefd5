// The application integration of one node (issue 12), wired in one place so
// node.ts only starts and stops it:
// - application health checks (./app-health.ts) and what follows from them:
//   the leader polls the other members' /system/health/ping for their checks
//   (never picks an unhealthy one as a switchover target), and with
//   `health.failoverOnFailure` a leader whose critical check fails hands
//   leadership to a healthy caught-up voter (switchover), retrying every 2 s
//   while it still leads and is unhealthy;
// - role-change hooks (./hooks.ts);
// - the "app" machine (queues, locks, outbox) as the API's AppCoordination
//   port (src/api/ports-app.ts), proposed in format-2 envelopes only
//   (cluster feature level >= 2);
// - the outbox delivery (./outbox.ts), leader services: one for the app
//   machine's outbox, one for the SQL machine's `quorate_outbox` rows
//   (./sql-outbox.ts).
import type { Logger } from 'pino';
import type { AppCoordination, PeerAppHealth } from '../api/ports-app.js';
import type { SqlService } from '../api/ports.js';
import type { QuorateConfig } from '../config/index.js';
import type { MetricsRegistry } from '../ops/metrics.js';
import { APP_MACHINE_ID, encodeAppPayload, encodeEnvelope, type AppCommand, type AppStateMachine, type ApplyResult } from '../state/index.js';
import { AppHealth, DATABASE_CHECK_SQL } from './app-health.js';
import { NodeError } from './errors.js';
import { HookRunner } from './hooks.js';
import type { Leadership, LeaderService, LeaderServices } from './leadership.js';
import { periodicService } from './leadership.js';
import { OutboxDelivery, appOutboxSource } from './outbox.js';
import { peerGet } from './peer-get.js';
import { sqlOutboxSource } from './sql-outbox.js';

const PEER_POLL_MS = 1000;
const FAILOVER_RETRY_MS = 2000;
/** A peer's check report older than this no longer counts (it stopped answering). */
const PEER_REPORT_MAX_AGE_MS = 10_000;

export interface AppNode {
  readonly config: QuorateConfig;
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly leadership: Leadership;
  readonly services: LeaderServices;
  /** Wraps leader work with external effects so that it waits for fencing (./fencing.ts). */
  gated(svc: LeaderService): LeaderService;
  readonly app: AppStateMachine;
  clockMs(): number;
  proposeEntry(data: Uint8Array): Promise<ApplyResult>;
  readBarrier(): Promise<void>;
  featureLevel(): number;
  isLeader(): boolean;
  notLeader(): NodeError;
  leaderName(): string | null;
  /** The other members with a known API URL. */
  peers(): { nodeName: string; apiUrl: string }[];
  switchover(): Promise<{ to: string; term: number; pauseMs: number }>;
  /** Replicated SQL (set once the node started): the outbox table's reads and removals, the `database` check. */
  sql(): SqlService;
  /** PING on the node's Redis connection (the `redis` check); rejects when Redis is not used or does not answer. */
  redisPing(): Promise<void>;
  /** The `database` check's probe when the data lives elsewhere (external-shared: a round trip to PostgreSQL); default: a read of the SQL machine. */
  databasePing?(): Promise<void>;
}

export class AppServices implements AppCoordination {
  readonly #n: AppNode;
  readonly checks: AppHealth;
  readonly #hooks: HookRunner;
  readonly #peerHealth = new Map<string, PeerAppHealth & { at: number }>();
  readonly outboxEnabled: boolean;
  readonly failoverOnFailure: boolean;
  #failingOver = false;

  constructor(n: AppNode) {
    this.#n = n;
    const c = n.config;
    this.checks = new AppHealth({
      specs: c.health.checks, dataDir: c.node.dataDir, logger: n.logger, metrics: n.metrics,
      probes: n.databasePing
        ? { database: () => n.databasePing!(), databaseLabel: 'the external PostgreSQL database (SELECT 1)', redis: () => n.redisPing() }
        : { database: async () => { await n.sql().query(DATABASE_CHECK_SQL, []); }, redis: () => n.redisPing() },
    });
    this.#hooks = new HookRunner({ hooks: c.hooks, leadership: n.leadership, nodeName: c.node.nodeName, configuredRole: c.node.role, leaderName: () => n.leaderName(), logger: n.logger });
    this.outboxEnabled = c.outbox.webhookUrl !== '';
    this.failoverOnFailure = c.health.failoverOnFailure;
    if (this.outboxEnabled) {
      const common = { webhookUrl: c.outbox.webhookUrl, pollMs: c.database.outboxPollIntervalSeconds * 1000, log: n.logger, metrics: n.metrics };
      n.services.add(n.gated(new OutboxDelivery({ ...common, source: appOutboxSource({ app: n.app, propose: (cmd) => this.propose(cmd), readBarrier: () => n.readBarrier() }) })));
      n.services.add(n.gated(new OutboxDelivery({ ...common, source: sqlOutboxSource(() => n.sql()) })));
    }
    // Members may run different checks: the leader polls whatever they report.
    n.services.add(periodicService('peer-health-poll', PEER_POLL_MS, () => void this.#pollPeers()));
    if (c.health.failoverOnFailure) {
      n.services.add(periodicService('failover-on-failure', FAILOVER_RETRY_MS, () => this.#maybeFailover('retry')));
      this.checks.onChange(() => this.#maybeFailover('check'));
    }
  }

  start(): void {
    this.checks.start();
    this.#hooks.start();
  }

  async stop(): Promise<void> {
    this.checks.stop();
    await this.#hooks.stop();
  }

  /** A member whose critical checks fail (as last reported to this leader): never a switchover target. */
  isUnhealthy(nodeName: string): boolean {
    if (nodeName === this.#n.config.node.nodeName) return !this.checks.view().healthy;
    const p = this.#peerHealth.get(nodeName);
    return p !== undefined && Date.now() - p.at < PEER_REPORT_MAX_AGE_MS && !p.healthy;
  }

  // ---- AppCoordination (src/api/ports-app.ts)

  async propose(c: AppCommand, options: { idempotencyKey?: string } = {}): Promise<unknown> {
    const n = this.#n;
    if (!n.isLeader()) throw n.notLeader();
    if (n.featureLevel() < 2) {
      throw new NodeError('feature_unavailable', 'queues, locks and the outbox need every member at feature level 2 (this release); a member still runs an older release: upgrade it (`quorate state` shows featureLevel)');
    }
    const data = encodeEnvelope({ machine: APP_MACHINE_ID, at: Date.now(), ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}), payload: encodeAppPayload(c) });
    const r = await n.proposeEntry(data);
    if ('error' in r) {
      if (r.error === 'idempotency_key_reused' || r.error === 'invalid_command') throw Object.assign(new Error(r.message), { code: r.error });
      throw new Error(`unexpected result ${r.error}`);
    }
    if (!('data' in r)) throw new Error('the app machine answered without data');
    return r.data;
  }

  readBarrier(): Promise<void> { return this.#n.readBarrier(); }
  clockMs(): number { return this.#n.clockMs(); }
  queueStats(q: string, nowMs?: number) { return this.#n.app.queueStats(q, nowMs ?? this.#n.clockMs()); }
  queueNames(): string[] { return this.#n.app.queueNames(); }
  lock(name: string) { return this.#n.app.lock(name, this.#n.clockMs()); }
  locks() { return this.#n.app.locks(this.#n.clockMs()); }
  outbox(limit: number) { return this.#n.app.outbox(limit); }
  outboxSize(): number { return this.#n.app.outboxSize; }

  health() {
    return this.checks.configured ? this.checks.view() : undefined;
  }

  peerHealth(): Readonly<Record<string, PeerAppHealth>> {
    const out: Record<string, PeerAppHealth> = {};
    for (const [name, p] of this.#peerHealth) {
      if (Date.now() - p.at < PEER_REPORT_MAX_AGE_MS) out[name] = { healthy: p.healthy, failingCritical: p.failingCritical, failing: p.failing, checkedAt: p.checkedAt };
    }
    return out;
  }

  // ---- leader side

  async #pollPeers(): Promise<void> {
    await Promise.all(this.#n.peers().map(async (p) => {
      try {
        const r = await peerGet(`${p.apiUrl.replace(/\/+$/, '')}/system/health/ping`, PEER_POLL_MS);
        const b = JSON.parse(r.body) as { appChecks?: { healthy?: unknown; failingCritical?: unknown; failing?: unknown } };
        const a = b.appChecks;
        if (a === undefined) { this.#peerHealth.delete(p.nodeName); return; }
        const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
        this.#peerHealth.set(p.nodeName, { healthy: a.healthy === true, failingCritical: list(a.failingCritical), failing: list(a.failing), checkedAt: new Date().toISOString(), at: Date.now() });
      } catch {
        // Unreachable: its report ages out; reachability is the transport's business.
      }
    }));
  }

  #maybeFailover(why: string): void {
    const n = this.#n;
    const v = this.checks.view();
    if (this.#failingOver || v.healthy || !n.isLeader() || !n.config.health.failoverOnFailure) return;
    this.#failingOver = true;
    const started = Date.now();
    n.logger.warn({ event: 'health_failover_started', failing: v.failingCritical, trigger: why }, `critical health check${v.failingCritical.length > 1 ? 's' : ''} ${v.failingCritical.join(', ')} failing on the leader: handing leadership to a healthy caught-up voter (health.failoverOnFailure)`);
    n.switchover().then(
      (r) => n.logger.warn({ event: 'health_failover_done', to: r.to, newTerm: r.term, pauseMs: r.pauseMs, tookMs: Date.now() - started }, `leadership moved to ${r.to} (term ${r.term}) because of failing critical health checks`),
      (e: Error) => n.logger.error({ event: 'health_failover_failed', err: e.message, retryInMs: FAILOVER_RETRY_MS }, `cannot hand leadership over after failing health checks: ${e.message}; retrying in ${FAILOVER_RETRY_MS} ms while this node leads and is unhealthy`),
    ).finally(() => { this.#failingOver = false; });
  }
}
