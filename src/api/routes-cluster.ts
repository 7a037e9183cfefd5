// /v1/cluster/* and /metrics (SPEC §4 "Cluster administration").
import { PROMETHEUS_CONTENT_TYPE } from '../ops/metrics.js';
import { HISTORY_MAX_LIMIT, type HistoryRecord } from '../state/index.js';
import type { RequestContext, Route } from './context.js';
import { badField } from './errors.js';
import { onLeader, tryLocalThenLeader } from './leader.js';
import { modesBody } from './routes-health.js';
import { ApiError } from './errors.js';
import type { ClusterControl, ScheduledSwitchoverInfo, HoldChange, SettingChange, SwitchoverSchedulePort } from './ports.js';
import { parseSwitchover, parseSwitchoverAt } from './validate.js';

/** failover-safe waits at most this long. */
export const MAX_FAILOVER_WAIT_MS = 5000;

/** The certificates the node serves (src/node/certificates.ts), with their expiry and how long is left. */
function certificatesBody(cluster: ClusterControl): Record<string, unknown> {
  const certs = cluster.certificates?.();
  if (certs === undefined) return {};
  const now = Date.now();
  return { certificates: certs.map((c) => ({ ...c, expiresInSeconds: c.notAfter === null ? null : Math.floor((Date.parse(c.notAfter) - now) / 1000) })) };
}

export function clusterStatus(ctx: Pick<RequestContext, 'app'>): Record<string, unknown> {
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
    configWarnings: s.configWarnings ?? [],
    ...(s.vip ? { vip: s.vip } : {}),
    ...(s.fencingToken !== undefined ? { fencingToken: s.fencingToken } : {}),
    ...(s.raftTerm !== undefined ? { raftTerm: s.raftTerm } : {}),
    ...(s.witness ? { witness: { ...s.witness, waiting: s.witness.waiting ?? null, problem: s.witness.problem ?? null } } : {}),
    ...modesBody(ctx.app.cluster),
    ...certificatesBody(ctx.app.cluster),
    peers: s.peers.map((p) => ({
      drained: (ctx.app.cluster.modes().drained ?? []).includes(p.nodeName),
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
export function historyJson(r: HistoryRecord): Record<string, unknown> {
  const base = { seq: r.seq, index: r.index, at: new Date(r.at).toISOString(), kind: r.kind, term: r.term };
  if (r.kind === 'leader') {
    return { ...base, leaderId: r.leaderId, leaderName: r.leaderName, previousLeaderId: r.previousLeaderId ?? null, previousLeaderName: r.previousLeaderName ?? null, reason: r.reason };
  }
  if (r.kind === 'maintenance') {
    return { ...base, op: r.op, nodeName: r.nodeName ?? null, reason: r.reason ?? null, by: r.by, expiresAt: r.expiresAt !== undefined ? new Date(r.expiresAt).toISOString() : null };
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


/** A settings change on the leader (forwarded there), answered with the modes after it applied. */
/** Longest pause or drain (`expiresInMs`): 30 days. */
const MAX_HOLD_MS = 30 * 24 * 3_600_000;

/** The optional `reason` and `expiresInMs` of a pause or drain; the expiry becomes an absolute time on the node that proposes it (the leader). */
function holdOf(b: Record<string, unknown>): HoldChange {
  const reason = b['reason'];
  const ms = b['expiresInMs'];
  if (reason !== undefined && !(typeof reason === 'string' && reason.trim() !== '' && reason.length <= 500)) throw badField('reason', 'must be a non-empty text of at most 500 characters');
  if (ms !== undefined && !(typeof ms === 'number' && Number.isSafeInteger(ms) && ms >= 1000 && ms <= MAX_HOLD_MS)) throw badField('expiresInMs', `must be an integer in 1000..${MAX_HOLD_MS} (ms; at most 30 days)`);
  return { ...(reason !== undefined ? { reason: (reason as string).trim() } : {}), ...(ms !== undefined ? { expiresAt: Date.now() + (ms as number) } : {}) };
}

function settingRoute(parse: (body: Record<string, unknown>) => SettingChange, event: string): Route {
  return {
    auth: 'admin',
    query: [],
    handle: async (ctx) => {
      const change = parse(object((await ctx.jsonBody(true)) ?? {}));
      await onLeader(ctx, true, async () => {
        await ctx.app.cluster.proposeSetting(change);
        ctx.app.logger.info({ event, by: ctx.principal?.name, change }, `cluster setting changed: ${JSON.stringify(change)}`);
        ctx.json(200, { ...modesBody(ctx.app.cluster), leader: ctx.app.cluster.status().leaderName ?? null });
      }, ctx.app.forwardTimeoutMs + 10_000);
    },
  };
}

const SCHEDULE_NOTE = 'kept in the leader\'s memory: if leadership moves (or the leader loses its quorum) before the time, the schedule is cancelled and the old leader logs it';

function schedules(c: ClusterControl): SwitchoverSchedulePort {
  if (c.switchoverSchedule === undefined) throw new ApiError('not_found', 'this node does not support scheduled switchovers');
  return c.switchoverSchedule;
}

function scheduleJson(p: ScheduledSwitchoverInfo): Record<string, unknown> {
  return { to: p.to ?? null, at: new Date(p.at).toISOString(), inMs: Math.max(0, p.at - Date.now()), scheduledBy: p.scheduledBy ?? null, scheduledAt: new Date(p.scheduledAt).toISOString() };
}

/** Another node's status over the API, with the caller's token (undefined when it does not answer within 1 s). */
async function peerStatus(apiUrl: string, authorization: string | undefined): Promise<{ lastIndex: number; role: string } | undefined> {
  try {
    const r = await fetch(`${apiUrl.replace(/\/+$/, '')}/v1/cluster/status`, { headers: authorization !== undefined ? { authorization } : {}, signal: AbortSignal.timeout(1000) });
    if (!r.ok) return undefined;
    const b = (await r.json()) as { lastIndex?: unknown; role?: unknown };
    return typeof b.lastIndex === 'number' ? { lastIndex: b.lastIndex, role: String(b.role) } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * failover --approve NAME --term T (failover mode approval): refused (409
 * approval_mismatch, with this node's proposal) unless NAME and T are the
 * candidate and term this node computes from a fresh poll of the voters. On a
 * match: the candidate (undefined when this node is it, or the request was
 * forwarded here by another node, which then already forwarded it to the
 * candidate; this node checks again).
 */
async function approved(ctx: RequestContext, body: Record<string, unknown>): Promise<string | undefined> {
  const name = body['approve'];
  const term = body['term'];
  if (typeof name !== 'string' || name === '' || name.length > 256) throw badField('approve', 'must be the proposed candidate\'s node name (see `quorate status`)');
  if (typeof term !== 'number' || !Number.isSafeInteger(term) || term < 1) throw badField('term', 'must be the proposed term, a positive integer (see `quorate status`)');
  if (body['to'] !== undefined) throw badField('to', 'give either to or approve, not both');
  const cluster = ctx.app.cluster;
  const mode = cluster.modes();
  if (mode.failoverMode !== 'approval' || cluster.approval === undefined) {
    throw new ApiError('approval_mismatch', `the failover mode is ${mode.failoverMode}, not approval: there is nothing to approve; run \`quorate failover [--to NAME]\``);
  }
  const lead = cluster.status().leaderName;
  if (lead !== undefined) throw new ApiError('invalid_transfer', `${lead} leads (term ${cluster.status().term}); a failover is for when there is no leader`);
  const { proposal: p, mismatch: why } = await cluster.approval.check(name, term);
  if (why !== undefined) {
    ctx.app.logger.warn({ event: 'approval_refused', by: ctx.principal?.name, approve: name, term, candidate: p.candidate, proposedTerm: p.term }, `failover approval refused: ${why}`);
    throw new ApiError('approval_mismatch', why, { candidate: p.candidate, term: p.term, since: p.since, command: p.command });
  }
  ctx.app.logger.info({ event: 'approval_accepted', by: ctx.principal?.name, candidate: name, term }, `failover approved: ${name} stands for election (proposed term ${term})`);
  return name === cluster.nodeName ? undefined : name;
}

/** An approval probe from another voter (failover mode approval): authenticated by the cluster secret, not a token (src/node/approval.ts). */
const approvalProbe: Route = {
  auth: null,
  query: [],
  handle: async (ctx) => {
    const a = ctx.app.cluster.approval;
    if (a === undefined) throw new ApiError('not_found', 'this node does not answer approval probes');
    const info = a.probe(ctx.header('x-quorate-probe'));
    if (info === undefined) throw new ApiError('unauthorized', 'approval probes are for cluster members: missing, stale or wrong x-quorate-probe proof');
    ctx.json(200, info as Record<string, unknown>);
  },
};

export const clusterRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/cluster/approval-probe': { GET: approvalProbe },
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
        const { to, at } = parseSwitchover(await ctx.jsonBody(true));
        await tryLocalThenLeader(ctx, async () => {
          if (at !== undefined) {
            // Parsed here, on the leader: a relative time counts from its clock.
            const p = schedules(ctx.app.cluster).schedule(parseSwitchoverAt(at, Date.now())!, to, ctx.principal?.name);
            ctx.json(200, { scheduled: scheduleJson(p), leader: ctx.app.cluster.nodeName, note: SCHEDULE_NOTE });
            return;
          }
          const r = await ctx.app.cluster.switchover(to);
          ctx.app.logger.info({ from: r.from, to: r.to, term: r.term, pauseMs: r.pauseMs, by: ctx.principal?.name }, 'switchover done');
          ctx.json(200, { ...r, leader: r.to });
        });
      },
    },
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        await tryLocalThenLeader(ctx, async () => {
          const { scheduled, last } = schedules(ctx.app.cluster).current();
          ctx.json(200, {
            scheduled: scheduled === undefined ? null : scheduleJson(scheduled),
            lastRun: last === undefined ? null : { ...scheduleJson(last), outcome: last.outcome },
            leader: ctx.app.cluster.nodeName,
            now: new Date().toISOString(),
          });
        });
      },
    },
    DELETE: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        await tryLocalThenLeader(ctx, async () => {
          const p = schedules(ctx.app.cluster).cancel(ctx.principal?.name);
          if (p === undefined) throw new ApiError('not_found', `no switchover is scheduled on the leader ${ctx.app.cluster.nodeName}; see \`quorate switchover --show\``);
          ctx.json(200, { cancelled: scheduleJson(p), leader: ctx.app.cluster.nodeName });
        });
      },
    },
  },
  '/v1/cluster/failover': {
    POST: {
      auth: 'admin',
      query: [],
      handle: async (ctx) => {
        const body = object((await ctx.jsonBody(true)) ?? {});
        onlyKeys(body, ['to', 'approve', 'term']);
        const cluster = ctx.app.cluster;
        if (body['approve'] !== undefined || body['term'] !== undefined) {
          const target = await approved(ctx, body);
          if (target !== undefined) body['to'] = target;
        }
        const to = body['to'];
        if (to !== undefined && (typeof to !== 'string' || to === '' || to.length > 256)) throw badField('to', 'must be a voter\'s node name');
        const s = cluster.status();
        const voters = s.peers.filter((p) => p.role !== 'observer' && p.role !== 'dr' && p.role !== 'removed');
        const drained = new Set(cluster.modes().drained);
        let target: string;
        let chosen: Record<string, unknown> = {};
        if (to !== undefined) {
          if (!s.peers.some((p) => p.nodeName === to) && to !== cluster.nodeName) throw new ApiError('invalid_transfer', `no member named "${to}"; see \`quorate peers\` for names`);
          target = to;
        } else if (ctx.forwardedIn) {
          target = cluster.nodeName;
        } else {
          // The voter with the highest last index among those that answer (this node included).
          const auth = ctx.header('authorization');
          const seen = await Promise.all(voters.filter((p) => !drained.has(p.nodeName)).map(async (p) => ({
            nodeName: p.nodeName,
            st: p.self || p.nodeName === cluster.nodeName ? { lastIndex: s.lastIndex, role: s.role } : p.apiUrl !== undefined ? await peerStatus(p.apiUrl, auth) : undefined,
          })));
          const reachable = seen.filter((x) => x.st !== undefined).sort((a, b) => b.st!.lastIndex - a.st!.lastIndex || (a.nodeName === cluster.nodeName ? -1 : 0));
          if (reachable.length === 0) throw new ApiError('failover_failed', 'no voter answered; check that a majority of voters is running (`quorate status` on each node)');
          target = reachable[0]!.nodeName;
          chosen = { chosenBy: 'highest last index among reachable voters', candidates: reachable.map((x) => ({ nodeName: x.nodeName, lastIndex: x.st!.lastIndex })) };
        }
        if (target !== cluster.nodeName) {
          const peer = s.peers.find((p) => p.nodeName === target);
          if (peer?.apiUrl === undefined) throw new ApiError('failover_failed', `the API URL of ${target} is not known here; run the command against ${target} directly`);
          if (ctx.forwardedIn) throw new ApiError('failover_failed', 'the request was already forwarded once; run it against the target node directly');
          await ctx.app.forwarder.forward(ctx, peer.apiUrl, target, { write: false, timeoutMs: ctx.app.forwardTimeoutMs + 20_000 });
          return;
        }
        const r = await cluster.failoverHere();
        ctx.app.logger.info({ event: 'failover', by: ctx.principal?.name, ...r }, r.elected ? `failover: ${r.campaigned} was elected leader (term ${r.term})` : `failover: ${r.campaigned} stood for election; ${r.leader} leads (term ${r.term})`);
        ctx.json(200, { ...r, ...chosen });
      },
    },
  },
  '/v1/cluster/settings': {
    POST: settingRoute((b) => {
      onlyKeys(b, ['failover']);
      const v = b['failover'];
      if (v !== 'automatic' && v !== 'manual' && v !== 'approval') throw badField('failover', 'must be "automatic", "manual" or "approval"');
      return { key: 'failover', value: v };
    }, 'setting_changed'),
  },
  '/v1/cluster/pause': { POST: settingRoute((b) => (onlyKeys(b, ['reason', 'expiresInMs']), { key: 'paused', value: true, ...holdOf(b) }), 'paused') },
  '/v1/cluster/resume': { POST: settingRoute((b) => (onlyKeys(b, []), { key: 'paused', value: false }), 'resumed') },
  '/v1/cluster/drain': {
    POST: settingRoute((b) => {
      onlyKeys(b, ['nodeName', 'drained', 'reason', 'expiresInMs']);
      const n = b['nodeName'];
      if (typeof n !== 'string' || n === '' || n.length > 256) throw badField('nodeName', 'must be a member\'s node name');
      const d = b['drained'] ?? true;
      if (typeof d !== 'boolean') throw badField('drained', 'must be true or false');
      const hold = holdOf(b);
      if (!d && (hold.reason !== undefined || hold.expiresAt !== undefined)) throw badField(hold.reason !== undefined ? 'reason' : 'expiresInMs', 'applies to a drain, not to an undrain (drained: false)');
      return { key: 'drained', nodeName: n, value: d, ...hold };
    }, 'drain_changed'),
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
        // Replicated SQL: its content checksum, asked in the same tick (so at the same appliedIndex), computed off the loop.
        const sql = withChecksum ? ctx.app.sql?.checksum() : undefined;
        // Replicated files: the checksum of the listing (path, size, SHA-256, revision), asked in the same tick.
        const files = withChecksum ? ctx.app.files?.checksum() : undefined;
        if (sql !== undefined) body['sqlChecksum'] = (await sql).checksum;
        if (files !== undefined) body['filesChecksum'] = (await files).checksum;
        ctx.json(200, body);
      },
    },
  },
  '/metrics': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        let text = await ctx.app.cluster.metricsText();
        if (text !== '' && !text.endsWith('\n')) text += '\n';
        ctx.text(200, text + (await ctx.app.registry.text()), PROMETHEUS_CONTENT_TYPE);
      },
    },
  },
};
