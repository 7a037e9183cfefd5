// Failover drills (docs/operations.md "Failover drills"): the reports kept in
// the cluster (GET /v1/drills, the newest first) with each round's RTO, new
// leader time and RPO, and, for admins, "run a drill" on a member whose config
// enables drills (drills.enabled): POST /v1/drills on that member, which runs
// the drill against the others (it is never its own target) and answers when
// the drill is over. Offered only where the API says drills are enabled.
import { useEffect, useState } from 'preact/hooks';
import type { Connection, NodeView } from './api';
import type { Pending } from './actions';

interface Round { round: number; target: string; targetWasLeader: boolean; newLeaderMs: number | null; rtoMs: number | null; lost: number; writesUnknown: number; passed: boolean }
interface Report { id: string; runner: string; startedAt: string; fault: string; kill: string; rtoTargetMs: number; rounds: Round[]; summary: { roundsRun: number; rtoMsMax: number | null; lostTotal: number; passed: boolean; failures: string[] } }
interface Schedule { maxIntervalHours: number; last: { at: string; passed: boolean; lost: number } | null; lastPassedAt: string | null; dueAt: string | null; overdue: boolean }
interface DrillsAnswer { nodeName: string; enabled: boolean; rtoTargetMs: number; schedule?: Schedule; reports: { seq: number; recordedAt: string; report: Report }[] }

/** Reports drawn in the chart; the table shows the newest TABLE_ROWS. */
const CHART_REPORTS = 50;
const TABLE_ROWS = 10;

/** A report as the runner writes it (the API keeps any JSON object an admin records: skip what is not one). */
function isReport(r: unknown): r is Report {
  const x = r as Partial<Report> | null;
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.fault === 'string' && typeof x.startedAt === 'string'
    && typeof x.summary === 'object' && x.summary !== null && Array.isArray(x.summary.failures);
}

const ms = (v: number | null): string => (v === null ? '—' : `${Math.round(v)} ms`);

const ago = (fromMs: number): string => {
  const h = Math.round(fromMs / 3_600_000);
  return h < 48 ? `${h} h` : `${Math.round(h / 24)} days`;
};

/** "Next drill due by …" or "OVERDUE" per drills.maxIntervalHours (the answering node's config). */
function Due({ s }: { s: Schedule }) {
  if (s.maxIntervalHours === 0) return <p class="muted" data-testid="drills-due">No drill period is set (<code>drills.maxIntervalHours</code> 0): nothing is ever overdue.</p>;
  const period = s.maxIntervalHours % 24 === 0 ? `${s.maxIntervalHours / 24} day(s)` : `${s.maxIntervalHours} h`;
  if (s.overdue) {
    return (
      <p class="overdue" role="status" data-testid="drills-overdue">
        OVERDUE: {s.lastPassedAt === null ? 'no drill has passed yet' : `the last passing drill was ${ago(Date.now() - Date.parse(s.lastPassedAt))} ago`}; a passing drill is due every {period} (<code>drills.maxIntervalHours</code> {s.maxIntervalHours}).
      </p>
    );
  }
  return <p data-testid="drills-due">Next drill due by {new Date(s.dueAt!).toLocaleString()} (every {period}).</p>;
}

/** RTO per drill over time as inline SVG (no chart library: the page's CSP allows no outside script): worst round per drill, its target dashed, failed drills red. */
export function RtoChart({ reports }: { reports: readonly { recordedAt: string; report: Report }[] }) {
  const pts = reports.map((r) => ({ t: Date.parse(r.recordedAt), rto: r.report.summary.rtoMsMax, target: r.report.rtoTargetMs, passed: r.report.summary.passed, id: r.report.id, fault: r.report.fault }))
    .filter((p) => Number.isFinite(p.t)).sort((a, b) => a.t - b.t);
  if (pts.length === 0) return null;
  const W = 600, H = 180, L = 56, R = 12, T = 12, B = 28;
  const axis = (v: number): string => (v >= 10_000 ? `${Math.round(v / 1000)} s` : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
  const yMax = Math.max(1, ...pts.map((p) => Math.max(p.rto ?? 0, p.target))) * 1.1;
  const t0 = pts[0]!.t, t1 = pts[pts.length - 1]!.t;
  const x = (p: (typeof pts)[number], i: number): number => L + (pts.length === 1 ? (W - L - R) / 2 : t1 > t0 ? ((p.t - t0) / (t1 - t0)) * (W - L - R) : (i / (pts.length - 1)) * (W - L - R));
  const y = (v: number): number => T + (1 - v / yMax) * (H - T - B);
  const line = pts.map((p, i) => (p.rto === null ? null : `${x(p, i).toFixed(1)},${y(p.rto).toFixed(1)}`)).filter((s) => s !== null).join(' ');
  const target = pts[pts.length - 1]!.target;
  // Each drill's own target (drills.rtoTargetMs of its first target node), as a dashed line through the drills.
  // A step line: each target holds from its drill to the next one (the last to the right edge).
  const targets = pts.length === 1 ? `${L},${y(target).toFixed(1)} ${W - R},${y(target).toFixed(1)}`
    : pts.flatMap((p, i) => [`${x(p, i).toFixed(1)},${y(p.target).toFixed(1)}`, `${(i + 1 < pts.length ? x(pts[i + 1]!, i + 1) : W - R).toFixed(1)},${y(p.target).toFixed(1)}`]).join(' ');
  const failed = pts.filter((p) => !p.passed).length;
  return (
    <figure>
      <svg class="drill-chart" viewBox={`0 0 ${W} ${H}`} role="img" data-testid="drills-chart"
        aria-label={`Worst RTO of the last ${pts.length} drill(s): from ${ms(Math.min(...pts.map((p) => p.rto ?? Infinity)))} to ${ms(Math.max(...pts.map((p) => p.rto ?? 0)))}, target ${target} ms; ${failed} failed`}>
        <line class="axis" x1={L} y1={T} x2={L} y2={H - B} />
        <line class="axis" x1={L} y1={H - B} x2={W - R} y2={H - B} />
        <text x={L - 4} y={T + 4} text-anchor="end">{axis(yMax)}</text>
        <text x={L - 4} y={H - B} text-anchor="end">0</text>
        <polyline class="target" points={targets} />
        <text x={W - R} y={y(target) - 4} text-anchor="end">target {axis(target)}</text>
        {line.includes(' ') ? <polyline class="rto" points={line} /> : null}
        {pts.map((p, i) => (
          <circle key={`${p.id}-${i}`} class={p.passed ? 'pass' : 'fail'} cx={x(p, i)} cy={y(p.rto ?? 0)} r={p.passed ? 4 : 5} data-drill-point={p.id}>
            <title>{`${new Date(p.t).toLocaleString()}: ${p.fault}, worst RTO ${ms(p.rto)}, ${p.passed ? 'passed' : 'FAILED'}`}</title>
          </circle>
        ))}
        <text x={L} y={H - 8}>{new Date(t0).toLocaleDateString()}</text>
        <text x={W - R} y={H - 8} text-anchor="end">{new Date(t1).toLocaleDateString()}</text>
      </svg>
      <figcaption class="muted">Worst RTO per drill over time (green passed, red failed; dashed: the RTO target).</figcaption>
    </figure>
  );
}

/** A drill run by `runner` (a member with drills enabled): one round of `fault` against the leader. */
export function prepareDrill(conn: Connection, runner: NodeView, fault: 'crash' | 'switchover'): Pending {
  return {
    title: `Drill: ${fault === 'crash' ? 'crash the leader' : 'switch over'}`,
    effect: `${runner.nodeName} runs one drill round: ${fault === 'crash' ? 'the leader kills its own process (its service manager restarts it)' : 'leadership moves to another voter'} while test writers and readers run under quorate-drill/; the report (RTO, RPO) is kept in the cluster. Refused unless the cluster is failover-safe with a failure tolerance of at least 1.`,
    ...(fault === 'crash' ? { warning: 'Clients see a short write outage (the RTO).' } : {}),
    cli: `quorate drill --kill leader --fault ${fault} --rounds 1 --confirm`,
    run: () => conn.callOn(runner.apiUrl!, 'POST', '/v1/drills', { kill: 'leader', fault, rounds: 1, confirm: true }, 10 * 60_000),
    summarize: (a) => {
      const r = a['report'] as Report | undefined;
      return r === undefined ? 'drill done' : `${r.summary.passed ? 'PASSED' : 'FAILED'}: RTO ${ms(r.summary.rtoMsMax)}, ${r.summary.lostTotal} acknowledged writes lost`;
    },
  };
}

export function Drills({ conn, views, admin, prepare, refreshKey }: { conn: Connection; views: readonly NodeView[]; admin: boolean; prepare: (p: Pending) => void; refreshKey: unknown }) {
  const [data, setData] = useState<DrillsAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [runners, setRunners] = useState<NodeView[]>([]);
  useEffect(() => {
    let stop = false;
    const load = async (): Promise<void> => {
      try {
        const d = await conn.call<DrillsAnswer>('GET', `/v1/drills?limit=${CHART_REPORTS}`);
        if (!stop) { setData(d); setError(null); }
      } catch (e) {
        if (!stop) setError((e as Error).message);
      }
      // Who may run one: a member that is not the leader and has drills enabled.
      const candidates = views.filter((v) => v.ok && v.apiUrl !== null && v.status?.raftRole !== 'leader');
      const enabled: NodeView[] = [];
      for (const v of candidates) {
        const d = await conn.callOn<DrillsAnswer>(v.apiUrl!, 'GET', '/v1/drills?limit=1').catch(() => undefined);
        if (d?.enabled === true) enabled.push(v);
      }
      if (!stop) setRunners(enabled);
    };
    void load();
    const id = setInterval(() => void load(), 15_000);
    return () => { stop = true; clearInterval(id); };
  }, [refreshKey, views.map((v) => `${v.nodeName}:${v.status?.raftRole ?? ''}`).join(',')]);
  const runner = runners[0];
  return (
    <section aria-labelledby="dr-h">
      <h2 id="dr-h">Failover drills</h2>
      {admin && runner !== undefined ? (
        <div class="cluster-actions">
          <button type="button" data-action="drill-crash" onClick={() => prepare(prepareDrill(conn, runner, 'crash'))}>Drill: crash the leader</button>
          <button type="button" data-action="drill-switchover" onClick={() => prepare(prepareDrill(conn, runner, 'switchover'))}>Drill: switchover</button>
        </div>
      ) : null}
      {error ? <p class="warn-text">{error}</p> : null}
      {data?.schedule ? <Due s={data.schedule} /> : null}
      {data ? <RtoChart reports={data.reports.filter((x) => isReport(x.report))} /> : null}
      {data && data.reports.length === 0 ? <p data-testid="drills-none">No drill has been run yet (<code>quorate drill</code>{runners.length === 0 ? '; enable drills.enabled in the nodes\' config to run one from here' : ''}).</p> : null}
      {data && data.reports.length > 0 ? (
        <div class="scroll"><table data-testid="drills">
          <thead><tr><th scope="col">when</th><th scope="col">fault</th><th scope="col">rounds</th><th scope="col">worst RTO</th><th scope="col">lost (RPO)</th><th scope="col">result</th><th scope="col">run by</th></tr></thead>
          <tbody>{data.reports.filter((x) => isReport(x.report)).slice(0, TABLE_ROWS).map(({ seq, report: r }) => (
            <tr key={seq} class={r.summary.passed ? '' : 'unreachable'} data-drill={r.id}>
              <td>{new Date(r.startedAt).toLocaleString()}</td>
              <td>{r.fault} of {r.kill}</td>
              <td>{r.summary.roundsRun}</td>
              <td>{ms(r.summary.rtoMsMax)} <span class="muted">(target {r.rtoTargetMs} ms)</span></td>
              <td>{r.summary.lostTotal}</td>
              <td>{r.summary.passed ? 'passed' : `FAILED: ${r.summary.failures.join('; ')}`}</td>
              <td>{r.runner}</td>
            </tr>
          ))}</tbody>
        </table></div>
      ) : null}
    </section>
  );
}
