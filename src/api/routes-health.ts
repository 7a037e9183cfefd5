// /system/health/*: probes for load balancers and monitors (SPEC §4).
// ping/leader/standby/ready need no token; cluster needs reader.
import type { RequestContext, Route } from './context.js';
import type { ClusterControl, HoldInfo, NodeStatus } from './ports.js';
import type { AppCoordination } from './ports-app.js';

/** How long a follower waits for the leader's view of cluster health before answering with its own. */
const CLUSTER_FORWARD_TIMEOUT_MS = 2000;

interface Verdict {
  readonly ok: boolean;
  readonly reasons: string[];
}

function leaderKnown(s: NodeStatus): boolean {
  return s.leaderName !== undefined || s.leaderId !== 0;
}

function storageReasons(s: NodeStatus): string[] {
  return s.storageHealthy ? [] : [`storage failed: ${s.storageError ?? 'unknown error'}`];
}

function quorumReason(s: NodeStatus): string {
  return `quorum not met: ${s.votersReachable} of ${s.votersTotal} voters reachable (writeQuorum ${s.writeQuorum})`;
}

export function pingVerdict(s: NodeStatus): Verdict {
  const reasons = storageReasons(s);
  return { ok: reasons.length === 0, reasons };
}

export function leaderVerdict(s: NodeStatus): Verdict {
  const reasons = storageReasons(s);
  if (s.raftRole !== 'leader') reasons.push(`not the leader (this node is ${s.role}; leader: ${s.leaderName ?? 'none known'})`);
  else if (!s.quorumMet) reasons.push(quorumReason(s));
  return { ok: reasons.length === 0, reasons };
}

export function standbyVerdict(s: NodeStatus, maxLag: number): Verdict {
  const reasons = storageReasons(s);
  if (s.raftRole === 'leader') reasons.push('this node is the leader, not a standby');
  else if (!leaderKnown(s)) reasons.push('no leader is known (an election may be in progress)');
  if (s.role === 'removed') reasons.push('this node was removed from the cluster');
  if (s.role === 'rejoining') reasons.push('this node came back with a new data dir: it is a non-voting learner until it has caught up with the leader');
  if (s.raftRole !== 'leader') {
    const self = s.peers.find((p) => p.self);
    const lag = Math.max(s.commitIndex - s.appliedIndex, self?.replicationLagEntries ?? 0);
    if (lag >= Math.max(1, maxLag)) reasons.push(`lagging: ${lag} entries behind the leader (maxLagOnFailover ${maxLag})`);
  }
  return { ok: reasons.length === 0, reasons };
}

export function readyVerdict(s: NodeStatus): Verdict {
  const reasons = storageReasons(s);
  if (s.role === 'removed') reasons.push('this node was removed from the cluster');
  if (s.raftRole === 'leader') {
    if (!s.quorumMet) reasons.push(quorumReason(s));
  } else if (!leaderKnown(s)) {
    reasons.push('no leader is known (an election may be in progress, or a majority of voters is unreachable)');
  } else if (s.leaderApiUrl === undefined) {
    reasons.push(`the leader ${s.leaderName ?? `#${s.leaderId}`} is known but its API URL is not, so requests cannot be forwarded yet`);
  }
  return { ok: reasons.length === 0, reasons };
}

/** A pause's or drain's reason and expiry as JSON: ISO times, and the ms left (0 once past: the leader ends it within seconds). */
export function holdJson(h: HoldInfo): Record<string, unknown> {
  return {
    reason: h.reason ?? null,
    since: new Date(h.since).toISOString(),
    expiresAt: h.expiresAt !== undefined ? new Date(h.expiresAt).toISOString() : null,
    expiresInMs: h.expiresAt !== undefined ? Math.max(0, h.expiresAt - Date.now()) : null,
  };
}

/** Failover mode, paused, drained and the operator notice, for health and status bodies (absent when the node has no modes). */
export function modesBody(cluster: ClusterControl): Record<string, unknown> {
  const m = cluster.modes();
  if (m === undefined) return {};
  return {
    failoverMode: m.failoverMode, paused: m.paused, drained: m.drained, autoFailover: m.autoFailover,
    ...(m.pause !== undefined ? { pause: holdJson(m.pause) } : {}),
    ...(m.drains !== undefined ? { drains: Object.fromEntries(Object.entries(m.drains).map(([n, h]) => [n, holdJson(h)])) } : {}),
    ...(m.notice !== undefined ? { notice: m.notice } : {}),
    ...(m.approval !== undefined ? { approval: m.approval } : {}),
  };
}

/** A failing critical application health check (health.checks) makes every probe answer 503, naming it. */
function withAppChecks(ctx: RequestContext, v: Verdict): { v: Verdict; body: Record<string, unknown> } {
  const h = ctx.app.coord?.health();
  if (h === undefined) return { v, body: {} };
  const body = { appChecks: { healthy: h.healthy, failingCritical: h.failingCritical, failing: h.failing } };
  const failing = h.checks.filter((c) => !c.healthy && c.critical);
  if (failing.length === 0) return { v, body };
  const reasons = [...v.reasons, ...failing.map((c) => `critical health check ${c.name} failing (${c.consecutiveFailures} consecutive failures): ${c.lastError ?? 'unknown error'}`)];
  return { v: { ok: false, reasons }, body };
}

function answer(ctx: RequestContext, s: NodeStatus, verdict: Verdict): Promise<void> {
  // The SPEC's shape; plus the modes and what to run while this node's automatic failover is off, and the application checks.
  const off = ctx.app.cluster.modes().autoFailover === false;
  const { v, body } = withAppChecks(ctx, verdict);
  const who = { nodeName: s.nodeName, role: s.role, leader: s.leaderName ?? null, ...(off ? modesBody(ctx.app.cluster) : {}), ...body };
  if (v.ok) ctx.json(200, { status: 'healthy', ...who });
  else ctx.json(503, { status: 'unhealthy', ...who, reasons: v.reasons });
  return Promise.resolve();
}

/** The body of GET /system/health/cluster (SPEC §4), from this node's view. */
export async function clusterHealth(cluster: ClusterControl, coord?: AppCoordination): Promise<Record<string, unknown>> {
  const s = cluster.status();
  let failoverSafe = false;
  try {
    failoverSafe = (await cluster.failoverSafe(0)).safe;
  } catch {
    // A follower may not know; report false rather than guess.
  }
  const mode = cluster.config.database.mode;
  const drained = new Set(cluster.modes().drained ?? []);
  const drains = cluster.modes().drains ?? {};
  // Application checks per node: this node's own, the others' as the leader last polled them (absent: none configured or not known).
  const own = coord?.health();
  const peerChecks = coord?.peerHealth() ?? {};
  const appOf = (name: string): Record<string, unknown> => {
    const h = name === s.nodeName ? own : peerChecks[name];
    return h === undefined ? {} : { appHealthy: h.healthy, failingChecks: h.failing };
  };
  const nodes = s.peers.map((p) => ({
    nodeName: p.nodeName,
    drained: drained.has(p.nodeName),
    ...(drains[p.nodeName] !== undefined ? { drain: holdJson(drains[p.nodeName]!) } : {}),
    role: p.role,
    status: p.status,
    lastHeartbeat: p.lastHeartbeat ?? null,
    databaseMode: mode,
    matchIndex: p.matchIndex,
    replicationLagEntries: p.replicationLagEntries,
    replicationLagMs: p.replicationLagMs,
    ...appOf(p.nodeName),
  }));
  if (!s.peers.some((p) => p.self)) {
    nodes.unshift({
      nodeName: s.nodeName,
      drained: drained.has(s.nodeName),
      role: s.role,
      status: s.storageHealthy ? 'healthy' : 'unreachable',
      lastHeartbeat: new Date().toISOString(),
      databaseMode: mode,
      matchIndex: s.lastIndex,
      replicationLagEntries: Math.max(0, s.commitIndex - s.appliedIndex),
      replicationLagMs: 0,
      ...appOf(s.nodeName),
    });
  }
  const leaderNode = s.leaderName ?? null;
  const clusterHealthy = leaderNode !== null && s.quorumMet && s.storageHealthy && s.splitBrainWarning === undefined
    && nodes.every((n) => n.status !== 'unreachable' && n.status !== 'diverged' && (n as { appHealthy?: boolean }).appHealthy !== false);
  const body: Record<string, unknown> = {
    clusterHealthy,
    leaderNode,
    term: s.term,
    nodes,
    // null when this node does not use Redis (not `false`: nothing is disconnected).
    redisConnected: s.redisConnected ?? null,
    writeQuorum: s.writeQuorum,
    quorumMet: s.quorumMet,
    failoverSafe,
    failureTolerance: s.failureTolerance,
    ...modesBody(cluster),
  };
  if (s.splitBrainWarning !== undefined) body['splitBrainWarning'] = s.splitBrainWarning;
  // Like splitBrainWarning, only when there is one: the SPEC shape stays exact while the files agree.
  if (s.configWarnings !== undefined && s.configWarnings.length > 0) body['configWarnings'] = s.configWarnings;
  return body;
}

export const healthRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/system/health/ping': { GET: { auth: null, handle: (ctx) => { const s = ctx.app.cluster.status(); return answer(ctx, s, pingVerdict(s)); } } },
  '/system/health/leader': { GET: { auth: null, handle: (ctx) => { const s = ctx.app.cluster.status(); return answer(ctx, s, leaderVerdict(s)); } } },
  '/system/health/standby': {
    GET: {
      auth: null,
      handle: (ctx) => {
        const s = ctx.app.cluster.status();
        return answer(ctx, s, standbyVerdict(s, ctx.app.cluster.config.cluster.maxLagOnFailover));
      },
    },
  },
  '/system/health/ready': { GET: { auth: null, handle: (ctx) => { const s = ctx.app.cluster.status(); return answer(ctx, s, readyVerdict(s)); } } },
  '/system/health/cluster': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        const cluster = ctx.app.cluster;
        // The leader sees every follower's progress and heartbeats: ask it
        // first. If it cannot be reached, answer with this node's own view
        // (which then reports the cluster as it looks from here).
        if (!cluster.isLeader() && !ctx.forwardedIn) {
          const url = cluster.leaderApiUrl();
          if (url !== undefined) {
            try {
              await ctx.app.forwarder.forward(ctx, url, cluster.status().leaderName, { write: false, timeoutMs: CLUSTER_FORWARD_TIMEOUT_MS });
              return;
            } catch (err) {
              if (ctx.res.headersSent) throw err;
              ctx.app.logger.debug({ err: (err as Error).message }, 'cluster health: leader unreachable, answering with the local view');
            }
          }
        }
        ctx.json(200, await clusterHealth(cluster, ctx.app.coord));
      },
    },
  },
};
