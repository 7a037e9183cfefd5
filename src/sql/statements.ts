// SQL text checks done before anything runs: the statement-level refusals of
// replicated SQL (what would make nodes diverge, or escape the database
// file), on the leader before proposing and again on every node before
// applying (the same pure function of the same text, so both give the same
// answer). Non-deterministic *functions* are not refused here: the apply
// worker replaces them by deterministic ones fed from values fixed in the
// entry (./apply-worker.ts); the few that cannot be made deterministic are
// refused here and, as a safety net, throw in the apply worker too.
//
// The tokenizer knows SQLite's lexical rules that matter for this: string
// literals ('…', '' escapes), quoted identifiers ("…", `…`, […]), comments
// (-- and /* */), words, and punctuation.

export interface Token {
  readonly kind: 'word' | 'string' | 'ident' | 'punct' | 'number';
  /** The text (for words: as written; compare case-insensitively). */
  readonly text: string;
  readonly at: number;
}

/** Functions that cannot be made deterministic: refused in /v1/db/execute. */
export const REFUSED_FUNCTIONS: ReadonlyMap<string, string> = new Map([
  ['load_extension', 'loading extensions is refused'],
  ['total_changes', 'it counts changes since the connection opened, which differs between nodes (use changes())'],
  ['sqlite_version', 'it differs between nodes running other SQLite builds'],
  ['sqlite_source_id', 'it differs between nodes running other SQLite builds'],
  ['sqlite_compileoption_get', 'it differs between nodes running other SQLite builds'],
  ['sqlite_compileoption_used', 'it differs between nodes running other SQLite builds'],
  ['sqlite_offset', 'it depends on the file layout of each node'],
]);

/** Read-only pragmas allowed in /v1/db/query (in their read form: no `=`). */
export const QUERY_PRAGMAS: ReadonlySet<string> = new Set([
  'table_info', 'table_xinfo', 'table_list', 'index_list', 'index_info', 'index_xinfo', 'foreign_key_list', 'foreign_key_check',
  'user_version', 'application_id', 'page_count', 'page_size', 'freelist_count', 'integrity_check', 'quick_check', 'collation_list', 'function_list',
]);

/** Transaction control: the request's `transaction` flag decides, never the statements. */
const TX_WORDS = new Set(['begin', 'commit', 'end', 'rollback', 'savepoint', 'release']);

/** Names reserved for quorate's own tables in the database. */
export const RESERVED_PREFIX = '_quorate';

/**
 * The transactional outbox table, created in every database by the apply
 * worker: applications insert, read, update and delete its rows; dropping or
 * altering it is refused (it is recreated at every open, so a node that
 * restarted would hold a table the others dropped).
 */
export const SQL_OUTBOX_TABLE = 'quorate_outbox';

export class SqlRefusedError extends Error {
  readonly code = 'sql_refused';
  constructor(
    message: string,
    readonly statement: number,
  ) {
    super(message);
  }
}

export class SqlSyntaxError extends Error {}

/** Splits SQL text into tokens. Throws SqlSyntaxError for an unterminated string, identifier or comment. */
export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f') {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      const e = sql.indexOf('\n', i);
      i = e < 0 ? n : e + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const e = sql.indexOf('*/', i + 2);
      if (e < 0) throw new SqlSyntaxError(`unterminated /* comment starting at character ${i}`);
      i = e + 2;
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      let text = '';
      for (;;) {
        if (j >= n) throw new SqlSyntaxError(`unterminated ${c === "'" ? 'string literal' : 'quoted identifier'} starting at character ${i}`);
        if (sql[j] === close) {
          if (close !== ']' && sql[j + 1] === close) {
            text += close;
            j += 2;
            continue;
          }
          break;
        }
        text += sql[j];
        j++;
      }
      out.push({ kind: c === "'" ? 'string' : 'ident', text, at: i });
      i = j + 1;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j]!)) j++;
      out.push({ kind: 'word', text: sql.slice(i, j), at: i });
      i = j;
    } else if (/[0-9.]/.test(c) && !(c === '.' && !/[0-9]/.test(sql[i + 1] ?? ''))) {
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_.]/.test(sql[j]!)) j++;
      out.push({ kind: 'number', text: sql.slice(i, j), at: i });
      i = j;
    } else {
      out.push({ kind: 'punct', text: c, at: i });
      i++;
    }
  }
  return out;
}

const lower = (t: Token | undefined): string => (t !== undefined && t.kind === 'word' ? t.text.toLowerCase() : '');

/** The statement's tokens without trailing semicolons; refuses a second statement in the same text. */
function oneStatement(sql: string, statement: number): Token[] {
  let toks: Token[];
  try {
    toks = tokenize(sql);
  } catch (e) {
    throw new SqlRefusedError(`statement ${statement}: ${(e as Error).message}`, statement);
  }
  while (toks.length > 0 && toks[toks.length - 1]!.kind === 'punct' && toks[toks.length - 1]!.text === ';') toks.pop();
  if (toks.length === 0) throw new SqlRefusedError(`statement ${statement} is empty`, statement);
  const semi = toks.findIndex((t) => t.kind === 'punct' && t.text === ';');
  if (semi >= 0) {
    throw new SqlRefusedError(`statement ${statement} holds more than one SQL statement (a ";" at character ${toks[semi]!.at}); send each as its own entry of "statements"`, statement);
  }
  return toks;
}

/** Refusals common to both endpoints: attached databases, extensions, reserved names, refused functions. */
function commonChecks(toks: readonly Token[], statement: number, where: string, refuseFunctions: boolean): void {
  const first = lower(toks[0]);
  if (first === 'attach' || first === 'detach') throw new SqlRefusedError(`statement ${statement}: ${first.toUpperCase()} is refused in ${where}: only the replicated database is reachable`, statement);
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i]!;
    if ((t.kind === 'word' || t.kind === 'ident') && t.text.toLowerCase().startsWith(RESERVED_PREFIX) && where.endsWith('execute')) {
      throw new SqlRefusedError(`statement ${statement}: names starting with ${RESERVED_PREFIX} are reserved for quorate's own tables (found ${JSON.stringify(t.text)})`, statement);
    }
    if (t.kind !== 'word') continue;
    const name = t.text.toLowerCase();
    const next = toks[i + 1];
    if (next?.kind !== 'punct' || next.text !== '(') continue;
    if (name === 'load_extension') throw new SqlRefusedError(`statement ${statement}: load_extension() is refused: loading extensions is not allowed`, statement);
    const why = REFUSED_FUNCTIONS.get(name);
    if (refuseFunctions && why !== undefined) throw new SqlRefusedError(`statement ${statement}: ${name}() is refused in ${where}: ${why}`, statement);
  }
}

/**
 * Checks one statement of /v1/db/execute. Refused: ATTACH/DETACH, every
 * PRAGMA (a pragma changes the connection or the file, which a node that
 * restored a snapshot would not have), transaction control (use
 * `transaction`), VACUUM INTO, temporary tables/views/triggers (they live in
 * the connection, not the replicated file), names starting with _quorate,
 * DROP or ALTER of the outbox table (SQL_OUTBOX_TABLE),
 * load_extension() and the functions of REFUSED_FUNCTIONS.
 */
export function checkExecuteStatement(sql: string, statement: number): void {
  const toks = oneStatement(sql, statement);
  const first = lower(toks[0]);
  const where = '/v1/db/execute';
  if (first === 'pragma') throw new SqlRefusedError(`statement ${statement}: PRAGMA is refused in ${where}: a pragma changes the connection or the file outside the replicated state (read pragmas with /v1/db/query)`, statement);
  if (TX_WORDS.has(first)) throw new SqlRefusedError(`statement ${statement}: ${first.toUpperCase()} is refused: transactions are set by the request's "transaction" flag`, statement);
  if (first === 'vacuum' && toks.some((t) => lower(t) === 'into')) throw new SqlRefusedError(`statement ${statement}: VACUUM INTO is refused: it writes a file outside the replicated database`, statement);
  if ((first === 'drop' || first === 'alter') && toks.some((t) => (t.kind === 'word' || t.kind === 'ident') && t.text.toLowerCase() === SQL_OUTBOX_TABLE)) {
    throw new SqlRefusedError(`statement ${statement}: ${first.toUpperCase()} of ${SQL_OUTBOX_TABLE} is refused: it is quorate's outbox table (rows inserted there are delivered to outbox.webhookUrl); insert, update and delete its rows instead`, statement);
  }
  if (first === 'create' && (lower(toks[1]) === 'temp' || lower(toks[1]) === 'temporary')) {
    throw new SqlRefusedError(`statement ${statement}: CREATE ${toks[1]!.text.toUpperCase()} is refused: temporary objects live in one node's connection, not in the replicated database`, statement);
  }
  if (first === 'with' || first === 'insert' || first === 'replace' || first === 'update' || first === 'delete' || first === 'create' || first === 'drop' || first === 'alter' || first === 'select' || first === 'values' || first === 'vacuum' || first === 'reindex' || first === 'analyze' || first === 'attach' || first === 'detach') {
    commonChecks(toks, statement, where, true);
    return;
  }
  throw new SqlRefusedError(`statement ${statement}: ${JSON.stringify(toks[0]!.text.slice(0, 40))} does not start a statement /v1/db/execute runs (INSERT, REPLACE, UPDATE, DELETE, CREATE, DROP, ALTER, WITH, SELECT, VALUES, VACUUM, REINDEX, ANALYZE)`, statement);
}

/**
 * Checks the statement of /v1/db/query. Refused: ATTACH/DETACH,
 * load_extension(), PRAGMA other than the read form of QUERY_PRAGMAS, and
 * anything that is not a read (checked again by SQLite itself on the read
 * connection: write statements are refused there).
 */
export function checkQueryStatement(sql: string): void {
  const toks = oneStatement(sql, 0);
  const first = lower(toks[0]);
  const where = '/v1/db/query';
  if (first === 'pragma') {
    const name = lower(toks[1]) === '' ? '' : (lower(toks[2]) !== '' && toks[2]?.text === '.' ? lower(toks[3]) : lower(toks[1]));
    const hasAssign = toks.some((t) => t.kind === 'punct' && t.text === '=');
    if (!QUERY_PRAGMAS.has(name) || hasAssign) {
      throw new SqlRefusedError(`PRAGMA ${name === '' ? '' : `${name} `}is refused in ${where}: only reading these pragmas is allowed: ${[...QUERY_PRAGMAS].join(', ')}`, 0);
    }
    return;
  }
  if (TX_WORDS.has(first) || first === 'vacuum') throw new SqlRefusedError(`${first.toUpperCase()} is refused in ${where}: it is not a read`, 0);
  commonChecks(toks, 0, where, false);
}
