// Errors of replicated SQL as the API answers them (codes mapped to HTTP in
// src/api/errors.ts): the message says what to do; the fields name the
// statement, the SQLite result code or the limit.

export type SqlErrorCode =
  | 'sql_error'
  | 'sql_refused'
  | 'sql_statement_too_large'
  | 'sql_too_many_statements'
  | 'sql_result_too_large'
  | 'sql_query_timeout'
  | 'sql_unavailable'
  | 'overloaded';

export interface SqlErrorExtra {
  readonly statement?: number;
  readonly sqliteCode?: string;
  /** external-shared mode (PostgreSQL's SQL): the SQLSTATE. */
  readonly sqlState?: string;
  readonly limit?: string;
  readonly field?: string;
  readonly retryAfterMs?: number;
}

export class SqlError extends Error {
  constructor(
    readonly code: SqlErrorCode,
    message: string,
    readonly extra: SqlErrorExtra = {},
  ) {
    super(message);
  }
}
