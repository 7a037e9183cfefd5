// /v1/tokens and /v1/audit (SPEC §4 "Cluster administration"): managed API
// tokens and the audit log, over the node's SecurityPort (./ports-security.ts).
import type { RequestContext, Route } from './context.js';
import { ROLES, type Role } from './auth.js';
import { ApiError, badField } from './errors.js';
import { onLeader } from './leader.js';

/** Names of managed tokens (as src/state/tokens.ts TOKEN_NAME_RE). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Names used by file tokens: `admin` (admin.token) is reserved. */
const RESERVED = new Set(['admin']);
/** Longest ttl: ten years. */
export const MAX_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600;
/** `limit` of GET /v1/audit. */
export const MAX_AUDIT_LIMIT = 20_000;

function object(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badField('body', 'must be a JSON object');
  return v as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw badField(k, `unknown field (allowed: ${keys.join(', ')})`);
}

export function checkTokenName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string' || !NAME_RE.test(v)) throw badField(field, 'must be 1-64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit');
  return v;
}

function parseCreate(body: Record<string, unknown>): { name: string; role: Role; ttlMs: number | undefined } {
  onlyKeys(body, ['name', 'role', 'ttlSeconds']);
  const name = checkTokenName(body['name']);
  if (RESERVED.has(name)) throw badField('name', `"${name}" is the name of the bootstrap token (admin.token); choose another`);
  const role = body['role'];
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw badField('role', 'must be "reader", "operator" or "admin"');
  const ttl = body['ttlSeconds'];
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS)) {
    throw badField('ttlSeconds', `must be an integer in 1..${MAX_TOKEN_TTL_SECONDS} (seconds), or absent for a token that does not expire`);
  }
  return { name, role: role as Role, ttlMs: ttl === undefined ? undefined : (ttl as number) * 1000 };
}

export const tokensRoutes: Readonly<Record<string, Route>> = {
  GET: {
    auth: 'admin',
    query: [],
    handle: async (ctx) => {
      ctx.json(200, { nodeName: ctx.app.cluster.nodeName, tokens: ctx.app.security.listTokens() });
    },
  },
  POST: {
    auth: 'admin',
    query: [],
    handle: async (ctx) => {
      const req = parseCreate(object(await ctx.jsonBody()));
      await onLeader(ctx, true, async () => {
        const created = await ctx.app.security.createToken({ ...req, createdBy: ctx.principal?.name ?? '' });
        ctx.json(201, { token: created.token, ...created.info, notice: 'the token is shown only now: store it safely; it cannot be shown again (revoke it and create another if it is lost)' });
      });
    },
  },
};

/** DELETE /v1/tokens/{name}. */
export function tokenRoutes(rawName: string): Readonly<Record<string, Route>> {
  return {
    DELETE: {
      auth: 'admin',
      query: [],
      handle: async (ctx: RequestContext) => {
        let decoded: string;
        try {
          decoded = decodeURIComponent(rawName);
        } catch {
          throw badField('name', 'is not valid percent-encoding');
        }
        const name = checkTokenName(decoded);
        await onLeader(ctx, true, async () => {
          const revoked = await ctx.app.security.revokeToken(name);
          if (!revoked) throw new ApiError('not_found', `no token named "${name}" (\`quorate token ls\` lists them; tokens of tokens.json and admin.token are changed in those files)`);
          ctx.json(200, { name, revoked: true });
        });
      },
    },
  };
}

export const auditRoutes: Readonly<Record<string, Route>> = {
  GET: {
    auth: 'admin',
    query: ['limit'],
    handle: async (ctx) => {
      // This node's applied state (see appliedIndex), as for the cluster history.
      const limit = ctx.intParam('limit', 1, MAX_AUDIT_LIMIT);
      const a = ctx.app.security.audit(limit);
      ctx.json(200, { nodeName: ctx.app.cluster.nodeName, appliedIndex: a.appliedIndex, seq: a.seq, records: a.records });
    },
  },
  // Node to node: an audit entry recorded on another node, signed with the cluster secret.
  POST: {
    auth: null,
    query: [],
    handle: async (ctx) => {
      const sig = ctx.header('x-quorate-audit-signature');
      if (sig === undefined) throw new ApiError('unauthorized', 'POST /v1/audit is for the cluster\'s nodes: entries must be signed with the cluster secret (x-quorate-audit-signature)');
      const body = await ctx.rawBody();
      if (!ctx.app.security.acceptForwardedAudit(body, sig)) throw new ApiError('forbidden', 'the audit entry\'s signature, send time or fields are not valid (nodes of one cluster share the cluster secret; clocks must agree within 5 minutes)');
      ctx.json(202, { accepted: true });
    },
  },
};

/** GET /v1/ca: the cluster CA's roots trusted now (public certificates; what `quorate ca export` writes for clients' --ca). */
export const caRoutes: Readonly<Record<string, Route>> = {
  GET: {
    auth: 'reader',
    query: [],
    handle: async (ctx) => {
      const ca = ctx.app.security.caInfo?.();
      if (ca === undefined) {
        throw new ApiError('not_found', `node ${ctx.app.cluster.nodeName} does not use the automatic cluster CA: security.tls is not "auto", or every peer is on loopback (plain TCP); with your own PKI ({"certFile","keyFile","caFile"}) clients trust your caFile`);
      }
      ctx.json(200, { nodeName: ctx.app.cluster.nodeName, ...ca, bundle: ca.roots.map((r) => r.pem).join('') });
    },
  },
};

/**
 * POST /v1/cluster/ca/rotate (admin, audited): move the cluster CA to its next epoch without isolating anyone
 * (src/node/ca-rotate.ts). Runs on the leader (forwarded there); 409 while a member runs an older release
 * (feature level 4) or the previous rotation's grace is open.
 */
export const caRotateRoutes: Readonly<Record<string, Route>> = {
  POST: {
    auth: 'admin',
    query: [],
    handle: async (ctx) => {
      const b = await ctx.jsonBody(true);
      if (b !== undefined && (typeof b !== 'object' || b === null || Array.isArray(b) || Object.keys(b).length > 0)) throw badField('body', 'must be empty or {}');
      const rotate = ctx.app.security.caRotate;
      if (ctx.app.security.caInfo?.() === undefined || rotate === undefined) {
        throw new ApiError('not_found', `node ${ctx.app.cluster.nodeName} does not use the automatic cluster CA: security.tls is not "auto", or every peer is on loopback (plain TCP) and apiTls is not "auto"; there is no root to rotate`);
      }
      await onLeader(ctx, true, async () => {
        const r = await rotate.call(ctx.app.security);
        ctx.app.logger.warn({ event: 'ca_rotated', by: ctx.principal?.name, epoch: r.epoch }, r.message);
        ctx.json(200, { ...r, leader: ctx.app.cluster.nodeName });
      });
    },
  },
};
