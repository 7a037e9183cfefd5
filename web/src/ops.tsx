// Views of the application side and of operations: health checks (every
// member's, as the leader last heard them, and this node's own in detail),
// backups (admin: the leader's backup dir, "back up now"), and the audit log
// (admin). Each loads on its own, less often than the topology.
import { useEffect, useState } from 'preact/hooks';
import type { Connection } from './api';
import type { Pending } from './actions';

interface CheckView { name: string; kind: string; critical: boolean; healthy: boolean; consecutiveFailures: number; lastError: string | null; lastRunAt: string | null; lastDurationMs: number | null }
interface Checks { nodeName: string; healthy: boolean; failing: string[]; failingCritical: string[]; checks: CheckView[]; failoverOnFailure: boolean; peers: Record<string, { healthy: boolean; failing: string[]; failingCritical: string[]; checkedAt: string }> }
interface Backup { file: string; bytes: number; takenAt: string; index: number; term: number; kind: string; takenBy: string; error?: string }
interface AuditRecord { seq: number; at: string; actor: string; action: string; target: string | null; address: string | null; node: string; status: number; result: string; detail: string | null }

function useLoad<T>(conn: Connection, path: string, everyMs: number, key: unknown = 0, on?: string | null): { data: T | null; error: string | null } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    const load = async (): Promise<void> => {
      try {
        const d = on ? await conn.callOn<T>(on, 'GET', path) : await conn.call<T>('GET', path);
        if (!stop) { setData(d); setError(null); }
      } catch (e) {
        if (!stop) setError((e as Error).message);
      }
    };
    void load();
    const id = setInterval(() => void load(), everyMs);
    return () => { stop = true; clearInterval(id); };
  }, [path, key, on]);
  return { data, error };
}

const ago = (iso: string | null): string => (iso === null ? '—' : `${Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))} s ago`);

export function HealthChecks({ conn }: { conn: Connection }) {
  const { data, error } = useLoad<Checks>(conn, '/v1/checks', 5000);
  const peers = Object.entries(data?.peers ?? {});
  return (
    <section aria-labelledby="hc-h">
      <h2 id="hc-h">Application health checks</h2>
      {error ? <p class="warn-text">{error}</p> : null}
      {data && data.checks.length === 0 && peers.length === 0 ? <p>No application health checks are configured (<code>health.checks</code>, docs/integration.md).</p> : null}
      {peers.length > 0 ? (
        <p data-testid="checks-summary">{peers.map(([n, p]) => `${n}: ${p.healthy ? (p.failing.length > 0 ? `non-critical failing (${p.failing.join(', ')})` : 'healthy') : `FAILING ${p.failingCritical.join(', ')}`}`).join(' · ')}{data?.failoverOnFailure ? ' · a leader whose critical check fails hands over' : ''}</p>
      ) : null}
      {data && data.checks.length > 0 ? (
        <div class="scroll"><table>
          <caption>checks of {data.nodeName}</caption>
          <thead><tr><th scope="col">check</th><th scope="col">kind</th><th scope="col">critical</th><th scope="col">state</th><th scope="col">last run</th><th scope="col">last error</th></tr></thead>
          <tbody>{data.checks.map((c) => (
            <tr key={c.name} class={c.healthy ? '' : 'unreachable'}>
              <td>{c.name}</td><td>{c.kind}</td><td>{c.critical ? 'yes' : 'no'}</td>
              <td>{c.healthy ? 'healthy' : `failing (${c.consecutiveFailures}×)`}</td>
              <td>{ago(c.lastRunAt)}{c.lastDurationMs !== null ? ` (${c.lastDurationMs} ms)` : ''}</td>
              <td>{c.lastError ?? ''}</td>
            </tr>
          ))}</tbody>
        </table></div>
      ) : null}
    </section>
  );
}

/** The leader's backup dir (backups are written by whichever node leads; `leaderApiUrl` from the views). */
export function Backups({ conn, prepare, refreshKey, leaderApiUrl }: { conn: Connection; prepare: (p: Pending) => void; refreshKey: unknown; leaderApiUrl: string | null }) {
  const { data, error } = useLoad<{ nodeName: string; dir: string; backups: Backup[] }>(conn, '/v1/cluster/backups', 15000, refreshKey, leaderApiUrl);
  const now: Pending = {
    title: 'Back up now',
    effect: 'The leader writes a consistent backup of the whole replicated state (KV, history, settings, queues, tokens as hashes; no secrets) into its backup dir.',
    cli: 'quorate backup create',
    run: () => conn.call('POST', '/v1/cluster/backups', {}),
    summarize: (a) => { const b = a['backup'] as Backup; return `${b.file} at index ${b.index} (${Math.round(b.bytes / 1024)} KiB)`; },
  };
  return (
    <section aria-labelledby="bk-h">
      <h2 id="bk-h">Backups</h2>
      <div class="cluster-actions"><button type="button" data-action="backup" onClick={() => prepare(now)}>Back up now</button></div>
      {error ? <p class="warn-text">{error}</p> : null}
      {data ? (
        data.backups.length === 0 ? <p>No backups in {data.dir} on {data.nodeName} yet.</p> : (
          <div class="scroll"><table>
            <caption>{data.dir} on {data.nodeName}</caption>
            <thead><tr><th scope="col">file</th><th scope="col">taken</th><th scope="col">index</th><th scope="col">term</th><th scope="col">kind</th><th scope="col">size</th></tr></thead>
            <tbody>{data.backups.slice(0, 20).map((b) => (
              <tr key={b.file} class={b.error ? 'unreachable' : ''}>
                <td>{b.file}</td><td>{b.error ? `unreadable: ${b.error}` : new Date(b.takenAt).toLocaleString()}</td><td>{b.index}</td><td>{b.term}</td><td>{b.kind}</td><td>{Math.round(b.bytes / 1024)} KiB</td>
              </tr>
            ))}</tbody>
          </table></div>
        )
      ) : null}
    </section>
  );
}

export function Audit({ conn, refreshKey }: { conn: Connection; refreshKey: unknown }) {
  const { data, error } = useLoad<{ records: AuditRecord[] }>(conn, '/v1/audit?limit=30', 10000, refreshKey);
  return (
    <section aria-labelledby="au-h">
      <h2 id="au-h">Audit log</h2>
      {error ? <p class="warn-text">{error}</p> : null}
      {data ? (
        data.records.length === 0 ? <p>No audited actions yet.</p> : (
          <div class="scroll"><table>
            <thead><tr><th scope="col">time</th><th scope="col">who</th><th scope="col">action</th><th scope="col">target</th><th scope="col">result</th><th scope="col">from</th></tr></thead>
            <tbody>{[...data.records].reverse().map((r) => (
              <tr key={r.seq} class={r.status >= 400 ? 'lagging' : ''}>
                <td>{new Date(r.at).toLocaleString()}</td><td>{r.actor}</td><td>{r.action}</td><td>{r.target ?? ''}</td><td>{r.status} {r.result}</td><td>{r.address ?? ''} via {r.node}</td>
              </tr>
            ))}</tbody>
          </table></div>
        )
      ) : null}
    </section>
  );
}
