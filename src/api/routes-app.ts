// Application coordination (SPEC §4): /v1/queues, /v1/locks, /v1/outbox, and
// /v1/checks (this node's application health checks). Writes go through the
// log on the leader (forwarded from other nodes, like KV writes) and accept
// Idempotency-Key; reads are linearizable by default (read barrier on the
// leader) or `consistency=stale`. The machine: src/state/app-machine.ts.
import { DEFAULT_MAX_DELIVERIES, MAX_CLAIM, validateAppCommand, type AppCommand } from '../state/index.js';
import type { RequestContext, Route } from './context.js';
import { ApiError, badField } from './errors.js';
import { onLeader } from './leader.js';
import type { AppCoordination } from './ports-app.js';
import { idempotencyKey } from './validate.js';

type Methods = Readonly<Record<string, Route>>;
/** Long polls (claim, lock wait) look at the leader's state this often before proposing. */
const POLL_MS = 50;
const MAX_WAIT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function coord(ctx: RequestContext): AppCoordination {
  const c = ctx.app.coord;
  if (c === undefined) throw new ApiError('not_found', 'this server has no application coordination (queues, locks, outbox)');
  return c;
}

async function body(ctx: RequestContext): Promise<Record<string, unknown>> {
  const b = (await ctx.jsonBody(true)) ?? {};
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw badField('body', 'must be a JSON object');
  return b as Record<string, unknown>;
}

function known(b: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(b)) if (!allowed.includes(k)) throw badField(k, `unknown field (allowed: ${allowed.join(', ')})`);
}

function num(b: Record<string, unknown>, field: string, dflt: number, min: number, max: number): number {
  const v = b[field];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw badField(field, `must be an integer in ${min}..${max}, got ${JSON.stringify(v)?.slice(0, 40)}`);
  return v;
}

function str(b: Record<string, unknown>, field: string): string {
  const v = b[field];
  if (typeof v !== 'string') throw badField(field, `must be a string, got ${v === undefined ? 'nothing' : typeof v}`);
  return v;
}

function ids(b: Record<string, unknown>): string[] {
  const v = b['ids'];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw badField('ids', 'must be an array of message ids (strings)');
  return v as string[];
}

/** Proposes on the leader (forwarded otherwise); `answer` turns the machine's data into the response. */
async function write(ctx: RequestContext, cmd: AppCommand, answer: (data: Record<string, unknown>) => void): Promise<void> {
  validateAppCommand(cmd);
  const ik = idempotencyKey(ctx.header('idempotency-key'));
  await onLeader(ctx, true, async () => answer((await coord(ctx).propose(cmd, ik !== undefined ? { idempotencyKey: ik } : {})) as Record<string, unknown>));
}

async function read(ctx: RequestContext, serve: () => void): Promise<void> {
  if (ctx.consistency() === 'stale') return serve();
  await onLeader(ctx, false, async () => {
    await coord(ctx).readBarrier();
    serve();
  });
}

/** ack / nack / extend: 200 when every id was done, else 409 stale_claim naming the refused ids (the others were done). */
function claimAnswer(ctx: RequestContext, op: string) {
  return (d: Record<string, unknown>) => {
    const refused = (d['refused'] as { id: string; reason: string }[]) ?? [];
    if (refused.length === 0) return ctx.json(200, d);
    const done = (d['done'] as string[]) ?? [];
    throw new ApiError('stale_claim', `${op} refused for ${refused.map((r) => `${r.id} (${r.reason === 'not_found' ? 'no such message: already acked or never enqueued' : 'the claim expired or the message was claimed again'})`).join(', ')}${done.length > 0 ? `; done for ${done.join(', ')}` : ''}. Claim the message again before working on it`,
      { refusedIds: refused.map((r) => r.id), doneIds: done });
  };
}

export function queueRoutes(q: string, action: string | undefined): Methods | undefined {
  const post = (handle: (ctx: RequestContext) => Promise<void>): Methods => ({ POST: { auth: 'operator', query: [], handle } });
  switch (action) {
    case undefined:
      return { GET: { auth: 'reader', query: ['consistency'], handle: (ctx) => read(ctx, () => ctx.json(200, coord(ctx).queueStats(q))) } };
    case 'messages':
      return post(async (ctx) => {
        const b = await body(ctx);
        known(b, ['body', 'delayMs', 'maxDeliveries']);
        await write(ctx, { op: 'enqueue', queue: q, body: str(b, 'body'), delayMs: num(b, 'delayMs', 0, 0, Number.MAX_SAFE_INTEGER), maxDeliveries: num(b, 'maxDeliveries', DEFAULT_MAX_DELIVERIES, 0, 1000) }, (d) => ctx.json(200, d));
      });
    case 'claim':
      return post(async (ctx) => {
        const b = await body(ctx);
        known(b, ['max', 'visibilityMs', 'waitMs']);
        const cmd: AppCommand = { op: 'claim', queue: q, max: num(b, 'max', 1, 1, MAX_CLAIM), visibilityMs: num(b, 'visibilityMs', 30_000, 1, Number.MAX_SAFE_INTEGER) };
        validateAppCommand(cmd);
        const deadline = Date.now() + num(b, 'waitMs', 0, 0, MAX_WAIT_MS);
        // The n-th claim of this request carries "<Idempotency-Key>#n": a retry of the request after a lost answer gets the same claims back.
        const ik = idempotencyKey(ctx.header('idempotency-key'));
        let attempt = 0;
        const keyed = () => (ik === undefined ? {} : { idempotencyKey: attempt++ === 0 ? ik : `${ik.slice(0, 200)}#${attempt}` });
        await onLeader(ctx, true, async () => {
          const c = coord(ctx);
          await c.readBarrier();
          // Propose only when the leader's state has something to give: an empty claim answered from it is linearizable (after the barrier).
          for (;;) {
            if (c.queueStats(q, Date.now()).ready > 0) {
              const d = (await c.propose(cmd, keyed())) as { messages: unknown[] };
              if (d.messages.length > 0 || Date.now() >= deadline) return ctx.json(200, d);
            } else if (Date.now() >= deadline) {
              return ctx.json(200, { claimToken: null, messages: [] });
            }
            await sleep(POLL_MS);
          }
        });
      });
    case 'ack':
    case 'nack':
    case 'extend':
      return post(async (ctx) => {
        const b = await body(ctx);
        const claimToken = () => str(b, 'claimToken');
        if (action === 'ack') { known(b, ['claimToken', 'ids']); return write(ctx, { op: 'ack', queue: q, claimToken: claimToken(), ids: ids(b) }, claimAnswer(ctx, 'ack')); }
        if (action === 'nack') { known(b, ['claimToken', 'ids', 'delayMs']); return write(ctx, { op: 'nack', queue: q, claimToken: claimToken(), ids: ids(b), delayMs: num(b, 'delayMs', 0, 0, Number.MAX_SAFE_INTEGER) }, claimAnswer(ctx, 'nack')); }
        known(b, ['claimToken', 'ids', 'visibilityMs']);
        return write(ctx, { op: 'extend', queue: q, claimToken: claimToken(), ids: ids(b), visibilityMs: num(b, 'visibilityMs', 30_000, 1, Number.MAX_SAFE_INTEGER) }, claimAnswer(ctx, 'extend'));
      });
    default:
      return undefined;
  }
}

export function lockRoutes(name: string, action: string | undefined): Methods | undefined {
  if (action === 'renew') {
    return {
      POST: {
        auth: 'operator', query: [],
        handle: async (ctx) => {
          const b = await body(ctx);
          known(b, ['owner', 'fencingToken', 'ttlMs']);
          await write(ctx, { op: 'renew', name, owner: str(b, 'owner'), fencingToken: num(b, 'fencingToken', 0, 1, Number.MAX_SAFE_INTEGER), ttlMs: num(b, 'ttlMs', 30_000, 1, Number.MAX_SAFE_INTEGER) }, notHolder(ctx, name, 'renew'));
        },
      },
    };
  }
  if (action !== undefined) return undefined;
  return {
    GET: {
      auth: 'reader', query: ['consistency'],
      handle: (ctx) => read(ctx, () => {
        const l = coord(ctx).lock(name);
        if (l === undefined || l.expired) throw new ApiError('not_found', `lock ${JSON.stringify(name)} is not held`);
        ctx.json(200, l);
      }),
    },
    POST: {
      auth: 'operator', query: [],
      handle: async (ctx) => {
        const b = await body(ctx);
        known(b, ['owner', 'ttlMs', 'waitMs']);
        const cmd: AppCommand = { op: 'lock', name, owner: str(b, 'owner'), ttlMs: num(b, 'ttlMs', 30_000, 1, Number.MAX_SAFE_INTEGER) };
        validateAppCommand(cmd);
        const deadline = Date.now() + num(b, 'waitMs', 0, 0, MAX_WAIT_MS);
        await onLeader(ctx, true, async () => {
          const c = coord(ctx);
          for (;;) {
            const d = (await c.propose(cmd)) as Record<string, unknown>;
            if (d['acquired'] === true) return ctx.json(200, d);
            if (Date.now() >= deadline) {
              throw new ApiError('lock_held', `lock ${JSON.stringify(name)} is held by ${JSON.stringify(d['holder'])} for ${String(d['expiresInMs'])} ms more (unless renewed); retry later or pass waitMs to wait for it`,
                { holder: String(d['holder']), expiresInMs: Number(d['expiresInMs']) });
            }
            // Wait until the leader's state shows the lock free (released or expired), then try again.
            await sleep(POLL_MS);
            while (Date.now() < deadline) {
              const l = c.lock(name);
              if (l === undefined || l.expiresAt <= Date.now()) break;
              await sleep(POLL_MS);
            }
          }
        });
      },
    },
    DELETE: {
      auth: 'operator', query: ['owner', 'fencingToken'],
      handle: async (ctx) => {
        const owner = ctx.query.get('owner');
        if (owner === null) throw badField('owner', 'is required (the owner that acquired the lock)');
        const fencingToken = ctx.intParam('fencingToken', 1);
        if (fencingToken === undefined) throw badField('fencingToken', 'is required (the token acquire answered)');
        await write(ctx, { op: 'unlock', name, owner, fencingToken }, notHolder(ctx, name, 'release'));
      },
    },
  };
}

function notHolder(ctx: RequestContext, name: string, op: string) {
  return (d: Record<string, unknown>) => {
    if (d['ok'] === true) return ctx.json(200, d);
    const reason = String(d['reason']);
    const why = reason === 'expired' ? 'its TTL ran out (another client may hold it now)' : reason === 'not_held' ? 'nobody holds it' : 'another owner or fencing token holds it';
    throw new ApiError('not_lock_holder', `cannot ${op} lock ${JSON.stringify(name)}: ${why}. Acquire it again (a new fencing token) before writing`, { reason });
  };
}

export const appStaticRoutes: Readonly<Record<string, Methods>> = {
  '/v1/queues': { GET: { auth: 'reader', query: ['consistency'], handle: (ctx) => read(ctx, () => { const c = coord(ctx); ctx.json(200, { queues: c.queueNames().map((q) => c.queueStats(q)) }); }) } },
  '/v1/locks': { GET: { auth: 'reader', query: ['consistency'], handle: (ctx) => read(ctx, () => ctx.json(200, { locks: coord(ctx).locks().filter((l) => !l.expired) })) } },
  '/v1/outbox': {
    GET: { auth: 'reader', query: ['consistency', 'limit'], handle: (ctx) => { const limit = ctx.intParam('limit', 1, 10_000) ?? 100; return read(ctx, () => { const c = coord(ctx); ctx.json(200, { size: c.outboxSize(), messages: c.outbox(limit) }); }); } },
    POST: {
      auth: 'operator', query: [],
      handle: async (ctx) => {
        const b = await body(ctx);
        known(b, ['body', 'contentType']);
        if (!coord(ctx).outboxEnabled) throw new ApiError('outbox_not_configured', 'outbox.webhookUrl is not set on this node, so nothing would deliver the message; set it in the config file of every node and restart them');
        const contentType = b['contentType'] === undefined ? 'application/json' : str(b, 'contentType');
        await write(ctx, { op: 'outbox-add', body: str(b, 'body'), contentType }, (d) => ctx.json(200, d));
      },
    },
  },
  '/v1/checks': {
    GET: {
      auth: 'reader', query: [],
      handle: (ctx) => {
        const c = coord(ctx);
        ctx.json(200, { nodeName: ctx.app.cluster.nodeName, failoverOnFailure: c.failoverOnFailure, ...(c.health() ?? { healthy: true, failing: [], failingCritical: [], checks: [] }), peers: c.peerHealth() });
        return Promise.resolve();
      },
    },
  },
};

/** /v1/queues/{q}[/action] and /v1/locks/{name}[/renew]. */
export function matchApp(path: string): { name: string; methods: Methods } | undefined {
  const m = /^\/v1\/(queues|locks)\/([^/]+)(?:\/([a-z]+))?$/.exec(path);
  if (m === null) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(m[2]!);
  } catch {
    return undefined;
  }
  const methods = m[1] === 'queues' ? queueRoutes(id, m[3]) : lockRoutes(id, m[3]);
  return methods === undefined ? undefined : { name: `/v1/${m[1]}/{${m[1] === 'queues' ? 'q' : 'name'}}${m[3] !== undefined ? `/${m[3]}` : ''}`, methods };
}
