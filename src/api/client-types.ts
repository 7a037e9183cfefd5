// The client library's result types and error classes (re-exported by
// ./client.ts, the public `quorate/client`), and how a failed request's cause
// is described. Kept apart for size.

export type Consistency = 'linearizable' | 'stale';
export type HealthKind = 'ping' | 'leader' | 'standby' | 'ready';

export interface KvEntry { key: string; value: string; revision: number; createRevision?: number; [k: string]: unknown }
export interface KvPutResult { revision: number; [k: string]: unknown }
export interface KvDeleteResult { revision: number; deleted: boolean; [k: string]: unknown }
export interface KvListResult { items: KvEntry[]; revision?: number; more?: boolean; raw: unknown }
export interface TxnCompare { key: string; target?: 'revision' | 'value' | 'createRevision'; op?: '=' | '!=' | '<' | '>'; revision?: number; value?: string; [k: string]: unknown }
export interface TxnOp { op: 'put' | 'delete' | 'get'; key: string; value?: string; ttlMs?: number; [k: string]: unknown }
export interface TxnRequest { compare: TxnCompare[]; success: TxnOp[]; failure?: TxnOp[] }
export interface TxnResult { succeeded: boolean; revision: number; results?: unknown[]; [k: string]: unknown }
export interface WatchEvent { type: string; key: string; value?: string; revision: number; [k: string]: unknown }

export interface HealthResult {
  /** true on 200 */
  ok: boolean;
  status: number;
  body: { status?: string; nodeName?: string; role?: string; leader?: string | null; reasons?: string[]; [k: string]: unknown };
  /** The node that answered. */
  url: string;
}

export interface ClusterHealthNode {
  nodeName: string; role: string; status: string; lastHeartbeat?: string | null; databaseMode?: string;
  matchIndex?: number; replicationLagEntries?: number; replicationLagMs?: number; [k: string]: unknown;
}
export interface HoldJson { reason: string | null; since: string; expiresAt: string | null; expiresInMs: number | null }
export interface ClusterHealth {
  clusterHealthy: boolean; leaderNode: string | null; term: number; nodes: ClusterHealthNode[];
  /** null: the node does not use Redis. */ redisConnected?: boolean | null; writeQuorum: number; quorumMet: boolean; failoverSafe: boolean; failureTolerance: number;
  failoverMode?: string; paused?: boolean; drained?: string[]; autoFailover?: boolean; notice?: string;
  /** A pause's or drain's operator reason and expiry (ISO times; expiresInMs left), when given. */
  pause?: HoldJson; drains?: Record<string, HoldJson>;
  approval?: { candidate: string | null; term: number | null; since: string | null; command: string | null; reason?: string };
  /** Config keys that must agree across members but differ (each line names the key and both values). */
  configWarnings?: string[];
  [k: string]: unknown;
}
export interface ClusterStatus {
  id?: string | number; nodeName?: string; role?: string; term?: number; leader?: string | null; active?: string | null;
  commitIndex?: number; appliedIndex?: number;
  peers?: Array<{ nodeName?: string; id?: string | number; role?: string; matchIndex?: number; lastContact?: string | number | null; [k: string]: unknown }>;
  [k: string]: unknown;
}
export interface ClusterDump { appliedIndex: number; revision: number; checksum?: string; [k: string]: unknown }
export interface FailoverSafeResult { safe: boolean; body: Record<string, unknown> }

/** Base class: every client error has a stable `code`. */
export class QuorateClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'QuorateClientError';
  }
}

/** A definite failure answered by a node: nothing was applied by this call. */
export class QuorateHttpError extends QuorateClientError {
  readonly status: number;
  readonly body: unknown;
  readonly url: string;
  constructor(status: number, code: string, message: string, body: unknown, url: string) {
    super(code, message);
    this.name = 'QuorateHttpError';
    this.status = status;
    this.body = body;
    this.url = url;
  }
  /** For 409 revision_mismatch: the key's revision now (0 = absent). */
  get currentRevision(): number | undefined {
    const b = this.body as { currentRevision?: unknown } | null;
    return typeof b?.currentRevision === 'number' ? b.currentRevision : undefined;
  }
  /** For 429 / 503: the server's Retry-After, in ms. */
  retryAfterMs?: number;
}

/** The write may or may not have been applied. Retrying with `idempotencyKey` is safe. */
export class CommitUnknownError extends QuorateClientError {
  readonly idempotencyKey: string;
  readonly attempts: number;
  constructor(message: string, idempotencyKey: string, attempts: number, options?: { cause?: unknown }) {
    super('commit_unknown', message, options);
    this.name = 'CommitUnknownError';
    this.idempotencyKey = idempotencyKey;
    this.attempts = attempts;
  }
}

/** No URL answered. Nothing was applied (a write that might have been is a CommitUnknownError). */
export class UnavailableError extends QuorateClientError {
  readonly urls: readonly string[];
  constructor(urls: readonly string[], options?: { cause?: unknown }) {
    const why = describeCause(options?.cause);
    super('unavailable', `cannot reach ${urls.join(', ')}${why ? ` (${why})` : ''}`, options);
    this.name = 'UnavailableError';
    this.urls = urls;
  }
}

export function errCode(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e !== undefined && e !== null; i++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string') return c;
    e = (e as { cause?: unknown }).cause;
  }
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'ETIMEDOUT';
  return '';
}

function describeCause(err: unknown): string {
  if (err === undefined) return '';
  const code = errCode(err);
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timed out';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset';
  return errMessage(err);
}

export function errMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return err.message === 'fetch failed' && cause instanceof Error ? cause.message : err.message;
}
