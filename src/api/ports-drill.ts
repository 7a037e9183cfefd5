// What the drill routes (./routes-drills.ts) need of a node: its drill
// settings, the fault it carries out on itself, and the replicated report
// history (src/node/drills.ts over the "drills" machine, src/state/drills.ts).
// Declared here, by the consumer, as the other ports are.

import type { DrillSchedule } from '../drill/schedule.js';

export const DRILL_FAULTS = ['crash', 'pause', 'isolate', 'switchover'] as const;
export type DrillFault = (typeof DRILL_FAULTS)[number];

export interface DrillFaultRequest {
  readonly fault: DrillFault;
  /** pause and isolate: how long (ms). */
  readonly durationMs: number;
  /** Only check that this node would carry out the fault (drills.enabled); nothing happens. */
  readonly dryRun: boolean;
}

export interface DrillFaultResult {
  readonly nodeName: string;
  readonly fault: DrillFault;
  readonly dryRun: boolean;
  /** Epoch ms at which this node started the fault (for dryRun: now). */
  readonly at: number;
  readonly durationMs: number;
  readonly pid: number;
  readonly wasLeader: boolean;
  readonly term: number;
  /** drills.rtoTargetMs of this node's config. */
  readonly rtoTargetMs: number;
  /** switchover: who leads after it. */
  readonly newLeader?: string;
}

export interface DrillRecordView {
  readonly seq: number;
  readonly index: number;
  /** ISO time the report was recorded (leader clock). */
  readonly recordedAt: string;
  /** The report as the runner produced it (src/drill/report.ts DrillReport). */
  readonly report: unknown;
}

export interface DrillPort {
  /** drills.enabled of this node's config. */
  readonly enabled: boolean;
  /** drills.rtoTargetMs of this node's config. */
  readonly rtoTargetMs: number;
  /** drills.maxIntervalHours of this node's config (0: no period). */
  readonly maxIntervalHours: number;
  /** The last drill, the last passing one, and whether a passing drill is overdue. */
  schedule(nowMs?: number): DrillSchedule;
  /**
   * Carries out the fault on this node; resolves before it takes effect
   * (crash and pause start once the answer was sent: `afterAnswer`).
   * Throws drills_disabled without drills.enabled.
   */
  fault(req: DrillFaultRequest): Promise<{ result: DrillFaultResult; afterAnswer?: () => void }>;
  /** The newest `limit` reports (all when undefined), newest first. */
  reports(limit?: number): { reports: DrillRecordView[]; seq: number; appliedIndex: number };
  /** Leader only (not_leader elsewhere): keep a report (JSON text) in the replicated history; a retry with the same idempotency key records it once. */
  record(reportJson: string, idempotencyKey?: string): Promise<{ seq: number }>;
}
