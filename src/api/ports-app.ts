// The port of the application coordination features (SPEC §4 "Application
// coordination"): work queues, locks, the outbox, and this node's application
// health checks. Declared here like ./ports.ts; the node provides it
// (src/node/app-services.ts). Kept apart from ClusterControl so the features
// stay in their own modules.
import type { AppCommand, LockView, OutboxMessage, QueueStats } from '../state/index.js';

export interface CheckStatusView {
  readonly name: string;
  readonly kind: 'command' | 'url' | 'builtin';
  readonly critical: boolean;
  readonly healthy: boolean;
  readonly consecutiveFailures: number;
  readonly lastError: string | null;
  readonly lastRunAt: string | null;
  readonly lastDurationMs: number | null;
}

export interface AppHealthSummary {
  /** No critical check is unhealthy. */
  readonly healthy: boolean;
  readonly failingCritical: readonly string[];
  readonly failing: readonly string[];
  readonly checks: readonly CheckStatusView[];
}

/** What the leader last heard of a member's checks (its /system/health/ping). */
export interface PeerAppHealth {
  readonly healthy: boolean;
  readonly failingCritical: readonly string[];
  readonly failing: readonly string[];
  readonly checkedAt: string;
}

export interface AppCoordination {
  /** Leader only (throws not_leader): puts the command in the log; resolves with the machine's result data. */
  propose(c: AppCommand, options?: { idempotencyKey?: string }): Promise<unknown>;
  readBarrier(): Promise<void>;
  /** The replicated clock (ms) of this node's applied state: the time the machine judges expiry by. */
  clockMs(): number;
  /** Counts as of `nowMs` (default: the replicated clock). */
  queueStats(queue: string, nowMs?: number): QueueStats;
  queueNames(): string[];
  lock(name: string): LockView | undefined;
  locks(): LockView[];
  outbox(limit: number): OutboxMessage[];
  outboxSize(): number;
  /** outbox.webhookUrl is set. */
  readonly outboxEnabled: boolean;
  /** health.failoverOnFailure. */
  readonly failoverOnFailure: boolean;
  /** This node's checks (undefined when health.checks is empty). */
  health(): AppHealthSummary | undefined;
  /** The leader's view of the other members' checks, by node name. */
  peerHealth(): Readonly<Record<string, PeerAppHealth>>;
}
