// The dashboard (SPEC §4 `GET /ui/`): its static assets, built from web/ by
// scripts/build-web.mjs into dist/web, served without auth (the page holds no
// data; every data call it makes carries the operator's bearer token), with a
// strict Content-Security-Policy; plus the two calls only the page needs:
// `GET /v1/auth/whoami` (which actions to offer) and `GET /v1/cluster/views`
// (every member's own status, gathered by the serving node, with its age).
// Cross-origin calls are allowed from member API origins only (corsHeaders),
// so a page whose node died carries on through another member.
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError } from './errors.js';
import type { RequestContext, Route } from './context.js';
import { clusterStatus } from './routes-cluster.js';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

interface Asset { readonly body: Buffer; readonly type: string }

/** dist/web, next to dist/src (this file is dist/src/api/ui.js). */
export const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));

let assets: ReadonlyMap<string, Asset> | undefined;

/** The built assets, read once; empty when the dashboard was not built (the page then says how to build it). */
function loadAssets(): ReadonlyMap<string, Asset> {
  if (assets !== undefined) return assets;
  const m = new Map<string, Asset>();
  try {
    for (const name of readdirSync(WEB_DIR)) {
      const type = TYPES[extname(name)];
      if (type !== undefined) m.set(name, { body: readFileSync(join(WEB_DIR, name)), type });
    }
  } catch {
    // not built: handled by the route
  }
  assets = m;
  return m;
}

/** API origins of the members this node knows (for CORS and the page's connect-src). */
export function memberOrigins(ctx: RequestContext): string[] {
  const out = new Set<string>();
  for (const p of ctx.app.cluster.status().peers) {
    if (p.apiUrl === undefined || p.apiUrl === '') continue;
    try {
      out.add(new URL(p.apiUrl).origin);
    } catch {
      // an unusable URL is simply not allowed
    }
  }
  return [...out];
}

/**
 * CORS for the dashboard's failover: a request whose Origin is a member's API
 * origin may read the answer and send Authorization. Any other origin gets no
 * CORS headers (the browser then withholds the answer). Returns true when the
 * request was a preflight and has been answered.
 */
export function handleCors(ctx: RequestContext): boolean {
  const origin = ctx.header('origin');
  if (origin === undefined) return false;
  if (!memberOrigins(ctx).includes(origin)) return false;
  const res = ctx.res;
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('vary', 'Origin');
  res.setHeader('access-control-expose-headers', 'x-quorate-served-by, retry-after');
  if (ctx.method !== 'OPTIONS' || ctx.header('access-control-request-method') === undefined) return false;
  res.writeHead(204, {
    'access-control-allow-methods': 'GET, POST, PUT, DELETE',
    'access-control-allow-headers': 'authorization, content-type, idempotency-key',
    'access-control-max-age': '600',
  });
  res.end();
  return true;
}

function csp(ctx: RequestContext): string {
  const connect = ["'self'", ...memberOrigins(ctx)].join(' ');
  return `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src ${connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
}

const NOT_BUILT = '<!doctype html><meta charset="utf-8"><title>quorate</title><p>The dashboard is not built in this installation: run <code>npm run build</code> in the quorate checkout (it bundles web/ into dist/web), then reload.</p>';

function serveAsset(ctx: RequestContext, name: string): void {
  const all = loadAssets();
  const a = all.get(name);
  const headers: Record<string, string> = {
    'content-security-policy': csp(ctx),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cache-control': name === 'index.html' ? 'no-store' : 'no-cache',
  };
  if (a === undefined) {
    if (name === 'index.html' && all.size === 0) {
      ctx.res.writeHead(503, { ...headers, 'content-type': TYPES['.html']! });
      ctx.res.end(NOT_BUILT);
      return;
    }
    throw new ApiError('not_found', `no such dashboard file: ${name.slice(0, 100)}`);
  }
  ctx.res.writeHead(200, { ...headers, 'content-type': a.type, 'content-length': String(a.body.length) });
  ctx.res.end(ctx.method === 'HEAD' ? undefined : a.body);
}

const UI_FILE = /^[a-z0-9-]+\.(js|css|svg|map)$/;

/** Routes under /ui/ (matched by prefix in server.ts): `/ui` redirects, `/ui/` is the page. */
export function uiRoute(path: string): Route | undefined {
  if (path === '/ui') {
    return { auth: null, handle: async (ctx) => { ctx.res.writeHead(308, { location: '/ui/' }); ctx.res.end(); } };
  }
  if (!path.startsWith('/ui/')) return undefined;
  const rest = path.slice(4);
  if (rest !== '' && !UI_FILE.test(rest)) return undefined;
  return { auth: null, handle: async (ctx) => serveAsset(ctx, rest === '' ? 'index.html' : rest) };
}

interface NodeView {
  readonly nodeName: string;
  readonly apiUrl: string | null;
  readonly ok: boolean;
  /** That node's own GET /v1/cluster/status, when it answered. */
  readonly status?: unknown;
  readonly error?: string;
  /** When the answer arrived (ISO) and how long it took. */
  readonly at: string;
  readonly ms: number;
}

async function viewOf(name: string, apiUrl: string, authorization: string | undefined): Promise<NodeView> {
  const t0 = performance.now();
  try {
    const r = await fetch(`${apiUrl.replace(/\/+$/, '')}/v1/cluster/status`, {
      headers: authorization !== undefined ? { authorization } : {},
      signal: AbortSignal.timeout(1500),
    });
    const body = (await r.json()) as Record<string, unknown>;
    const ms = Math.round(performance.now() - t0);
    if (!r.ok) return { nodeName: name, apiUrl, ok: false, error: `${r.status} ${String(body['error'] ?? '')}: ${String(body['message'] ?? '')}`, at: new Date().toISOString(), ms };
    return { nodeName: name, apiUrl, ok: true, status: body, at: new Date().toISOString(), ms };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const why = e.name === 'TimeoutError' ? 'no answer within 1500 ms' : e.cause?.code ?? e.message;
    return { nodeName: name, apiUrl, ok: false, error: `unreachable (${why})`, at: new Date().toISOString(), ms: Math.round(performance.now() - t0) };
  }
}

export const uiRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/auth/whoami': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => ctx.json(200, { name: ctx.principal!.name, role: ctx.principal!.role, nodeName: ctx.app.cluster.nodeName }),
    },
  },
  '/v1/cluster/views': {
    GET: {
      auth: 'reader',
      query: [],
      handle: async (ctx) => {
        const self = ctx.app.cluster.status();
        const authorization = ctx.header('authorization');
        const views = await Promise.all(self.peers.map((p) => {
          if (p.self) return Promise.resolve<NodeView>({ nodeName: p.nodeName, apiUrl: p.apiUrl ?? null, ok: true, status: clusterStatus(ctx), at: new Date().toISOString(), ms: 0 });
          if (p.apiUrl === undefined || p.apiUrl === '') return Promise.resolve<NodeView>({ nodeName: p.nodeName, apiUrl: null, ok: false, error: 'its API URL is not known yet', at: new Date().toISOString(), ms: 0 });
          return viewOf(p.nodeName, p.apiUrl, authorization);
        }));
        ctx.json(200, { servedBy: ctx.app.cluster.nodeName, at: new Date().toISOString(), views });
      },
    },
  },
};
