// The quorate dashboard: log in with a bearer token, then every second gather
// each node's own view (GET /v1/cluster/views on the serving node, or on
// another member once it stops answering) and the cluster history.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiFailure, Connection, session, type HistoryRecord, type Views, type Whoami } from './api';
import { CardActions, Confirm, preparePause, type Outcome, type Pending } from './actions';
import { leaderView } from './model';
import { Banners, Headline, Replication, Timeline, Topology } from './views';
import { Audit, Backups, HealthChecks } from './ops';
import { MemberActions } from './member-actions';
import { Alerts, NetworkDisk, outageOf, useEach, type NetDisk } from './netdisk';
import { Drills } from './drills';
import { SqlBox } from './sql';

const conn = new Connection();
/** Fallback refresh: events from the serving node (GET /v1/events) trigger refreshes sooner. */
const POLL_MS = 2000;
const HISTORY_EVERY = 2;
/** At most one refresh per this many ms however many events arrive. */
const EVENT_REFRESH_MS = 250;

function Login({ onLogin, error }: { onLogin: (t: string) => void; error: string | null }) {
  const [token, setToken] = useState('');
  return (
    <main class="login">
      <h1>quorate</h1>
      <form onSubmit={(e) => { e.preventDefault(); if (token.trim() !== '') onLogin(token.trim()); }}>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} />
        <p class="hint">The admin token is in <code>admin.token</code> in a node's data dir (<code>quorate demo</code> prints it). It is kept in this browser tab only.</p>
        {error ? <p class="warn-text" role="alert">{error}</p> : null}
        <button type="submit" class="primary">Log in</button>
      </form>
    </main>
  );
}

function KvBrowser() {
  const [prefix, setPrefix] = useState('');
  const [rows, setRows] = useState<{ key: string; value: string; revision: number }[] | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const load = async (): Promise<void> => {
    try {
      const r = await conn.call<{ items: { key: string; value: string; revision: number }[] }>('GET', `/v1/kv?prefix=${encodeURIComponent(prefix)}&limit=50`);
      setRows(r.items);
      setErr(null);
    } catch (e) {
      setErr((e as Error).message);
    }
  };
  return (
    <section aria-labelledby="kv-h">
      <h2 id="kv-h">Data: KV</h2>
      <form class="inline" onSubmit={(e) => { e.preventDefault(); void load(); }}>
        <label for="kv-prefix">prefix</label>
        <input id="kv-prefix" value={prefix} onInput={(e) => setPrefix((e.target as HTMLInputElement).value)} />
        <button type="submit">List (first 50)</button>
      </form>
      {err ? <p class="warn-text">{err}</p> : null}
      {rows ? (
        <div class="scroll"><table>
          <thead><tr><th scope="col">key</th><th scope="col">value</th><th scope="col">revision</th></tr></thead>
          <tbody>{rows.map((r) => <tr key={r.key}><td>{r.key}</td><td class="val">{r.value.length > 120 ? `${r.value.slice(0, 117)}…` : r.value}</td><td>{r.revision}</td></tr>)}</tbody>
        </table></div>
      ) : null}
    </section>
  );
}

function App() {
  const [who, setWho] = useState<Whoami | null>(null);
  const [loginError, setLoginError] = useState<string | null>(null);
  const [views, setViews] = useState<Views | null>(null);
  const [stale, setStale] = useState<string | null>(null);
  const [history, setHistory] = useState<readonly HistoryRecord[]>([]);
  const [pending, setPending] = useState<Pending | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [now, setNow] = useState(Date.now());
  const tick = useRef(0);

  const login = async (token: string): Promise<void> => {
    session.set(token);
    try {
      setWho(await conn.call<Whoami>('GET', '/v1/auth/whoami'));
      setLoginError(null);
    } catch (e) {
      session.clear();
      setLoginError(e instanceof ApiFailure && e.status === 401 ? 'This token is not accepted by the cluster.' : (e as Error).message);
    }
  };

  useEffect(() => {
    const t = session.token();
    if (t !== null) void login(t);
  }, []);

  useEffect(() => {
    if (who === null) return undefined;
    let stop = false;
    const poll = async (): Promise<void> => {
      try {
        const v = await conn.call<Views>('GET', '/v1/cluster/views');
        if (stop) return;
        conn.learn(v.views.map((x) => x.apiUrl));
        setViews(v);
        setStale(conn.failedOver ? `The node that served this page does not answer; showing ${v.servedBy}'s gathering (${conn.failedOver}).` : null);
        if (tick.current++ % HISTORY_EVERY === 0) {
          const h = await conn.call<{ records: HistoryRecord[] }>('GET', '/v1/cluster/history?limit=100');
          if (!stop) setHistory(h.records);
        }
      } catch (e) {
        if (e instanceof ApiFailure && e.status === 401) { session.clear(); setWho(null); return; }
        if (!stop) setStale(`Cannot reach the cluster: ${(e as Error).message}. Values below are from the last answer.`);
      } finally {
        if (!stop) setNow(Date.now());
      }
    };
    void poll();
    const id = setInterval(() => void poll(), POLL_MS);
    // Live: a change this node sees (role, health, membership, lag) refreshes the views at once.
    const ac = new AbortController();
    let pendingRefresh: ReturnType<typeof setTimeout> | undefined;
    void conn.follow((type) => {
      if (type === 'role' || type === 'membership') tick.current = 0; // the timeline changes with these
      pendingRefresh ??= setTimeout(() => { pendingRefresh = undefined; void poll(); }, EVENT_REFRESH_MS);
    }, ac.signal);
    return () => { stop = true; clearInterval(id); ac.abort(); if (pendingRefresh !== undefined) clearTimeout(pendingRefresh); };
  }, [who]);

  const netdisk = useEach<NetDisk>(conn, who === null ? [] : views?.views ?? [], '/v1/cluster/netdisk', 5000);
  if (who === null) return <Login onLogin={(t) => void login(t)} error={loginError} />;
  const list = views?.views ?? [];
  const lead = leaderView(list);
  const admin = who.role === 'admin';
  const prepare = (p: Pending | Promise<Pending>): void => { setOutcome(null); void Promise.resolve(p).then(setPending, (e: Error) => setOutcome({ ok: false, text: e.message })); };
  return (
    <>
      <header class="top">
        <h1>quorate <span class="muted">{lead?.haId ?? ''}</span></h1>
        <span class="who">{who.name} ({who.role}) · served by {views?.servedBy ?? who.nodeName}</span>
        <button type="button" onClick={() => { session.clear(); setWho(null); }}>Log out</button>
      </header>
      <main>
        <Banners views={list} stale={stale} />
        <Headline views={list} />
        {outcome ? <p class={outcome.ok ? 'ok-text' : 'warn-text'} role="status" data-testid="outcome">{outcome.text}</p> : null}
        {admin && lead?.raftRole === 'leader' ? (
          <div class="cluster-actions">
            <button type="button" data-action="pause" onClick={() => prepare(preparePause(conn, lead))}>{lead.paused ? 'Resume failover' : 'Pause failover'}</button>
          </div>
        ) : null}
        <Topology views={list} now={now} {...(admin ? { actions: (v, l) => <><CardActions conn={conn} view={v} lead={l} prepare={prepare} /><MemberActions conn={conn} view={v} lead={l} prepare={prepare} /></> } : {})} />
        <Replication views={list} now={now} />
        <Timeline records={history} outage={(r) => outageOf(r, netdisk)} />
        <Alerts conn={conn} views={list} />
        <HealthChecks conn={conn} />
        <NetworkDisk data={netdisk} views={list} history={history} />
        <Drills conn={conn} views={list} admin={admin} prepare={prepare} refreshKey={outcome} />
        {admin ? <Backups conn={conn} prepare={prepare} refreshKey={outcome} leaderApiUrl={list.find((v) => v.status?.raftRole === 'leader')?.apiUrl ?? null} /> : null}
        {admin ? <Audit conn={conn} refreshKey={outcome} /> : null}
        <KvBrowser />
        <SqlBox conn={conn} />
      </main>
      {pending ? <Confirm pending={pending} onCancel={() => setPending(null)} onDone={(o) => { setPending(null); setOutcome(o); }} /> : null}
    </>
  );
}

const root = document.getElementById('app')!;
root.textContent = '';
render(<App />, root);
