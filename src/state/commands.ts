// KV commands and their wire encoding.
//
// An entry's data is one msgpack array with a fixed positional layout (no maps),
// so equal commands always encode to equal bytes and decoding never depends on
// key order. Absent optional fields are `nil`. Layout, format version 1:
//
//   [1, at, idempotencyKey|nil, tag, ...body]
//   tag 0 noop:   (no body)
//   tag 1 put:    key, value, ifRevision|nil, ttlMs|nil
//   tag 2 delete: key, ifRevision|nil
//   tag 3 txn:    [[key, target, op, value]...], successOps, failureOps
//                 op = [1, key, value, ttlMs|nil] | [2, key]
//                 target 0 revision 1 createRevision 2 version 3 value 4 exists
//                 op 0 '=' 1 '!=' 2 '<' 3 '>'
//   tag 4 expire: [[key, modRevision]...]
//
// A new field or command means a new format version; a node that meets a
// version it does not know stops (UnsupportedCommandVersionError) rather than
// diverge.
import { createHash } from 'node:crypto';
import { Packr, RESET_BUFFER_MODE } from 'msgpackr';
import { InvalidCommandError, StateError, UnsupportedCommandVersionError } from './errors.js';
import {
  MAX_EXPIRE_KEYS,
  MAX_IDEMPOTENCY_KEY_BYTES,
  MAX_TTL_MS,
  MAX_TXN_COMPARES,
  MAX_TXN_OPS,
  utf8Bytes,
  validateKey,
  validateValue,
} from './limits.js';

export const COMMAND_FORMAT_VERSION = 1;

export const COMPARE_TARGETS = ['revision', 'createRevision', 'version', 'value', 'exists'] as const;
export const COMPARE_OPS = ['=', '!=', '<', '>'] as const;
export type CompareTarget = (typeof COMPARE_TARGETS)[number];
export type CompareOp = (typeof COMPARE_OPS)[number];

/** Missing keys have revision/createRevision/version 0; a `value` compare on a missing key is false. */
export type Compare =
  | { readonly key: string; readonly target: 'revision' | 'createRevision' | 'version'; readonly op: CompareOp; readonly value: number }
  | { readonly key: string; readonly target: 'value'; readonly op: CompareOp; readonly value: string }
  | { readonly key: string; readonly target: 'exists'; readonly op: '=' | '!='; readonly value: boolean };

export type TxnOp =
  | { readonly type: 'put'; readonly key: string; readonly value: string; readonly ttlMs?: number }
  | { readonly type: 'delete'; readonly key: string };

export interface PutCommand {
  readonly type: 'put';
  readonly key: string;
  readonly value: string;
  /** Expected modRevision; 0 = the key must not exist. */
  readonly ifRevision?: number;
  /** Lease: the key is deleted by a leader-proposed `expire` once `at + ttlMs` has passed. */
  readonly ttlMs?: number;
}
export interface DeleteCommand {
  readonly type: 'delete';
  readonly key: string;
  readonly ifRevision?: number;
}
export interface TxnCommand {
  readonly type: 'txn';
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
}
export interface ExpireKey {
  readonly key: string;
  readonly modRevision: number;
}
/** Proposed by the leader for keys whose lease deadline passed; a key is deleted only if its modRevision is unchanged. */
export interface ExpireCommand {
  readonly type: 'expire';
  readonly keys: readonly ExpireKey[];
}
/** Changes nothing; advances the state machine's clock (session expiry) and serves as a barrier. */
export interface NoopCommand {
  readonly type: 'noop';
}
export type Command = PutCommand | DeleteCommand | TxnCommand | ExpireCommand | NoopCommand;

export interface CommandEnvelope {
  /** Leader wall-clock ms when proposed: the only time the state machine ever sees. */
  readonly at: number;
  /** Client-session key: a retry with the same key returns the recorded result. */
  readonly idempotencyKey?: string;
  readonly command: Command;
}

const TAG_NOOP = 0;
const TAG_PUT = 1;
const TAG_DELETE = 2;
const TAG_TXN = 3;
const TAG_EXPIRE = 4;
const OP_PUT = 1;
const OP_DELETE = 2;

// useRecords false: plain msgpack arrays/maps, no shared-structure extension
// whose bytes would depend on what this Packr encoded before.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

/** msgpack bytes of a plain value; always a fresh copy (packed at the same place of the Packr's buffer each time, RESET_BUFFER_MODE). */
export function packCanonical(value: unknown): Uint8Array {
  const b = packr.pack(value, RESET_BUFFER_MODE);
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/**
 * packCanonical's bytes without the copy: a view of the Packr's working
 * buffer, valid until the next pack of any kind. For a caller that copies it
 * at once (a snapshot record written into its chunk).
 */
export function packCanonicalView(value: unknown): Uint8Array {
  return packr.pack(value, RESET_BUFFER_MODE);
}

/**
 * packCanonical([...head, bytes]) with `bytes` copied once, into an output
 * of exactly its size: the same bytes as packCanonical (msgpack arrays of
 * fewer than 16 elements have a one-byte header; bytes are a bin of the
 * smallest header), without the Packr's working buffer growing to four times
 * a large payload and the copy out of it (a 1 MiB file chunk, then its
 * envelope). `bytes` may come in parts (written one after the other, as one bin).
 */
export function packCanonicalWithBytes(head: readonly unknown[], bytes: Uint8Array | readonly Uint8Array[]): Uint8Array {
  const parts = bytes instanceof Uint8Array ? [bytes] : bytes;
  if (head.length >= 15) return packCanonical([...head, parts.length === 1 ? parts[0] : Buffer.concat(parts)]);
  const prefix = packr.pack(head, RESET_BUFFER_MODE);
  let n = 0;
  for (const p of parts) n += p.length;
  const binHeader = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const out = Buffer.allocUnsafeSlow(prefix.length + binHeader + n);
  out.set(prefix, 0);
  out[0] = 0x90 | (head.length + 1);
  let at = prefix.length;
  if (n < 0x100) {
    out[at] = 0xc4;
    out[at + 1] = n;
  } else if (n < 0x10000) {
    out[at] = 0xc5;
    out.writeUInt16BE(n, at + 1);
  } else {
    out[at] = 0xc6;
    out.writeUInt32BE(n, at + 1);
  }
  at += binHeader;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export function unpackCanonical(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

/**
 * A machine payload `[version, ...]`: the array, or why it is not one (for the
 * caller's own invalid-command error). A version newer than `version` throws
 * UnsupportedCommandVersionError (a newer member wrote it: this node must stop
 * rather than skip it).
 */
export function unpackVersionedArray(payload: Uint8Array, version: number): { ok: true; v: unknown[] } | { ok: false; field: 'payload'; reason: string } {
  let v: unknown;
  try {
    v = unpackCanonical(payload);
  } catch (e) {
    return { ok: false, field: 'payload', reason: `not msgpack: ${(e as Error).message}` };
  }
  if (!Array.isArray(v)) return { ok: false, field: 'payload', reason: 'must be an array' };
  if (typeof v[0] === 'number' && v[0] > version) throw new UnsupportedCommandVersionError(v[0]);
  return { ok: true, v };
}

// ---- validation -----------------------------------------------------------

function fail(field: string, reason: string): never {
  throw new InvalidCommandError(field, reason);
}

function checkRevision(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(field, `must be a non-negative integer, got ${String(v)}`);
  return v;
}

function checkTtl(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > MAX_TTL_MS) fail(field, `must be an integer in 1..${MAX_TTL_MS}, got ${String(v)}`);
  return v;
}

function checkKey(field: string, v: unknown): string {
  if (typeof v !== 'string') fail(field, 'must be a string');
  try {
    return validateKey(v);
  } catch (err) {
    if (err instanceof StateError) throw new InvalidCommandError(field, err.message, { cause: err });
    throw err;
  }
}

function checkValue(field: string, v: unknown): string {
  if (typeof v !== 'string') fail(field, 'must be a string');
  try {
    return validateValue(v);
  } catch (err) {
    if (err instanceof StateError) throw new InvalidCommandError(field, err.message, { cause: err });
    throw err;
  }
}

function checkOps(field: string, ops: readonly TxnOp[]): void {
  if (!Array.isArray(ops)) fail(field, 'must be an array');
  if (ops.length > MAX_TXN_OPS) fail(field, `${ops.length} ops exceed the limit of ${MAX_TXN_OPS}`);
  const seen = new Set<string>();
  ops.forEach((op, i) => {
    const f = `${field}[${i}]`;
    const key = checkKey(`${f}.key`, op.key);
    if (seen.has(key)) fail(`${f}.key`, `duplicate key ${JSON.stringify(key)} in one txn branch`);
    seen.add(key);
    if (op.type === 'put') {
      checkValue(`${f}.value`, op.value);
      if (op.ttlMs !== undefined) checkTtl(`${f}.ttlMs`, op.ttlMs);
    } else if (op.type !== 'delete') {
      fail(`${f}.type`, `must be 'put' or 'delete', got ${String((op as { type: unknown }).type)}`);
    }
  });
}

function checkCompare(field: string, c: Compare): void {
  checkKey(`${field}.key`, c.key);
  if (!COMPARE_OPS.includes(c.op)) fail(`${field}.op`, `must be one of ${COMPARE_OPS.join(' ')}, got ${String(c.op)}`);
  switch (c.target) {
    case 'revision':
    case 'createRevision':
    case 'version':
      checkRevision(`${field}.value`, c.value);
      return;
    case 'value':
      checkValue(`${field}.value`, c.value);
      return;
    case 'exists':
      if (typeof c.value !== 'boolean') fail(`${field}.value`, 'must be a boolean for target exists');
      if (c.op !== '=' && c.op !== '!=') fail(`${field}.op`, "must be '=' or '!=' for target exists");
      return;
    default:
      fail(`${field}.target`, `must be one of ${COMPARE_TARGETS.join(', ')}, got ${String((c as { target: unknown }).target)}`);
  }
}

/** Throws InvalidCommandError naming the field; the API layer calls this (via encodeCommand) before proposing. */
export function validateEnvelope(env: CommandEnvelope): void {
  validateEnvelopeFields(env.at, env.idempotencyKey);
  validateCommand(env.command);
}

/** The envelope fields every machine's entries share (format 1 and 2): the leader's time and the client-session key. */
export function validateEnvelopeFields(at: number, idempotencyKey: string | undefined): void {
  if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) fail('at', `must be a non-negative integer (ms), got ${String(at)}`);
  if (idempotencyKey !== undefined) {
    if (typeof idempotencyKey !== 'string' || idempotencyKey.length === 0) fail('idempotencyKey', 'must be a non-empty string');
    const n = utf8Bytes(idempotencyKey);
    if (n > MAX_IDEMPOTENCY_KEY_BYTES) fail('idempotencyKey', `is ${n} bytes; the limit is ${MAX_IDEMPOTENCY_KEY_BYTES}`);
  }
}

/** Validates one KV command (no envelope fields). Throws InvalidCommandError naming the field. */
export function validateCommand(c: Command): void {
  switch (c.type) {
    case 'noop':
      return;
    case 'put':
      checkKey('put.key', c.key);
      checkValue('put.value', c.value);
      if (c.ifRevision !== undefined) checkRevision('put.ifRevision', c.ifRevision);
      if (c.ttlMs !== undefined) checkTtl('put.ttlMs', c.ttlMs);
      return;
    case 'delete':
      checkKey('delete.key', c.key);
      if (c.ifRevision !== undefined) checkRevision('delete.ifRevision', c.ifRevision);
      return;
    case 'txn':
      if (!Array.isArray(c.compare)) fail('txn.compare', 'must be an array');
      if (c.compare.length > MAX_TXN_COMPARES) fail('txn.compare', `${c.compare.length} compares exceed the limit of ${MAX_TXN_COMPARES}`);
      c.compare.forEach((cmp, i) => checkCompare(`txn.compare[${i}]`, cmp));
      checkOps('txn.success', c.success);
      checkOps('txn.failure', c.failure);
      return;
    case 'expire': {
      if (!Array.isArray(c.keys)) fail('expire.keys', 'must be an array');
      if (c.keys.length > MAX_EXPIRE_KEYS) fail('expire.keys', `${c.keys.length} keys exceed the limit of ${MAX_EXPIRE_KEYS}`);
      c.keys.forEach((k, i) => {
        checkKey(`expire.keys[${i}].key`, k.key);
        checkRevision(`expire.keys[${i}].modRevision`, k.modRevision);
      });
      return;
    }
    default:
      fail('type', `unknown command type ${String((c as { type: unknown }).type)}`);
  }
}

// ---- encoding -------------------------------------------------------------

const opt = (v: number | undefined): number | null => (v === undefined ? null : v);

function opTuple(op: TxnOp): unknown[] {
  return op.type === 'put' ? [OP_PUT, op.key, op.value, opt(op.ttlMs)] : [OP_DELETE, op.key];
}

/** The command part of the layout: `[tag, ...body]` (no version, `at` or idempotency key). */
function commandTuple(c: Command): unknown[] {
  switch (c.type) {
    case 'noop':
      return [TAG_NOOP];
    case 'put':
      return [TAG_PUT, c.key, c.value, opt(c.ifRevision), opt(c.ttlMs)];
    case 'delete':
      return [TAG_DELETE, c.key, opt(c.ifRevision)];
    case 'txn':
      return [
        TAG_TXN,
        c.compare.map((x) => [x.key, COMPARE_TARGETS.indexOf(x.target), COMPARE_OPS.indexOf(x.op), x.value]),
        c.success.map(opTuple),
        c.failure.map(opTuple),
      ];
    case 'expire':
      return [TAG_EXPIRE, c.keys.map((k) => [k.key, k.modRevision])];
  }
}

/** Validates, then encodes as a format-1 entry; equal envelopes give equal bytes. */
export function encodeCommand(env: CommandEnvelope): Uint8Array {
  validateEnvelope(env);
  return packCanonical([COMMAND_FORMAT_VERSION, env.at, env.idempotencyKey ?? null, ...commandTuple(env.command)]);
}

/**
 * The KV machine's payload inside a format-2 envelope (src/state/envelope.ts):
 * `[tag, ...body]`, the command part of the format-1 layout. These are exactly
 * the bytes commandFingerprint hashes, so a client-session record made by a
 * format-1 entry matches the same command sent in a format-2 one.
 */
export function encodeKvPayload(command: Command): Uint8Array {
  validateCommand(command);
  return packCanonical(commandTuple(command));
}

/** Decodes and validates a KV payload (see encodeKvPayload); throws InvalidCommandError. */
export function decodeKvPayload(payload: Uint8Array): Command {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (err) {
    throw new InvalidCommandError('payload', `not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  const command = decodeCommandTuple(arr('payload', raw), 0);
  validateCommand(command);
  return command;
}

/**
 * Fingerprint of what a command does (type and every field, not `at` nor the
 * idempotency key): hex of the first 128 bits of SHA-256 over its canonical
 * encoding. Client sessions keep it with an idempotency key so that the key
 * reused for a different request is refused instead of answered with the
 * first request's result. Deterministic: equal commands give equal
 * fingerprints on every node and every build that encodes them alike.
 */
export function commandFingerprint(command: Command): string {
  return createHash('sha256').update(packCanonical(commandTuple(command))).digest('hex').slice(0, 32);
}

// ---- decoding -------------------------------------------------------------

function arr(field: string, v: unknown, len?: number): unknown[] {
  if (!Array.isArray(v)) fail(field, 'must be an array');
  if (len !== undefined && v.length !== len) fail(field, `must have ${len} elements, got ${v.length}`);
  return v;
}

function optNum(v: unknown): number | undefined {
  return v === null ? undefined : (v as number);
}

function decodeOp(field: string, v: unknown): TxnOp {
  const a = arr(field, v);
  if (a[0] === OP_PUT) {
    arr(field, v, 4);
    const ttlMs = optNum(a[3]);
    const base = { type: 'put' as const, key: a[1] as string, value: a[2] as string };
    return ttlMs === undefined ? base : { ...base, ttlMs };
  }
  if (a[0] === OP_DELETE) {
    arr(field, v, 2);
    return { type: 'delete', key: a[1] as string };
  }
  return fail(`${field}.type`, `unknown op tag ${String(a[0])}`);
}

function decodeCompare(field: string, v: unknown): Compare {
  const a = arr(field, v, 4);
  const target = COMPARE_TARGETS[a[1] as number];
  const op = COMPARE_OPS[a[2] as number];
  if (target === undefined) fail(`${field}.target`, `unknown target tag ${String(a[1])}`);
  if (op === undefined) fail(`${field}.op`, `unknown op tag ${String(a[2])}`);
  // Shapes are checked by validateEnvelope below.
  return { key: a[0], target, op, value: a[3] } as Compare;
}

function withOpt<T extends object, K extends string>(base: T, name: K, v: number | undefined): T {
  return v === undefined ? base : { ...base, [name]: v };
}

/** The command part `[tag, ...body]` of an entry, starting at a[off]; shapes are checked by the caller (validateCommand). */
function decodeCommandTuple(a: unknown[], off: number): Command {
  let command: Command;
  switch (a[off]) {
    case TAG_NOOP:
      arr('noop', a, off + 1);
      command = { type: 'noop' };
      break;
    case TAG_PUT: {
      arr('put', a, off + 5);
      let put: PutCommand = { type: 'put', key: a[off + 1] as string, value: a[off + 2] as string };
      put = withOpt(put, 'ifRevision', optNum(a[off + 3]));
      put = withOpt(put, 'ttlMs', optNum(a[off + 4]));
      command = put;
      break;
    }
    case TAG_DELETE:
      arr('delete', a, off + 3);
      command = withOpt<DeleteCommand, 'ifRevision'>({ type: 'delete', key: a[off + 1] as string }, 'ifRevision', optNum(a[off + 2]));
      break;
    case TAG_TXN:
      arr('txn', a, off + 4);
      command = {
        type: 'txn',
        compare: arr('txn.compare', a[off + 1]).map((x, i) => decodeCompare(`txn.compare[${i}]`, x)),
        success: arr('txn.success', a[off + 2]).map((x, i) => decodeOp(`txn.success[${i}]`, x)),
        failure: arr('txn.failure', a[off + 3]).map((x, i) => decodeOp(`txn.failure[${i}]`, x)),
      };
      break;
    case TAG_EXPIRE:
      arr('expire', a, off + 2);
      command = {
        type: 'expire',
        keys: arr('expire.keys', a[off + 1]).map((x, i) => {
          const k = arr(`expire.keys[${i}]`, x, 2);
          return { key: k[0] as string, modRevision: k[1] as number };
        }),
      };
      break;
    default:
      fail('type', `unknown command tag ${String(a[off])}`);
  }
  return command;
}

/**
 * Decodes and validates entry data. Throws InvalidCommandError for malformed
 * data and UnsupportedCommandVersionError for a format this build does not know.
 */
export function decodeCommand(data: Uint8Array): CommandEnvelope {
  let raw: unknown;
  try {
    raw = unpackCanonical(data);
  } catch (err) {
    throw new InvalidCommandError('data', `not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  const a = arr('data', raw);
  if (a[0] !== COMMAND_FORMAT_VERSION) {
    if (typeof a[0] === 'number' && Number.isInteger(a[0]) && a[0] > COMMAND_FORMAT_VERSION) throw new UnsupportedCommandVersionError(a[0]);
    fail('version', `unknown command format version ${String(a[0])}`);
  }
  const at = a[1] as number;
  const ik = a[2];
  if (ik !== null && typeof ik !== 'string') fail('idempotencyKey', 'must be a string or nil');
  const command = decodeCommandTuple(a, 3);
  const env: CommandEnvelope = ik === null ? { at, command } : { at, idempotencyKey: ik, command };
  validateEnvelope(env);
  return env;
}
