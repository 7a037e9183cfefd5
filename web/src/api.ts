// The dashboard's only way to the cluster: the HTTP API with the operator's
// bearer token (kept in sessionStorage, never in a URL). Calls go to the node
// that served the page; when it stops answering, to the next member whose API
// URL the last status listed (members allow each other's origins, src/api/ui.ts).

export interface PeerView {
  readonly id: number;
  readonly nodeName: string;
  readonly role: string;
  readonly status: string;
  readonly apiUrl: string | null;
  readonly matchIndex: number;
  readonly replicationLagEntries: number;
  readonly replicationLagMs: number;
  readonly lastContact: string | null;
  readonly self: boolean;
  readonly drained: boolean;
}

export interface Status {
  readonly nodeName: string;
  readonly haId: string;
  readonly role: string;
  readonly raftRole: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly quorumMet: boolean;
  readonly votersReachable: number;
  readonly votersTotal: number;
  readonly failureTolerance: number;
  readonly storageHealthy: boolean;
  readonly storageError: string | null;
  readonly splitBrainWarning: string | null;
  readonly version: string;
  readonly failoverMode: string;
  readonly paused: boolean;
  readonly drained?: readonly string[];
  /** The pause's reason and expiry, when given (ISO times). */
  readonly pause?: HoldView;
  /** Drained nodes' reasons and expiries, for those given one. */
  readonly drains?: Readonly<Record<string, HoldView>>;
  readonly notice?: string;
  readonly configWarnings: readonly string[];
  /** The certificates the node serves, with their expiry (src/node/certificates.ts). */
  readonly certificates?: readonly CertView[];
  readonly peers: readonly PeerView[];
}

export interface CertView {
  readonly cert: string;
  readonly source: 'auto' | 'file';
  readonly file: string | null;
  /** ISO time it stops being valid (null: unreadable, see error). */
  readonly notAfter: string | null;
  readonly error?: string;
}

export interface HoldView { readonly reason: string | null; readonly since: string; readonly expiresAt: string | null; readonly expiresInMs: number | null }

export interface NodeView {
  readonly nodeName: string;
  readonly apiUrl: string | null;
  readonly ok: boolean;
  readonly status?: Status;
  readonly error?: string;
  readonly at: string;
  readonly ms: number;
}

export interface Views { readonly servedBy: string; readonly at: string; readonly views: readonly NodeView[] }

export interface HistoryRecord {
  readonly seq: number;
  readonly index: number;
  readonly at: string;
  readonly kind: string;
  readonly term: number;
  readonly leaderName?: string;
  readonly previousLeaderName?: string | null;
  readonly reason?: string;
  readonly op?: string;
  readonly nodeName?: string;
  readonly role?: string;
  readonly [k: string]: unknown;
}

export interface Whoami { readonly name: string; readonly role: 'reader' | 'operator' | 'admin'; readonly nodeName: string }

/** An answer other than 2xx: the API's error code and message. */
export class ApiFailure extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly body: Record<string, unknown>) {
    super(message);
  }
}

const TOKEN_KEY = 'quorate.token';

export const session = {
  token(): string | null { return sessionStorage.getItem(TOKEN_KEY); },
  set(token: string): void { sessionStorage.setItem(TOKEN_KEY, token); },
  clear(): void { sessionStorage.removeItem(TOKEN_KEY); },
};

/** Where calls go: '' is the page's own node; others are members' API origins. */
export class Connection {
  #base = '';
  #others: string[] = [];
  /** Set when calls go to another node than the page's because the page's stopped answering. */
  failedOver: string | null = null;

  /** Members' API URLs from the newest status (for failover). */
  learn(urls: readonly (string | null)[]): void {
    this.#others = urls.filter((u): u is string => u !== null && u !== '').map((u) => new URL(u).origin);
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const candidates = [this.#base, ...(this.#base === '' ? [] : ['']), ...this.#others.filter((o) => o !== this.#base && o !== location.origin)];
    let lastErr: unknown;
    for (const base of candidates) {
      try {
        const r = await this.#once(base, method, path, body);
        if (base !== this.#base) {
          this.#base = base;
          this.failedOver = base === '' ? null : base;
        }
        return r as T;
      } catch (err) {
        if (err instanceof ApiFailure) throw err;
        lastErr = err;
        // A write that may have reached a node is not retried elsewhere: its outcome is unknown.
        if (method !== 'GET') throw new ApiFailure(0, 'commit_unknown', `no answer from ${base || 'this node'}: the action may or may not have been carried out; check the cluster before retrying`, {});
      }
    }
    throw new ApiFailure(0, 'unreachable', `no node answers (${String((lastErr as Error)?.message ?? lastErr)})`, {});
  }

  /** One call to a given member's API origin (CORS allows member origins), without failover. */
  async callOn<T>(apiUrl: string, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const base = new URL(apiUrl).origin;
    return (await this.#once(base === location.origin ? '' : base, method, path, body, timeoutMs)) as T;
  }

  /**
   * Follows GET /v1/events of the node calls go to now, calling onEvent for
   * each event, until `signal` aborts; reconnects (through whichever node
   * answers calls then) a second after the stream ends or fails.
   */
  async follow(onEvent: (type: string, data: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const r = await fetch(`${this.#base}/v1/events`, { headers: { authorization: `Bearer ${session.token() ?? ''}` }, signal });
        if (r.ok && r.body !== null) {
          const dec = new TextDecoder();
          let buf = '';
          const reader = r.body.getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += dec.decode(value, { stream: true });
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const type = /^event: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (type !== undefined && data !== undefined) onEvent(type, JSON.parse(data) as Record<string, unknown>);
            }
          }
        }
      } catch {
        // the node went away or the page is leaving: retry below unless aborted
      }
      await new Promise((res) => setTimeout(res, 1000));
    }
  }

  async #once(base: string, method: string, path: string, body: unknown, timeoutMs?: number): Promise<unknown> {
    const headers: Record<string, string> = { authorization: `Bearer ${session.token() ?? ''}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs ?? (method === 'GET' ? 3000 : 30000)),
    });
    const text = await r.text();
    let parsed: Record<string, unknown> = {};
    try { parsed = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>); } catch { parsed = { message: text.slice(0, 200) }; }
    if (!r.ok) throw new ApiFailure(r.status, String(parsed['error'] ?? r.status), String(parsed['message'] ?? r.statusText), parsed);
    return parsed;
  }
}
