// Per-server state (App) and per-request helpers (RequestContext): reading
// and size-limiting bodies, JSON parsing, query parsing and answering.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Counter, Histogram, MetricsRegistry } from '../ops/metrics.js';
import type { Principal, Role, TokenStore } from './auth.js';
import type { AuthFailureLimiter } from './auth-limit.js';
import type { SecurityPort } from './ports-security.js';
import type { DrillPort } from './ports-drill.js';
import { ApiError, badField } from './errors.js';
import type { BodyDeadline } from './deadline.js';
import type { Forwarder } from './forward.js';
import type { AppCoordination } from './ports-app.js';
import type { ClusterControl, DrControl, KvService, SqlService } from './ports.js';
import type { OpsPort } from './ports-ops.js';
import type { FilesService } from './ports-files.js';

/** Largest request body accepted (a 1 MiB value JSON-escaped fits). */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;

/**
 * Resource bounds of one API server (SPEC §4 hardening). Not config keys:
 * ApiServerOptions.limits overrides them (tests use small values).
 */
export interface ApiLimits {
  /** Open watch streams per node; more answer 429 too_many_watches. */
  readonly maxWatches: number;
  /** Open watch streams per token (by its name) on this node. */
  readonly maxWatchesPerToken: number;
  /** A watch whose unsent bytes (socket buffer + queued events) pass this is closed. */
  readonly watchMaxBufferedBytes: number;
  /** A watch with more live events queued than this (not yet written) is closed. */
  readonly watchMaxQueuedEvents: number;
  /** Concurrent TCP connections; excess connections are closed on accept. */
  readonly maxConnections: number;
  /** Request line and headers must arrive within this (408). */
  readonly headersTimeoutMs: number;
  /** The whole request (headers and body) must arrive within this (408). Responses (watch streams) are not limited. */
  readonly requestTimeoutMs: number;
  /** Streamed uploads (PUT /v1/files/*, POST /v1/cluster/restore) instead answer 408 when no byte of the body arrives for this long (files.uploadIdleTimeoutMs). */
  readonly streamIdleTimeoutMs: number;
  /** How often the header/request deadlines are checked (Node's connectionsCheckingInterval). */
  readonly timeoutCheckIntervalMs: number;
  /** After an error answered with Connection: close, the socket is destroyed at the latest this long after the answer was flushed. */
  readonly closeLingerMs: number;
}

export const DEFAULT_API_LIMITS: ApiLimits = {
  maxWatches: 256,
  maxWatchesPerToken: 64,
  watchMaxBufferedBytes: 8 * 1024 * 1024,
  watchMaxQueuedEvents: 10_000,
  maxConnections: 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  streamIdleTimeoutMs: 60_000,
  timeoutCheckIntervalMs: 1000,
  closeLingerMs: 2000,
};

export const HEADER_SERVED_BY = 'x-quorate-served-by';
export const HEADER_FORWARDED = 'x-quorate-forwarded';
/** The forwarding node's send time (ms since the epoch) and its HMAC over the forward (src/node/security.ts forwardSignature). */
export const HEADER_FORWARD_AT = 'x-quorate-forward-at';
export const HEADER_FORWARD_SIG = 'x-quorate-forward-signature';

export interface App {
  /** This node and the cluster: identity, status, switchover, failover-safe, snapshot, metrics. */
  readonly cluster: ClusterControl;
  /** The replicated KV: reads, writes, linearizable read barrier. */
  readonly kv: KvService;
  /** Queues, locks, outbox, application health checks (./ports-app.ts); undefined on a server without them. */
  readonly coord: AppCoordination | undefined;
  /** Replicated SQL (/v1/db); absent on servers built without it (API tests with a fake node). */
  readonly sql?: SqlService;
  /** Replicated files (/v1/files); absent on servers built without them. */
  readonly files?: FilesService;
  /** DR promotion and isolation, when the server was given them. */
  readonly dr?: DrControl;
  /** Built-in alerts and the diagnostic bundle (./ports-ops.ts), when the server was given them. */
  readonly ops?: OpsPort;
  /** Drill faults and reports, when the server was given them. */
  readonly drills?: DrillPort;
  readonly logger: Logger;
  readonly tokens: TokenStore;
  /** Managed tokens and the audit log (./ports-security.ts). */
  readonly security: SecurityPort;
  /** Failed authentications per client address (./auth-limit.ts). */
  readonly authLimiter: AuthFailureLimiter;
  readonly forwarder: Forwarder;
  readonly heartbeatMs: number;
  readonly forwardTimeoutMs: number;
  readonly limits: ApiLimits;
  /** Stops every open watch stream (used by close()); its size is the open watch count. */
  readonly watches: Set<() => void>;
  /** Open watch streams by token name. */
  readonly watchesByToken: Map<string, number>;
  readonly registry: MetricsRegistry;
  readonly requests: Counter;
  readonly durations: Histogram;
  closing: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class RequestContext {
  readonly app: App;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  /** Raw (still percent-encoded) path, without the query. */
  readonly path: string;
  /** Raw request target (path and query), as forwarded. */
  readonly rawUrl: string;
  #query: URLSearchParams | undefined;
  /** The query string's parameters (parsed at first use: most requests have none). */
  get query(): URLSearchParams {
    if (this.#query === undefined) {
      const q = this.rawUrl.indexOf('?');
      this.#query = new URLSearchParams(q < 0 ? '' : this.rawUrl.slice(q + 1));
    }
    return this.#query;
  }
  readonly startedMs = performance.now();
  principal: Principal | undefined;
  /** Name of the node that answered (the leader's, when forwarded). */
  servedBy: string;
  /** Route template for logs and metrics. */
  route = 'unmatched';
  /** The audited action of this call (./guard.ts), what it acted on, the error code answered, the parsed JSON body. */
  auditAction: string | undefined;
  auditTarget: string | undefined;
  errorCode: string | undefined;
  parsedBody: unknown;
  /** The deadline for receiving the body (set by the server). */
  deadline: BodyDeadline | undefined;
  #body: Promise<Buffer> | undefined;

  constructor(app: App, req: IncomingMessage, res: ServerResponse) {
    this.app = app;
    this.req = req;
    this.res = res;
    this.method = (req.method ?? 'GET').toUpperCase();
    this.rawUrl = req.url ?? '/';
    const q = this.rawUrl.indexOf('?');
    this.path = q < 0 ? this.rawUrl : this.rawUrl.slice(0, q);
    this.servedBy = app.cluster.nodeName;
  }

  /**
   * This route streams a body of any size (an upload): from now on the body
   * has no total deadline, only an idle one (no byte for streamIdleTimeoutMs
   * while the handler waits for one).
   */
  streamedBody(): void {
    this.deadline?.toIdle(this.app.limits.streamIdleTimeoutMs);
  }

  /** True when another node forwarded this request here. */
  get forwardedIn(): boolean {
    return this.req.headers[HEADER_FORWARDED] !== undefined;
  }

  header(name: string): string | undefined {
    const v = this.req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  }

  /** The request body, at most MAX_BODY_BYTES (413 body_too_large past that, without reading the rest). */
  rawBody(): Promise<Buffer> {
    this.#body ??= readBody(this.req, MAX_BODY_BYTES);
    return this.#body;
  }

  /**
   * The body parsed as JSON. Content-Type must be application/json when there
   * is a body; `optional` bodies may be empty (then undefined).
   */
  async jsonBody(optional = false): Promise<unknown> {
    const buf = await this.rawBody();
    if (buf.length === 0) {
      if (optional) return undefined;
      throw new ApiError('invalid_json', 'request body is empty; send a JSON object with Content-Type: application/json');
    }
    const ct = this.header('content-type') ?? '';
    if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(ct)) {
      throw new ApiError('invalid_content_type', `Content-Type must be application/json, got ${ct === '' ? 'none' : JSON.stringify(ct.slice(0, 100))}`);
    }
    let text: string;
    try {
      text = utf8.decode(buf);
    } catch {
      throw new ApiError('invalid_json', 'request body is not valid UTF-8');
    }
    try {
      this.parsedBody = JSON.parse(text) as unknown;
      return this.parsedBody;
    } catch (err) {
      throw new ApiError('invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
    }
  }

  /** Rejects query parameters the route does not know (a typo like `ifrevision` must not be ignored). */
  checkQuery(allowed: readonly string[]): void {
    if (this.#query === undefined && !this.rawUrl.includes('?')) return;
    for (const k of this.query.keys()) {
      if (!allowed.includes(k)) {
        throw badField(k, `unknown query parameter${allowed.length > 0 ? ` (allowed: ${allowed.join(', ')})` : ' (this endpoint takes none)'}`);
      }
    }
  }

  /** Non-negative integer query parameter, or undefined when absent. */
  intParam(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = this.query.get(name);
    if (v === null) return undefined;
    const n = /^\d{1,16}$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? (min === 0 ? 'a non-negative integer' : `an integer >= ${min}`) : `an integer in ${min}..${max}`;
      throw badField(name, `must be ${range}, got ${JSON.stringify(v.slice(0, 40))}`);
    }
    return n;
  }

  /** `consistency` query parameter: linearizable (default) or stale. */
  consistency(): 'linearizable' | 'stale' {
    const v = this.query.get('consistency');
    if (v === null || v === 'linearizable') return 'linearizable';
    if (v === 'stale') return 'stale';
    throw badField('consistency', `must be linearizable or stale, got ${JSON.stringify(v.slice(0, 40))}`);
  }

  /** The request has a body that has not been received completely (so answering now would leave it to drain). */
  get bodyUnread(): boolean {
    const h = this.req.headers;
    const hasBody = h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
    return hasBody && !this.req.complete;
  }

  /**
   * Answer with `Connection: close`: Node ends the socket once the answer is
   * flushed, without reading the rest of the request body. A client that
   * keeps sending may hold the socket half-open, so it is destroyed
   * closeLingerMs after the answer was flushed at the latest.
   */
  closeConnection(): void {
    const res = this.res;
    if (res.headersSent || res.getHeader('connection') === 'close') return;
    res.setHeader('connection', 'close');
    const socket = this.req.socket;
    const linger = this.app.limits.closeLingerMs;
    res.once('finish', () => {
      if (socket.destroyed) return;
      const t = setTimeout(() => socket.destroy(), linger);
      t.unref();
      socket.once('close', () => clearTimeout(t));
    });
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    // A body we did not read (e.g. an error answered before reading it): do
    // not keep the connection alive to drain it at the client's pace.
    if (this.bodyUnread) this.closeConnection();
    const text = JSON.stringify(body);
    this.res.writeHead(status, {
      ...headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
      'cache-control': 'no-store',
    });
    this.res.end(text);
  }

  text(status: number, body: string, contentType: string): void {
    if (this.bodyUnread) this.closeConnection();
    this.res.writeHead(status, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
    this.res.end(body);
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(tooLarge(limit, `Content-Length ${declared}`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    const finish = (err: Error | undefined): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err !== undefined) reject(err);
      else resolve(Buffer.concat(chunks, total));
    };
    const onData = (c: Buffer): void => {
      total += c.length;
      if (total > limit) {
        // Stop buffering at once; the response closes the connection.
        req.pause();
        finish(tooLarge(limit, `more than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (err: Error): void => finish(err);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(limit: number, what: string): ApiError {
  return new ApiError('body_too_large', `request body is ${what}; the limit is ${limit} bytes (2 MiB)`, { limitBytes: limit });
}

/** One method of one resource. `auth` null = no token needed (health probes). */
export interface Route {
  readonly auth: Role | null;
  /** Allowed query parameters; undefined = not checked. */
  readonly query?: readonly string[];
  handle(ctx: RequestContext, key: string | undefined): Promise<void>;
}
