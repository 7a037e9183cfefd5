// `quorate doctor`: the PAM4OT seed's "HA checklist" as a command. Gathers
// every member's own status (GET /v1/cluster/views) and probes each node's
// load-balancer health endpoints and clock, then prints one row per check:
// pass / warn / fail, and what to do. Exit 1 when any check fails.
import { UsageError, int } from './args.js';
import { EXIT, table, type Verb } from './command.js';
import { spanText, type DrillSchedule } from '../drill/schedule.js';

export type Verdict = 'pass' | 'warn' | 'fail';
export interface Check { readonly check: string; readonly result: Verdict; readonly detail: string; readonly action: string }

interface Peer { nodeName: string; role: string; status: string; replicationLagEntries: number; replicationLagMs: number; self: boolean; apiUrl: string | null }
interface Hold { reason: string | null; since: string; expiresAt: string | null }
interface Certificate { cert: string; source: 'auto' | 'file'; file: string | null; notAfter: string | null; renewPeriodSeconds?: number; error?: string }
interface NodeStatusView {
  nodeName: string; raftRole: string; term: number; leader: string | null; quorumMet: boolean; failureTolerance: number; storageHealthy: boolean; storageError: string | null; version: string;
  configWarnings?: string[]; splitBrainWarning: string | null; paused?: boolean; failoverMode?: string; peers: Peer[];
  pause?: Hold; drained?: string[]; drains?: Record<string, Hold>; certificates?: Certificate[];
}
export interface View { nodeName: string; apiUrl: string | null; ok: boolean; status?: NodeStatusView; error?: string }

/** What one node's load-balancer endpoints and clock said (undefined fields: not reachable). */
export interface Probe { nodeName: string; leaderEndpoint?: number; readyEndpoint?: number; clockSkewMs?: number; error?: string }

const VOTING = new Set(['primary', 'standby', 'candidate', 'rejoining']);
export const MAX_CLOCK_SKEW_MS = 2000;
/** A certificate file with fewer days left than this is a warning (--cert-days). */
export const CERT_WARN_DAYS = 14;
/** The leader ends an expired pause or drain within seconds: this late, it did not. */
const EXPIRY_GRACE_MS = 60_000;

/** What the checks read besides the views and probes. */
export interface DiagnoseExtra {
  /** GET /v1/drills's schedule (undefined: not asked or not served). */
  readonly drills?: DrillSchedule;
  readonly certWarnDays?: number;
  readonly now?: number;
}

/** The checks, from the gathered views and probes (pure). */
export function diagnose(views: readonly View[], probes: readonly Probe[], extra: DiagnoseExtra = {}): Check[] {
  const now = extra.now ?? Date.now();
  const out: Check[] = [];
  const add = (check: string, result: Verdict, detail: string, action = ''): void => { out.push({ check, result, detail, action }); };
  const ok = views.filter((v) => v.ok && v.status !== undefined);
  const leaderViews = ok.filter((v) => v.status!.raftRole === 'leader');
  const lead = leaderViews.sort((a, b) => b.status!.term - a.status!.term)[0]?.status;
  const roleOf = (name: string): string => lead?.peers.find((p) => p.nodeName === name)?.role ?? 'unknown';

  const down = views.filter((v) => !v.ok);
  const downVoters = down.filter((v) => VOTING.has(roleOf(v.nodeName)) || lead === undefined);
  if (down.length === 0) add('every node online', 'pass', `${views.length} of ${views.length} answer`);
  else add('every node online', downVoters.length > 0 ? 'fail' : 'warn', down.map((v) => `${v.nodeName}: ${v.error ?? 'no answer'}`).join('; '), 'start the node (systemctl start quorate) or read its log; `quorate status` shows what the leader sees');

  if (lead === undefined) add('leader and quorum', 'fail', 'no node answers as leader', 'a majority of voters must be up and connected; see docs/operations.md "No leader"');
  else if (!lead.quorumMet) add('leader and quorum', 'fail', `${lead.nodeName} leads (term ${lead.term}) without a quorum`, 'bring voters back; writes fail until a majority is reachable');
  else add('leader and quorum', 'pass', `${lead.nodeName} leads (term ${lead.term}) with a quorum`);

  if (leaderViews.length > 1 && new Set(leaderViews.map((v) => v.status!.term)).size < leaderViews.length) add('one leader', 'fail', `several nodes lead in one term: ${leaderViews.map((v) => v.nodeName).join(', ')}`, 'split brain: read docs/operations.md "Split-brain warning"');
  const leaders = new Set(ok.map((v) => v.status!.leader ?? '(none)'));
  if (leaders.size > 1) add('nodes agree on the leader', 'warn', ok.map((v) => `${v.nodeName} → ${v.status!.leader ?? 'none'}`).join(', '), 'usually transient during an election; if it lasts, check the network between the nodes');
  else if (ok.length > 0) add('nodes agree on the leader', 'pass', `all name ${[...leaders][0]}`);

  if (lead !== undefined) {
    const t = lead.failureTolerance;
    add('failure tolerance', t === 0 ? 'warn' : 'pass', `the cluster can lose ${t} node${t === 1 ? '' : 's'} now`, t === 0 ? 'add a voter (quorate enroll) or bring failed voters back: one more failure stops writes' : '');
    const followers = lead.peers.filter((p) => !p.self);
    const bad = followers.filter((p) => p.status === 'unreachable' || p.status === 'diverged');
    const lagging = followers.filter((p) => p.status === 'lagging');
    const worst = followers.reduce((m, p) => Math.max(m, p.replicationLagMs), 0);
    if (bad.length > 0) add('replication', VOTING.has(bad[0]!.role) ? 'fail' : 'warn', bad.map((p) => `${p.nodeName} ${p.status}`).join(', '), 'check the node and the network to it; a diverged node is re-replicated by the leader');
    else if (lagging.length > 0) add('replication', 'warn', lagging.map((p) => `${p.nodeName} ${p.replicationLagEntries} entries / ${p.replicationLagMs} ms behind`).join(', '), 'a lagging standby is not failover-ready: check its disk and CPU');
    else add('replication', 'pass', `${followers.length} follower(s) replicating, worst lag ${worst} ms`);
    maintenance(lead, now, add);
    if (lead.failoverMode !== undefined && lead.failoverMode !== 'automatic') add('failover mode', 'warn', `${lead.failoverMode}: a failed leader is not replaced automatically`, 'intended? otherwise `quorate config set failover automatic`');
  }

  const storage = ok.filter((v) => !v.status!.storageHealthy);
  add('storage', storage.length > 0 ? 'fail' : 'pass', storage.length > 0 ? storage.map((v) => `${v.nodeName}: ${v.status!.storageError ?? 'failing'}`).join('; ') : `healthy on ${ok.length} node(s)`, storage.length > 0 ? 'check the disk of those nodes (space, permissions, I/O errors in the system log)' : '');

  const versions = new Set(ok.map((v) => v.status!.version));
  add('versions', versions.size > 1 ? 'warn' : 'pass', ok.map((v) => `${v.nodeName} ${v.status!.version}`).join(', '), versions.size > 1 ? 'finish the rolling upgrade: mixed versions run at the lowest feature level' : '');

  const warnings = ok.flatMap((v) => [...(v.status!.configWarnings ?? []), ...(v.status!.splitBrainWarning ? [v.status!.splitBrainWarning] : [])]);
  if (warnings.length > 0) add('configuration', 'warn', [...new Set(warnings)].join('; '), 'make the named keys agree in every node\'s config');

  certificates(ok, now, extra.certWarnDays ?? CERT_WARN_DAYS, add);
  if (extra.drills !== undefined) lastDrill(extra.drills, now, add);

  const probed = probes.filter((p) => p.error === undefined);
  const leaderAnswers = probed.filter((p) => p.leaderEndpoint === 200).map((p) => p.nodeName);
  if (probed.length > 0) {
    const expectOne = lead !== undefined && lead.quorumMet;
    const good = expectOne ? leaderAnswers.length === 1 && leaderAnswers[0] === lead!.nodeName : leaderAnswers.length === 0;
    add('load-balancer endpoints', good ? 'pass' : 'fail',
      `/system/health/leader answers 200 on ${leaderAnswers.join(', ') || 'no node'}; /system/health/ready on ${probed.filter((p) => p.readyEndpoint === 200).map((p) => p.nodeName).join(', ') || 'no node'}`,
      good ? '' : 'a load balancer checking /system/health/leader would route wrongly: see `quorate status`');
  }
  const skewed = probed.filter((p) => p.clockSkewMs !== undefined && Math.abs(p.clockSkewMs) > MAX_CLOCK_SKEW_MS);
  if (probed.length > 0) add('clocks', skewed.length > 0 ? 'warn' : 'pass', skewed.length > 0 ? skewed.map((p) => `${p.nodeName} ${p.clockSkewMs! > 0 ? '+' : ''}${p.clockSkewMs} ms`).join(', ') : `within ${MAX_CLOCK_SKEW_MS} ms of this machine on ${probed.length} node(s)`, skewed.length > 0 ? 'run NTP (chrony, systemd-timesyncd) on every node: history times and TTL display use wall clocks' : '');
  return out;
}

type Add = (check: string, result: Verdict, detail: string, action?: string) => void;

const holdText = (h: Hold | undefined, now: number): string => (h === undefined ? ', no expiry' : `${h.reason !== null ? ` (reason: ${h.reason})` : ''}${h.expiresAt !== null ? `, ${Date.parse(h.expiresAt) <= now ? `expired ${spanText(now - Date.parse(h.expiresAt))} ago` : `until ${h.expiresAt}`}` : ', no expiry'}`);

/** Pause and drains as the leader holds them; one past its expiry is a warning of its own (the leader should have ended it). */
function maintenance(lead: NodeStatusView, now: number, add: Add): void {
  const late = (h: Hold | undefined): boolean => h?.expiresAt != null && now - Date.parse(h.expiresAt) > EXPIRY_GRACE_MS;
  const drained = lead.drained ?? [];
  const lateDrains = drained.filter((n) => late(lead.drains?.[n]));
  if ((lead.paused === true && late(lead.pause)) || lateDrains.length > 0) {
    const what = [...(lead.paused === true && late(lead.pause) ? [`the pause${holdText(lead.pause, now)}`] : []), ...lateDrains.map((n) => `the drain of ${n}${holdText(lead.drains?.[n], now)}`)];
    add('maintenance past its expiry', 'warn', `${what.join('; ')}: the leader ends an expired pause or drain within seconds and has not`,
      `check the leader's log (maintenance_expired lines) and that it has a quorum; end it by hand: ${[...(lead.paused === true && late(lead.pause) ? ['`quorate resume`'] : []), ...lateDrains.map((n) => `\`quorate undrain ${n}\``)].join(', ')}`);
  }
  if (lead.paused === true) add('maintenance', 'warn', `the cluster is paused${holdText(lead.pause, now)}: no automatic failover`, 'run `quorate resume` when the maintenance is over');
  const onTime = drained.filter((n) => !lateDrains.includes(n));
  if (onTime.length > 0) add('drained nodes', 'warn', onTime.map((n) => `${n}${holdText(lead.drains?.[n], now)}`).join('; '), `a drained node never becomes leader: \`quorate undrain NAME\` when its maintenance is over`);
}

/** Certificate files: warn under `warnDays` left; auto (cluster CA) ones: warn when less than a renewal period is left (renewal failed); fail when expired. */
function certificates(ok: readonly View[], now: number, warnDays: number, add: Add): void {
  const rows: { node: string; c: Certificate; leftMs: number }[] = [];
  const unreadable: string[] = [];
  for (const v of ok) {
    for (const c of v.status!.certificates ?? []) {
      if (c.notAfter === null) unreadable.push(`${v.nodeName} ${c.cert}: ${c.error ?? 'unreadable'}`);
      else rows.push({ node: v.nodeName, c, leftMs: Date.parse(c.notAfter) - now });
    }
  }
  if (rows.length === 0 && unreadable.length === 0) return;
  const name = (r: (typeof rows)[number]): string => `${r.node} ${r.c.cert} (${r.c.source === 'file' ? r.c.file ?? 'file' : 'cluster CA'})`;
  rows.sort((a, b) => a.leftMs - b.leftMs || a.node.localeCompare(b.node));
  const expired = rows.filter((r) => r.leftMs <= 0);
  const near = rows.filter((r) => r.leftMs > 0 && (r.c.source === 'file' ? r.leftMs < warnDays * 86_400_000 : r.leftMs < (r.c.renewPeriodSeconds ?? 0) * 1000));
  const fileAction = 'replace the certificate file (same path) and restart the node';
  const autoAction = 'the node did not renew its cluster CA certificate: read its tls_ log lines, check its clock and cluster secret (`quorate ca show`)';
  const actionFor = (list: typeof rows): string => [...new Set(list.map((r) => (r.c.source === 'file' ? fileAction : autoAction)))].join('; ');
  if (expired.length > 0) add('certificates', 'fail', `expired: ${expired.map((r) => `${name(r)} on ${r.c.notAfter}`).join('; ')}`, actionFor(expired));
  else if (near.length > 0 || unreadable.length > 0) {
    add('certificates', 'warn', [...near.map((r) => `${name(r)} expires in ${spanText(r.leftMs)} (${r.c.notAfter})`), ...unreadable].join('; '),
      near.length > 0 ? actionFor(near) : 'fix the certificate file the node names (path, permissions, PEM format)');
  } else {
    const first = rows.reduce((a, b) => (b.leftMs < a.leftMs ? b : a));
    add('certificates', 'pass', `${rows.length} certificate(s); the first to expire: ${name(first)} in ${spanText(first.leftMs)}`);
  }
}

/** The last drill and its result; overdue per drills.maxIntervalHours. */
function lastDrill(d: DrillSchedule, now: number, add: Add): void {
  const period = d.maxIntervalHours > 0 ? `drills.maxIntervalHours ${d.maxIntervalHours} h` : 'no period set (drills.maxIntervalHours 0)';
  const run = 'run one: `quorate drill --kill leader --confirm` (or the dashboard\'s drills view)';
  if (d.last === null) {
    add('last drill', d.overdue ? 'warn' : 'pass', `no failover drill has been run; ${period}`, d.overdue ? run : 'set drills.maxIntervalHours to be warned when drills are overdue');
    return;
  }
  const when = `${d.last.id ?? 'drill'} ${spanText(now - Date.parse(d.last.at))} ago`;
  if (!d.last.passed) {
    add('last drill', 'fail', `${when} FAILED${d.last.lost > 0 ? `: ${d.last.lost} acknowledged write(s) lost` : ''}${d.last.failures.length > 0 ? ` (${d.last.failures.join('; ')})` : ''}`,
      `read its report (\`quorate drill --history\`), fix the cause (${d.last.lost > 0 ? 'lost writes: check database.writeQuorum and failover mode' : 'a slow failover: check cluster.electionTimeoutMs, disks and network'}), then run a drill again`);
    return;
  }
  const rto = d.last.rtoMsMax === null ? '' : `, worst RTO ${Math.round(d.last.rtoMsMax)} ms${d.last.rtoTargetMs !== null ? ` (target ${d.last.rtoTargetMs} ms)` : ''}`;
  if (d.overdue) add('last drill', 'warn', `the last passing drill was ${spanText(now - Date.parse(d.lastPassedAt!))} ago, over ${period}`, run);
  else add('last drill', 'pass', `${when} passed${rto}; ${d.dueAt !== null ? `next due by ${d.dueAt}` : period}`);
}

async function probe(name: string, apiUrl: string): Promise<Probe> {
  const base = apiUrl.replace(/\/+$/, '');
  try {
    const t0 = Date.now();
    const leader = await fetch(`${base}/system/health/leader`, { signal: AbortSignal.timeout(2000) });
    const t1 = Date.now();
    await leader.arrayBuffer();
    const date = leader.headers.get('date');
    // The Date header has 1 s resolution: compare with the middle of the round trip, allow for the truncation.
    const skew = date === null ? undefined : Date.parse(date) + 500 - (t0 + t1) / 2;
    const ready = await fetch(`${base}/system/health/ready`, { signal: AbortSignal.timeout(2000) });
    await ready.arrayBuffer();
    return { nodeName: name, leaderEndpoint: leader.status, readyEndpoint: ready.status, ...(skew !== undefined ? { clockSkewMs: Math.round(skew) } : {}) };
  } catch (err) {
    return { nodeName: name, error: (err as Error).message };
  }
}

export const doctorCommand: Verb = {
  name: 'doctor',
  usage: '',
  description: 'Asks every member for its own status (GET /v1/cluster/views) and probes each node\'s /system/health/leader and /system/health/ready (and its clock, from the HTTP Date header). Also checks the certificates each node serves (a file with fewer than --cert-days days left warns; a cluster CA certificate with less than a renewal period left warns: it was not renewed; an expired one fails), a pause or drain past its expiry, and the last failover drill (GET /v1/drills: a failed one, or one that lost writes, fails; none passing within drills.maxIntervalHours warns). Prints pass/warn/fail per check with what to do. Exits 1 when a check fails.',
  flags: [{ name: 'cert-days', type: 'int', value: 'N', help: `warn when a certificate file has fewer than N days left (default ${CERT_WARN_DAYS})` }],
  examples: ['quorate doctor', 'quorate doctor --url http://10.0.1.10:7101 --json', 'quorate doctor --cert-days 30'],
  remote: true,
  async run(ctx) {
    const certWarnDays = int(ctx.args, 'cert-days') ?? CERT_WARN_DAYS;
    if (certWarnDays < 0 || certWarnDays > 3650) throw new UsageError(`--cert-days must be 0..3650 (days), got ${certWarnDays}`, 'doctor');
    const r = await ctx.client().request<{ views: View[] }>('GET', '/v1/cluster/views');
    const views = r.body.views;
    const probes = await Promise.all(views.filter((v) => v.apiUrl !== null).map((v) => probe(v.nodeName, v.apiUrl!)));
    // The drill schedule as the answering node sees it (its drills.maxIntervalHours); absent on a node without drills.
    const drills = await ctx.client().request<{ schedule?: DrillSchedule }>('GET', '/v1/drills?limit=1').then((d) => d.body.schedule, () => undefined);
    const checks = diagnose(views, probes, { ...(drills !== undefined ? { drills } : {}), certWarnDays });
    const failed = checks.some((c) => c.result === 'fail');
    ctx.print({ ok: !failed, checks }, () => `${table(['CHECK', 'RESULT', 'DETAIL', 'WHAT TO DO'], checks.map((c) => [c.check, c.result.toUpperCase(), c.detail, c.action]))}\n\n${failed ? 'Some checks FAILED.' : checks.some((c) => c.result === 'warn') ? 'No failures; see the warnings.' : 'All checks passed.'}`);
    return failed ? EXIT.failed : EXIT.ok;
  },
};
