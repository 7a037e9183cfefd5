// The drill period (config drills.maxIntervalHours): when the last drill ran,
// whether it passed, and whether a passing drill is overdue. Read by GET
// /v1/drills, the drill metrics (quorate_drill_*), the built-in drill_overdue
// and drill_failed alerts, the dashboard's drills view and `quorate doctor`.
// Pure: the caller gives the kept records and the time.

/** One kept report as the "drills" machine holds it (src/state/drills.ts): `at` is the leader's clock when recorded. */
export interface DrillRecordLike { readonly at: number; readonly report: string }

export interface DrillLast {
  readonly id: string | null;
  /** When it was recorded (ISO, leader clock). */
  readonly at: string;
  readonly passed: boolean;
  /** Acknowledged writes lost (RPO; must be 0). */
  readonly lost: number;
  readonly rtoMsMax: number | null;
  readonly rtoTargetMs: number | null;
  readonly failures: readonly string[];
}

export interface DrillSchedule {
  /** drills.maxIntervalHours of the answering node (0: no period, never overdue). */
  readonly maxIntervalHours: number;
  /** The newest report (null: none kept). */
  readonly last: DrillLast | null;
  /** When the newest passing drill was recorded (null: none kept). */
  readonly lastPassedAt: string | null;
  /** When a passing drill is due: lastPassedAt + the period (null: no period, or none ever passed: due now). */
  readonly dueAt: string | null;
  /** A period is set and no drill passed within it. */
  readonly overdue: boolean;
}

interface Summary { id?: unknown; rtoTargetMs?: unknown; summary?: { passed?: unknown; lostTotal?: unknown; rtoMsMax?: unknown; failures?: unknown } }

/** The report's outcome, or undefined when the text is not a drill report (an admin may record any JSON object). */
function outcome(text: string): Omit<DrillLast, 'at'> | undefined {
  let r: Summary;
  try {
    r = JSON.parse(text) as Summary;
  } catch {
    return undefined;
  }
  const s = r?.summary;
  if (typeof r !== 'object' || r === null || typeof s !== 'object' || s === null || typeof s.passed !== 'boolean') return undefined;
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    id: typeof r.id === 'string' ? r.id : null,
    passed: s.passed,
    lost: num(s.lostTotal) ?? 0,
    rtoMsMax: num(s.rtoMsMax),
    rtoTargetMs: num(r.rtoTargetMs),
    failures: Array.isArray(s.failures) ? s.failures.filter((f): f is string => typeof f === 'string') : [],
  };
}

/** The schedule from the kept records (oldest first), the period in hours and now (epoch ms). */
export function drillSchedule(records: readonly DrillRecordLike[], maxIntervalHours: number, nowMs: number): DrillSchedule {
  let last: DrillLast | null = null;
  let lastPassedAt: number | null = null;
  for (let i = records.length - 1; i >= 0; i--) {
    const rec = records[i]!;
    const o = outcome(rec.report);
    if (o === undefined) continue;
    if (last === null) last = { ...o, at: new Date(rec.at).toISOString() };
    if (o.passed) {
      lastPassedAt = rec.at;
      break;
    }
  }
  const periodMs = maxIntervalHours * 3_600_000;
  const due = periodMs > 0 && lastPassedAt !== null ? lastPassedAt + periodMs : null;
  return {
    maxIntervalHours,
    last,
    lastPassedAt: lastPassedAt === null ? null : new Date(lastPassedAt).toISOString(),
    dueAt: due === null ? null : new Date(due).toISOString(),
    overdue: periodMs > 0 && (due === null || nowMs > due),
  };
}

/** "3 d 4 h", "5 h 12 min", "40 min": how long, for messages. */
export function spanText(ms: number): string {
  const m = Math.max(0, Math.round(ms / 60_000));
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h${m % 60 > 0 ? ` ${m % 60} min` : ''}`;
  return `${Math.floor(h / 24)} d${h % 24 > 0 ? ` ${h % 24} h` : ''}`;
}
