// Network and disk (GET /v1/cluster/netdisk of every member): the round-trip
// matrix (each node's measured HTTP round trip to every other member), each
// node's fsync latency over the last minutes with the cluster's leader changes
// marked on the same time axis, and the data dir's free space. Also the
// built-in alerts firing on any member (GET /v1/alerts).
import { useEffect, useState } from 'preact/hooks';
import type { Connection, HistoryRecord, NodeView } from './api';
import { fmtMs } from './model';

interface Rtt { nodeName: string; ms: number | null; at: string; error?: string }
interface Fsync { at: string; count: number; meanMs: number | null; p99UpperMs: number | null }
interface LeaderChangeSeen { term: number; from: string; to: string; at: string; noLeaderMs: number; pollMs: number }
export interface NetDisk { nodeName: string; sampleMs: number; rtt: Rtt[]; fsync: Fsync[]; disk: { freeBytes: number; sizeBytes: number; freePercent: number } | null; leaderChanges: LeaderChangeSeen[] }
interface Alert { id: string; name: string; severity: string; node: string; subject?: string; summary: string; since: string }

/** Asks every answering member for `path` every `everyMs`; results by node name (an error text when it failed). */
export function useEach<T>(conn: Connection, views: readonly NodeView[], path: string, everyMs: number): Map<string, T | string> {
  const [data, setData] = useState<Map<string, T | string>>(new Map());
  const targets = views.filter((v) => v.apiUrl !== null).map((v) => `${v.nodeName}=${v.apiUrl!}`).join(',');
  useEffect(() => {
    let stop = false;
    const load = async (): Promise<void> => {
      const got = await Promise.all(views.filter((v) => v.apiUrl !== null).map(async (v): Promise<[string, T | string]> => {
        try { return [v.nodeName, await conn.callOn<T>(v.apiUrl!, 'GET', path)]; } catch (e) { return [v.nodeName, (e as Error).message]; }
      }));
      if (!stop) setData(new Map(got));
    };
    void load();
    const id = setInterval(() => void load(), everyMs);
    return () => { stop = true; clearInterval(id); };
  }, [targets, path]);
  return data;
}

const W = 320;
const H = 90;

function FsyncChart({ samples, leaderChanges }: { samples: readonly Fsync[]; leaderChanges: readonly HistoryRecord[] }) {
  const pts = samples.filter((s) => s.meanMs !== null);
  if (samples.length < 2) return <p class="muted">collecting samples…</p>;
  const t0 = Date.parse(samples[0]!.at);
  const t1 = Date.parse(samples[samples.length - 1]!.at);
  const span = Math.max(1, t1 - t0);
  const max = Math.max(1, ...pts.map((s) => s.p99UpperMs ?? s.meanMs ?? 0));
  const x = (iso: string): number => ((Date.parse(iso) - t0) / span) * (W - 10) + 5;
  const y = (ms: number): number => H - 12 - (ms / max) * (H - 22);
  const marks = leaderChanges.filter((r) => { const t = Date.parse(r.at); return t >= t0 && t <= t1; });
  return (
    <svg class="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`fsync latency, ${samples.length} samples, ${marks.length} leader change(s) in range`}>
      <line x1="5" y1={H - 12} x2={W - 5} y2={H - 12} class="axis" />
      {marks.map((r) => <line key={r.seq} x1={x(r.at)} y1="4" x2={x(r.at)} y2={H - 12} class="mark"><title>{`${r.leaderName ?? '?'} became leader (${r.reason ?? ''}) ${new Date(r.at).toLocaleTimeString()}`}</title></line>)}
      <polyline class="p99" points={pts.filter((s) => s.p99UpperMs !== null).map((s) => `${x(s.at)},${y(s.p99UpperMs!)}`).join(' ')} />
      <polyline class="mean" points={pts.map((s) => `${x(s.at)},${y(s.meanMs!)}`).join(' ')} />
      {pts.map((s) => <circle key={s.at} class="dot" cx={x(s.at)} cy={y(s.meanMs!)} r="1.8"><title>{`${new Date(s.at).toLocaleTimeString()}: ${s.count} fsyncs, mean ${s.meanMs!.toFixed(2)} ms${s.p99UpperMs !== null ? `, p99 ≤ ${s.p99UpperMs} ms` : ''}`}</title></circle>)}
      <text x="6" y="11" class="lbl">{`max ${fmtMs(max)}`}</text>
      <text x="6" y={H - 1} class="lbl">{new Date(t0).toLocaleTimeString()}</text>
      <text x={W - 6} y={H - 1} class="lbl end">{new Date(t1).toLocaleTimeString()}</text>
    </svg>
  );
}

/**
 * The write outage a leader record stands for, as the new leader saw it: how long it saw no working leader
 * before it led with its quorum (else the longest any other member saw), with what it does not include.
 */
export function outageOf(r: HistoryRecord, data: ReadonlyMap<string, NetDisk | string>): string | undefined {
  if (r.kind !== 'leader') return undefined;
  const seen: { node: string; ms: number }[] = [];
  for (const [node, d] of data) {
    if (typeof d !== 'object') continue;
    const c = d.leaderChanges.find((x) => x.term === r.term && x.to === r.leaderName);
    if (c !== undefined) seen.push({ node, ms: c.noLeaderMs });
  }
  const own = seen.find((x) => x.node === r.leaderName) ?? seen.sort((a, b) => b.ms - a.ms)[0];
  if (own === undefined) return undefined;
  const before = r.reason === 'election' ? ' + the election timeout it took to notice' : '';
  return `no leader for ${fmtMs(own.ms)}${before} (seen by ${own.node})`;
}

export function NetworkDisk({ data, views, history }: { data: ReadonlyMap<string, NetDisk | string>; views: readonly NodeView[]; history: readonly HistoryRecord[] }) {
  const names = views.map((v) => v.nodeName);
  const leaderChanges = history.filter((r) => r.kind === 'leader');
  return (
    <section aria-labelledby="nd-h">
      <h2 id="nd-h">Network and disk</h2>
      <div class="scroll"><table data-testid="rtt-matrix">
        <caption>Round trip from each node (row) to each other member (column): an HTTP request to its /system/health/ping, measured by the row's node</caption>
        <thead><tr><th scope="col">from \ to</th>{names.map((n) => <th scope="col" key={n}>{n}</th>)}</tr></thead>
        <tbody>{names.map((from) => {
          const d = data.get(from);
          return (
            <tr key={from}>
              <th scope="row">{from}</th>
              {names.map((to) => {
                if (to === from) return <td key={to}>—</td>;
                if (d === undefined) return <td key={to}>…</td>;
                if (typeof d === 'string') return <td key={to} class="warn-text" title={d}>no answer</td>;
                const r = d.rtt.find((x) => x.nodeName === to);
                return <td key={to} class={r?.ms === null ? 'warn-text' : ''} title={r?.error ?? r?.at ?? ''}>{r === undefined ? '…' : r.ms === null ? 'unreachable' : `${r.ms.toFixed(1)} ms`}</td>;
              })}
            </tr>
          );
        })}</tbody>
      </table></div>
      <div class="cards">
        {names.map((n) => {
          const d = data.get(n);
          const recent = typeof d === 'object' ? d.fsync.filter((s) => s.count > 0) : [];
          const count = recent.reduce((a, s) => a + s.count, 0);
          const mean = count > 0 ? recent.reduce((a, s) => a + (s.meanMs ?? 0) * s.count, 0) / count : null;
          return (
            <div class="card" key={n} data-netdisk={n}>
              <header><h3>{n}</h3><span class="pill">fsync</span></header>
              {d === undefined ? <p>…</p> : typeof d === 'string' ? <p class="down-why">{d}</p> : (
                <>
                  <FsyncChart samples={d.fsync} leaderChanges={leaderChanges} />
                  <p class="legend"><span class="sw mean" /> mean <span class="sw p99" /> p99 (bucket bound) <span class="sw mark" /> leader change</p>
                  <dl>
                    <dt>fsyncs</dt><dd>{count} in the last {fmtMs(d.fsync.length * d.sampleMs)}{mean !== null ? `, mean ${mean.toFixed(2)} ms` : ''}</dd>
                    <dt>disk free</dt><dd>{d.disk ? `${d.disk.freePercent}% (${(d.disk.freeBytes / 2 ** 30).toFixed(1)} of ${(d.disk.sizeBytes / 2 ** 30).toFixed(1)} GiB)` : 'unknown'}</dd>
                  </dl>
                </>
              )}
            </div>
          );
        })}
      </div>
    </section>
  );
}

export function Alerts({ conn, views }: { conn: Connection; views: readonly NodeView[] }) {
  const data = useEach<{ active: Alert[] }>(conn, views, '/v1/alerts', 5000);
  const active = new Map<string, Alert>();
  for (const d of data.values()) if (typeof d === 'object') for (const a of d.active) if (!active.has(a.id)) active.set(a.id, a);
  const list = [...active.values()];
  return (
    <section aria-labelledby="al-h">
      <h2 id="al-h">Alerts firing</h2>
      {list.length === 0 ? <p data-testid="alerts-none">None (thresholds: config section <code>alerts</code>; <code>quorate alerts</code>).</p> : (
        <ul class="alerts" data-testid="alerts">{list.map((a) => <li key={a.id} class={a.severity}><strong>{a.severity}</strong> {a.name}{a.subject ? ` (${a.subject})` : ''} on {a.node}: {a.summary} <span class="muted">since {new Date(a.since).toLocaleTimeString()}</span></li>)}</ul>
      )}
    </section>
  );
}
