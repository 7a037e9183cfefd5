// /v1/kv: key reads, writes, range reads and transactions (SPEC §4 "Data").
// Writes and linearizable reads run on the leader (forwarded from other
// nodes); `consistency=stale` reads are served from this node's copy.
import type { ApplyResult, Command, KeyRecord } from '../state/index.js';
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';
import { onLeader } from './leader.js';
import type { ProposeOptions } from './ports.js';
import { checkKey, idempotencyKey, parsePut, parseTxn } from './validate.js';

export const DEFAULT_LIST_LIMIT = 1000;
export const MAX_LIST_LIMIT = 10_000;

function entry(r: KeyRecord): Record<string, unknown> {
  const e: Record<string, unknown> = { key: r.key, value: r.value, revision: r.modRevision, createRevision: r.createRevision, version: r.version };
  if (r.leaseDeadlineMs !== undefined) e['leaseDeadlineMs'] = r.leaseDeadlineMs;
  return e;
}

/** Linearizable: on the leader after a read barrier (forwarded from followers); stale: here, now. */
async function read(ctx: RequestContext, serve: () => void): Promise<void> {
  if (ctx.consistency() === 'stale') {
    serve();
    return;
  }
  await onLeader(ctx, false, async () => {
    await ctx.app.kv.readBarrier();
    serve();
  });
}

async function propose(ctx: RequestContext, cmd: Command): Promise<void> {
  const ik = idempotencyKey(ctx.header('idempotency-key'));
  const options: ProposeOptions = ik !== undefined ? { idempotencyKey: ik } : {};
  await onLeader(ctx, true, async () => {
    const r = await ctx.app.kv.propose(cmd, options);
    answerWrite(ctx, r);
  });
}

function answerWrite(ctx: RequestContext, r: ApplyResult): void {
  if ('error' in r) {
    if (r.error === 'revision_mismatch') {
      const now = r.currentRevision === 0 ? 'the key does not exist (revision 0)' : `the key is at revision ${r.currentRevision}`;
      throw new ApiError('revision_mismatch', `ifRevision does not match: ${now}; nothing was changed`, { currentRevision: r.currentRevision });
    }
    if (r.error === 'idempotency_key_reused') throw new ApiError('idempotency_key_reused', r.message, { field: 'Idempotency-Key' });
    throw new ApiError('invalid_command', r.message);
  }
  ctx.json(200, r);
}

const key: Readonly<Record<string, Route>> = {
  GET: {
    auth: 'reader',
    query: ['consistency'],
    handle: (ctx, k) => read(ctx, () => {
      const r = ctx.app.kv.get(k!);
      if (r === undefined) throw new ApiError('not_found', `key ${JSON.stringify(k!.slice(0, 200))} not found`, { key: k!.slice(0, 200) });
      ctx.json(200, entry(r));
    }),
  },
  PUT: {
    auth: 'operator',
    query: [],
    handle: async (ctx, k) => propose(ctx, parsePut(k!, await ctx.jsonBody())),
  },
  DELETE: {
    auth: 'operator',
    query: ['ifRevision'],
    handle: (ctx, k) => {
      const ifRevision = ctx.intParam('ifRevision');
      return propose(ctx, ifRevision !== undefined ? { type: 'delete', key: k!, ifRevision } : { type: 'delete', key: k! });
    },
  },
};

const txn: Route = {
  auth: 'operator',
  query: [],
  handle: async (ctx) => propose(ctx, parseTxn(await ctx.jsonBody())),
};

const list: Route = {
  auth: 'reader',
  query: ['prefix', 'limit', 'startAfter', 'consistency'],
  handle: (ctx) => {
    const prefix = ctx.query.get('prefix') ?? '';
    if (prefix !== '') checkKey(prefix, 'prefix');
    const startAfter = ctx.query.get('startAfter') ?? undefined;
    if (startAfter !== undefined) checkKey(startAfter, 'startAfter');
    let limit = DEFAULT_LIST_LIMIT;
    const raw = ctx.query.get('limit');
    if (raw !== null) {
      if (!/^\d{1,16}$/.test(raw) || Number(raw) < 1) throw badField('limit', `must be a positive integer (at most ${MAX_LIST_LIMIT} are returned), got ${JSON.stringify(raw.slice(0, 40))}`);
      limit = Math.min(MAX_LIST_LIMIT, Number(raw));
    }
    return read(ctx, () => {
      const r = ctx.app.kv.range(prefix, limit, startAfter);
      ctx.json(200, { items: r.records.map(entry), revision: r.revision, more: r.more });
    });
  },
};

/** Methods of `/v1/kv/{key}`; `/v1/kv/txn` also takes POST (a transaction). */
export function kvKeyRoutes(rawKey: string): Readonly<Record<string, Route>> {
  return rawKey === 'txn' ? { ...key, POST: txn } : key;
}

export const kvListRoutes: Readonly<Record<string, Route>> = { GET: list };
