// The Redis witness (design: ./WITNESS.md): one hash per cluster, and every
// transition (acquire, renew, shrink, grow, release, create, confirm) is one
// Lua script over that key, timed by Redis's own TIME and stamped with the
// identity (run_id/master_replid) of the Redis that runs it. The scripts implement
// `transition()` of ./witness-record.ts; witness.test.ts runs one table of
// cases against both.
import type { WitnessOp, WitnessRecord, WitnessRefusal, WitnessResult } from './witness-record.js';
import { parseSet, setKey } from './witness-record.js';

/** The commands the witness needs from a Redis client (ioredis's shape). */
export interface WitnessRedis {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  info(section: string): Promise<string>;
}

const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = KEYS[1]
-- The identity of the Redis running this script, read here (not by the client) so that no restart can fall between reading it and using it.
local stamp = (string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or '?') .. '/' .. (string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or '')
local op = ARGV[2]
local me = tonumber(ARGV[3])
local function load()
  if redis.call('EXISTS', k) == 0 then return nil end
  local v = redis.call('HMGET', k, 'leader', 'epoch', 'expires', 'insync', 'stamp')
  return {leader = tonumber(v[1]), epoch = tonumber(v[2]), expires = tonumber(v[3]), insync = v[4], stamp = v[5]}
end
local function out(ok, code, r)
  if r == nil then return {ok, code, now} end
  return {ok, code, now, r.leader, r.epoch, r.expires, r.insync, r.stamp}
end
local function save(r)
  redis.call('HSET', k, 'leader', r.leader, 'epoch', r.epoch, 'expires', r.expires, 'insync', r.insync, 'stamp', r.stamp)
  return out(1, 'ok', r)
end
local function members(s)
  local m = {}
  local n = 0
  for x in string.gmatch(s, '[^,]+') do m[tonumber(x)] = true; n = n + 1 end
  return m, n
end
local r = load()
`;

/** One script: the op is dispatched inside, so each transition is one EVAL over one key. */
const SCRIPT = `${PRELUDE}
if op == 'confirm' then
  local floor = tonumber(ARGV[4])
  local quiet = now + tonumber(ARGV[5])
  if r == nil then return save({leader = 0, epoch = floor, expires = quiet, insync = tostring(me), stamp = stamp}) end
  r.leader = 0
  r.epoch = math.max(r.epoch, floor)
  r.expires = math.max(r.expires, quiet)
  r.stamp = stamp
  return save(r)
end
if op == 'create' then
  if r ~= nil then return out(0, 'exists', r) end
  return save({leader = 0, epoch = tonumber(ARGV[5]), expires = 0, insync = ARGV[4], stamp = stamp})
end
if r == nil then return out(0, 'missing', nil) end
if r.stamp ~= stamp then return out(0, 'untrusted', r) end
if op == 'acquire' then
  local m = members(r.insync)
  if not m[me] then return out(0, 'not_in_sync', r) end
  if r.leader ~= me and now < r.expires then return out(0, 'held', r) end
  r.leader = me
  r.epoch = math.max(r.epoch, tonumber(ARGV[4])) + 1
  r.expires = now + tonumber(ARGV[5])
  return save(r)
end
if r.leader ~= me or r.epoch ~= tonumber(ARGV[4]) then return out(0, 'not_leader', r) end
if op == 'release' then
  r.leader = 0
  r.expires = 0
  return save(r)
end
if now >= r.expires then return out(0, 'expired', r) end
if op == 'renew' then
  r.expires = now + tonumber(ARGV[5])
  return save(r)
end
local from, to = ARGV[5], ARGV[6]
if r.insync == to then return out(1, 'ok', r) end
if r.insync ~= from then return out(0, 'set_changed', r) end
local f, nf = members(from)
local tt, nt = members(to)
local ok = true
if op == 'shrink' then
  if nt == 0 or nt >= nf or not tt[me] then ok = false end
  for x in pairs(tt) do if not f[x] then ok = false end end
elseif op == 'grow' then
  if nt <= nf then ok = false end
  for x in pairs(f) do if not tt[x] then ok = false end end
else
  return redis.error_reply('unknown witness op ' .. op)
end
if not ok then return out(0, 'invalid', r) end
r.insync = to
return save(r)
`;

export const WITNESS_REFUSALS: readonly WitnessRefusal[] = ['missing', 'untrusted', 'not_in_sync', 'held', 'not_leader', 'expired', 'set_changed', 'invalid', 'exists'];

/** Refusal of a Redis that does not persist every change before answering; says what to add. */
export class WitnessPersistenceError extends Error {
  constructor(where: string, appendonly: string, appendfsync: string) {
    super(
      `the Redis witness at ${where} does not persist every change before answering (appendonly ${appendonly}, appendfsync ${appendfsync}): ` +
        'a restart would roll the witness record back and could promote a node that lacks acknowledged writes. Add these two lines to its redis.conf (or CONFIG SET them and CONFIG REWRITE), then restart quorate:\n' +
        '  appendonly yes\n  appendfsync always',
    );
    this.name = 'WitnessPersistenceError';
  }
}

function field(info: string, name: string): string {
  const m = new RegExp(`^${name}:(\\S+)`, 'm').exec(info);
  return m?.[1] ?? '';
}

export class RedisWitness {
  readonly #c: WitnessRedis;
  readonly key: string;
  readonly #where: string;

  constructor(client: WitnessRedis, keyPrefix: string, where: string) {
    this.#c = client;
    this.key = `${keyPrefix}witness`;
    this.#where = where;
  }

  /** `CONFIG GET appendonly/appendfsync`: throws WitnessPersistenceError unless `yes`/`always`. */
  async checkPersistence(): Promise<void> {
    const ao = (await this.#c.call('CONFIG', 'GET', 'appendonly')) as string[];
    const fs = (await this.#c.call('CONFIG', 'GET', 'appendfsync')) as string[];
    const appendonly = ao[1] ?? '(unset)';
    const appendfsync = fs[1] ?? '(unset)';
    if (appendonly !== 'yes' || appendfsync !== 'always') throw new WitnessPersistenceError(this.#where, appendonly, appendfsync);
  }

  /** The identity of the Redis that answers: `run_id/master_replid` (changes on a restart, a failover, a replaced instance). */
  async stamp(): Promise<string> {
    const server = await this.#c.info('server');
    const repl = await this.#c.info('replication');
    const runId = field(server, 'run_id');
    if (runId === '') throw new Error(`the Redis witness at ${this.#where} did not report its run_id (INFO server)`);
    return `${runId}/${field(repl, 'master_replid')}`;
  }

  /** Run one transition (one EVAL). */
  async run(op: WitnessOp): Promise<WitnessResult> {
    const args: (string | number)[] = ['', op.op, op.me];
    switch (op.op) {
      case 'acquire': args.push(op.floor, op.ttl); break;
      case 'renew': args.push(op.epoch, op.ttl); break;
      case 'release': args.push(op.epoch); break;
      case 'shrink':
      case 'grow': args.push(op.epoch, setKey(op.from), setKey(op.to)); break;
      case 'create': args.push(setKey(op.voters), op.floor); break;
      case 'confirm': args.push(op.floor, op.ttl); break;
    }
    const r = (await this.#c.eval(SCRIPT, 1, this.key, ...args)) as unknown[];
    return decode(r);
  }

  /** The record as stored (diagnostics, status), without trusting it. */
  async read(): Promise<WitnessRecord | undefined> {
    const v = (await this.#c.call('HGETALL', this.key)) as string[];
    if (v.length === 0) return undefined;
    const h = new Map<string, string>();
    for (let i = 0; i + 1 < v.length; i += 2) h.set(v[i]!, v[i + 1]!);
    return { leader: Number(h.get('leader') ?? 0), epoch: Number(h.get('epoch') ?? 0), expires: Number(h.get('expires') ?? 0), insync: parseSet(h.get('insync') ?? ''), stamp: h.get('stamp') ?? '' };
  }
}

function decode(r: unknown[]): WitnessResult {
  const ok = Number(r[0]) === 1;
  const code = String(r[1]);
  const now = Number(r[2]);
  const record: WitnessRecord | undefined = r.length > 3
    ? { leader: Number(r[3]), epoch: Number(r[4]), expires: Number(r[5]), insync: parseSet(String(r[6])), stamp: String(r[7]) }
    : undefined;
  if (ok) {
    if (!record) throw new Error('the witness script answered success without the record');
    return { ok: true, record, now };
  }
  if (!(WITNESS_REFUSALS as readonly string[]).includes(code)) throw new Error(`the witness script answered an unknown refusal ${code}`);
  return { ok: false, refused: code as WitnessRefusal, record, now };
}
