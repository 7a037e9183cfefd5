// Application coordination verbs: queue stats|push|claim|ack|nack,
// lock ls|acquire|release, outbox ls|push, checks (this node's application
// health checks and what the leader knows of the others').
import { UsageError, duration, int, str } from './args.js';
import { EXIT, cell, table, type Verb, type Context } from './command.js';

function args(ctx: Context, min: number, max: number, names: string): string[] {
  const p = ctx.args.positionals;
  if (p.length < min || p.length > max) throw new UsageError(`"quorate ${ctx.command.name}" takes ${names}, got ${p.length === 0 ? 'none' : p.map((s) => JSON.stringify(s)).join(' ')}`, ctx.command.name);
  return [...p];
}

function need(ctx: Context, name: string): string {
  const v = str(ctx.args, name);
  if (v === undefined) throw new UsageError(`--${name} is required`, ctx.command.name);
  return v;
}

const enc = encodeURIComponent;
type Rec = Record<string, unknown>;

const queueStats: Verb = {
  name: 'queue stats',
  usage: '[Q]',
  flags: [],
  examples: ['quorate queue stats', 'quorate queue stats emails --json'],
  remote: true,
  async run(ctx) {
    const [q] = args(ctx, 0, 1, 'at most one queue name');
    const body = q === undefined ? (await ctx.client().request<{ queues: Rec[] }>('GET', '/v1/queues')).body : { queues: [(await ctx.client().request<Rec>('GET', `/v1/queues/${enc(q)}`)).body] };
    ctx.print(q === undefined ? body : body.queues[0], () => (body.queues.length === 0 ? '(no queues)' : table(['QUEUE', 'READY', 'DELAYED', 'IN FLIGHT', 'ENQUEUED', 'ACKED', 'DEAD-LETTERED'],
      body.queues.map((s) => [String(s['queue']), cell(s['ready']), cell(s['delayed']), cell(s['inFlight']), cell(s['enqueued']), cell(s['acked']), `${cell(s['deadLettered'])} (${String(s['deadLetterQueue'])})`]))));
    return EXIT.ok;
  },
};

const queuePush: Verb = {
  name: 'queue push',
  usage: 'Q BODY [--delay 10s] [--max-deliveries N] [--idempotency-key K]',
  flags: [
    { name: 'delay', type: 'duration', value: 'DURATION', help: 'visible only after this long' },
    { name: 'max-deliveries', type: 'int', value: 'N', help: 'after N deliveries the message goes to Q.dlq (default 5, 0 = no limit)' },
    { name: 'idempotency-key', type: 'string', value: 'K', help: 'the same key enqueues once, however often it is sent' },
  ],
  examples: ['quorate queue push emails \'{"to":"a@example.com"}\'', 'quorate queue push reports weekly --delay 1m --idempotency-key report-2026-48'],
  remote: true,
  async run(ctx) {
    const [q, body] = args(ctx, 2, 2, 'Q and BODY');
    const delayMs = duration(ctx.args, 'delay');
    const maxDeliveries = int(ctx.args, 'max-deliveries');
    const key = str(ctx.args, 'idempotency-key');
    const r = await ctx.client().request<Rec>('POST', `/v1/queues/${enc(q!)}/messages`, { write: true, body: { body, ...(delayMs !== undefined ? { delayMs } : {}), ...(maxDeliveries !== undefined ? { maxDeliveries } : {}) }, ...(key !== undefined ? { idempotencyKey: key } : {}) });
    ctx.print(r.body, () => `enqueued ${String(r.body['id'])}`);
    return EXIT.ok;
  },
};

const queueClaim: Verb = {
  name: 'queue claim',
  usage: 'Q [--max N] [--visibility 30s] [--wait 5s]',
  flags: [
    { name: 'max', type: 'int', value: 'N', help: 'at most N messages (default 1, at most 100)' },
    { name: 'visibility', type: 'duration', value: 'DURATION', help: 'visibility timeout (default 30s)' },
    { name: 'wait', type: 'duration', value: 'DURATION', help: 'wait up to this long for a message (default: answer at once)' },
  ],
  examples: ['quorate queue claim emails --max 10 --visibility 1m', 'quorate queue claim emails --wait 20s --json'],
  remote: true,
  async run(ctx) {
    const [q] = args(ctx, 1, 1, 'one queue name');
    const max = int(ctx.args, 'max');
    const visibilityMs = duration(ctx.args, 'visibility');
    const waitMs = duration(ctx.args, 'wait');
    const r = await ctx.client().request<{ claimToken: string | null; messages: Rec[] }>('POST', `/v1/queues/${enc(q!)}/claim`, { write: true, extraMs: waitMs ?? 0, body: { ...(max !== undefined ? { max } : {}), ...(visibilityMs !== undefined ? { visibilityMs } : {}), ...(waitMs !== undefined ? { waitMs } : {}) } });
    ctx.print(r.body, () => (r.body.messages.length === 0 ? '(no message ready)'
      : `claim token ${String(r.body.claimToken)}\n${table(['ID', 'DELIVERIES', 'BODY'], r.body.messages.map((m) => [String(m['id']), cell(m['deliveries']), String(m['body']).slice(0, 80)]))}`));
    return EXIT.ok;
  },
};

function claimOp(op: 'ack' | 'nack'): Verb {
  return {
    name: `queue ${op}`,
    usage: `Q ID... --claim TOKEN${op === 'nack' ? ' [--delay 10s]' : ''}`,
    flags: [
      { name: 'claim', type: 'string', value: 'TOKEN', help: 'the claim token `queue claim` printed' },
      ...(op === 'nack' ? [{ name: 'delay', type: 'duration' as const, value: 'DURATION', help: 'visible again after this long (default at once)' }] : []),
    ],
    examples: [`quorate queue ${op} emails 1042 1043 --claim c1040`],
    remote: true,
    async run(ctx) {
      const [q, ...ids] = args(ctx, 2, 1001, 'Q and at least one message ID');
      const claimToken = need(ctx, 'claim');
      const delayMs = op === 'nack' ? duration(ctx.args, 'delay') : undefined;
      const r = await ctx.client().request<Rec>('POST', `/v1/queues/${enc(q!)}/${op}`, { write: true, body: { claimToken, ids, ...(delayMs !== undefined ? { delayMs } : {}) } });
      ctx.print(r.body, () => `${op === 'ack' ? 'acked' : 'returned'}: ${(r.body['done'] as string[]).join(' ')}`);
      return EXIT.ok;
    },
  };
}

const lockLs: Verb = {
  name: 'lock ls',
  usage: '',
  flags: [],
  examples: ['quorate lock ls', 'quorate lock ls --json'],
  remote: true,
  async run(ctx) {
    args(ctx, 0, 0, 'no arguments');
    const r = await ctx.client().request<{ locks: Rec[] }>('GET', '/v1/locks');
    ctx.print(r.body, () => (r.body.locks.length === 0 ? '(no locks held)' : table(['LOCK', 'OWNER', 'FENCING TOKEN', 'EXPIRES'],
      r.body.locks.map((l) => [String(l['name']), String(l['owner']), cell(l['fencingToken']), new Date(Number(l['expiresAt'])).toISOString()]))));
    return EXIT.ok;
  },
};

const lockAcquire: Verb = {
  name: 'lock acquire',
  usage: 'NAME --owner O [--ttl 30s] [--wait 10s]',
  flags: [
    { name: 'owner', type: 'string', value: 'O', help: 'who holds it (the same owner may acquire again to extend)' },
    { name: 'ttl', type: 'duration', value: 'DURATION', help: 'released by itself after this long unless renewed (default 30s)' },
    { name: 'wait', type: 'duration', value: 'DURATION', help: 'wait up to this long for the holder to release it' },
  ],
  examples: ['quorate lock acquire nightly-report --owner host-a --ttl 5m'],
  remote: true,
  async run(ctx) {
    const [name] = args(ctx, 1, 1, 'one lock NAME');
    const ttlMs = duration(ctx.args, 'ttl');
    const waitMs = duration(ctx.args, 'wait');
    const r = await ctx.client().request<Rec>('POST', `/v1/locks/${enc(name!)}`, { write: true, extraMs: waitMs ?? 0, body: { owner: need(ctx, 'owner'), ...(ttlMs !== undefined ? { ttlMs } : {}), ...(waitMs !== undefined ? { waitMs } : {}) } });
    ctx.print(r.body, () => `acquired ${name!}: fencing token ${cell(r.body['fencingToken'])}, expires ${new Date(Number(r.body['expiresAt'])).toISOString()}`);
    return EXIT.ok;
  },
};

const lockRelease: Verb = {
  name: 'lock release',
  usage: 'NAME --owner O --fencing-token N',
  flags: [
    { name: 'owner', type: 'string', value: 'O', help: 'the owner that acquired it' },
    { name: 'fencing-token', type: 'int', value: 'N', help: 'the fencing token acquire printed' },
  ],
  examples: ['quorate lock release nightly-report --owner host-a --fencing-token 1207'],
  remote: true,
  async run(ctx) {
    const [name] = args(ctx, 1, 1, 'one lock NAME');
    const token = int(ctx.args, 'fencing-token');
    if (token === undefined) throw new UsageError('--fencing-token is required', ctx.command.name);
    const r = await ctx.client().request<Rec>('DELETE', `/v1/locks/${enc(name!)}`, { write: true, query: { owner: need(ctx, 'owner'), fencingToken: token } });
    ctx.print(r.body, () => `released ${name!}`);
    return EXIT.ok;
  },
};

const outboxLs: Verb = {
  name: 'outbox ls',
  usage: '[--limit N]',
  flags: [{ name: 'limit', type: 'int', value: 'N', help: 'at most N messages (default 100)' }],
  examples: ['quorate outbox ls', 'quorate outbox ls --json'],
  remote: true,
  async run(ctx) {
    args(ctx, 0, 0, 'no arguments');
    const limit = int(ctx.args, 'limit');
    const r = await ctx.client().request<{ size: number; messages: Rec[] }>('GET', '/v1/outbox', { query: { limit } });
    ctx.print(r.body, () => (r.body.size === 0 ? '(outbox empty: everything delivered)' : `${r.body.size} waiting\n${table(['ID', 'CREATED', 'BODY'],
      r.body.messages.map((m) => [String(m['id']), new Date(Number(m['createdAt'])).toISOString(), String(m['body']).slice(0, 60)]))}`));
    return EXIT.ok;
  },
};

const outboxPush: Verb = {
  name: 'outbox push',
  usage: 'BODY [--content-type T] [--idempotency-key K]',
  flags: [
    { name: 'content-type', type: 'string', value: 'T', help: 'Content-Type of the delivery (default application/json)' },
    { name: 'idempotency-key', type: 'string', value: 'K', help: 'the same key adds the message once' },
  ],
  examples: ['quorate outbox push \'{"event":"user.created","id":42}\''],
  remote: true,
  async run(ctx) {
    const [body] = args(ctx, 1, 1, 'one BODY');
    const contentType = str(ctx.args, 'content-type');
    const key = str(ctx.args, 'idempotency-key');
    const r = await ctx.client().request<Rec>('POST', '/v1/outbox', { write: true, body: { body, ...(contentType !== undefined ? { contentType } : {}) }, ...(key !== undefined ? { idempotencyKey: key } : {}) });
    ctx.print(r.body, () => `queued for delivery as ${String(r.body['id'])}`);
    return EXIT.ok;
  },
};

const checks: Verb = {
  name: 'checks',
  usage: '',
  flags: [],
  examples: ['quorate checks', 'quorate checks --url http://10.0.1.11:7101 --json'],
  remote: true,
  async run(ctx) {
    args(ctx, 0, 0, 'no arguments');
    const r = await ctx.client().request<{ nodeName: string; healthy: boolean; failoverOnFailure: boolean; checks: Rec[]; peers: Record<string, Rec> }>('GET', '/v1/checks');
    const b = r.body;
    ctx.print(b, () => {
      const own = b.checks.length === 0 ? `${b.nodeName}: no health checks configured (health.checks)`
        : `${b.nodeName}: ${b.healthy ? 'healthy' : 'UNHEALTHY (a critical check fails)'}${b.failoverOnFailure ? ', failoverOnFailure on' : ''}\n${table(['CHECK', 'KIND', 'CRITICAL', 'STATE', 'FAILURES', 'LAST RUN', 'LAST ERROR'],
          b.checks.map((c) => [String(c['name']), String(c['kind']), c['critical'] === true ? 'yes' : 'no', c['healthy'] === true ? 'healthy' : 'unhealthy', cell(c['consecutiveFailures']), String(c['lastRunAt'] ?? '-'), String(c['lastError'] ?? '').slice(0, 60)]))}`;
      const peers = Object.entries(b.peers);
      return peers.length === 0 ? own : `${own}\n\nother nodes (as this leader last polled them):\n${table(['NODE', 'STATE', 'FAILING'], peers.map(([n, p]) => [n, p['healthy'] === true ? 'healthy' : 'unhealthy', (p['failing'] as string[]).join(', ') || '-']))}`;
    });
    return b.healthy ? EXIT.ok : EXIT.unhealthy;
  },
};

export const appCommands: readonly Verb[] = [queueStats, queuePush, queueClaim, claimOp('ack'), claimOp('nack'), lockLs, lockAcquire, lockRelease, outboxLs, outboxPush, checks];
