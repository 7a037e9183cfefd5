// The HTTP API of one node (SPEC §4), on node:http (or node:https with
// security.apiTls). Routing, auth, error answers, request logging and HTTP
// metrics live here; the endpoints are in routes-*.ts and watch.ts.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MetricsRegistry } from '../ops/metrics.js';
import { TokenStore } from './auth.js';
import { DEFAULT_API_LIMITS, HEADER_SERVED_BY, RequestContext } from './context.js';
import { BodyDeadline } from './deadline.js';
import type { ApiLimits, App, Route } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { Forwarder } from './forward.js';
import { backupRoutes } from './routes-backup.js';
import { clusterRoutes } from './routes-cluster.js';
import { jobRoutes, matchJobPath } from './routes-jobs.js';
import { drRoutes } from './routes-dr.js';
import { witnessRoutes } from './routes-witness.js';
import { healthRoutes } from './routes-health.js';
import type { ClusterControl, DrControl, KvService, SqlService } from './ports.js';
import { kvKeyRoutes, kvListRoutes } from './routes-kv.js';
import { sqlRoutes } from './routes-sql.js';
import { FILES_PREFIX, filePathRoutes, filesListRoutes } from './routes-files.js';
import type { FilesService } from './ports-files.js';
import { decodeKey } from './validate.js';
import { watchRoutes } from './watch.js';
import { handleCors, uiRoute, uiRoutes } from './ui.js';
import { eventRoutes } from './events.js';
import { appStaticRoutes, matchApp } from './routes-app.js';
import type { AppCoordination } from './ports-app.js';
import { AuthFailureLimiter, DEFAULT_AUTH_LIMIT, type AuthLimitOptions } from './auth-limit.js';
import { auditAfter, checkForwarded, guard } from './guard.js';
import type { SecurityPort } from './ports-security.js';
import { auditRoutes, caRotateRoutes, caRoutes, tokenRoutes, tokensRoutes } from './routes-security.js';
import { opsRoutes } from './routes-ops.js';
import type { OpsPort } from './ports-ops.js';
import type { DrillPort } from './ports-drill.js';
import { drillRoutes } from './routes-drills.js';

export interface ApiServerOptions {
  /** This node and the cluster (src/api/ports.ts). */
  readonly cluster: ClusterControl;
  /** The replicated KV (src/api/ports.ts). */
  readonly kv: KvService;
  /** Queues, locks, outbox, application health checks (./ports-app.ts). */
  readonly coord?: AppCoordination;
  /** Managed tokens and the audit log (src/api/ports-security.ts). */
  readonly security: SecurityPort;
  /** Failed authentications per client address; unset fields keep DEFAULT_AUTH_LIMIT. */
  readonly authLimit?: Partial<AuthLimitOptions>;
  /** Replicated SQL (src/api/ports.ts); without it /v1/db answers 404. */
  readonly sql?: SqlService;
  /** Replicated files (src/api/ports-files.ts); without them /v1/files answers 404. */
  readonly files?: FilesService;
  /** DR promotion and isolation (src/api/ports.ts DrControl); absent: those routes answer 404. */
  readonly dr?: DrControl;
  /** Built-in alerts and the diagnostic bundle (./ports-ops.ts); absent: /v1/alerts and /v1/diagnostics answer 404. */
  readonly ops?: OpsPort;
  /** Drill faults and reports (./ports-drill.ts); absent: those routes answer 404. */
  readonly drills?: DrillPort;
  readonly host: string;
  readonly port: number;
  /** Where tokens live: `<dataDir>/admin.token` and `<dataDir>/tokens.json`. */
  readonly dataDir: string;
  /** security.adminTokenFile, read besides `<dataDir>/admin.token` when it is another file. */
  readonly adminTokenFile?: string;
  readonly logger: Logger;
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  /** CA certificates requests forwarded to an https leader are checked against (security.apiTls "auto": Node's store and the cluster CA's roots). */
  readonly trustCa?: () => readonly (string | Buffer)[];
  /** SSE heartbeat comment interval. Default 15000. */
  readonly watchHeartbeatMs?: number;
  /** How often token files are checked for changes. Default 1000. */
  readonly tokenCheckIntervalMs?: number;
  /** Deadline for a request forwarded to the leader. Default 30000. */
  readonly forwardTimeoutMs?: number;
  /** Resource bounds; unset fields keep DEFAULT_API_LIMITS. */
  readonly limits?: Partial<ApiLimits>;
}

/**
 * The API could not start: `key` names the config key to fix
 * (`node.apiAddress`, `security.apiTls.certFile`, `security.apiTls.keyFile`).
 */
export class ApiStartError extends Error {
  readonly code = 'api_start_failed';
  readonly key: string;
  constructor(key: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApiStartError';
    this.key = key;
  }
}

function readTlsFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : e.message;
    throw new ApiStartError(key, `${key}: cannot read ${JSON.stringify(file)} (${why}); the HTTP API cannot start over TLS without it. Fix the path or the file's permissions, or remove security.apiTls to serve plain HTTP`, { cause: err });
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): ApiStartError {
  const addr = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return new ApiStartError('node.apiAddress', `node.apiAddress ${addr} is already in use (EADDRINUSE): another process (or another quorate node) listens there; stop it or choose another port in node.apiAddress`, { cause: err });
    case 'EACCES':
      return new ApiStartError('node.apiAddress', `node.apiAddress ${addr}: permission denied (EACCES); ports below 1024 need privileges, choose a higher port`, { cause: err });
    case 'EADDRNOTAVAIL':
      return new ApiStartError('node.apiAddress', `node.apiAddress ${addr}: the address is not assigned to this host (EADDRNOTAVAIL); use one of its addresses, or 0.0.0.0`, { cause: err });
    default:
      return new ApiStartError('node.apiAddress', `node.apiAddress ${addr}: cannot listen (${err.code ?? 'error'}: ${err.message})`, { cause: err });
  }
}

export interface ApiServer {
  readonly port: number;
  close(): Promise<void>;
  /** Over HTTPS: serve new connections with this certificate and key (security.apiTls "auto" renews them). */
  setTlsCertificate(m: { readonly cert: string | Buffer; readonly key: string | Buffer }): void;
}

const STATIC: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  ...healthRoutes,
  ...clusterRoutes,
  ...backupRoutes,
  ...jobRoutes,
  ...drRoutes,
  ...witnessRoutes,
  '/v1/kv': kvListRoutes,
  ...sqlRoutes,
  '/v1/files': filesListRoutes,
  '/v1/watch': watchRoutes,
  ...uiRoutes,
  ...eventRoutes,
  ...appStaticRoutes,
  '/v1/tokens': tokensRoutes,
  '/v1/audit': auditRoutes,
  '/v1/ca': caRoutes,
  '/v1/cluster/ca/rotate': caRotateRoutes,
  ...opsRoutes,
  ...drillRoutes,
};

const TOKENS_PREFIX = '/v1/tokens/';

/** Every route and the role it needs (docs/security.md has this table; a test keeps them equal). */
export function routeTable(): { route: string; method: string; auth: string }[] {
  const all: Record<string, Readonly<Record<string, Route>>> = { ...STATIC, '/v1/kv/{key}': kvKeyRoutes('k'), '/v1/kv/txn': kvKeyRoutes('txn'), '/v1/tokens/{name}': tokenRoutes('n'), '/v1/files/{path}': filePathRoutes('p') };
  return Object.entries(all).flatMap(([route, methods]) => Object.entries(methods).map(([method, r]) => ({ route, method, auth: r.auth ?? 'none' })));
}

const KV_PREFIX = '/v1/kv/';

interface Match {
  readonly name: string;
  readonly methods: Readonly<Record<string, Route>>;
  readonly rawKey?: string;
}

function match(path: string): Match | undefined {
  const methods = STATIC[path];
  if (methods !== undefined) return { name: path, methods };
  // Keys first: most requests are KV calls, and no other route starts with this prefix.
  if (path.startsWith(KV_PREFIX)) {
    const rawKey = path.slice(KV_PREFIX.length);
    return { name: rawKey === 'txn' ? '/v1/kv/txn' : '/v1/kv/{key}', methods: kvKeyRoutes(rawKey), rawKey };
  }
  const app = matchApp(path);
  if (app !== undefined) return app;
  const job = matchJobPath(path);
  if (job !== undefined) return job;
  const ui = uiRoute(path);
  if (ui !== undefined) return { name: '/ui/', methods: { GET: ui } };
  if (path.startsWith(FILES_PREFIX)) return { name: '/v1/files/{path}', methods: filePathRoutes(path.slice(FILES_PREFIX.length)) };
  if (path.startsWith(TOKENS_PREFIX)) return { name: '/v1/tokens/{name}', methods: tokenRoutes(path.slice(TOKENS_PREFIX.length)) };
  return undefined;
}

function allowed(methods: Readonly<Record<string, Route>>): string {
  const m = Object.keys(methods);
  if (m.includes('GET')) m.push('HEAD');
  return m.join(', ');
}

async function dispatch(ctx: RequestContext): Promise<void> {
  if (handleCors(ctx)) return;
  const m = match(ctx.path);
  if (m === undefined) throw new ApiError('not_found', `no such endpoint: ${ctx.method} ${ctx.path.slice(0, 200)} (see docs/api.md)`);
  ctx.route = m.name;
  const route = m.methods[ctx.method] ?? (ctx.method === 'HEAD' ? m.methods['GET'] : undefined);
  if (route === undefined) {
    throw new ApiError('method_not_allowed', `${ctx.method} is not allowed on ${m.name}; allowed: ${allowed(m.methods)}`, {}, { allow: allowed(m.methods) });
  }
  if (ctx.app.closing) throw new ApiError('shutting_down', `${ctx.app.cluster.nodeName} is shutting down; retry on another node`, {}, { connection: 'close' });
  checkForwarded(ctx);
  guard(ctx, m.name, route);
  if (route.query !== undefined) ctx.checkQuery(route.query);
  if (ctx.app.cluster.isRemoved() && (m.name.startsWith('/v1/kv') || m.name.startsWith('/v1/db') || m.name.startsWith('/v1/files') || m.name === '/v1/watch')) {
    throw new ApiError('removed', `${ctx.app.cluster.nodeName} was removed from the cluster and serves no data; use another node (\`quorate peers\` on a member lists them)`);
  }
  const key = m.rawKey !== undefined ? decodeKey(m.rawKey) : undefined;
  await route.handle(ctx, key);
}

function fail(ctx: RequestContext, err: unknown): void {
  const { error, internalCause } = toApiError(err);
  ctx.errorCode = error.code;
  if (internalCause !== undefined) {
    ctx.app.logger.error({ err: internalCause, method: ctx.method, path: ctx.path }, 'internal error while serving a request');
  }
  const res = ctx.res;
  if (res.headersSent || res.destroyed) {
    // Too late for an error body: cut the response so the client sees it failed.
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { ...error.headers };
  // Close instead of keeping the connection alive when the client is not
  // trusted (401/403) or its body was not (fully) read: keep-alive would mean
  // reading and discarding whatever it still sends, at its pace.
  if (error.status === 401 || error.status === 403 || error.code === 'body_too_large') ctx.closeConnection();
  ctx.json(error.status, error.body(), headers);
}

function logRequest(ctx: RequestContext): void {
  const ms = Math.round((performance.now() - ctx.startedMs) * 10) / 10;
  const status = ctx.res.statusCode;
  const app = ctx.app;
  app.requests.inc({ method: ctx.method, route: ctx.route, status: String(status) });
  app.durations.observe(ms / 1000, { route: ctx.route });
  // Probes of health endpoints answer 503 by design (a standby is not the leader): not worth a warning.
  const failed = status >= 400 && !ctx.route.startsWith('/system/health/');
  if (!failed && !app.logger.isLevelEnabled('debug')) return; // the line is not built for every request
  const line = { method: ctx.method, path: ctx.path.slice(0, 512), status, ms, servedBy: ctx.servedBy, ...(ctx.principal ? { token: ctx.principal.name } : {}) };
  if (failed) app.logger.warn(line, 'request failed');
  else app.logger.debug(line, 'request');
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { cluster, kv } = opts;
  const logger = opts.logger.child({ component: 'api' });
  const registry = new MetricsRegistry();
  const limits: ApiLimits = { ...DEFAULT_API_LIMITS, ...opts.limits };
  // Read (and check) TLS material before anything else, naming the key on failure.
  const tls = opts.tls ? { cert: readTlsFile('security.apiTls.certFile', opts.tls.certFile), key: readTlsFile('security.apiTls.keyFile', opts.tls.keyFile) } : undefined;
  const forwarder = new Forwarder(opts.trustCa);
  const adminTokenFiles = [join(opts.dataDir, 'admin.token')];
  const configured = opts.adminTokenFile ?? '';
  if (configured !== '' && configured !== adminTokenFiles[0]) adminTokenFiles.push(configured);
  const app: App = {
    cluster,
    kv,
    coord: opts.coord,
    ...(opts.sql !== undefined ? { sql: opts.sql } : {}),
    ...(opts.files !== undefined ? { files: opts.files } : {}),
    ...(opts.dr !== undefined ? { dr: opts.dr } : {}),
    ...(opts.ops !== undefined ? { ops: opts.ops } : {}),
    ...(opts.drills !== undefined ? { drills: opts.drills } : {}),
    logger,
    tokens: new TokenStore({ tokensFile: join(opts.dataDir, 'tokens.json'), adminTokenFiles, logger, checkIntervalMs: opts.tokenCheckIntervalMs ?? 1000, replicated: (d) => opts.security.verifyToken(d) }),
    security: opts.security,
    authLimiter: new AuthFailureLimiter({ ...DEFAULT_AUTH_LIMIT, ...opts.authLimit }, logger),
    forwarder,
    heartbeatMs: opts.watchHeartbeatMs ?? 15_000,
    forwardTimeoutMs: opts.forwardTimeoutMs ?? 30_000,
    limits,
    watches: new Set(),
    watchesByToken: new Map(),
    registry,
    requests: registry.counter('quorate_http_requests_total', 'HTTP API requests answered, by method, route and status.', ['method', 'route', 'status']),
    durations: registry.histogram('quorate_http_request_duration_seconds', 'HTTP API request latency by route (watch streams: their whole life).', [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], ['route']),
    closing: false,
  };
  if (app.tokens.size === 0 && opts.security.listTokens().length === 0) {
    logger.warn({ dataDir: opts.dataDir }, 'no API tokens configured (admin.token / tokens.json in the data dir, none replicated): every authenticated call will get 401; run `quorate init`');
  }

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const ctx = new RequestContext(app, req, res);
    res.setHeader(HEADER_SERVED_BY, cluster.nodeName);
    const deadline = new BodyDeadline(req, limits.requestTimeoutMs, (why) => {
      // The body did not arrive in time: answer 408 (when nothing was answered yet) and close the connection.
      logger.warn({ event: 'request_timeout', method: ctx.method, path: ctx.path, bytesRead: req.socket.bytesRead }, `the request body did not arrive in time (${why}); connection closed`);
      if (res.headersSent || res.destroyed) {
        req.socket.destroy();
        return;
      }
      ctx.errorCode = 'request_timeout';
      ctx.closeConnection();
      ctx.json(408, { error: 'request_timeout', message: `the request did not arrive in time (expected ${why}); connection closed. Check the client's network, or send large uploads steadily` });
      // Node stops feeding a request whose response is done without erroring its body: end the handler's read of it
      // once the socket closes (the client read the 408, or closeLingerMs passed), so an upload is aborted, not left waiting.
      req.socket.once('close', () => {
        if (!req.destroyed) req.destroy(Object.assign(new Error(`the request body did not arrive in time (${why})`), { code: 'request_timeout' }));
      });
    });
    ctx.deadline = deadline;
    res.once('close', () => deadline.stop());
    let logged = false;
    const log = (): void => {
      if (logged) return;
      logged = true;
      logRequest(ctx);
      auditAfter(ctx);
    };
    res.on('finish', log);
    res.on('close', log);
    dispatch(ctx).then(
      () => {
        if (!res.headersSent && !res.destroyed) fail(ctx, new Error(`handler of ${ctx.method} ${ctx.route} sent no response`));
      },
      (err: unknown) => fail(ctx, err),
    );
  };

  // headersTimeout bounds how long a client may take to SEND its request line
  // and headers (Node answers 408 via clientError); the body's deadline is
  // ours, per request (./deadline.ts: the whole body within requestTimeoutMs,
  // or for streamed uploads no idle gap over streamIdleTimeoutMs). Neither
  // covers the response, so watch streams and long polls are not cut. Node's
  // deadline is checked every timeoutCheckIntervalMs (its default, 30 s, is
  // too coarse).
  const serverOptions: http.ServerOptions = {
    requestTimeout: 0,
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
  };
  let server: http.Server;
  if (tls !== undefined) {
    try {
      server = https.createServer({ ...serverOptions, cert: tls.cert, key: tls.key }, onRequest);
    } catch (err) {
      const msg = (err as Error).message;
      const key = /key/i.test(msg) && !/certificate/i.test(msg) ? 'security.apiTls.keyFile' : 'security.apiTls.certFile';
      throw new ApiStartError(key, `security.apiTls.certFile / security.apiTls.keyFile: ${JSON.stringify(opts.tls!.certFile)} and ${JSON.stringify(opts.tls!.keyFile)} are not a usable PEM certificate and private key pair (${msg}); the HTTP API cannot start over TLS`, { cause: err });
    }
  } else {
    server = http.createServer(serverOptions, onRequest);
  }
  // Longer than a forwarding node's idle keep-alive sockets (Node's agent honours this hint).
  server.keepAliveTimeout = 10_000;
  // Excess connections are closed as soon as they are accepted.
  server.maxConnections = limits.maxConnections;
  let dropped = 0;
  let dropWarnedMs = -Infinity;
  server.on('drop', () => {
    dropped++;
    const now = Date.now();
    if (now - dropWarnedMs < 10_000) return;
    dropWarnedMs = now;
    logger.warn({ event: 'api_connections_refused', refused: dropped, maxConnections: limits.maxConnections }, `refused ${dropped} connection(s): ${limits.maxConnections} are open (the limit per node)`);
    dropped = 0;
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Never write a raw answer into a response that has already started.
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !socket.destroyed && inFlight?.headersSent !== true) {
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const body = JSON.stringify(
        timeout
          ? { error: 'request_timeout', message: `the request did not arrive in time (headers within ${limits.headersTimeoutMs} ms); connection closed` }
          : { error: 'invalid_request', message: `malformed HTTP request (${err.code ?? 'parse error'})` },
      );
      socket.end(`HTTP/1.1 ${timeout ? '408 Request Timeout' : '400 Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      const t = setTimeout(() => socket.destroy(), limits.closeLingerMs);
      t.unref();
      socket.once('close', () => clearTimeout(t));
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      forwarder.destroy();
      reject(listenError(err, opts.host, opts.port));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'HTTP API server error'));
  const port = (server.address() as AddressInfo).port;
  logger.info({ host: opts.host, port, tls: opts.tls !== undefined }, 'HTTP API listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        app.closing = true;
        for (const stop of [...app.watches]) stop();
        const force = setTimeout(() => server.closeAllConnections(), 2000);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          forwarder.destroy();
          logger.info('HTTP API closed');
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
    setTlsCertificate(m): void {
      if (!(server instanceof https.Server)) throw new Error('the HTTP API is not served over TLS (security.apiTls is not set)');
      server.setSecureContext({ cert: m.cert, key: m.key });
      logger.info({ event: 'api_tls_certificate' }, 'HTTP API certificate replaced');
    },
  };
}
