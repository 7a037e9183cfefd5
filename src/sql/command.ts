// The "sql" machine's command: its payload in format-2 entries, the limits
// of requests and answers, and the messages between the machine (main
// thread) and its apply worker.
//
// Payload (msgpack, positional): [1, transaction, seed(bin 16), [[sql, ...params], ...]]
// params: nil | number | string | bin. `seed` is chosen by the leader: the
// apply worker's random() and randomblob() are derived from it, so the values
// are fixed by the entry and equal on every node.
import { createHash } from 'node:crypto';
import { packCanonical, unpackVersionedArray } from '../state/commands.js';
import { InvalidCommandError } from '../state/errors.js';
import type { SqlExecResult } from '../state/results.js';

export const SQL_MACHINE_ID = 'sql';
export const SQL_PAYLOAD_VERSION = 1;
export const SQL_SEED_BYTES = 16;

/** Limits (named in the errors that enforce them; docs/api.md "Replicated SQL"). */
export const SQL_LIMITS = {
  /** Bytes of one statement's SQL text (UTF-8). */
  statementBytes: 256 * 1024,
  /** Statements in one /v1/db/execute request. */
  statementsPerRequest: 1000,
  /** Parameters of one statement. */
  paramsPerStatement: 1000,
  /** Rows in one /v1/db/query answer. */
  queryRows: 10_000,
  /** Bytes (JSON) of the rows of one /v1/db/query answer. */
  queryBytes: 8 * 1024 * 1024,
  /** Time one /v1/db/query may run before its worker is terminated (ms). */
  queryTimeoutMs: 5000,
  /** Rows an execute statement with RETURNING (or a SELECT) may give back. */
  executeRows: 1000,
} as const;

export type SqlLimits = { -readonly [K in keyof typeof SQL_LIMITS]: number };

export type SqlParam = null | number | string | Uint8Array;

export interface SqlStatement {
  readonly sql: string;
  readonly params: readonly SqlParam[];
}

export interface SqlCommand {
  readonly transaction: boolean;
  readonly seed: Uint8Array;
  readonly statements: readonly SqlStatement[];
}

const bad = (field: string, reason: string): never => {
  throw new InvalidCommandError(field, reason);
};

function isParam(v: unknown): v is SqlParam {
  return v === null || typeof v === 'string' || v instanceof Uint8Array || (typeof v === 'number' && Number.isFinite(v));
}

export function encodeSqlPayload(c: SqlCommand): Uint8Array {
  return packCanonical([SQL_PAYLOAD_VERSION, c.transaction, c.seed, c.statements.map((s) => [s.sql, ...s.params])]);
}

export function decodeSqlPayload(payload: Uint8Array): SqlCommand {
  const r = unpackVersionedArray(payload, SQL_PAYLOAD_VERSION);
  if (!r.ok) return bad(r.field, r.reason);
  const v = r.v;
  if (v[0] !== SQL_PAYLOAD_VERSION || v.length !== 4) return bad('payload', `expected [${SQL_PAYLOAD_VERSION}, transaction, seed, statements]`);
  const [, tx, seed, stmts] = v as [number, unknown, unknown, unknown];
  if (typeof tx !== 'boolean') bad('transaction', 'must be a boolean');
  if (!(seed instanceof Uint8Array) || seed.length !== SQL_SEED_BYTES) bad('seed', `must be ${SQL_SEED_BYTES} bytes`);
  if (!Array.isArray(stmts) || stmts.length === 0 || stmts.length > SQL_LIMITS.statementsPerRequest) bad('statements', `must be 1..${SQL_LIMITS.statementsPerRequest} statements`);
  const statements: SqlStatement[] = [];
  for (const [i, s] of (stmts as unknown[]).entries()) {
    if (!Array.isArray(s) || typeof s[0] !== 'string') return bad(`statements[${i}]`, 'must be [sql, ...params]');
    const params = s.slice(1);
    if (params.length > SQL_LIMITS.paramsPerStatement || !params.every(isParam)) bad(`statements[${i}]`, 'bad parameters');
    statements.push({ sql: s[0], params: params as SqlParam[] });
  }
  return { transaction: tx as boolean, seed: seed as Uint8Array, statements };
}

/** Client-session fingerprint: the machine id and the payload without the seed (a retry draws a new seed but is the same request). */
export function sqlFingerprint(c: SqlCommand): string {
  const h = createHash('sha256');
  h.update(SQL_MACHINE_ID);
  h.update(packCanonical([c.transaction, c.statements.map((s) => [s.sql, ...s.params])]));
  return h.digest('hex').slice(0, 32);
}

// ---- main thread <-> apply worker ------------------------------------------

export type ToApplyWorker =
  | { readonly t: 'apply'; readonly seq: number; readonly index: number; readonly at: number; readonly clockMs: number; readonly ik: string | null; readonly fp: string | null; readonly cmd: SqlCommand; readonly sessionMax: number; readonly sessionTtlMs: number }
  | { readonly t: 'backup'; readonly seq: number; readonly path: string }
  | { readonly t: 'restore'; readonly seq: number; readonly path: string | null }
  | { readonly t: 'checksum'; readonly seq: number }
  | { readonly t: 'close'; readonly seq: number };

export type FromApplyWorker =
  | { readonly t: 'ready' }
  | { readonly t: 'done'; readonly seq: number; readonly result?: SqlExecResult; readonly checksum?: string; readonly bytes?: number }
  /** Not deterministic (I/O error, disk full, corrupt file): the node must stop. */
  | { readonly t: 'fatal'; readonly seq: number; readonly message: string; readonly code: string | null };

export interface ApplyWorkerData {
  /** The database file. */
  readonly file: string;
  readonly limits: SqlLimits;
}

/** SQLite result codes that are not a function of the statements and the state: the node stops rather than diverge. */
export function isFatalSqliteCode(code: unknown): boolean {
  return typeof code === 'string' && /^SQLITE_(IOERR|FULL|CORRUPT|NOTADB|CANTOPEN|NOMEM|READONLY|BUSY|LOCKED|PROTOCOL|PERM|INTERNAL|NOLFS)/.test(code);
}
