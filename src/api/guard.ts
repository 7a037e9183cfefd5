// Per request, around the route: authentication with the failed-auth limit
// (./auth-limit.ts), and the audit of operator/admin actions (SPEC §4
// `/v1/audit`). The rule of what is audited is here, once:
//
//   every call of a route that needs the operator or admin role, other than
//   GET/HEAD, other than the data (/v1/kv*, /v1/watch, /v1/queues*, /v1/locks*,
//   /v1/outbox): writes are not audited one by one. Authenticated calls refused for their role (403) are audited
//   too; calls without a valid token (401) are not (they would let anyone
//   flood the bounded log): they are rate-limited and logged.
//
// The node that executes the call records it; a node that only forwards the
// call to the leader does not (the leader records it, with the client's
// address as the forwarding node reported it, "via" that node).
import type { RequestContext, Route } from './context.js';
import { HEADER_FORWARDED, HEADER_FORWARD_AT, HEADER_FORWARD_SIG } from './context.js';
import type { Principal, Role } from './auth.js';
import { ApiError } from './errors.js';

/** Set by a forwarding node: the address of the client it serves. */
export const HEADER_FORWARDED_FOR = 'x-quorate-forwarded-for';

const DATA_ROUTES = /^\/v1\/(kv|watch|queues|locks|outbox)(\/|$)/;

/**
 * A call that says another node forwarded it must prove that node is a
 * current member: the forwarder's name, send time, request line and client
 * address are signed with the cluster secret. A removed node, or an isolated
 * one (the secret was rotated when it was isolated), cannot sign, so it can
 * neither pose as a member nor pass a made-up client address (rate limits and
 * the audit log trust that address). Refused with 403 before the token is checked.
 */
export function checkForwarded(ctx: RequestContext): void {
  const node = ctx.header(HEADER_FORWARDED);
  if (node === undefined) return;
  const at = Number(ctx.header(HEADER_FORWARD_AT));
  const sig = ctx.header(HEADER_FORWARD_SIG) ?? '';
  const claim = { node, sentAt: Number.isSafeInteger(at) ? at : -1, method: ctx.method, url: ctx.rawUrl, forwardedFor: ctx.header(HEADER_FORWARDED_FOR) ?? '' };
  if (!ctx.app.security.verifyForward(claim, sig)) {
    throw new ApiError('forbidden', `this request says a cluster member (${JSON.stringify(node.slice(0, 64))}) forwarded it, but it is not signed with this cluster's secret: it comes from a removed or isolated node, a node of another cluster, or a node whose clock is more than 5 minutes off. Send requests to a member directly, without the ${HEADER_FORWARDED} header`);
  }
}

/** Where the call came from: the socket's address, or for a forwarded call the client's as the forwarding node saw it, "via" that node. */
export function clientAddress(ctx: RequestContext): string {
  const socket = ctx.req.socket.remoteAddress ?? 'unknown';
  if (ctx.req.headers[HEADER_FORWARDED] === undefined) return socket;
  const f = ctx.header(HEADER_FORWARDED_FOR);
  return f === undefined ? socket : `${f.slice(0, 100)} via ${socket}`;
}

/** The audited action of a route, or undefined when calls of it are not audited. */
export function auditedAction(method: string, routeName: string, auth: Role | null): string | undefined {
  if (auth !== 'operator' && auth !== 'admin') return undefined;
  if (method === 'GET' || method === 'HEAD' || DATA_ROUTES.test(routeName)) return undefined;
  return `${method} ${routeName}`;
}

/** Checks the caller's token for `route` (429 while its address is over the failed-auth limit) and notes the audited action. */
export function guard(ctx: RequestContext, routeName: string, route: Route): void {
  ctx.auditAction = auditedAction(ctx.method, routeName, route.auth);
  if (route.auth === null) return;
  const app = ctx.app;
  const socket = ctx.req.socket.remoteAddress ?? 'unknown';
  app.authLimiter.check(socket);
  const header = ctx.header('authorization');
  try {
    ctx.principal = app.tokens.authorize(header, route.auth);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'unauthorized') {
      app.authLimiter.failed(socket);
      app.logger.info({ event: 'auth_failed', address: socket, method: ctx.method, path: ctx.path.slice(0, 200) }, 'authentication failed');
    } else if (err instanceof ApiError && err.code === 'forbidden') {
      // Known token, role too low: audit who tried.
      const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
      const p: Principal | undefined = m === null ? undefined : app.tokens.verify(m[1]!);
      if (p !== undefined) ctx.principal = p;
    }
    throw err;
  }
}

/** After the answer: records the audit entry of an audited call this node executed. */
export function auditAfter(ctx: RequestContext): void {
  const action = ctx.auditAction;
  if (action === undefined || ctx.principal === undefined) return;
  // Forwarded to the leader (which records it): another node served it.
  if (ctx.servedBy !== ctx.app.cluster.nodeName) return;
  const status = ctx.res.statusCode;
  ctx.app.security.recordAudit({
    actor: ctx.principal.name,
    action,
    target: ctx.auditTarget ?? auditTargetOf(ctx.parsedBody),
    address: clientAddress(ctx),
    status,
    result: status < 400 ? 'ok' : (ctx.errorCode ?? String(status)),
    detail: auditDetailOf(ctx.parsedBody),
  });
}

/** What an audited call acted on, from its JSON body: the fields that name it (never secrets). */
export function auditTargetOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const o = body as Record<string, unknown>;
  for (const k of ['nodeName', 'name', 'to', 'apiUrl']) {
    const v = o[k];
    if (typeof v === 'string' && v !== '') return v.slice(0, 256);
  }
  return undefined;
}

const SECRET_KEY = /token|secret|password|key|cert/i;

/** The call's JSON body without anything that may be a secret, compact (at most 512 characters). */
export function auditDetailOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const kept = Object.fromEntries(Object.entries(body as Record<string, unknown>).filter(([k]) => !SECRET_KEY.test(k)));
  if (Object.keys(kept).length === 0) return undefined;
  const text = JSON.stringify(kept);
  return text.length > 512 ? `${text.slice(0, 511)}…` : text;
}
