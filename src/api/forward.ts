// Forwarding to the leader: a non-leader passes writes and linearizable reads
// to the leader's API over keep-alive connections and relays its answer
// (status, body and the leader's X-Quorate-Served-By) unchanged.
//
// Outcome rules (SPEC §1.4):
// - the leader could not be reached (connect refused, DNS, ...): nothing was
//   sent, so nothing was applied -> 503 no_leader;
// - the connection failed after the request went out: a write may have been
//   applied -> 504 commit_unknown; a read -> 503 no_leader.
// - a request that already carries X-Quorate-Forwarded is never forwarded
//   again (two nodes that each think the other leads would loop).
import http from 'node:http';
import https from 'node:https';
import { ApiError } from './errors.js';
import { HEADER_FORWARDED, HEADER_FORWARD_AT, HEADER_FORWARD_SIG, HEADER_SERVED_BY } from './context.js';
import type { RequestContext } from './context.js';
import { HEADER_FORWARDED_FOR, clientAddress } from './guard.js';

// Error codes that prove the request never left this node.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ERR_INVALID_URL']);

const REQUEST_HEADERS = ['authorization', 'idempotency-key', 'content-type', 'accept', 'x-request-id', 'range', 'if-none-match'] as const;
const RESPONSE_HEADERS = ['content-type', 'content-length', 'retry-after', 'www-authenticate', 'allow', 'cache-control', 'etag', 'accept-ranges', 'content-range', 'last-modified', 'x-quorate-file-revision', HEADER_SERVED_BY] as const;

export interface ForwardOptions {
  /** A write: a failure after sending is commit_unknown, not no_leader. */
  readonly write: boolean;
  readonly timeoutMs: number;
  /** Stream the request body through as it arrives (replicated files), instead of reading it (bounded by MAX_BODY_BYTES) first. */
  readonly streamBody?: boolean;
}

export class Forwarder {
  readonly #http = new http.Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 16 });
  readonly #https = new https.Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 16 });
  /** The CA certificates an https leader is checked against (security.apiTls "auto": the cluster CA's roots too); default: Node's store. */
  readonly #trust: (() => readonly (string | Buffer)[]) | undefined;

  constructor(trust?: () => readonly (string | Buffer)[]) {
    this.#trust = trust;
  }

  destroy(): void {
    this.#http.destroy();
    this.#https.destroy();
  }

  /**
   * GET `url` (another member's API) with `headers`, over the same agents and
   * trust as forwarding; resolves with the status and the parsed JSON body,
   * rejects when it cannot be reached or does not answer in `timeoutMs`.
   */
  getJson(url: string, headers: Record<string, string>, timeoutMs: number): Promise<{ status: number; body: unknown }> {
    const target = new URL(url);
    const https_ = target.protocol === 'https:';
    const mod = https_ ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(target, {
        method: 'GET', headers: { accept: 'application/json', ...headers }, agent: https_ ? this.#https : this.#http, timeout: timeoutMs,
        ...(https_ && this.#trust !== undefined ? { ca: this.#trust() as (string | Buffer)[] } : {}),
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) as unknown });
          } catch {
            reject(new Error(`HTTP ${res.statusCode ?? 0} with a body that is not JSON`));
          }
        });
      });
      req.end();
    });
  }

  /**
   * Sends ctx's request (method, path and query, body, auth and idempotency
   * headers) to `leaderUrl` and streams the answer back. Rejects with an
   * ApiError only while nothing has been written to ctx.res.
   */
  async forward(ctx: RequestContext, leaderUrl: string, leaderName: string | undefined, options: ForwardOptions): Promise<void> {
    const stream = options.streamBody === true && ctx.method !== 'GET' && ctx.method !== 'HEAD';
    const body = stream || ctx.method === 'GET' || ctx.method === 'HEAD' ? Buffer.alloc(0) : await ctx.rawBody();
    const who = `${leaderName ?? 'the leader'} (${leaderUrl})`;
    let target: URL;
    try {
      target = new URL(`${leaderUrl.replace(/\/+$/, '')}${ctx.rawUrl}`);
    } catch {
      throw new ApiError('no_leader', `the leader's API URL ${JSON.stringify(leaderUrl)} is not usable; check advertiseApiUrl in its config and \`quorate status\``);
    }
    const forwardedFor = clientAddress(ctx);
    // Signed with the cluster secret: the leader trusts the client address (rate limits, audit) and this
    // node's name only from a current member, so a removed or isolated node cannot pose as one.
    const signed = ctx.app.security.signForward({ method: ctx.method, url: ctx.rawUrl, forwardedFor });
    const headers: Record<string, string> = {
      [HEADER_FORWARDED]: signed.node, [HEADER_FORWARD_AT]: String(signed.sentAt), [HEADER_FORWARD_SIG]: signed.signature,
      [HEADER_FORWARDED_FOR]: forwardedFor,
    };
    // A streamed body keeps the client's length (or goes chunked without one).
    const length = stream ? ctx.header('content-length') : String(body.length);
    if (length !== undefined) headers['content-length'] = length;
    for (const h of REQUEST_HEADERS) {
      const v = ctx.header(h);
      if (v !== undefined) headers[h] = v;
    }
    const https_ = target.protocol === 'https:';
    const mod = https_ ? https : http;

    await new Promise<void>((resolve, reject) => {
      let connected = false;
      let responded = false;
      const up = mod.request(target, {
        method: ctx.method, headers, agent: https_ ? this.#https : this.#http, timeout: options.timeoutMs,
        ...(https_ && this.#trust !== undefined ? { ca: this.#trust() as (string | Buffer)[] } : {}),
      });
      up.on('socket', (s) => {
        if (!s.connecting) connected = true;
        else s.once('connect', () => { connected = true; });
      });
      up.on('timeout', () => up.destroy(Object.assign(new Error(`no answer within ${options.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      up.on('response', (ur) => {
        responded = true;
        if (ctx.res.headersSent || ctx.res.destroyed) {
          // This node already answered (its body deadline expired: 408): drop the leader's late answer.
          ur.resume();
          resolve();
          return;
        }
        const out: Record<string, string> = { 'x-quorate-forwarded-by': ctx.app.cluster.nodeName };
        for (const h of RESPONSE_HEADERS) {
          const v = ur.headers[h];
          if (typeof v === 'string') out[h] = v;
        }
        ctx.servedBy = typeof ur.headers[HEADER_SERVED_BY] === 'string' ? ur.headers[HEADER_SERVED_BY] : (leaderName ?? leaderUrl);
        ctx.res.removeHeader(HEADER_SERVED_BY);
        ctx.res.writeHead(ur.statusCode ?? 502, out);
        ur.pipe(ctx.res);
        ur.on('end', () => resolve());
        ur.on('error', () => { ctx.res.destroy(); resolve(); });
        ur.on('aborted', () => { ctx.res.destroy(); resolve(); });
      });
      up.on('error', (err: NodeJS.ErrnoException) => {
        if (responded) {
          ctx.res.destroy();
          resolve();
          return;
        }
        const code = err.code ?? '';
        const why = code !== '' ? `${code}: ${err.message}` : err.message;
        if (!connected || NOT_SENT.has(code)) {
          reject(new ApiError('no_leader', `cannot reach ${who} (${why}); nothing was applied. Retry in a moment (an election may be in progress) and check \`quorate status\``, leaderName !== undefined ? { leaderName } : {}));
        } else if (options.write) {
          reject(new ApiError('commit_unknown', `${who} did not answer after the write was sent (${why}); it may or may not have been applied. Retry with the same Idempotency-Key, or read the key back`, leaderName !== undefined ? { leaderName } : {}));
        } else {
          reject(new ApiError('no_leader', `${who} did not answer (${why}); retry in a moment and check \`quorate status\``, leaderName !== undefined ? { leaderName } : {}));
        }
      });
      // The client went away: stop relaying (a write already sent stays sent).
      ctx.res.on('close', () => {
        if (!ctx.res.writableFinished) up.destroy();
      });
      if (stream) {
        // A client body that ends early (the client went away, or this node's idle deadline ended it) ends the
        // relay too, so that the leader aborts the upload now rather than at its own deadline.
        ctx.req.once('close', () => {
          if (!ctx.req.complete) up.destroy(Object.assign(new Error('the client\'s request body ended before it was complete'), { code: 'ECONNRESET' }));
        });
        ctx.req.pipe(up);
      }
      else up.end(body);
    });
  }
}
