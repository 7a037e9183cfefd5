// Cluster verbs: status, leader, active, id, peers, state, dump, failover-safe, switchover, history.
import { UsageError, duration, int, str, bool } from './args.js';
import { EXIT, cell, keyValues, objectTable, table, type Context, type Verb } from './command.js';
import type { ClusterHealth, ClusterStatus } from '../api/client.js';
import { holdText } from './modes.js';

const status: Verb = {
  name: 'status',
  usage: '[--watch [--interval 2s] [--count N]]',
  description: 'Shows GET /system/health/cluster; in database.mode "external-shared" also the fencing token and, led by Raft, the leader group\'s Raft term (from GET /v1/cluster/status of the node that answered; --json prints the health body only). Exits 3 when the cluster is unhealthy, so it can gate scripts and monitors. With --watch the table is redrawn every --interval until Ctrl-C (or --count refreshes); a refresh that fails shows the error and the next one tries again; with --json each refresh is one JSON line.',
  flags: [
    { name: 'watch', type: 'boolean', help: 'redraw the table every --interval until Ctrl-C' },
    { name: 'interval', type: 'duration', value: 'DURATION', help: 'refresh period with --watch (default 2s, at least 200ms)' },
    { name: 'count', type: 'int', value: 'N', help: 'with --watch, stop after N refreshes' },
  ],
  examples: ['quorate status', 'quorate status --url http://10.0.1.10:7101,http://10.0.1.11:7101 --json', 'quorate status --watch --interval 1s'],
  remote: true,
  async run(ctx) {
    if (!bool(ctx.args, 'watch')) {
      const h = await ctx.client().health('cluster');
      const st = ctx.json ? undefined : await leadFields(ctx);
      ctx.print(h, () => renderHealth(h, st));
      return h.clusterHealthy ? EXIT.ok : EXIT.unhealthy;
    }
    const every = duration(ctx.args, 'interval') ?? 2000;
    if (every < 200) throw new UsageError('--interval must be at least 200ms', 'status');
    const count = int(ctx.args, 'count');
    if (count !== undefined && count < 1) throw new UsageError('--count must be at least 1', 'status');
    const tty = process.stdout.isTTY === true && !ctx.json;
    let stop = false;
    const onSignal = (): void => { stop = true; };
    process.once('SIGINT', onSignal);
    let last: number = EXIT.ok;
    try {
      for (let n = 0; !stop && (count === undefined || n < count); n++) {
        if (n > 0) await new Promise((r) => setTimeout(r, every));
        if (stop) break;
        let text: string;
        try {
          const h = await ctx.client().health('cluster');
          last = h.clusterHealthy ? EXIT.ok : EXIT.unhealthy;
          text = ctx.json ? JSON.stringify({ at: new Date().toISOString(), ...h }) : `${new Date().toLocaleTimeString()}  (every ${every} ms, Ctrl-C stops)\n${renderHealth(h, await leadFields(ctx))}`;
        } catch (err) {
          last = EXIT.failed;
          text = ctx.json ? JSON.stringify({ at: new Date().toISOString(), error: (err as Error).message }) : `${new Date().toLocaleTimeString()}  cannot read the cluster status: ${(err as Error).message} (retrying)`;
        }
        ctx.io.out(tty ? `\x1b[H\x1b[2J${text}` : text);
      }
    } finally {
      process.off('SIGINT', onSignal);
    }
    return last;
  },
};

/** The node's status (GET /v1/cluster/status), for the fields the health body lacks; undefined when it cannot be read (the table goes without them). */
async function leadFields(ctx: Context): Promise<ClusterStatus | undefined> {
  try {
    return await ctx.client().clusterStatus();
  } catch {
    return undefined;
  }
}

/** `st`: the answering node's status; its `fencingToken` (external-shared) and `raftTerm` (led by Raft) are shown when present. */
export function renderHealth(h: ClusterHealth, st?: ClusterStatus): string {
  const as = st?.nodeName !== undefined ? ` (as ${st.nodeName} sees it)` : '';
  const head = keyValues([
    ['cluster', h.clusterHealthy ? 'healthy' : 'UNHEALTHY'],
    ['leader', h.leaderNode ?? '(none)'],
    ['term', cell(h.term)],
    ...(typeof st?.['raftTerm'] === 'number' ? [['raft term', `${st['raftTerm']}${as}`] as const] : []),
    ...(typeof st?.['fencingToken'] === 'number' ? [['fencing token', `${st['fencingToken']}${as}`] as const] : []),
    ['quorum', `${h.quorumMet ? 'met' : 'NOT MET'} (writeQuorum ${cell(h.writeQuorum)})`],
    ['failover safe', cell(h.failoverSafe)],
    ['tolerates', `${cell(h.failureTolerance)} node failure${h.failureTolerance === 1 ? '' : 's'}`],
    ...(h.redisConnected !== undefined && h.redisConnected !== null ? [['redis', h.redisConnected ? 'connected' : 'disconnected'] as const] : []),
    ...(h.failoverMode !== undefined ? [['failover', `${h.failoverMode}${h.paused === true ? ' (PAUSED)' : ''}${h.autoFailover === false ? ' — automatic failover disabled' : ''}`] as const] : []),
    ...(h.pause !== undefined ? [['paused', holdText(h.pause).slice(2, -1)] as const] : []),
    ...(h.drained !== undefined && h.drained.length > 0 ? [['drained', h.drained.map((d) => `${d}${holdText(h.drains?.[d])}`).join(', ')] as const] : []),
    ...(h.approval !== undefined ? [['approval', h.approval.candidate !== null ? `candidate ${h.approval.candidate}, term ${cell(h.approval.term)} (since ${cell(h.approval.since)})` : `no candidate: ${h.approval.reason ?? ''}`] as const] : []),
  ]);
  const rows = (h.nodes ?? []).map((n) => [
    n.nodeName === h.leaderNode ? `${n.nodeName} *` : n.nodeName, cell(n.role), cell(n.status), cell(n.databaseMode),
    cell(n.matchIndex), cell(n.replicationLagEntries), cell(n.replicationLagMs), cell(n.lastHeartbeat),
  ]);
  const warnings = (h.configWarnings ?? []).map((w) => `\nWarning: ${w}`).join('');
  return `${head}${h.notice !== undefined ? `\n${h.notice}` : ''}${warnings}\n\n${table(['NODE', 'ROLE', 'STATUS', 'MODE', 'MATCH', 'LAG ENTRIES', 'LAG MS', 'LAST HEARTBEAT'], rows)}`;
}

function nameOf(s: ClusterStatus): string | undefined {
  const v = s.nodeName ?? s.id;
  return v === undefined ? undefined : String(v);
}

const leader: Verb = {
  name: 'leader',
  usage: '',
  description: 'Prints the leader this node knows of. Exits 1 when there is none (an election is in progress or quorum is lost).',
  flags: [],
  examples: ['quorate leader', 'quorate leader --json'],
  remote: true,
  async run(ctx) {
    const s = await ctx.client().clusterStatus();
    const l = s.leader ?? null;
    ctx.print({ leader: l, term: s.term }, () => l ?? '(none)');
    if (l === null || l === '') {
      ctx.io.err('No leader right now: an election may be in progress, or a majority of voters is unreachable (see `quorate status`).');
      return EXIT.failed;
    }
    return EXIT.ok;
  },
};

const active: Verb = {
  name: 'active',
  usage: '',
  description: 'Usually the leader; may be unset briefly during a failover. Exits 1 when unset.',
  flags: [],
  examples: ['quorate active'],
  remote: true,
  async run(ctx) {
    const s = await ctx.client().clusterStatus();
    const a = s.active !== undefined ? s.active : (s.leader ?? null);
    ctx.print({ active: a }, () => a ?? '(none)');
    if (a === null || a === '') {
      ctx.io.err('No active node right now: the cluster is choosing one (see `quorate status`).');
      return EXIT.failed;
    }
    return EXIT.ok;
  },
};

const id: Verb = {
  name: 'id',
  usage: '',
  flags: [],
  examples: ['quorate id --url http://10.0.1.11:7101'],
  remote: true,
  async run(ctx) {
    const s = await ctx.client().clusterStatus();
    ctx.print({ id: s.id ?? null, nodeName: s.nodeName ?? null }, () => nameOf(s) ?? '(unknown)');
    return EXIT.ok;
  },
};

const peers: Verb = {
  name: 'peers',
  usage: '',
  flags: [],
  examples: ['quorate peers', 'quorate peers --json'],
  remote: true,
  async run(ctx) {
    const s = await ctx.client().clusterStatus();
    const list = s.peers ?? [];
    ctx.print(list, () => (list.length === 0 ? '(no peers)' : objectTable(list, ['nodeName', 'id', 'role', 'apiUrl', 'peerUrl', 'matchIndex', 'lastContact'])));
    return EXIT.ok;
  },
};

function renderState(s: ClusterStatus): string {
  const pairs: [string, string][] = [];
  for (const [k, v] of Object.entries(s)) if (k !== 'peers') pairs.push([k, cell(v)]);
  return keyValues(pairs);
}

const state: Verb = {
  name: 'state',
  usage: '',
  flags: [],
  examples: ['quorate state', 'quorate state --url http://10.0.1.12:7101 --json'],
  remote: true,
  async run(ctx) {
    const s = await ctx.client().clusterStatus();
    ctx.print(s, () => renderState(s));
    return EXIT.ok;
  },
};

const dump: Verb = {
  name: 'dump',
  usage: '[--checksum]',
  description: 'Calls GET /v1/cluster/status and GET /v1/cluster/dump. With --checksum the node also hashes its state: checksum (the KV), sqlChecksum (the content of the replicated SQL database) and filesChecksum (the replicated files: path, size, SHA-256, revision); every node at the same appliedIndex must print the same ones.',
  flags: [{ name: 'checksum', type: 'boolean', help: 'compute the state-machine checksum at appliedIndex' }],
  examples: ['quorate dump --checksum', 'for u in http://n1:7101 http://n2:7101; do quorate dump --checksum --url $u; done'],
  remote: true,
  async run(ctx) {
    const c = ctx.client();
    const s = await c.clusterStatus();
    const d = await c.dump({ checksum: bool(ctx.args, 'checksum') });
    ctx.print({ status: s, dump: d }, () => `${renderState(s)}\n${keyValues(Object.entries(d).map(([k, v]) => [`dump.${k}`, cell(v)]))}`);
    return EXIT.ok;
  },
};

const failoverSafe: Verb = {
  name: 'failover-safe',
  usage: '[--wait 5s]',
  flags: [{ name: 'wait', type: 'duration', value: 'DURATION', help: 'wait up to this long (max 5s) for the cluster to become failover-safe' }],
  examples: ['quorate failover-safe', 'quorate failover-safe --wait 5s && systemctl stop quorate'],
  remote: true,
  async run(ctx) {
    const waitMs = Math.min(5000, duration(ctx.args, 'wait') ?? 0);
    const r = await ctx.client().failoverSafe(waitMs);
    ctx.print(r.body, () => (r.safe ? 'failover safe: yes' : 'failover safe: no (no voter is fully caught up with the leader)'));
    return r.safe ? EXIT.ok : EXIT.failed;
  },
};

const switchover: Verb = {
  name: 'switchover',
  usage: '[--to NAME] [--at TIME] | --show | --cancel',
  description:
    'No acknowledged write is lost; writes pause for less than one election timeout. Without --to the cluster picks the most caught-up voter. ' +
    'A target that is not caught up is refused (409 target_not_caught_up) with how far behind it is, in entries and ms. ' +
    'With --at the leader schedules it (one at a time) and runs the same switchover, with the same check, when the time comes, logging the outcome. ' +
    'TIME is an ISO 8601 time with a zone (2026-12-01T02:00:00Z) or +DURATION (+10m, +90s, +2h) counted from the leader\'s clock. ' +
    'The schedule is kept in the leader\'s memory: if leadership moves or the leader loses its quorum first, it is cancelled (the old leader logs it); schedule it again. ' +
    '--show prints the scheduled one and the outcome of the last one run; --cancel cancels it.',
  flags: [
    { name: 'to', type: 'string', value: 'NAME', help: 'node to hand leadership to' },
    { name: 'at', type: 'string', value: 'TIME', help: 'schedule it: 2026-12-01T02:00:00Z or +10m' },
    { name: 'show', type: 'boolean', help: 'show the scheduled switchover' },
    { name: 'cancel', type: 'boolean', help: 'cancel the scheduled switchover' },
  ],
  examples: ['quorate switchover', 'quorate switchover --to node2', 'quorate switchover --to node2 --at 2026-12-01T02:00:00Z', 'quorate switchover --at +10m', 'quorate switchover --show', 'quorate switchover --cancel'],
  remote: true,
  async run(ctx) {
    const to = str(ctx.args, 'to');
    const at = str(ctx.args, 'at');
    const show = bool(ctx.args, 'show');
    const cancel = bool(ctx.args, 'cancel');
    if ((show || cancel) && (to !== undefined || at !== undefined || (show && cancel))) throw new UsageError('--show and --cancel take no other switchover flag', 'switchover');
    if (at !== undefined && !/^\+\d+(\.\d+)?(ms|s|m|h)$/.test(at) && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(at)) {
      throw new UsageError(`--at needs an ISO 8601 time with a zone (2026-12-01T02:00:00Z) or +DURATION (+10m), got ${JSON.stringify(at)}`, 'switchover');
    }
    const client = ctx.client();
    if (show) {
      const r = await client.scheduledSwitchover();
      ctx.print(r, () => renderSchedule(r));
      return EXIT.ok;
    }
    if (cancel) {
      const r = await client.cancelSwitchover();
      const c = r['cancelled'] as Record<string, unknown> | undefined;
      ctx.print(r, () => `scheduled switchover cancelled${c !== undefined ? `: ${c['to'] !== null ? `to ${cell(c['to'])} ` : ''}at ${cell(c['at'])}` : ''}`);
      return EXIT.ok;
    }
    const r = await client.switchover(to, at);
    if (at !== undefined) {
      const p = r['scheduled'] as Record<string, unknown>;
      ctx.print(r, () => `switchover ${p['to'] !== null ? `to ${cell(p['to'])}` : '(to the most caught-up voter)'} scheduled on ${cell(r['leader'])} for ${cell(p['at'])} (in ${Math.round(Number(p['inMs']) / 1000)} s)\n` +
        'Kept in the leader\'s memory: a leader change cancels it (the old leader logs it). Check with `quorate switchover --show`, cancel with `quorate switchover --cancel`.');
      return EXIT.ok;
    }
    ctx.print(r, () => {
      const to = r['leader'] ?? r['to'] ?? r['newLeader'];
      return `switchover done${to !== undefined ? `: leader is now ${cell(to)}` : ''}${r['term'] !== undefined ? ` (term ${cell(r['term'])})` : ''}`;
    });
    return EXIT.ok;
  },
};

function renderSchedule(r: Record<string, unknown>): string {
  const p = r['scheduled'] as Record<string, unknown> | null;
  const last = r['lastRun'] as (Record<string, unknown> & { outcome: Record<string, unknown> }) | null;
  const lines = [p === null ? `no switchover is scheduled (leader ${cell(r['leader'])})`
    : `switchover ${p['to'] !== null ? `to ${cell(p['to'])}` : '(to the most caught-up voter)'} scheduled on ${cell(r['leader'])} for ${cell(p['at'])} (in ${Math.round(Number(p['inMs']) / 1000)} s, by ${cell(p['scheduledBy'])})`];
  if (last !== null) {
    const o = last.outcome;
    const err = o['error'] as { code: string; message: string } | undefined;
    lines.push(`last scheduled run (${cell(last['at'])}): ${o['ok'] === true ? `done, ${cell(o['from'])} -> ${cell(o['to'])} (term ${cell(o['term'])})` : `FAILED ${err?.code ?? ''}: ${err?.message ?? ''}`}`);
  }
  return lines.join('\n');
}

/** One history record as a table row: time, kind, term, from → to, reason. */
function historyRow(r: Record<string, unknown>): string[] {
  const name = (n: unknown, id: unknown): string => (typeof n === 'string' && n !== '' ? n : id === null || id === undefined ? '-' : `node ${cell(id)}`);
  if (r['kind'] === 'leader') {
    const from = r['previousLeaderId'] === null || r['previousLeaderId'] === undefined ? '-' : name(r['previousLeaderName'], r['previousLeaderId']);
    return [cell(r['at']), 'leader', cell(r['term']), `${from} → ${name(r['leaderName'], r['leaderId'])}`, cell(r['reason'])];
  }
  if (r['kind'] === 'maintenance') {
    const what = r['nodeName'] !== null && r['nodeName'] !== undefined ? `${cell(r['op'])} ${cell(r['nodeName'])}` : cell(r['op']);
    const until = typeof r['expiresAt'] === 'string' ? `, until ${r['expiresAt']}` : '';
    return [cell(r['at']), 'maintenance', cell(r['term']), what, `${r['by'] === 'expiry' ? 'expired' : 'by operator'}${typeof r['reason'] === 'string' ? `: ${r['reason']}` : ''}${until}`];
  }
  const who = name(r['nodeName'], r['nodeId']);
  const op = cell(r['op']);
  const change = op === 'add' ? `- → ${who}` : op === 'remove' ? `${who} → -` : `${who} → ${cell(r['role'])}`;
  return [cell(r['at']), 'membership', cell(r['term']), change, `${op} (index ${cell(r['confIndex'])})`];
}

const history: Verb = {
  name: 'history',
  usage: '[--limit N]',
  description:
    'Calls GET /v1/cluster/history on the node asked: its applied copy of the replicated history (a follower may be a few entries behind the leader), ' +
    'oldest first. Leadership reasons: startup (first election after the cluster started), election (the leader\'s election timeout ran out), ' +
    'leader-unreachable (the leader\'s connection reset: its process died), switchover (planned transfer), failover, promotion. ' +
    'Kept for the newest cluster.historyMax records (default 1000); recorded only once every member runs this release (feature level 2).',
  flags: [{ name: 'limit', type: 'int', value: 'N', help: 'only the newest N records (1..100000)' }],
  examples: ['quorate history', 'quorate history --limit 20 --json'],
  remote: true,
  async run(ctx) {
    const limit = int(ctx.args, 'limit');
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > 100_000)) throw new UsageError('--limit must be an integer in 1..100000', 'history');
    const body = (await ctx.client().request<{ records?: Record<string, unknown>[] }>('GET', '/v1/cluster/history', limit !== undefined ? { query: { limit: String(limit) } } : {})).body;
    const records = body.records ?? [];
    ctx.print(body, () => (records.length === 0
      ? '(no history recorded yet)'
      : table(['TIME', 'KIND', 'TERM', 'FROM → TO', 'REASON'], records.map(historyRow))));
    return EXIT.ok;
  },
};

export const clusterCommands: readonly Verb[] = [status, leader, active, id, peers, state, dump, failoverSafe, switchover, history];
