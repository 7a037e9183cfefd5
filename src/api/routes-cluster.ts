// /v1/cluster/* and /metrics (SPEC §4 "Cluster administration").
import { PROMETHEUS_CONTENT_TYPE } from '../ops/metrics.js';
import type { RequestContext, Route } from './context.js';
import { badField } from './errors.js';
import { tryLocalThenLeader } from './leader.js';
import { parseSwitchover } from './validate.js';

/** failover-safe waits at most this long. */
export const MAX_FAILOVER_WAIT_MS = 5000;

function clusterStatus(ctx: RequestContext): Record<string, unknown> {
  const s = ctx.app.cluster.status();
  return {
    id: s.id,
    nodeName: s.nodeName,
    haId: s.haId,
    role: s.role,
    raftRole: s.raftRole,
    term: s.term,
    leader: s.leaderName ?? null,
    leaderId: s.leaderId,
    leaderApiUrl: s.leaderApiUrl ?? null,
    commitIndex: s.commitIndex,
    appliedIndex: s.appliedIndex,
    lastIndex: s.lastIndex,
    firstIndex: s.firstIndex,
    snapshotIndex: s.snapshotIndex,
    revision: s.revision,
    quorumMet: s.quorumMet,
    votersReachable: s.votersReachable,
    votersTotal: s.votersTotal,
    writeQuorum: s.writeQuorum,
    failureTolerance: s.failureTolerance,
    storageHealthy: s.storageHealthy,
    storageError: s.storageError ?? null,
    splitBrainWarning: s.splitBrainWarning ?? null,
    startedAt: s.startedAt,
    version: s.version,
    featureLevel: s.featureLevel,
    peers: s.peers.map((p) => ({
      id: p.id,
      nodeName: p.nodeName,
      role: p.role,
      status: p.status,
      apiUrl: p.apiUrl ?? null,
      peerUrl: p.peerUrl,
      matchIndex: p.matchIndex,
      replicationLagEntries: p.replicationLagEntries,
      replicationLagMs: p.replicationLagMs,
      lastContact: p.lastHeartbeat ?? null,
      self: p.self,
    })),
  };
}

function flag(ctx: RequestContext, name: string): boolean {
  const v = ctx.query.get(name);
  if (v === null || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true' || v === '') return true;
  throw badField(name, `must be 1/true or 0/false, got ${JSON.stringify(v.slice(0, 40))}`);
}

export const clusterRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/cluster/status': {
    GET: { auth: 'reader', query: [], handle: async (ctx) => ctx.json(200, clusterStatus(ctx)) },
  },
  '/v1/cluster/failover-safe': {
    GET: {
      auth: 'reader',
      query: ['waitMs'],
      handle: async (ctx) => {
        const waitMs = Math.min(MAX_FAILOVER_WAIT_MS, ctx.intParam('waitMs') ?? 0);
        // The leader knows its followers' progress; a follower that cannot tell passes the question on.
        await tryLocalThenLeader(ctx, async () => {
          const r = await ctx.app.cluster.failoverSafe(waitMs);
          ctx.json(200, { failoverSafe: r.safe, caughtUp: r.caughtUp, nodeName: ctx.app.cluster.nodeName });
        }, waitMs + ctx.app.forwardTimeoutMs);
      },
    },
  },
  '/v1/cluster/switchover': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const { to } = parseSwitchover(await ctx.jsonBody(true));
        await tryLocalThenLeader(ctx, async () => {
          const r = await ctx.app.cluster.switchover(to);
          ctx.app.logger.info({ from: r.from, to: r.to, term: r.term, pauseMs: r.pauseMs, by: ctx.principal?.name }, 'switchover done');
          ctx.json(200, { ...r, leader: r.to });
        });
      },
    },
  },
  '/v1/cluster/snapshot': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        await ctx.jsonBody(true); // an optional empty JSON object; anything else is an error
        const r = await ctx.app.cluster.snapshotNow();
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, index: r.index });
      },
    },
  },
  '/v1/cluster/dump': {
    GET: {
      auth: 'reader',
      query: ['checksum'],
      handle: async (ctx) => {
        const kv = ctx.app.kv;
        const withChecksum = flag(ctx, 'checksum');
        // appliedIndex, revision and checksum are read in one tick, so they describe the same state.
        const body: Record<string, unknown> = { nodeName: ctx.app.cluster.nodeName, appliedIndex: kv.appliedIndex, revision: kv.revision };
        if (withChecksum) body['checksum'] = kv.checksum();
        ctx.json(200, body);
      },
    },
  },
  '/metrics': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        let text = ctx.app.cluster.metricsText();
        if (text !== '' && !text.endsWith('\n')) text += '\n';
        ctx.text(200, text + ctx.app.registry.text(), PROMETHEUS_CONTENT_TYPE);
      },
    },
  },
};
