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
interface DrillsAnswer { nodeName: string; enabled: boolean; rtoTargetMs: number; reports: { seq: number; recordedAt: string; report: Report }[] }

/** A report as the runner writes it (the API keeps any JSON object an admin records: skip what is not one). */
function isReport(r: unknown): r is Report {
  const x = r as Partial<Report> | null;
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.fault === 'string' && typeof x.startedAt === 'string'
    && typeof x.summary === 'object' && x.summary !== null && Array.isArray(x.summary.failures);
}

const ms = (v: number | null): string => (v === null ? '—' : `${Math.round(v)} ms`);

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
        const d = await conn.call<DrillsAnswer>('GET', '/v1/drills?limit=10');
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
      {data && data.reports.length === 0 ? <p data-testid="drills-none">No drill has been run yet (<code>quorate drill</code>{runners.length === 0 ? '; enable drills.enabled in the nodes\' config to run one from here' : ''}).</p> : null}
      {data && data.reports.length > 0 ? (
        <div class="scroll"><table data-testid="drills">
          <thead><tr><th scope="col">when</th><th scope="col">fault</th><th scope="col">rounds</th><th scope="col">worst RTO</th><th scope="col">lost (RPO)</th><th scope="col">result</th><th scope="col">run by</th></tr></thead>
          <tbody>{data.reports.filter((x) => isReport(x.report)).map(({ seq, report: r }) => (
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
