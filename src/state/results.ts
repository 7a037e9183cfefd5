// Results of applying a command, and their compact tuple form (client-session
// records are stored in snapshots, so results must encode deterministically).

export interface WriteResult {
  /** Store revision after the command (unchanged if nothing changed). */
  readonly revision: number;
}
export interface DeleteResult {
  readonly revision: number;
  readonly deleted: boolean;
}
export interface RevisionMismatch {
  readonly error: 'revision_mismatch';
  /** The key's modRevision now; 0 if it does not exist. */
  readonly currentRevision: number;
}
export type TxnOpResponse = { readonly type: 'put'; readonly revision: number } | { readonly type: 'delete'; readonly deleted: boolean };
export interface TxnResult {
  readonly succeeded: boolean;
  readonly revision: number;
  readonly responses: readonly TxnOpResponse[];
}
export interface ExpireResult {
  readonly revision: number;
  /** Keys actually deleted (the others changed since the leader looked). */
  readonly expired: number;
}
/** The entry's data failed validation; nothing changed (identically on every node). */
export interface InvalidCommandResult {
  readonly error: 'invalid_command';
  readonly message: string;
}
/**
 * The command carried an idempotency key already recorded for a DIFFERENT
 * command (its fingerprint differs); nothing changed. Never recorded itself,
 * so the key keeps answering its first request.
 */
export interface IdempotencyKeyReusedResult {
  readonly error: 'idempotency_key_reused';
  readonly message: string;
}
/** A machine's own structured result (the "app" machine: queues, locks, outbox); plain msgpack-encodable data. */
export interface DataResult {
  readonly data: unknown;
}
/** One statement of a /v1/db/execute entry (the "sql" machine, src/sql). */
export interface SqlStatementResult {
  readonly rowsAffected: number;
  readonly lastInsertId: number;
  /** Only for a statement that returns rows (RETURNING, SELECT). */
  readonly columns?: readonly string[];
  readonly rows?: readonly (readonly unknown[])[];
}
/** The statement that failed deterministically (a constraint, a syntax error): with `transaction`, nothing of the entry was kept. */
export interface SqlFailure {
  readonly statement: number;
  readonly sqliteCode: string | null;
  /** external-shared mode (PostgreSQL's SQL): the SQLSTATE of the failure. */
  readonly sqlState?: string;
  readonly message: string;
}
/**
 * A /v1/db/execute entry's result. The "sql" machine keeps its own client
 * sessions (inside its database), so the registry never records these.
 */
export interface SqlExecResult {
  readonly sql: readonly SqlStatementResult[];
  readonly failed?: SqlFailure;
}
export type ApplyResult = WriteResult | DeleteResult | RevisionMismatch | TxnResult | ExpireResult | InvalidCommandResult | IdempotencyKeyReusedResult | DataResult | SqlExecResult;

const R_WRITE = 0;
const R_DELETE = 1;
const R_MISMATCH = 2;
const R_TXN = 3;
const R_EXPIRE = 4;
const R_INVALID = 5;
const R_REUSED = 6;
const R_DATA = 7;

export function resultToTuple(r: ApplyResult): unknown[] {
  if ('data' in r) return [R_DATA, r.data];
  if ('sql' in r) throw new Error('a sql result is recorded by the sql machine\'s own sessions, never by the registry');
  if ('error' in r) {
    if (r.error === 'revision_mismatch') return [R_MISMATCH, r.currentRevision];
    return [r.error === 'invalid_command' ? R_INVALID : R_REUSED, r.message];
  }
  if ('succeeded' in r) {
    return [R_TXN, r.succeeded, r.revision, r.responses.map((x) => (x.type === 'put' ? [0, x.revision] : [1, x.deleted]))];
  }
  if ('deleted' in r) return [R_DELETE, r.revision, r.deleted];
  if ('expired' in r) return [R_EXPIRE, r.revision, r.expired];
  return [R_WRITE, r.revision];
}

const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Returns undefined if the tuple is malformed (the caller reports where). */
export function resultFromTuple(t: unknown): ApplyResult | undefined {
  if (!Array.isArray(t)) return undefined;
  switch (t[0]) {
    case R_WRITE:
      return t.length === 2 && isNat(t[1]) ? { revision: t[1] } : undefined;
    case R_DELETE:
      return t.length === 3 && isNat(t[1]) && typeof t[2] === 'boolean' ? { revision: t[1], deleted: t[2] } : undefined;
    case R_MISMATCH:
      return t.length === 2 && isNat(t[1]) ? { error: 'revision_mismatch', currentRevision: t[1] } : undefined;
    case R_EXPIRE:
      return t.length === 3 && isNat(t[1]) && isNat(t[2]) ? { revision: t[1], expired: t[2] } : undefined;
    case R_INVALID:
      return t.length === 2 && typeof t[1] === 'string' ? { error: 'invalid_command', message: t[1] } : undefined;
    case R_REUSED:
      return t.length === 2 && typeof t[1] === 'string' ? { error: 'idempotency_key_reused', message: t[1] } : undefined;
    case R_DATA:
      return t.length === 2 ? { data: t[1] } : undefined;
    case R_TXN: {
      if (t.length !== 4 || typeof t[1] !== 'boolean' || !isNat(t[2]) || !Array.isArray(t[3])) return undefined;
      const responses: TxnOpResponse[] = [];
      for (const x of t[3] as unknown[]) {
        if (!Array.isArray(x) || x.length !== 2) return undefined;
        if (x[0] === 0 && isNat(x[1])) responses.push({ type: 'put', revision: x[1] });
        else if (x[0] === 1 && typeof x[1] === 'boolean') responses.push({ type: 'delete', deleted: x[1] });
        else return undefined;
      }
      return { succeeded: t[1], revision: t[2], responses };
    }
    default:
      return undefined;
  }
}
