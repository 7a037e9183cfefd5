// `quorate doctor`: the PAM4OT seed's "HA checklist" as a command. Gathers
// every member's own status (GET /v1/cluster/views) and probes each node's
// load-balancer health endpoints and clock, then prints one row per check:
// pass / warn / fail, and what to do. Exit 1 when any check fails.
import { EXIT, table, type Command } from './command.js';

export type Verdict = 'pass' | 'warn' | 'fail';
export interface Check { readonly check: string; readonly result: Verdict; readonly detail: string; readonly action: string }

interface Peer { nodeName: string; role: string; status: string; replicationLagEntries: number; replicationLagMs: number; self: boolean; apiUrl: string | null }
interface NodeStatusView { nodeName: string; raftRole: string; term: number; leader: string | null; quorumMet: boolean; failureTolerance: number; storageHealthy: boolean; storageError: string | null; version: string; configWarnings?: string[]; splitBrainWarning: string | null; paused?: boolean; failoverMode?: string; peers: Peer[] }
export interface View { nodeName: string; apiUrl: string | null; ok: boolean; status?: NodeStatusView; error?: string }

/** What one node's load-balancer endpoints and clock said (undefined fields: not reachable). */
export interface Probe { nodeName: string; leaderEndpoint?: number; readyEndpoint?: number; clockSkewMs?: number; error?: string }

const VOTING = new Set(['primary', 'standby', 'candidate', 'rejoining']);
export const MAX_CLOCK_SKEW_MS = 2000;

/** The checks, from the gathered views and probes (pure). */
export function diagnose(views: readonly View[], probes: readonly Probe[]): Check[] {
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
    if (lead.paused === true) add('maintenance', 'warn', 'the cluster is paused: no automatic failover', 'run `quorate resume` when the maintenance is over');
    if (lead.failoverMode !== undefined && lead.failoverMode !== 'automatic') add('failover mode', 'warn', `${lead.failoverMode}: a failed leader is not replaced automatically`, 'intended? otherwise `quorate config set failover automatic`');
  }

  const storage = ok.filter((v) => !v.status!.storageHealthy);
  add('storage', storage.length > 0 ? 'fail' : 'pass', storage.length > 0 ? storage.map((v) => `${v.nodeName}: ${v.status!.storageError ?? 'failing'}`).join('; ') : `healthy on ${ok.length} node(s)`, storage.length > 0 ? 'check the disk of those nodes (space, permissions, I/O errors in the system log)' : '');

  const versions = new Set(ok.map((v) => v.status!.version));
  add('versions', versions.size > 1 ? 'warn' : 'pass', ok.map((v) => `${v.nodeName} ${v.status!.version}`).join(', '), versions.size > 1 ? 'finish the rolling upgrade: mixed versions run at the lowest feature level' : '');

  const warnings = ok.flatMap((v) => [...(v.status!.configWarnings ?? []), ...(v.status!.splitBrainWarning ? [v.status!.splitBrainWarning] : [])]);
  if (warnings.length > 0) add('configuration', 'warn', [...new Set(warnings)].join('; '), 'make the named keys agree in every node\'s config');

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

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'HA checklist: nodes, quorum, replication, load-balancer endpoints, clocks, storage, versions',
  usage: '',
  description: 'Asks every member for its own status (GET /v1/cluster/views) and probes each node\'s /system/health/leader and /system/health/ready (and its clock, from the HTTP Date header). Prints pass/warn/fail per check with what to do. Exits 1 when a check fails.',
  flags: [],
  examples: ['quorate doctor', 'quorate doctor --url http://10.0.1.10:7101 --json'],
  remote: true,
  async run(ctx) {
    const r = await ctx.client().request<{ views: View[] }>('GET', '/v1/cluster/views');
    const views = r.body.views;
    const probes = await Promise.all(views.filter((v) => v.apiUrl !== null).map((v) => probe(v.nodeName, v.apiUrl!)));
    const checks = diagnose(views, probes);
    const failed = checks.some((c) => c.result === 'fail');
    ctx.print({ ok: !failed, checks }, () => `${table(['CHECK', 'RESULT', 'DETAIL', 'WHAT TO DO'], checks.map((c) => [c.check, c.result.toUpperCase(), c.detail, c.action]))}\n\n${failed ? 'Some checks FAILED.' : checks.some((c) => c.result === 'warn') ? 'No failures; see the warnings.' : 'All checks passed.'}`);
    return failed ? EXIT.failed : EXIT.ok;
  },
};
