// QuorateClient: the typed HTTP client of SPEC §4 (exported as `quorate/client`).
//
// Outcomes are never guessed (SPEC §1.4):
// - QuorateHttpError: a definite answer (4xx, 503 no_leader / quorum_not_met
//   after retries): nothing was applied by this call.
// - CommitUnknownError: 504 commit_unknown, or a connection lost after a write
//   was sent, still unresolved after retrying with the SAME Idempotency-Key.
// - UnavailableError: no URL answered at all (nothing was sent anywhere, or
//   only reads were).
// Every write carries one Idempotency-Key for all its attempts, so a retried
// write that had in fact committed returns the original result instead of
// being applied twice.
import { Election, LockHandle, QueueHandle } from './client-coord.js';
import { randomUUID } from 'node:crypto';
import { fetchTrusting } from './ca-fetch.js';
import {
  CommitUnknownError, QuorateClientError, QuorateHttpError, UnavailableError, errCode, errMessage,
  type ClusterDump, type ClusterHealth, type ClusterStatus, type Consistency, type FailoverSafeResult, type HealthKind, type HealthResult,
  type KvDeleteResult, type KvEntry, type KvListResult, type KvPutResult, type TxnRequest, type TxnResult, type WatchEvent,
} from './client-types.js';

export { CommitUnknownError, QuorateClientError, QuorateHttpError, UnavailableError } from './client-types.js';
export { Election, LockHandle, QueueHandle } from './client-coord.js';
export type { Claim, ClaimOutcome, ElectionLeadership, LockLease, QueueMessage, WorkOptions, Worker } from './client-coord.js';
export type {
  ClusterDump, ClusterHealth, ClusterHealthNode, ClusterStatus, Consistency, FailoverSafeResult, HealthKind, HealthResult,
  KvDeleteResult, KvEntry, KvListResult, KvPutResult, TxnCompare, TxnOp, TxnRequest, TxnResult, WatchEvent,
} from './client-types.js';

export interface QuorateClientOptions {
  /** Node API base URLs, tried in order; the one that answers is remembered. */
  readonly urls: readonly string[];
  /** Bearer token (roles admin / operator / reader). */
  readonly token?: string;
  /** Deadline for one call including all its retries. Default 10000. */
  readonly timeoutMs?: number;
  /** Retries of a write whose outcome is unknown (504, connection lost after sending). Default 3. */
  readonly commitUnknownRetries?: number;
  /** Retries after 503 / 429 (within the deadline). Default 8. */
  readonly busyRetries?: number;
  /** First backoff delay; doubles per retry up to 2000 ms. Default 50. */
  readonly backoffMs?: number;
  /**
   * CA certificates (PEM) to trust for https URLs, besides Node's default
   * store: the cluster CA's roots (`quorate ca export`) when nodes serve the
   * API with security.apiTls "auto". Ignored when `fetch` is given.
   */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Replaceable for tests. Default: global fetch. */
  readonly fetch?: typeof fetch;
}

interface RequestOptions {
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  /** A write: gets an Idempotency-Key reused on every attempt. */
  readonly write?: boolean;
  readonly idempotencyKey?: string;
  /** Return any HTTP answer instead of throwing on non-2xx (health checks). */
  readonly raw?: boolean;
  /** Added to the deadline (long-polls such as failover-safe?waitMs). */
  readonly extraMs?: number;
  /** Expect a text body. */
  readonly text?: boolean;
}

interface RawResponse { status: number; body: unknown; url: string; headers: Headers }

// Connection errors that prove the request never reached the server.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);

export class QuorateClient {
  readonly #urls: string[];
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #commitUnknownRetries: number;
  readonly #busyRetries: number;
  readonly #backoffMs: number;
  readonly #fetch: typeof fetch;
  #preferred = 0;

  constructor(options: QuorateClientOptions) {
    if (options.urls.length === 0) throw new QuorateClientError('invalid_argument', 'QuorateClient needs at least one URL');
    this.#urls = options.urls.map((u) => {
      let parsed: URL;
      try { parsed = new URL(u); } catch { throw new QuorateClientError('invalid_argument', `not a URL: ${JSON.stringify(u)} (expected e.g. http://127.0.0.1:7101)`); }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new QuorateClientError('invalid_argument', `not an http(s) URL: ${u}`);
      return u.replace(/\/+$/, '');
    });
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#commitUnknownRetries = options.commitUnknownRetries ?? 3;
    this.#busyRetries = options.busyRetries ?? 8;
    this.#backoffMs = options.backoffMs ?? 50;
    this.#fetch = options.fetch ?? (options.ca !== undefined ? fetchTrusting(options.ca) : globalThis.fetch);
  }

  /** The URL that answered last (tried first next time). */
  get currentUrl(): string { return this.#urls[this.#preferred]!; }
  get urls(): readonly string[] { return this.#urls; }

  // ---- health ----------------------------------------------------------

  health(kind: 'cluster'): Promise<ClusterHealth>;
  health(kind: HealthKind): Promise<HealthResult>;
  async health(kind: HealthKind | 'cluster'): Promise<HealthResult | ClusterHealth> {
    if (kind === 'cluster') return (await this.request<ClusterHealth>('GET', '/system/health/cluster')).body;
    const r = await this.request<HealthResult['body']>('GET', `/system/health/${kind}`, { raw: true });
    return { ok: r.status === 200, status: r.status, body: (r.body ?? {}) as HealthResult['body'], url: r.url };
  }

  // ---- kv --------------------------------------------------------------

  /** Undefined when the key does not exist. */
  async kvGet(key: string, options: { consistency?: Consistency } = {}): Promise<KvEntry | undefined> {
    try {
      const q = options.consistency !== undefined ? { consistency: options.consistency } : {};
      return (await this.request<KvEntry>('GET', `/v1/kv/${encodeKey(key)}`, { query: q })).body;
    } catch (err) {
      if (err instanceof QuorateHttpError && err.status === 404 && err.code === 'not_found') return undefined;
      throw err;
    }
  }

  async kvPut(key: string, value: string, options: { ifRevision?: number; ttlMs?: number; idempotencyKey?: string } = {}): Promise<KvPutResult> {
    const body: Record<string, unknown> = { value };
    if (options.ifRevision !== undefined) body['ifRevision'] = options.ifRevision;
    if (options.ttlMs !== undefined) body['ttlMs'] = options.ttlMs;
    return (await this.request<KvPutResult>('PUT', `/v1/kv/${encodeKey(key)}`, { body, write: true, ...idem(options) })).body;
  }

  async kvDelete(key: string, options: { ifRevision?: number; idempotencyKey?: string } = {}): Promise<KvDeleteResult> {
    const query = options.ifRevision !== undefined ? { ifRevision: options.ifRevision } : {};
    return (await this.request<KvDeleteResult>('DELETE', `/v1/kv/${encodeKey(key)}`, { query, write: true, ...idem(options) })).body;
  }

  async kvList(prefix = '', limit?: number, options: { consistency?: Consistency } = {}): Promise<KvListResult> {
    const r = await this.request<unknown>('GET', '/v1/kv', { query: { prefix, limit, consistency: options.consistency } });
    const b = r.body as Record<string, unknown> | unknown[];
    const items = Array.isArray(b) ? b : (b['items'] ?? b['kvs'] ?? b['entries'] ?? []);
    const out: KvListResult = { items: items as KvEntry[], raw: r.body };
    if (!Array.isArray(b) && typeof b['revision'] === 'number') out.revision = b['revision'];
    if (!Array.isArray(b) && typeof b['more'] === 'boolean') out.more = b['more'];
    return out;
  }

  async txn(request: TxnRequest, options: { idempotencyKey?: string } = {}): Promise<TxnResult> {
    return (await this.request<TxnResult>('POST', '/v1/kv/txn', { body: request, write: true, ...idem(options) })).body;
  }

  /**
   * Server-sent events of changes under `prefix`, from `fromRevision`. Reconnects
   * (rotating URLs) after a dropped stream, resuming after the last revision seen.
   * A definite refusal (4xx) stops the watch and is passed to `onError`.
   * Returns a function that closes the watch.
   */
  watch(prefix: string, fromRevision: number, onEvent: (event: WatchEvent) => void, options: { onError?: (err: Error) => void; reconnect?: boolean } = {}): () => void {
    const ctl = new AbortController();
    let next = fromRevision;
    let failures = 0;
    const run = async (): Promise<void> => {
      while (!ctl.signal.aborted) {
        const base = this.#urls[this.#preferred]!;
        const url = `${base}${buildPath('/v1/watch', { prefix, fromRevision: next })}`;
        try {
          const res = await this.#fetch(url, { headers: this.#headers({ accept: 'text/event-stream' }), signal: ctl.signal });
          if (res.status !== 200) {
            const body = await readBody(res, false);
            const err = httpError(res.status, body, base, res.headers);
            if (res.status < 500 && res.status !== 429) { options.onError?.(err); return; }
            throw err;
          }
          failures = 0;
          await parseSse(res, ctl.signal, (ev) => {
            let data: unknown = ev.data;
            try { data = JSON.parse(ev.data); } catch { /* keep text */ }
            const obj = (typeof data === 'object' && data !== null ? data : { value: data }) as Record<string, unknown>;
            const revision = typeof obj['revision'] === 'number' ? obj['revision'] : Number(ev.id);
            const event = { ...obj, type: typeof obj['type'] === 'string' ? obj['type'] : ev.event, key: String(obj['key'] ?? ''), revision } as WatchEvent;
            if (Number.isFinite(revision) && revision >= next) next = revision + 1;
            onEvent(event);
          });
        } catch (err) {
          if (ctl.signal.aborted) return;
          failures++;
          this.#preferred = (this.#preferred + 1) % this.#urls.length;
          if (options.onError && failures >= this.#urls.length) options.onError(err as Error);
        }
        if (options.reconnect === false || ctl.signal.aborted) return;
        await sleep(Math.min(2000, this.#backoffMs * 2 ** Math.min(failures, 6)), ctl.signal);
      }
    };
    void run();
    return () => ctl.abort();
  }

  // ---- application coordination (./client-coord.ts) ----------------------

  queue(name: string): QueueHandle { return new QueueHandle(this, name); }
  lock(name: string, owner?: string): LockHandle { return new LockHandle(this, name, owner); }
  election(name: string, options: { value?: string; ttlMs?: number } = {}): Election { return new Election(this, name, options); }

  // ---- cluster -----------------------------------------------------------

  async clusterStatus(): Promise<ClusterStatus> {
    return (await this.request<ClusterStatus>('GET', '/v1/cluster/status')).body;
  }

  async dump(options: { checksum?: boolean } = {}): Promise<ClusterDump> {
    return (await this.request<ClusterDump>('GET', '/v1/cluster/dump', { query: options.checksum ? { checksum: 1 } : {} })).body;
  }

  /** True when at least one voter is fully caught up with the leader (waits up to `waitMs`, at most 5000). */
  async failoverSafe(waitMs = 0): Promise<FailoverSafeResult> {
    const r = await this.request<Record<string, unknown>>('GET', '/v1/cluster/failover-safe', { query: { waitMs }, extraMs: waitMs });
    const b = r.body ?? {};
    const v = b['failoverSafe'] ?? b['safe'];
    return { safe: v === true, body: b };
  }

  /** A switchover now, or scheduled on the leader with `at` (ISO time with a zone, or "+10m"). */
  async switchover(to?: string, at?: string): Promise<Record<string, unknown>> {
    const body = { ...(to !== undefined ? { to } : {}), ...(at !== undefined ? { at } : {}) };
    return (await this.request<Record<string, unknown>>('POST', '/v1/cluster/switchover', { body, write: true })).body;
  }

  /** The switchover scheduled on the leader (`scheduled`: null when none) and the last one that ran. */
  async scheduledSwitchover(): Promise<Record<string, unknown>> {
    return (await this.request<Record<string, unknown>>('GET', '/v1/cluster/switchover')).body;
  }

  /** Cancels the scheduled switchover (404 not_found when none is scheduled). */
  async cancelSwitchover(): Promise<Record<string, unknown>> {
    return (await this.request<Record<string, unknown>>('DELETE', '/v1/cluster/switchover', { write: true })).body;
  }

  /** Prometheus text. */
  async metrics(): Promise<string> {
    return (await this.request<string>('GET', '/metrics', { text: true })).body;
  }

  // ---- core --------------------------------------------------------------

  /**
   * One API call with leader discovery, retries and the outcome rules above.
   * Public so tools can reach endpoints without a dedicated method.
   */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<{ status: number; body: T; url: string; headers: Headers }> {
    const deadline = Date.now() + this.#timeoutMs + (options.extraMs ?? 0);
    const key = options.write ? (options.idempotencyKey ?? randomUUID()) : undefined;
    const n = this.#urls.length;
    let index = this.#preferred;
    let attempts = 0;
    let unknown: { cause: unknown } | undefined; // a previous attempt of this write may have committed
    let unknownRetries = 0;
    let busyRetries = 0;
    let unreachable = 0; // consecutive URLs that did not answer
    let rounds = 0;
    let lastErr: unknown;

    const giveUp = (err: unknown): never => {
      if (unknown !== undefined && key !== undefined) {
        throw new CommitUnknownError(`outcome of ${method} ${path} is unknown after ${attempts} attempts: ${errMessage(err)}; retry with Idempotency-Key ${key} or read the data back`, key, attempts, { cause: err });
      }
      throw err;
    };

    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) giveUp(lastErr ?? new UnavailableError(this.#urls, { cause: new Error(`timed out after ${this.#timeoutMs} ms`) }));
      // A write attempt cut off by the deadline has an unknown outcome; one
      // started with almost no time left would turn a definite answer already
      // in hand (503: nothing applied) into that. Stop with the answer instead.
      if (lastErr !== undefined && key !== undefined && remaining < Math.min(MIN_ATTEMPT_MS, this.#timeoutMs / 4)) giveUp(lastErr);
      const base = this.#urls[index]!;
      attempts++;
      let res: RawResponse;
      try {
        res = await this.#send(method, base, path, options, key, remaining);
      } catch (err) {
        lastErr = err;
        const notSent = NOT_SENT.has(errCode(err));
        if (key !== undefined && !notSent) {
          // Sent (or maybe sent) and then lost: the write may have committed.
          unknown = { cause: err };
          if (++unknownRetries > this.#commitUnknownRetries) giveUp(err);
        }
        unreachable++;
        index = (index + 1) % n;
        if (unreachable >= n) {
          rounds++;
          unreachable = 0;
          if (rounds >= 3) giveUp(new UnavailableError(this.#urls, { cause: err }));
          await sleep(this.#backoff(rounds), undefined, deadline);
        }
        continue;
      }
      unreachable = 0;
      rounds = 0;

      if (res.status >= 200 && res.status < 300) {
        this.#preferred = index;
        return res as { status: number; body: T; url: string; headers: Headers };
      }
      if (options.raw) {
        this.#preferred = index;
        return res as { status: number; body: T; url: string; headers: Headers };
      }
      const err = httpError(res.status, res.body, base, res.headers);
      lastErr = err;
      if (res.status === 504 && key !== undefined) {
        unknown = { cause: err };
        if (++unknownRetries > this.#commitUnknownRetries) giveUp(err);
        await sleep(this.#backoff(unknownRetries), undefined, deadline);
        continue;
      }
      if (res.status === 503 || res.status === 429 || (res.status === 504 && key === undefined)) {
        if (++busyRetries > this.#busyRetries) giveUp(err);
        const wait = Math.max(this.#backoff(busyRetries), err.retryAfterMs ?? 0);
        if (Date.now() + wait >= deadline) giveUp(err);
        if (res.status !== 429) index = (index + 1) % n; // another node may know the leader
        await sleep(wait);
        continue;
      }
      // Definite answer. If an earlier attempt of this write was lost in
      // flight, the server's answer with the same key is authoritative.
      this.#preferred = index;
      throw err;
    }
  }

  #backoff(attempt: number): number {
    const d = Math.min(2000, this.#backoffMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(d / 2 + Math.random() * d / 2);
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', ...extra };
    if (this.#token !== undefined && this.#token !== '') h['authorization'] = `Bearer ${this.#token}`;
    return h;
  }

  async #send(method: string, base: string, path: string, options: RequestOptions, key: string | undefined, timeoutMs: number): Promise<RawResponse> {
    const headers = this.#headers(options.text ? { accept: 'text/plain' } : {});
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    if (key !== undefined) headers['idempotency-key'] = key;
    const init: RequestInit = { method, headers, signal: AbortSignal.timeout(Math.max(1, timeoutMs)) };
    if (body !== undefined) init.body = body;
    const res = await this.#fetch(`${base}${buildPath(path, options.query ?? {})}`, init);
    const parsed = await readBody(res, options.text === true);
    return { status: res.status, body: parsed, url: base, headers: res.headers };
  }
}

function idem(o: { idempotencyKey?: string }): { idempotencyKey?: string } {
  return o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {};
}

function encodeKey(key: string): string {
  if (key === '') throw new QuorateClientError('invalid_argument', 'key must not be empty');
  return key.split('/').map(encodeURIComponent).join('/');
}

function buildPath(path: string, query: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s === '' ? path : `${path}?${s}`;
}

async function readBody(res: Response, text: boolean): Promise<unknown> {
  const s = await res.text();
  if (text) return s;
  if (s === '') return null;
  try { return JSON.parse(s) as unknown; } catch { return s; }
}

function httpError(status: number, body: unknown, url: string, headers: Headers): QuorateHttpError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as { error?: unknown; message?: unknown };
  const code = typeof b.error === 'string' ? b.error : `http_${status}`;
  const message = typeof b.message === 'string' ? b.message : typeof body === 'string' && body !== '' ? body.slice(0, 200) : `HTTP ${status}`;
  const err = new QuorateHttpError(status, code, message, body, url);
  const ra = headers.get('retry-after');
  if (ra !== null) {
    const secs = Number(ra);
    const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(ra) - Date.now();
    if (Number.isFinite(ms) && ms >= 0) err.retryAfterMs = Math.min(ms, 60_000);
  }
  return err;
}

/** A retry of a write is not started with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 250;

function sleep(ms: number, signal?: AbortSignal, deadline?: number): Promise<void> {
  const d = deadline !== undefined ? Math.max(0, Math.min(ms, deadline - Date.now())) : ms;
  return new Promise((resolve) => {
    if (signal?.aborted) { resolve(); return; }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, d);
    const onAbort = () => { clearTimeout(t); resolve(); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Minimal text/event-stream parser (WHATWG HTML §9.2): dispatches on a blank line. */
async function parseSse(res: Response, signal: AbortSignal, onMessage: (m: { event: string; data: string; id: string }) => void): Promise<void> {
  if (res.body === null) return;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let event = '';
  let data: string[] = [];
  let id = '';
  const onAbort = () => { void reader.cancel().catch(() => undefined); };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(buf[nl] === '\r' && buf[nl + 1] === '\n' ? nl + 2 : nl + 1);
        if (line === '') {
          if (data.length > 0) onMessage({ event: event || 'message', data: data.join('\n'), id });
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // comment / keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') data.push(val);
        else if (field === 'event') event = val;
        else if (field === 'id') id = val;
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
