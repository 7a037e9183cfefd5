// The read-only views: headline, banners, topology cards, replication table, timeline.
import type { HistoryRecord, HoldView, NodeView, Status } from './api';
import { age, certLines, disagreements, fmtMs, followerWhy, isVoter, leaderView, whatIf } from './model';

export function Headline({ views }: { views: readonly NodeView[] }) {
  const s = leaderView(views);
  if (s === undefined) return <section class="headline bad" aria-live="polite"><h2>No node answers</h2></section>;
  const leading = s.raftRole === 'leader';
  const tol = s.failureTolerance;
  const cls = !leading || !s.quorumMet ? 'bad' : tol === 0 ? 'warn' : 'good';
  return (
    <section class={`headline ${cls}`} aria-live="polite">
      <div class="big" data-testid="leader">{leading ? <>Leader: <strong>{s.nodeName}</strong></> : <strong>No leader</strong>}</div>
      <div>term {s.term} · commit {s.commitIndex}</div>
      <div data-testid="tolerance">{leading ? (tol === 0 ? 'Can lose no node now' : `Can lose ${tol} node${tol === 1 ? '' : 's'} now`) : 'Writes are unavailable'}</div>
      <div>failover: {s.failoverMode}{s.paused ? ' (PAUSED)' : ''}</div>
      {s.paused && s.pause ? <div data-testid="pause-hold">paused{holdText(s.pause)}</div> : null}
    </section>
  );
}

export function Banners({ views, stale }: { views: readonly NodeView[]; stale: string | null }) {
  const s = leaderView(views);
  const items: string[] = [];
  if (stale !== null) items.push(stale);
  for (const d of disagreements(views)) items.push(d.text);
  for (const v of views) if (!v.ok) items.push(`${v.nodeName}: ${v.error ?? 'no answer'}`);
  if (s?.paused) items.push(`Maintenance: the cluster is paused${s.pause ? holdText(s.pause) : ''}; no automatic failover until resumed${s.pause?.expiresAt ? ' or the time is up' : ''}.`);
  if (s?.notice) items.push(s.notice);
  if (s?.splitBrainWarning) items.push(s.splitBrainWarning);
  for (const w of s?.configWarnings ?? []) items.push(w);
  if (items.length === 0) return null;
  return <ul class="banners" role="status">{items.map((t) => <li key={t}>{t}</li>)}</ul>;
}

/** " (reason: X; until HH:MM, N min left)" for a pause or drain with a reason or expiry. */
export function holdText(h: HoldView): string {
  const bits: string[] = [];
  if (h.reason) bits.push(`reason: ${h.reason}`);
  if (h.expiresAt) {
    const left = h.expiresInMs ?? 0;
    bits.push(`until ${new Date(h.expiresAt).toLocaleString()} (${left < 120_000 ? `${Math.ceil(left / 1000)} s` : `${Math.ceil(left / 60_000)} min`} left)`);
  }
  return bits.length > 0 ? ` (${bits.join('; ')})` : '';
}

function roleClass(role: string, leader: boolean, drained: boolean): string {
  return [leader ? 'leader' : '', `role-${role}`, drained ? 'drained' : ''].join(' ');
}

export function Topology({ views, now, actions }: { views: readonly NodeView[]; now: number; actions?: (v: NodeView, s: Status | undefined) => preact.ComponentChildren }) {
  const lead = leaderView(views);
  return (
    <section aria-labelledby="topo-h">
      <h2 id="topo-h">Nodes</h2>
      <div class="cards">
        {views.map((v) => {
          const own = v.status;
          const peer = lead?.peers.find((p) => p.nodeName === v.nodeName);
          const isLeader = own?.raftRole === 'leader';
          const lagEntries = peer?.replicationLagEntries ?? 0;
          const lagPct = Math.min(100, (lagEntries / 1000) * 100);
          return (
            <article class={`card ${roleClass(peer?.role ?? own?.role ?? 'unknown', isLeader, peer?.drained ?? false)} ${v.ok ? '' : 'down'}`} data-node={v.nodeName} key={v.nodeName}>
              <header>
                <h3>{v.nodeName}</h3>
                <span class="pill">{isLeader ? 'LEADER' : (peer?.role ?? own?.role ?? '?')}</span>
                {peer?.drained ? <span class="pill muted">drained</span> : null}
              </header>
              {peer?.drained && lead?.drains?.[v.nodeName] ? <p class="hold" data-testid="drain-hold">drained{holdText(lead.drains[v.nodeName]!)}</p> : null}
              {v.ok && own ? (
                <dl>
                  <dt>health</dt><dd>{peer?.self && isLeader ? 'leading' : peer ? followerWhy(peer) : own.storageHealthy ? 'serving' : `storage: ${own.storageError}`}</dd>
                  <dt>term</dt><dd>{own.term}</dd>
                  <dt>its leader</dt><dd>{own.leader ?? 'none'}</dd>
                  <dt>applied</dt><dd>{own.appliedIndex} (commit {own.commitIndex})</dd>
                  <dt>match index</dt><dd>{peer?.matchIndex ?? '—'}</dd>
                  <dt>lag</dt><dd>
                    {peer ? `${lagEntries} entries · ${fmtMs(peer.replicationLagMs)}` : '—'}
                    <div class="bar" role="img" aria-label={`lag ${lagEntries} entries`}><span style={{ width: `${lagPct}%` }} /></div>
                  </dd>
                  <dt>last heartbeat</dt><dd>{peer?.self ? '—' : age(peer?.lastContact, now)}</dd>
                  <dt>version</dt><dd>{own.version}</dd>
                  <dt>if it dies</dt><dd class="whatif">{lead ? whatIf(lead, v.nodeName) : '—'}</dd>
                </dl>
              ) : <p class="down-why">{v.error}</p>}
              {v.ok && own?.certificates && own.certificates.length > 0 ? (
                <ul class="certs" data-testid="cert-expiry">
                  {certLines(own.certificates, now).map((l) => <li key={l.text} class={l.level}>{l.text}</li>)}
                </ul>
              ) : null}
              <footer class="age">its own view, {age(v.at, now)}{v.ms > 0 ? ` (answered in ${v.ms} ms)` : ''}</footer>
              {actions ? actions(v, lead) : null}
            </article>
          );
        })}
      </div>
    </section>
  );
}

export function Replication({ views, now }: { views: readonly NodeView[]; now: number }) {
  const s = leaderView(views);
  if (s === undefined || s.raftRole !== 'leader') return null;
  const rows = s.peers.filter((p) => !p.self);
  return (
    <section aria-labelledby="repl-h">
      <h2 id="repl-h">Replication (the leader's view)</h2>
      <div class="scroll">
        <table>
          <thead><tr><th scope="col">node</th><th scope="col">role</th><th scope="col">state</th><th scope="col">match index</th><th scope="col">behind</th><th scope="col">last contact</th></tr></thead>
          <tbody>
            {rows.map((p) => (
              <tr key={p.nodeName} class={p.status}>
                <td>{p.nodeName}{isVoter(p) ? '' : ' (non-voting)'}</td>
                <td>{p.role}{p.drained ? ', drained' : ''}</td>
                <td>{followerWhy(p)}</td>
                <td>{p.matchIndex}</td>
                <td>{p.replicationLagEntries} · {fmtMs(p.replicationLagMs)}</td>
                <td>{age(p.lastContact, now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function describe(r: HistoryRecord): string {
  if (r.kind === 'leader') {
    const from = r.previousLeaderName ? ` (was ${r.previousLeaderName})` : '';
    return `${r.leaderName ?? '?'} became leader${from}: ${r.reason ?? ''}`;
  }
  if (r.kind === 'membership') return `${r.op ?? '?'} ${r.nodeName ?? ''}${r.role ? ` as ${r.role}` : ''}`;
  if (r.kind === 'maintenance') {
    const rec = r as HistoryRecord & { by?: string; reason?: string | null; expiresAt?: string | null };
    const what = `${r.op ?? '?'}${r.nodeName ? ` ${r.nodeName}` : ''}`;
    return `${what} ${rec.by === 'expiry' ? '(expired)' : '(by operator)'}${rec.reason ? `: ${rec.reason}` : ''}${rec.expiresAt ? `, until ${rec.expiresAt}` : ''}`;
  }
  const extra = Object.entries(r).filter(([k]) => !['seq', 'index', 'at', 'kind', 'term'].includes(k)).map(([k, v]) => `${k}=${String(v)}`).join(' ');
  return `${r.kind} ${extra}`;
}

/** Leadership and membership changes, newest first; with `outage`, the write outage each leadership change caused as the nodes saw it. */
export function Timeline({ records, outage }: { records: readonly HistoryRecord[]; outage?: (r: HistoryRecord) => string | undefined }) {
  if (records.length === 0) return <section aria-labelledby="tl-h"><h2 id="tl-h">Timeline</h2><p>No history recorded yet.</p></section>;
  const newest = [...records].reverse();
  return (
    <section aria-labelledby="tl-h">
      <h2 id="tl-h">Timeline</h2>
      <ol class="timeline">
        {newest.map((r) => (
          <li key={r.seq} class={`k-${r.kind}`}>
            <time dateTime={r.at}>{new Date(r.at).toLocaleString()}</time>
            <span class="term">term {r.term}</span>
            <span>{describe(r)}</span>
            {outage?.(r) !== undefined ? <span class="outage" data-testid="outage">{outage(r)}</span> : null}
          </li>
        ))}
      </ol>
    </section>
  );
}
