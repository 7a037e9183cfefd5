// The port of the node's operations features: built-in alerts (src/node/alerts.ts,
// GET /v1/alerts) and the diagnostic bundle (src/node/diagnostics.ts,
// GET /v1/diagnostics). Declared here like ./ports.ts; the agent provides it.

/** One alert condition, firing or resolved (docs/monitoring.md "Alert webhooks"). */
export interface AlertView {
  /** Stable per condition and subject: `name` or `name:subject` (cluster scope), `name:node[:subject]` (node scope). */
  readonly id: string;
  /** no_leader | quorum_lost | replication_lag | disk_low | health_check_failing | leader_flapping | storage_failing | split_brain */
  readonly name: string;
  readonly severity: 'critical' | 'warning';
  /** cluster: evaluated and sent by the leader; node: by the node it is about. */
  readonly scope: 'cluster' | 'node';
  /** The node that evaluated it. */
  readonly node: string;
  /** The peer, check, ... it is about, when any. */
  readonly subject?: string;
  readonly summary: string;
  readonly value?: number;
  readonly threshold?: number;
  /** When the condition was first seen holding (ISO). */
  readonly since: string;
  readonly firedAt: string;
  /** Set once resolved. */
  readonly resolvedAt?: string;
}

export interface AlertsView {
  readonly nodeName: string;
  /** The leader this node knows (null: none). */
  readonly leader: string | null;
  readonly active: readonly AlertView[];
  /** Newest first: fired and resolved notifications of this node, bounded. */
  readonly recent: readonly (AlertView & { readonly status: 'firing' | 'resolved' })[];
  readonly thresholds: Readonly<Record<string, number>>;
  /** The webhook: whether one is configured, signed, and how deliveries went. */
  readonly webhook: {
    readonly configured: boolean;
    readonly signed: boolean;
    readonly delivered: number;
    readonly failed: number;
    readonly pending: number;
    readonly lastError: string | null;
  };
  readonly evaluatedAt: string | null;
}

export interface AlertsPort {
  view(): AlertsView;
}

/** One node's part of the diagnostic bundle: JSON documents and text files by name, secrets already redacted. */
export interface DiagnosticsPart {
  readonly files: Readonly<Record<string, string>>;
}

export interface DiagnosticsPort {
  /** This node's part (status, redacted config, alerts, metrics, recent logs when kept). */
  localPart(): Promise<DiagnosticsPart>;
}

/** Round trip of an HTTP request from this node to a member's /system/health/ping (null: no answer, see error). */
export interface RttSample {
  readonly nodeName: string;
  readonly ms: number | null;
  readonly at: string;
  readonly error?: string;
}

/** The fsyncs of one sampling interval (ending at `at`). */
export interface FsyncSample {
  readonly at: string;
  readonly count: number;
  readonly meanMs: number | null;
  /** The histogram bucket bound (ms) the 99th percentile lies under; null when none or above the largest bucket. */
  readonly p99UpperMs: number | null;
}

/** A leadership change this node saw (src/node/leader-watch.ts). */
export interface LeaderChangeSeen {
  readonly term: number;
  readonly from: string;
  readonly to: string;
  /** When this node first saw the new working leader (ISO). */
  readonly at: string;
  /** How long it saw no working leader (ms, to one poll): the write outage as this node saw it, without the time before it noticed. */
  readonly noLeaderMs: number;
  readonly pollMs: number;
}

export interface NetDiskView {
  readonly nodeName: string;
  readonly sampleMs: number;
  readonly rtt: readonly RttSample[];
  /** Oldest first. */
  readonly fsync: readonly FsyncSample[];
  readonly disk: { readonly freeBytes: number; readonly sizeBytes: number; readonly freePercent: number } | null;
  /** Leadership changes this node saw, oldest first. */
  readonly leaderChanges: readonly LeaderChangeSeen[];
}

export interface NetDiskPort {
  view(): NetDiskView;
}

export interface OpsPort {
  readonly alerts?: AlertsPort;
  readonly diagnostics?: DiagnosticsPort;
  readonly netdisk?: NetDiskPort;
}
