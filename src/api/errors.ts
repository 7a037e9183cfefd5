// The ONE table from error codes to HTTP statuses, and the conversion of any
// thrown value into an API error response. Codes come from the API layer
// itself, the errors thrown behind ClusterControl / KvService (./ports.ts;
// NodeError, src/node/errors.ts), the consensus core (src/raft/errors.ts,
// through the node) and the state machine (src/state/errors.ts).
import type { NodeErrorCode } from '../node/errors.js';

/**
 * HTTP status of every error code the API can answer with. Every node error
 * code (NodeErrorCode, src/node/errors.ts) must be here: NODE_ERROR_STATUS
 * below fails to compile otherwise. Errors with a code in this table are
 * answered with their own message (written for operators); anything else is
 * 500 `internal`.
 */
export const ERROR_STATUS = {
  // 400: bad input; nothing was changed.
  invalid_request: 400,
  invalid_json: 400,
  invalid_content_type: 400,
  invalid_key: 400,
  invalid_command: 400,
  idempotency_key_too_large: 400,
  // A membership change that can never be valid as given (e.g. removing an unknown node).
  invalid_conf_change: 400,
  // A destructive operation (promote-dr) was asked without "confirm": true; nothing was changed.
  confirm_required: 400,
  // 401 / 403: authentication and roles.
  unauthorized: 401,
  forbidden: 403,
  // 404 / 405: routing and missing keys.
  not_found: 404,
  method_not_allowed: 405,
  // 409: a precondition does not hold; nothing was changed. Not retried
  // automatically by clients: the caller has to look at the message.
  revision_mismatch: 409,
  // The transfer target is no member, a learner or already the leader, or no
  // voter can take over: the cluster's current state refuses the request
  // (a name may become valid once the member is added), so 409 rather than 400.
  invalid_transfer: 409,
  // The previous membership change is not committed yet; retry when it is.
  conf_change_in_progress: 409,
  // The joining node is unreachable, runs an incompatible version, holds
  // another cluster's data (without --force), or did not complete the join:
  // the message says which and what to do; nothing was changed.
  enroll_refused: 409,
  // Removing the node would leave fewer reachable voters than the new
  // configuration's write quorum (the message gives the arithmetic).
  removal_unsafe: 409,
  // promote-dr refused: the named node is not a DR node, or a quorum of the old
  // voters is still reachable from it (without force); nothing was changed.
  promotion_refused: 409,
  // Leadership did not move in time (target lagging or unreachable); this
  // node still leads. A definite outcome, so 409 and not 503: clients retry
  // 503 on other nodes, which would repeat a multi-second transfer at the
  // same target. The message says what to check and how to retry.
  transfer_failed: 409,
  // The switchover target is not caught up (entries and ms behind in the
  // message and fields); nothing was changed.
  target_not_caught_up: 409,
  // Another switchover is already scheduled; cancel it first.
  switchover_scheduled: 409,
  // An operator's failover elected no leader; the message says what to check.
  failover_failed: 409,
  // failover --approve named another candidate or term than the proposal (failover mode approval).
  approval_mismatch: 409,
  // This node is already writing a snapshot; retry on THIS node after
  // Retry-After (503 would send clients to another node, which snapshots a
  // different node).
  snapshot_in_progress: 409,
  // The leader is writing a backup into its backup dir now (src/node/backups.ts).
  backup_in_progress: 409,
  // POST /v1/cluster/restore: the archive is of another cluster, or another restore runs; a damaged archive.
  restore_refused: 409,
  backup_corrupt: 400,
  // Queues, locks, outbox (src/api/routes-app.ts): a claim token that expired or
  // was replaced; a lock held by another owner; a renew/release by one who does
  // not hold it (or whose TTL ran out); POST /v1/outbox with no outbox.webhookUrl;
  // a member still runs a release without these machines.
  stale_claim: 409,
  lock_held: 409,
  not_lock_holder: 409,
  outbox_not_configured: 409,
  // A token with this name exists (revoke it first); the token bound is reached.
  token_exists: 409,
  too_many_tokens: 409,
  // The cluster feature level is too low for this replicated feature (upgrade every member).
  feature_unavailable: 409,
  // `quorate ca rotate`: the previous rotation still waits for members to re-issue, or the cluster CA is not in use.
  ca_rotation_refused: 409,
  // Replicated SQL (/v1/db): a statement refused before anything ran (non-deterministic,
  // reaching outside the database, a write in a query), or a statement SQLite failed
  // deterministically (syntax, constraint: with a transaction nothing was kept). `statement` names it.
  sql_refused: 400,
  // Replicated files (src/files).
  invalid_path: 400,
  file_checksum_mismatch: 409,
  upload_unknown: 409,
  upload_out_of_order: 409,
  range_not_satisfiable: 416,
  file_too_large: 413,
  file_corrupt: 500,
  files_unavailable: 503,
  sql_error: 400,
  // A job asked to run now is running (src/node/scheduler.ts).
  job_running: 409,
  // Drills (src/drill/runner.ts): the node's config has no drills.enabled: true; a drill refused
  // (cluster not failover-safe, failure tolerance 0, no --confirm): the message says what to do.
  drills_disabled: 409,
  drill_refused: 409,
  // `quorate witness confirm` could not ask another data node for its term (src/api/routes-witness.ts).
  witness_peer_unreachable: 409,
  // 408: the request did not arrive in time (headers within 10 s, the whole request within 60 s).
  request_timeout: 408,
  // 410: history no longer reaches back that far.
  compacted: 410,
  // 413: too large.
  body_too_large: 413,
  key_too_large: 413,
  value_too_large: 413,
  // The encoded entry exceeds the Raft core's maxEntryBytes.
  entry_too_large: 413,
  // SQL limits (docs/api.md "Replicated SQL"); `limit` names the one exceeded.
  sql_statement_too_large: 413,
  sql_too_many_statements: 413,
  sql_result_too_large: 413,
  // 422: well-formed but refused: the Idempotency-Key was used for a different request.
  idempotency_key_reused: 422,
  // A query ran past the time limit; its read worker was killed. Not retried (it would run as long again).
  sql_query_timeout: 422,
  // 429: back off (with Retry-After) and retry on the same node.
  // Too many uncommitted bytes on the leader: load, not a fault.
  overloaded: 429,
  too_many_watches: 429,
  // Too many failed authentications from this client address (src/api/auth-limit.ts).
  too_many_auth_failures: 429,
  // 500: a bug or an unexpected failure; details are logged, never sent.
  internal: 500,
  // 503: not served right now; nothing was applied, retrying (possibly on
  // another node) is safe.
  no_leader: 503,
  not_leader: 503,
  quorum_not_met: 503,
  shutting_down: 503,
  // This node was removed from the cluster (`quorate remove`): it serves no
  // data; the cluster goes on without it, so another node answers.
  removed: 503,
  // This node's disk failed and it is stopping: the cluster may well serve
  // the request elsewhere, so 503 (retry another node) and not 500 (a bug);
  // the message names the failure for the operator.
  storage_failed: 503,
  // Replicated SQL is not served yet: a member runs the previous release (cluster feature level below 2).
  sql_unavailable: 503,
  // The entry was overwritten by a new leader and will never apply.
  proposal_dropped: 503,
  // A leadership transfer is under way; writes resume within an election timeout.
  transfer_in_progress: 503,
  // 504: the outcome is unknown (it may have been applied); retry with the same Idempotency-Key.
  commit_unknown: 504,
  timeout: 504,
} as const satisfies Record<string, number>;

/** The statuses of the node's error codes; fails to compile if a NodeErrorCode has no entry in ERROR_STATUS. */
export const NODE_ERROR_STATUS: Readonly<Record<NodeErrorCode, number>> = ERROR_STATUS;

/** Default Retry-After (ms) for codes that ask the client to retry the same node, unless the error carries retryAfterMs. */
const RETRY_AFTER_MS: Partial<Record<ErrorCode, number>> = {
  overloaded: 1000,
  snapshot_in_progress: 1000,
};

export type ErrorCode = keyof typeof ERROR_STATUS;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_STATUS, code);
}

export type ExtraValue = string | number | boolean | null | readonly string[];

/** An error answered to the client: `{"error": code, "message": text, ...extra}`. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly extra: Readonly<Record<string, ExtraValue>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, extra: Record<string, ExtraValue> = {}, headers: Record<string, string> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApiError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.extra = extra;
    this.headers = headers;
  }

  body(): Record<string, unknown> {
    return { error: this.code, message: this.message, ...this.extra };
  }
}

/** 400 invalid_request naming the field: `limit: must be an integer in 1..10000`. */
export function badField(field: string, reason: string): ApiError {
  return new ApiError('invalid_request', `${field}: ${reason}`, { field });
}

// Fields of thrown errors that may be shown to clients (numbers and names the
// caller needs to react: revisions, retry delays, the leader to go to).
const SAFE_EXTRA = [
  'currentRevision',
  'oldestRevision',
  'requestedRevision',
  'retryAfterMs',
  'leaderName',
  'leaderApiUrl',
  // target_not_caught_up (switchover).
  'target',
  'behindEntries',
  'behindMs',
  'lastContactMs',
  // switchover_scheduled: the pending one's time and target.
  'scheduledAt',
  'scheduledTo',
  'field',
  'bytes',
  'limitBytes',
  'requiredRole',
  // Replicated SQL: the statement (0-based) that failed or was refused, SQLite's result code, statements kept, the limit exceeded.
  'statement',
  'sqliteCode',
  'applied',
  'limit',
  // Replicated files: the file a corruption or a refused upload is about.
  'path',
] as const;

function safeExtra(src: unknown, into: Record<string, ExtraValue>): void {
  if (typeof src !== 'object' || src === null) return;
  const o = src as Record<string, unknown>;
  for (const k of SAFE_EXTRA) {
    const v = o[k];
    if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean') into[k] = v;
  }
}

/** Seconds for Retry-After, at least 1. */
export function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}

/**
 * Converts anything thrown while serving a request into an ApiError. Errors
 * with a known `code` keep their message (those messages are written for
 * operators); anything else becomes 500 `internal` and `internalCause` is set
 * so the caller logs the stack.
 */
export function toApiError(err: unknown): { error: ApiError; internalCause?: unknown } {
  if (err instanceof ApiError) return { error: err };
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (isErrorCode(code) && code !== 'internal') {
    const extra: Record<string, ExtraValue> = {};
    safeExtra(err, extra);
    safeExtra((err as { extra?: unknown }).extra, extra);
    const headers: Record<string, string> = {};
    const retryMs = RETRY_AFTER_MS[code];
    if (retryMs !== undefined) {
      const ms = typeof extra['retryAfterMs'] === 'number' ? extra['retryAfterMs'] : retryMs;
      headers['retry-after'] = retryAfterSeconds(ms);
    }
    const message = err instanceof Error && err.message !== '' ? err.message : code.replace(/_/g, ' ');
    return { error: new ApiError(code, message, extra, headers, { cause: err }) };
  }
  return {
    error: new ApiError('internal', 'internal error; the details are in the node log'),
    internalCause: err,
  };
}
