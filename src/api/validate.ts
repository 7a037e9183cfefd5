// Request validation. Every message names the field (`value: must be a
// string`); limits come from src/state so the API and the state machine agree.
import {
  COMPARE_OPS,
  COMPARE_TARGETS,
  InvalidCommandError,
  InvalidKeyError,
  MAX_IDEMPOTENCY_KEY_BYTES,
  MAX_TTL_MS,
  MAX_TXN_COMPARES,
  MAX_TXN_OPS,
  TooLargeError,
  utf8Bytes,
  validateEnvelope,
  validateKey,
  validateValue,
} from '../state/index.js';
import type { Command, Compare, CompareOp, PutCommand, TxnCommand, TxnOp } from '../state/index.js';
import { ApiError, badField } from './errors.js';

type Obj = Record<string, unknown>;

function object(field: string, v: unknown): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badField(field, `must be a JSON object, got ${kind(v)}`);
  return v as Obj;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v).slice(0, 40)}`;
}

function onlyFields(prefix: string, o: Obj, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw badField(`${prefix}${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
  }
}

function nonNegInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw badField(field, `must be a non-negative integer, got ${kind(v)}`);
  return v;
}

function ttl(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > MAX_TTL_MS) throw badField(field, `must be an integer in 1..${MAX_TTL_MS} (ms), got ${kind(v)}`);
  return v;
}

function str(field: string, v: unknown): string {
  if (typeof v !== 'string') throw badField(field, v === undefined ? 'is required and must be a string' : `must be a string, got ${kind(v)}`);
  return v;
}

/** Validates a key from the URL path (400 invalid_key / 413 key_too_large). */
export function checkKey(key: string, field = 'key'): string {
  try {
    return validateKey(key);
  } catch (err) {
    throw fromStateError(field, err);
  }
}

function checkValue(field: string, value: string): string {
  try {
    return validateValue(value);
  } catch (err) {
    throw fromStateError(field, err);
  }
}

/** State-layer validation errors as API errors naming `field`. */
function fromStateError(field: string, err: unknown): unknown {
  if (err instanceof TooLargeError) return new ApiError(err.code as 'key_too_large' | 'value_too_large', `${field}: ${err.message}`, { field, bytes: err.bytes, limitBytes: err.limitBytes });
  if (err instanceof InvalidKeyError) return new ApiError('invalid_key', `${field}: ${err.message}`, { field });
  if (err instanceof InvalidCommandError) {
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof TooLargeError || cause instanceof InvalidKeyError) return fromStateError(field, cause);
    return badField(field, err.message.replace(/^invalid command: [^:]*: /, ''));
  }
  return err;
}

/** Decodes the `{key}` path tail (percent-encoded, may contain '/'). */
export function decodeKey(raw: string): string {
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new ApiError('invalid_key', 'key: malformed percent-encoding in the URL path', { field: 'key' });
  }
  return checkKey(key);
}

/** Idempotency-Key header: 1..256 bytes, or undefined. */
export function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (header === '') throw badField('Idempotency-Key', 'must not be empty');
  const n = utf8Bytes(header);
  if (n > MAX_IDEMPOTENCY_KEY_BYTES) {
    throw new ApiError('idempotency_key_too_large', `Idempotency-Key: is ${n} bytes; the limit is ${MAX_IDEMPOTENCY_KEY_BYTES}`, { field: 'Idempotency-Key', bytes: n, limitBytes: MAX_IDEMPOTENCY_KEY_BYTES });
  }
  return header;
}

/** PUT /v1/kv/{key} body → put command. */
export function parsePut(key: string, body: unknown): PutCommand {
  const o = object('body', body);
  onlyFields('', o, ['value', 'ifRevision', 'ttlMs']);
  const value = checkValue('value', str('value', o['value']));
  const cmd: { type: 'put'; key: string; value: string; ifRevision?: number; ttlMs?: number } = { type: 'put', key, value };
  if (o['ifRevision'] !== undefined) cmd.ifRevision = nonNegInt('ifRevision', o['ifRevision']);
  if (o['ttlMs'] !== undefined) cmd.ttlMs = ttl('ttlMs', o['ttlMs']);
  return cmd;
}

const NUMERIC_TARGETS = ['revision', 'createRevision', 'version'] as const;

function parseCompare(field: string, v: unknown): Compare {
  const o = object(field, v);
  onlyFields(`${field}.`, o, ['key', 'target', 'op', 'value', 'revision']);
  const key = checkKey(str(`${field}.key`, o['key']), `${field}.key`);
  // `revision` is accepted as shorthand for {target: 'revision', value: n}.
  const target = o['target'] ?? (o['revision'] !== undefined ? 'revision' : undefined);
  if (typeof target !== 'string' || !(COMPARE_TARGETS as readonly string[]).includes(target)) {
    throw badField(`${field}.target`, `must be one of ${COMPARE_TARGETS.join(', ')}, got ${kind(target)}`);
  }
  const op = o['op'] ?? '=';
  if (typeof op !== 'string' || !(COMPARE_OPS as readonly string[]).includes(op)) {
    throw badField(`${field}.op`, `must be one of ${COMPARE_OPS.join(' ')}, got ${kind(op)}`);
  }
  const value = o['value'] !== undefined ? o['value'] : o['revision'];
  if ((NUMERIC_TARGETS as readonly string[]).includes(target)) {
    return { key, target: target as (typeof NUMERIC_TARGETS)[number], op: op as CompareOp, value: nonNegInt(`${field}.value`, value) };
  }
  if (target === 'value') return { key, target: 'value', op: op as CompareOp, value: checkValue(`${field}.value`, str(`${field}.value`, value)) };
  if (typeof value !== 'boolean') throw badField(`${field}.value`, `must be a boolean for target exists, got ${kind(value)}`);
  if (op !== '=' && op !== '!=') throw badField(`${field}.op`, `must be = or != for target exists, got ${op}`);
  return { key, target: 'exists', op, value };
}

function parseOp(field: string, v: unknown): TxnOp {
  const o = object(field, v);
  onlyFields(`${field}.`, o, ['type', 'op', 'key', 'value', 'ttlMs']);
  // `op` is accepted as an alias of `type` (QuorateClient's TxnOp shape).
  const type = o['type'] ?? o['op'];
  const tf = o['type'] !== undefined ? `${field}.type` : `${field}.op`;
  const key = checkKey(str(`${field}.key`, o['key']), `${field}.key`);
  if (type === 'put') {
    const value = checkValue(`${field}.value`, str(`${field}.value`, o['value']));
    return o['ttlMs'] !== undefined ? { type: 'put', key, value, ttlMs: ttl(`${field}.ttlMs`, o['ttlMs']) } : { type: 'put', key, value };
  }
  if (type === 'delete') {
    if (o['value'] !== undefined) throw badField(`${field}.value`, 'not allowed on a delete');
    if (o['ttlMs'] !== undefined) throw badField(`${field}.ttlMs`, 'not allowed on a delete');
    return { type: 'delete', key };
  }
  throw badField(tf, `must be put or delete (txn ops are writes; read keys with GET /v1/kv/{key}), got ${kind(type)}`);
}

function list<T>(field: string, v: unknown, parse: (f: string, x: unknown) => T, required: boolean, max: number, what: string): T[] {
  if (v === undefined && !required) return [];
  if (!Array.isArray(v)) throw badField(field, `must be an array, got ${kind(v)}`);
  // Count first: a 2 MiB body can hold ~10^5 entries; refuse before parsing them.
  if (v.length > max) throw badField(field, `${v.length} ${what} exceed the limit of ${max}`);
  return v.map((x, i) => parse(`${field}[${i}]`, x));
}

/** POST /v1/kv/txn body → txn command (fully validated, limits included). */
export function parseTxn(body: unknown): TxnCommand {
  const o = object('body', body);
  onlyFields('', o, ['compare', 'success', 'failure']);
  const cmd: TxnCommand = {
    type: 'txn',
    compare: list('compare', o['compare'], parseCompare, false, MAX_TXN_COMPARES, 'compares'),
    success: list('success', o['success'], parseOp, true, MAX_TXN_OPS, 'ops'),
    failure: list('failure', o['failure'], parseOp, false, MAX_TXN_OPS, 'ops'),
  };
  checkCommand(cmd);
  return cmd;
}

/** Runs the state machine's own validation (counts, duplicate keys) and names the request field. */
export function checkCommand(cmd: Command): void {
  try {
    validateEnvelope({ at: 0, command: cmd });
  } catch (err) {
    if (err instanceof InvalidCommandError) {
      const field = err.field.replace(/^(txn|put|delete)\./, '');
      throw fromStateError(field, err);
    }
    throw err;
  }
}

/** Parses `at` as an ISO 8601 time with a zone or "+DURATION" (500ms, 90s, 10m, 2h) relative to `now`. Undefined when it is neither. */
export function parseSwitchoverAt(s: string, now: number): number | undefined {
  const rel = /^\+(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s.trim());
  if (rel) {
    const unit = rel[2];
    const mult = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
    return now + Math.round(Number(rel[1]) * mult);
  }
  // A date and a time with a zone (Z or ±hh:mm); a local time would depend on the leader's TZ.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(s.trim())) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
}

/** POST /v1/cluster/switchover body (may be empty); `at` is parsed again on the leader (parseSwitchoverAt), relative times by its clock. */
export function parseSwitchover(body: unknown): { to?: string; at?: string } {
  if (body === undefined) return {};
  const o = object('body', body);
  onlyFields('', o, ['to', 'at']);
  const r: { to?: string; at?: string } = {};
  if (o['to'] !== undefined) {
    const to = str('to', o['to']);
    if (to === '' || to.length > 256) throw badField('to', 'must be a node name (omit it to let the cluster pick the most caught-up voter)');
    r.to = to;
  }
  if (o['at'] !== undefined) {
    const at = str('at', o['at']);
    if (parseSwitchoverAt(at, Date.now()) === undefined) throw badField('at', `must be an ISO 8601 time with a zone such as "2026-12-01T02:00:00Z", or "+DURATION" such as "+10m" (ms, s, m, h), got ${JSON.stringify(at.slice(0, 60))}`);
    r.at = at;
  }
  return r;
}
