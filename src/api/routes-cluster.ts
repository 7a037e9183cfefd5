// /v1/cluster/* and /metrics (SPEC §4 "Cluster administration").
import { PROMETHEUS_CONTENT_TYPE } from '../ops/metrics.js';
import { HISTORY_MAX_LIMIT, type HistoryRecord } from '../state/index.js';
import type { RequestContext, Route } from './context.js';
import { badField } from './errors.js';
import { onLeader, tryLocalThenLeader } from './leader.js';
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

/** `limit` of GET /v1/cluster/history: at most the largest bound (cluster.historyMax). */
export const MAX_HISTORY_LIMIT = HISTORY_MAX_LIMIT;

/** A history record as JSON: `at` as an ISO time, absent optionals as null. */
function historyJson(r: HistoryRecord): Record<string, unknown> {
  const base = { seq: r.seq, index: r.index, at: new Date(r.at).toISOString(), kind: r.kind, term: r.term };
  if (r.kind === 'leader') {
    return { ...base, leaderId: r.leaderId, leaderName: r.leaderName, previousLeaderId: r.previousLeaderId ?? null, previousLeaderName: r.previousLeaderName ?? null, reason: r.reason };
  }
  return { ...base, op: r.op, nodeId: r.nodeId, nodeName: r.nodeName ?? null, role: r.role ?? null, confIndex: r.confIndex };
}

/** Join tokens live at most this long (and 10 minutes by default). */
export const MAX_JOIN_TOKEN_TTL_MS = 24 * 3600_000;

function object(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badField('body', 'must be a JSON object');
  return v as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw badField(k, `unknown field (allowed: ${keys.join(', ')})`);
}

function httpUrl(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !/^https?:\/\/[^\s/]+:\d{1,5}\/?$/.test(v)) throw badField(k, 'must be an http(s) URL with a port, e.g. "http://10.0.1.13:7101"');
  return v.replace(/\/+$/, '');
}

function peerAddress(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !/^([a-z][a-z0-9+.-]*:\/\/)?[^\s/]+:\d{1,5}\/?$/i.test(v)) throw badField(k, 'must be the node\'s advertisePeerUrl, e.g. "https://10.0.1.13:5201"');
  return v;
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
  '/v1/cluster/join-tokens': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const body = object((await ctx.jsonBody(true)) ?? {});
        onlyKeys(body, ['ttlMs']);
        const ttl = body['ttlMs'];
        if (ttl !== undefined && !(typeof ttl === 'number' && Number.isSafeInteger(ttl) && ttl >= 1000 && ttl <= MAX_JOIN_TOKEN_TTL_MS)) {
          throw badField('ttlMs', `must be an integer in 1000..${MAX_JOIN_TOKEN_TTL_MS} (ms)`);
        }
        await onLeader(ctx, true, async () => {
          const t = ctx.app.cluster.createJoinToken(ttl as number | undefined);
          ctx.app.logger.info({ event: 'join_token_created', by: ctx.principal?.name, expiresAt: t.expiresAt }, 'join token created');
          ctx.json(200, { ...t, leader: ctx.app.cluster.nodeName });
        });
      },
    },
  },
  '/v1/cluster/enroll': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const body = object(await ctx.jsonBody());
        onlyKeys(body, ['apiUrl', 'peerUrl', 'role', 'force']);
        const apiUrl = httpUrl(body, 'apiUrl');
        const peerUrl = peerAddress(body, 'peerUrl');
        const role = body['role'] ?? 'voter';
        if (role !== 'voter' && role !== 'observer' && role !== 'dr') throw badField('role', 'must be "voter", "observer" or "dr"');
        const force = body['force'] ?? false;
        if (typeof force !== 'boolean') throw badField('force', 'must be true or false');
        await onLeader(ctx, true, async () => {
          const r = await ctx.app.cluster.enroll({ apiUrl, peerUrl, role, force });
          ctx.app.logger.info({ event: 'enrolled', by: ctx.principal?.name, nodeName: r.nodeName, nodeId: r.nodeId, role }, `enrolled ${r.nodeName}`);
          ctx.json(200, { ...r, leader: ctx.app.cluster.nodeName });
        }, ctx.app.forwardTimeoutMs + 30_000);
      },
    },
  },
  '/v1/cluster/remove': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const body = object(await ctx.jsonBody());
        onlyKeys(body, ['nodeName']);
        const nodeName = body['nodeName'];
        if (typeof nodeName !== 'string' || nodeName === '' || nodeName.length > 256) throw badField('nodeName', 'must be a member\'s node name');
        await onLeader(ctx, true, async () => {
          const r = await ctx.app.cluster.removeMember(nodeName);
          ctx.app.logger.info({ event: 'removed', by: ctx.principal?.name, nodeName, nodeId: r.nodeId }, r.message);
          ctx.json(200, { ...r, leader: ctx.app.cluster.nodeName });
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
  '/v1/cluster/history': {
    GET: {
      auth: 'reader',
      query: ['limit'],
      handle: async (ctx) => {
        // This node's applied state: a follower may lag the leader by what it has not applied yet (see appliedIndex).
        const limit = ctx.intParam('limit', 1, MAX_HISTORY_LIMIT);
        const h = ctx.app.cluster.clusterHistory(limit);
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, appliedIndex: h.appliedIndex, records: h.records.map(historyJson) });
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
