// A drill's report: what `quorate drill` prints (JSON or a Markdown table),
// what POST /v1/drills answers and what the "drills" machine keeps
// (src/state/drills.ts, as JSON text). Pure: no I/O.
import type { DrillFault } from '../api/ports-drill.js';

export interface DrillRoundReport {
  readonly round: number;
  /** The node the fault was carried out on, and whether it led at the fault. */
  readonly target: string;
  readonly targetWasLeader: boolean;
  readonly leaderBefore: string | null;
  readonly termBefore: number;
  /** The leader once the cluster settled (null: none seen within the round). */
  readonly leaderAfter: string | null;
  readonly termAfter: number | null;
  /** ISO time of the fault (the runner's clock). */
  readonly faultAt: string;
  /** Fault → first moment a surviving node no longer followed the old leader (leader faults) or the leader saw the target unreachable (others); null: never seen. */
  readonly detectMs: number | null;
  /** Fault → first moment a surviving node reported a new leader (null: leadership did not move). */
  readonly newLeaderMs: number | null;
  /** RTO: fault → first acknowledged write among those sent after the fault took effect (null: none within the round). */
  readonly rtoMs: number | null;
  /** Fault → first successful linearizable read sent after the fault. */
  readonly readRecoveryMs: number | null;
  readonly writesAcked: number;
  /** Writes whose outcome stayed unknown (commit_unknown, deadline): read back too; `unknownApplied` of them were applied. */
  readonly writesUnknown: number;
  readonly unknownApplied: number;
  /** Writes refused with a definite answer (nothing applied). */
  readonly writesFailed: number;
  readonly readsOk: number;
  readonly readsFailed: number;
  /** RPO: acknowledged writes missing (or with another value) when read back after the round. Must be 0. */
  readonly lost: number;
  /** Fault → the target answered again, following a leader, caught up to the leader's commit index (null: not within the round). */
  readonly rejoinMs: number | null;
  readonly passed: boolean;
  /** Why the round failed, and anything worth knowing (e.g. a leader handed away before the round). */
  readonly notes: readonly string[];
}

export interface DrillReport {
  readonly id: string;
  /** Who ran it: "cli" (quorate drill) or "node:NAME" (POST /v1/drills). */
  readonly runner: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly kill: string;
  readonly fault: DrillFault;
  /** pause / isolate: how long the fault lasted (ms). */
  readonly durationMs: number;
  readonly intervalMs: number;
  readonly rtoTargetMs: number;
  /** Started with --force (the failover-safety refusal skipped). */
  readonly forced: boolean;
  readonly rounds: readonly DrillRoundReport[];
  readonly summary: {
    readonly roundsRun: number;
    readonly rtoMsMax: number | null;
    readonly rtoMsAvg: number | null;
    readonly lostTotal: number;
    readonly unknownTotal: number;
    readonly passed: boolean;
    /** Why the drill failed (empty when passed). */
    readonly failures: readonly string[];
  };
}

const ms = (v: number | null): string => (v === null ? '-' : `${Math.round(v)}`);

/** The report as a Markdown table (one row per round) with a summary line. */
export function reportMarkdown(r: DrillReport): string {
  const head = `### Drill ${r.id}: ${r.fault} of ${r.kill}, ${r.rounds.length} round(s), ${r.summary.passed ? 'PASSED' : 'FAILED'}`;
  const meta = `Run by ${r.runner} from ${r.startedAt} to ${r.finishedAt}; RTO target ${r.rtoTargetMs} ms, RPO target 0${r.fault === 'pause' || r.fault === 'isolate' ? `; fault duration ${r.durationMs} ms` : ''}${r.forced ? '; forced (failover safety not checked)' : ''}.`;
  const rows = [
    '| round | target | leader before → after | detect ms | new leader ms | RTO ms | reads back ms | acked | unknown (applied) | failed | lost (RPO) | rejoin ms | result |',
    '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...r.rounds.map((x) => `| ${x.round} | ${x.target}${x.targetWasLeader ? ' (leader)' : ''} | ${x.leaderBefore ?? '-'} → ${x.leaderAfter ?? '-'} | ${ms(x.detectMs)} | ${ms(x.newLeaderMs)} | ${ms(x.rtoMs)} | ${ms(x.readRecoveryMs)} | ${x.writesAcked} | ${x.writesUnknown} (${x.unknownApplied}) | ${x.writesFailed} | ${x.lost} | ${ms(x.rejoinMs)} | ${x.passed ? 'ok' : 'FAILED'} |`),
  ];
  const s = r.summary;
  const summary = `RTO max ${ms(s.rtoMsMax)} ms, average ${ms(s.rtoMsAvg)} ms; acknowledged writes lost: ${s.lostTotal}; unknown outcomes: ${s.unknownTotal}.`;
  const notes = r.rounds.flatMap((x) => x.notes.map((n) => `- round ${x.round}: ${n}`));
  const failures = s.failures.map((f) => `- FAILED: ${f}`);
  return [head, '', meta, '', ...rows, '', summary, ...(notes.length + failures.length > 0 ? ['', ...failures, ...notes] : [])].join('\n');
}

/** The summary of finished rounds against the targets. */
export function summarize(rounds: readonly DrillRoundReport[], rtoTargetMs: number, stopped: readonly string[] = []): DrillReport['summary'] {
  const rtos = rounds.map((r) => r.rtoMs).filter((v): v is number => v !== null);
  const failures: string[] = [...stopped];
  for (const r of rounds) {
    if (r.rtoMs === null) failures.push(`round ${r.round}: no write was acknowledged after the fault (RTO unknown, target ${rtoTargetMs} ms)`);
    else if (r.rtoMs > rtoTargetMs) failures.push(`round ${r.round}: RTO ${Math.round(r.rtoMs)} ms is above the target drills.rtoTargetMs = ${rtoTargetMs} ms`);
    if (r.lost > 0) failures.push(`round ${r.round}: ${r.lost} acknowledged write(s) lost (RPO must be 0)`);
  }
  return {
    roundsRun: rounds.length,
    rtoMsMax: rtos.length > 0 ? Math.max(...rtos) : null,
    rtoMsAvg: rtos.length > 0 ? Math.round(rtos.reduce((a, b) => a + b, 0) / rtos.length) : null,
    lostTotal: rounds.reduce((a, r) => a + r.lost, 0),
    unknownTotal: rounds.reduce((a, r) => a + r.writesUnknown, 0),
    passed: failures.length === 0 && rounds.length > 0,
    failures,
  };
}
