// /v1/db: replicated SQL (SPEC §4 "Data"; docs/api.md "Replicated SQL").
// Executes go through the log (on the leader, forwarded from other nodes);
// linearizable queries run on the leader after a read barrier, stale ones
// on this node's copy. Request shapes and limits are checked here, before
// anything is proposed; the statement-level refusals in the SQL service.
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';
import { onLeader } from './leader.js';
import type { ProposeOptions, SqlExecuteRequest, SqlParamValue, SqlService } from './ports.js';
import { idempotencyKey } from './validate.js';

function service(ctx: RequestContext): SqlService {
  const s = ctx.app.sql;
  if (s === undefined) throw new ApiError('not_found', 'this server does not serve replicated SQL');
  return s;
}

function object(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError('invalid_request', 'the body must be a JSON object');
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw badField(k, `unknown field (allowed: ${allowed.join(', ')})`);
  return o;
}

/** A JSON parameter: null, number, string, boolean (1/0) or {"base64": "…"} (a blob). */
function param(v: unknown, field: string): SqlParamValue {
  if (v === null || typeof v === 'string') return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw badField(field, 'must be a finite number');
    return v;
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const b = o['base64'];
    if (Object.keys(o).length === 1 && typeof b === 'string' && b.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(b)) return new Uint8Array(Buffer.from(b, 'base64'));
    throw badField(field, 'an object parameter must be {"base64": "<standard base64>"} (a blob)');
  }
  throw badField(field, 'must be null, a number, a string, a boolean or {"base64": "…"}');
}

function sqlText(s: SqlService, v: unknown, field: string, statement: number): string {
  if (typeof v !== 'string' || v.trim() === '') throw badField(field, 'must be a non-empty SQL string');
  const bytes = Buffer.byteLength(v);
  if (bytes > s.limits.statementBytes) {
    throw new ApiError('sql_statement_too_large', `${field} is ${bytes} bytes; the limit is ${s.limits.statementBytes} bytes per statement`, { statement, limit: `${s.limits.statementBytes} bytes`, field });
  }
  return v;
}

function params(s: SqlService, v: readonly unknown[], field: string): SqlParamValue[] {
  if (v.length > s.limits.paramsPerStatement) throw badField(field, `at most ${s.limits.paramsPerStatement} parameters, got ${v.length}`);
  return v.map((p, j) => param(p, `${field}[${j}]`));
}

export function parseExecute(s: SqlService, body: unknown): SqlExecuteRequest {
  const o = object(body, ['statements', 'transaction']);
  const list = o['statements'];
  if (!Array.isArray(list) || list.length === 0) throw badField('statements', 'must be a non-empty array of ["SQL", ...params]');
  if (list.length > s.limits.statementsPerRequest) {
    throw new ApiError('sql_too_many_statements', `statements holds ${list.length} statements; the limit is ${s.limits.statementsPerRequest} per request: send several requests`, { limit: `${s.limits.statementsPerRequest} statements`, field: 'statements' });
  }
  const tx = o['transaction'] ?? true;
  if (typeof tx !== 'boolean') throw badField('transaction', 'must be true or false');
  const statements = list.map((st, i) => {
    const f = `statements[${i}]`;
    const arr = typeof st === 'string' ? [st] : st;
    if (!Array.isArray(arr) || arr.length === 0) throw badField(f, 'must be ["SQL", ...params] (or a plain SQL string)');
    return { sql: sqlText(s, arr[0], `${f}[0]`, i), params: params(s, arr.slice(1), f) };
  });
  return { statements, transaction: tx };
}

const execute: Route = {
  auth: 'operator',
  query: [],
  handle: async (ctx) => {
    const s = service(ctx);
    const req = parseExecute(s, await ctx.jsonBody());
    const ik = idempotencyKey(ctx.header('idempotency-key'));
    const options: ProposeOptions = ik !== undefined ? { idempotencyKey: ik } : {};
    await onLeader(ctx, true, async () => {
      const r = await s.execute(req, options);
      if ('error' in r) {
        if (r.error === 'idempotency_key_reused') throw new ApiError('idempotency_key_reused', r.message, { field: 'Idempotency-Key' });
        throw new ApiError('invalid_command', 'message' in r ? r.message : r.error);
      }
      if (!('sql' in r)) throw new Error('the sql machine answered with a result of another machine');
      if (r.failed !== undefined) {
        const kept = req.transaction ? 'nothing of this request was kept (transaction)' : `the ${r.sql.length} statement(s) before it were kept`;
        throw new ApiError('sql_error', `${r.failed.message}; ${kept}`, { statement: r.failed.statement, ...(r.failed.sqliteCode !== null ? { sqliteCode: r.failed.sqliteCode } : {}), ...(r.failed.sqlState !== undefined ? { sqlState: r.failed.sqlState } : {}), applied: r.sql.length });
      }
      ctx.json(200, { results: r.sql });
    });
  },
};

const query: Route = {
  auth: 'reader',
  query: [],
  handle: async (ctx) => {
    const s = service(ctx);
    const o = object(await ctx.jsonBody(), ['sql', 'params', 'consistency']);
    const text = sqlText(s, o['sql'], 'sql', 0);
    const rawParams = o['params'] ?? [];
    if (!Array.isArray(rawParams)) throw badField('params', 'must be an array');
    const ps = params(s, rawParams, 'params');
    const consistency = o['consistency'] ?? 'linearizable';
    if (consistency !== 'linearizable' && consistency !== 'stale') throw badField('consistency', `must be "linearizable" or "stale", got ${JSON.stringify(String(consistency).slice(0, 40))}`);
    const answer = async (): Promise<void> => {
      const r = await s.query(text, ps);
      ctx.json(200, { columns: r.columns, rows: r.rows });
    };
    if (consistency === 'stale') return answer();
    await onLeader(ctx, false, async () => {
      await s.readBarrier();
      await answer();
    });
  },
};

export const sqlRoutes: Readonly<Record<string, Readonly<Record<string, Route>>>> = {
  '/v1/db/execute': { POST: execute },
  '/v1/db/query': { POST: query },
};
