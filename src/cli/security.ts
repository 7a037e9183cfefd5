// Security verbs: token create|ls|revoke, audit (SPEC §5; docs/cli.md).
import { UsageError, int, str } from './args.js';
import { EXIT, keyValues, table, type Verb } from './command.js';

const ROLES = ['reader', 'operator', 'admin'];

/** "30d", "12h", "90m", "3600s" or a bare number of seconds, in whole seconds. */
export function parseTtlSeconds(s: string): number | undefined {
  const m = /^(\d{1,9})(d|h|m|s)?$/.exec(s.trim());
  if (!m) return undefined;
  const mult = { d: 86_400, h: 3600, m: 60, s: 1 }[(m[2] ?? 's') as 'd' | 'h' | 'm' | 's'];
  const n = Number(m[1]) * mult;
  return n >= 1 ? n : undefined;
}

const create: Verb = {
  name: 'token create',
  usage: '--name N --role reader|operator|admin [--ttl 30d]',
  description:
    'Calls POST /v1/tokens (forwarded to the leader). The token is kept in the replicated state as a SHA-256 hash only and works on every node as soon as its entry applies there; ' +
    'it is printed once, here: store it (e.g. as QUORATE_TOKEN). Roles: reader reads, operator also writes data and runs leadership and maintenance actions, admin does everything (see docs/security.md).',
  flags: [
    { name: 'name', type: 'string', value: 'N', help: 'a unique name (letters, digits, . _ -; up to 64), shown in the audit log' },
    { name: 'role', type: 'string', value: 'ROLE', help: 'reader, operator or admin' },
    { name: 'ttl', type: 'string', value: 'TTL', help: 'expire after 30d, 12h, 90m or 3600s (default: never)' },
  ],
  examples: ['quorate token create --name grafana --role reader', 'quorate token create --name ci --role operator --ttl 30d --json'],
  remote: true,
  async run(ctx) {
    const name = str(ctx.args, 'name');
    const role = str(ctx.args, 'role');
    if (name === undefined) throw new UsageError('--name is required', 'token create');
    if (role === undefined || !ROLES.includes(role)) throw new UsageError('--role must be reader, operator or admin', 'token create');
    const ttlText = str(ctx.args, 'ttl');
    const ttlSeconds = ttlText === undefined ? undefined : parseTtlSeconds(ttlText);
    if (ttlText !== undefined && ttlSeconds === undefined) throw new UsageError(`--ttl needs a duration such as 30d, 12h, 90m or 3600s, got ${JSON.stringify(ttlText)}`, 'token create');
    const body = { name, role, ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) };
    const r = (await ctx.client().request<Record<string, unknown>>('POST', '/v1/tokens', { body, write: true })).body;
    ctx.print(r, () => `${String(r['token'])}\n\n` + keyValues([
      ['name', String(r['name'])], ['role', String(r['role'])], ['expires', r['expiresAt'] === null ? 'never' : String(r['expiresAt'])],
    ]) + '\n\nThis is the only time the token is shown: store it now (it cannot be shown again; revoke it and create another if it is lost).');
    return EXIT.ok;
  },
};

const ls: Verb = {
  name: 'token ls',
  usage: '',
  description: 'Calls GET /v1/tokens on the node asked (its applied copy). Tokens of tokens.json and admin.token files are not listed: they are node-local files.',
  flags: [],
  examples: ['quorate token ls', 'quorate token ls --json'],
  remote: true,
  async run(ctx) {
    const body = (await ctx.client().request<{ tokens?: Record<string, unknown>[] }>('GET', '/v1/tokens')).body;
    const tokens = body.tokens ?? [];
    ctx.print(body, () => (tokens.length === 0 ? '(no managed tokens; create one with `quorate token create`)' : table(['NAME', 'ROLE', 'CREATED', 'EXPIRES', 'BY'], tokens.map((t) => [
      String(t['name']), String(t['role']), String(t['createdAt']), t['expiresAt'] === null ? 'never' : `${String(t['expiresAt'])}${t['expired'] === true ? ' (expired)' : ''}`, String(t['createdBy']),
    ]))));
    return EXIT.ok;
  },
};

const revoke: Verb = {
  name: 'token revoke',
  usage: 'NAME',
  description: 'Calls DELETE /v1/tokens/NAME (forwarded to the leader). The token stops working on each node when the revocation applies there: within a heartbeat on nodes in contact with the leader.',
  flags: [],
  examples: ['quorate token revoke ci'],
  remote: true,
  async run(ctx) {
    const name = ctx.args.positionals[0];
    if (name === undefined || ctx.args.positionals.length > 1) throw new UsageError('give exactly one token name (`quorate token ls` lists them)', 'token revoke');
    const r = (await ctx.client().request<Record<string, unknown>>('DELETE', `/v1/tokens/${encodeURIComponent(name)}`, { write: true })).body;
    ctx.print(r, () => `token "${name}" revoked`);
    return EXIT.ok;
  },
};

const audit: Verb = {
  name: 'audit',
  usage: '[--limit N]',
  description:
    'Calls GET /v1/audit on the node asked (its applied copy of the replicated log), oldest first. Every call of an operator/admin endpoint that changes something is recorded ' +
    '(membership, leadership, settings, tokens, snapshots, ...), including calls refused for their role; data writes are not recorded one by one. Bounded: the newest 2000 records are kept.',
  flags: [{ name: 'limit', type: 'int', value: 'N', help: 'only the newest N records (1..20000)' }],
  examples: ['quorate audit', 'quorate audit --limit 50 --json'],
  remote: true,
  async run(ctx) {
    const limit = int(ctx.args, 'limit');
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > 20_000)) throw new UsageError('--limit must be an integer in 1..20000', 'audit');
    const body = (await ctx.client().request<{ records?: Record<string, unknown>[] }>('GET', '/v1/audit', limit !== undefined ? { query: { limit: String(limit) } } : {})).body;
    const records = body.records ?? [];
    ctx.print(body, () => (records.length === 0 ? '(no audited actions yet)' : table(['TIME', 'WHO', 'ACTION', 'TARGET', 'FROM', 'NODE', 'RESULT'], records.map((r) => [
      String(r['at']), String(r['actor']), String(r['action']), r['target'] === null ? '-' : String(r['target']), String(r['address']), String(r['node']), `${String(r['result'])} (${String(r['status'])})`,
    ]))));
    return EXIT.ok;
  },
};

const caExport: Verb = {
  name: 'ca export',
  usage: '',
  description:
    'Calls GET /v1/ca on the node asked and prints the root certificates it trusts now (previous, current and next period, of the current CA epoch and of the next one, and of the previous one during a `ca rotate` grace), PEM, for `--ca FILE` of the CLI, the `ca` option of the client library or a load balancer. ' +
    'Only with security.tls "auto" off loopback (the automatic cluster CA). Roots rotate every security.caRotationSeconds (30 days): export again within a period after a rotation, and at once after `quorate isolate`, which re-roots the cluster.',
  flags: [],
  examples: ['quorate ca export > ca.pem', 'quorate --url https://10.0.1.10:7101 --ca ca.pem status'],
  remote: true,
  async run(ctx) {
    const body = (await ctx.client().request<{ bundle?: string }>('GET', '/v1/ca')).body;
    ctx.print(body, () => String(body.bundle ?? '').trimEnd());
    return EXIT.ok;
  },
};

const caShow: Verb = {
  name: 'ca show',
  usage: '',
  description: 'Calls GET /v1/ca on the node asked: the CA epoch (moved by `quorate ca rotate`) and, during a rotation\'s grace, the members not yet seen with a certificate of the new epoch; the roots it trusts now (epoch, period, SHA-256 fingerprint, validity), which root its own certificate was issued from and until when it is valid, and Token, the reference of the cluster secret the roots derive from (changes when `quorate isolate` rotates it).',
  flags: [],
  examples: ['quorate ca show', 'quorate ca show --json'],
  remote: true,
  async run(ctx) {
    const b = (await ctx.client().request<{
      nodeName?: string; period?: number; periodSeconds?: number; epoch?: number; token?: string; roots?: Record<string, unknown>[]; nodeCertificate?: Record<string, unknown>;
      pending?: { epoch: number; waitingFor: string[] } | null;
    }>('GET', '/v1/ca')).body;
    const roots = b.roots ?? [];
    const grace = b.pending ? `open: epoch ${b.pending.epoch - 1} still trusted; ${b.pending.waitingFor.length > 0 ? `waiting for ${b.pending.waitingFor.join(', ')}` : 'every member re-issued'}` : 'none';
    ctx.print(b, () => `${keyValues([
      ['node', String(b.nodeName)], ['epoch', String(b.epoch ?? 0)], ['rotation grace', grace], ['period', `${String(b.period)} (a new root every ${String(b.periodSeconds)} s)`], ['token', String(b.token)],
      ['node certificate', `from root ${String(b.nodeCertificate?.['issuedFromPeriod'])} of epoch ${String(b.nodeCertificate?.['issuedFromEpoch'] ?? 0)}, valid until ${String(b.nodeCertificate?.['notAfter'])}`],
    ])}\n\n${table(['EPOCH', 'ROOT', 'FINGERPRINT (SHA-256)', 'NOT BEFORE', 'NOT AFTER'], roots.map((r) => [String(r['epoch'] ?? 0), String(r['period']), String(r['fingerprint']), String(r['notBefore']), String(r['notAfter'])]))}`);
    return EXIT.ok;
  },
};

const caRotate: Verb = {
  name: 'ca rotate',
  usage: '',
  description:
    'Calls POST /v1/cluster/ca/rotate (admin; forwarded to the leader; audited). The cluster CA moves to its next epoch: every member makes a new key, issues its certificate from the new roots and reconnects to its peers. ' +
    'The previous epoch stays trusted until every current member has shown a certificate of the new one (`quorate ca show`: rotation grace), so a member that is down or slow catches up by itself; a new rotation is refused (409) until then. ' +
    'Needs cluster feature level 4 (409 naming the level while a member runs an older release). The cluster secret is not changed: if it may have leaked, use `quorate isolate` (docs/operations.md). Clients that pinned the roots (--ca) export them again afterwards.',
  flags: [],
  examples: ['quorate ca rotate', 'quorate ca rotate --json', 'quorate ca show'],
  remote: true,
  async run(ctx) {
    const r = (await ctx.client().request<{ epoch?: number; message?: string; leader?: string }>('POST', '/v1/cluster/ca/rotate', { body: {}, write: true })).body;
    ctx.print(r, () => String(r.message));
    return EXIT.ok;
  },
};

export const securityCommands: readonly Verb[] = [create, ls, revoke, audit, caExport, caShow, caRotate];
