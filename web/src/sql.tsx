// The data view's SQL query box: a read-only query (POST /v1/db/query,
// linearizable: answered by the leader after a read barrier) with its rows in
// a table and the API's refusal shown as is (a write statement is refused
// with sql_refused, a large result with sql_result_too_large). Shown only
// when the serving cluster has the replicated SQL machine: a probe
// (SELECT 1) answered 404 not_found hides it.
import { useEffect, useState } from 'preact/hooks';
import { ApiFailure, type Connection } from './api';

interface Answer { columns: string[]; rows: unknown[][] }

/** A cell as text: blobs come as {"base64": …}, everything else as JSON would print it. */
function cell(v: unknown): string {
  if (v === null) return 'NULL';
  if (typeof v === 'object') {
    const b = (v as { base64?: unknown }).base64;
    return typeof b === 'string' ? `blob (${Math.floor((b.length * 3) / 4)} bytes)` : JSON.stringify(v);
  }
  const s = String(v);
  return s.length > 200 ? `${s.slice(0, 197)}…` : s;
}

export function SqlBox({ conn }: { conn: Connection }) {
  const [available, setAvailable] = useState<boolean | null>(null);
  const [sql, setSql] = useState('SELECT name, type FROM sqlite_schema ORDER BY name');
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    let stop = false;
    conn.call<Answer>('POST', '/v1/db/query', { sql: 'SELECT 1', consistency: 'stale' }).then(
      () => { if (!stop) setAvailable(true); },
      (e: unknown) => { if (!stop) setAvailable(!(e instanceof ApiFailure && e.status === 404)); },
    );
    return () => { stop = true; };
  }, []);
  if (available !== true) return null;
  const run = async (): Promise<void> => {
    setBusy(true);
    try {
      setAnswer(await conn.call<Answer>('POST', '/v1/db/query', { sql }));
      setErr(null);
    } catch (e) {
      setAnswer(null);
      setErr(e instanceof ApiFailure ? `${e.code}: ${e.message}` : (e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="sql-h">
      <h2 id="sql-h">Data: SQL</h2>
      <form class="sql" onSubmit={(e) => { e.preventDefault(); void run(); }}>
        <label for="sql-text">Read-only query (linearizable, answered by the leader)</label>
        <textarea id="sql-text" rows={3} spellcheck={false} value={sql} onInput={(e) => setSql((e.target as HTMLTextAreaElement).value)}
          onKeyDown={(e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); void run(); } }} />
        <button type="submit" data-testid="sql-run" disabled={busy || sql.trim() === ''}>{busy ? 'Running…' : 'Run query'}</button>
        <p class="hint">Writes go through <code>quorate sql --execute</code> or <code>POST /v1/db/execute</code> (operator); this box only reads. Ctrl+Enter runs.</p>
      </form>
      {err ? <p class="warn-text" role="alert" data-testid="sql-error">{err}</p> : null}
      {answer ? (
        <div class="scroll"><table data-testid="sql-rows">
          <caption>{answer.rows.length} row{answer.rows.length === 1 ? '' : 's'}</caption>
          <thead><tr>{answer.columns.map((c, i) => <th scope="col" key={i}>{c}</th>)}</tr></thead>
          <tbody>{answer.rows.map((r, i) => <tr key={i}>{r.map((v, j) => <td key={j} class="val">{cell(v)}</td>)}</tr>)}</tbody>
        </table></div>
      ) : null}
    </section>
  );
}
