// Commands of the "app" machine (./app-machine.ts): the application
// coordination primitives of SPEC §4 — work queues, locks with fencing tokens,
// and the outbox. Payload (msgpack): [1, op, ...fields], positional; every
// field is validated here (InvalidCommandError names it), so what reaches
// apply is well formed. Proposed only in format-2 envelopes (cluster feature
// level >= 2).
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError } from './errors.js';

export const APP_MACHINE_ID = 'app';
export const APP_COMMAND_VERSION = 1;

/** Queue and lock names: letters, digits, "_", "-", "." (not first), at most 128. */
export const APP_NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;
export const MAX_APP_BODY_BYTES = 256 * 1024;
export const MAX_CLAIM = 100;
export const MAX_APP_TTL_MS = 24 * 3600 * 1000;
export const MAX_OWNER = 256;
export const MAX_IDS = 1000;
export const DEFAULT_MAX_DELIVERIES = 5;

export type AppCommand =
  | { readonly op: 'enqueue'; readonly queue: string; readonly body: string; readonly delayMs: number; readonly maxDeliveries: number }
  | { readonly op: 'claim'; readonly queue: string; readonly max: number; readonly visibilityMs: number }
  | { readonly op: 'ack'; readonly queue: string; readonly claimToken: string; readonly ids: readonly string[] }
  | { readonly op: 'nack'; readonly queue: string; readonly claimToken: string; readonly ids: readonly string[]; readonly delayMs: number }
  | { readonly op: 'extend'; readonly queue: string; readonly claimToken: string; readonly ids: readonly string[]; readonly visibilityMs: number }
  | { readonly op: 'lock'; readonly name: string; readonly owner: string; readonly ttlMs: number }
  | { readonly op: 'renew'; readonly name: string; readonly owner: string; readonly fencingToken: number; readonly ttlMs: number }
  | { readonly op: 'unlock'; readonly name: string; readonly owner: string; readonly fencingToken: number }
  | { readonly op: 'outbox-add'; readonly body: string; readonly contentType: string }
  | { readonly op: 'outbox-done'; readonly id: string };

export function encodeAppPayload(c: AppCommand): Uint8Array {
  return packCanonical([APP_COMMAND_VERSION, ...fieldsOf(validateAppCommand(c))]);
}

function fieldsOf(c: AppCommand): unknown[] {
  switch (c.op) {
    case 'enqueue': return [c.op, c.queue, c.body, c.delayMs, c.maxDeliveries];
    case 'claim': return [c.op, c.queue, c.max, c.visibilityMs];
    case 'ack': return [c.op, c.queue, c.claimToken, [...c.ids]];
    case 'nack': return [c.op, c.queue, c.claimToken, [...c.ids], c.delayMs];
    case 'extend': return [c.op, c.queue, c.claimToken, [...c.ids], c.visibilityMs];
    case 'lock': return [c.op, c.name, c.owner, c.ttlMs];
    case 'renew': return [c.op, c.name, c.owner, c.fencingToken, c.ttlMs];
    case 'unlock': return [c.op, c.name, c.owner, c.fencingToken];
    case 'outbox-add': return [c.op, c.body, c.contentType];
    case 'outbox-done': return [c.op, c.id];
  }
}

export function decodeAppPayload(payload: Uint8Array): AppCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('app', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== APP_COMMAND_VERSION) throw new InvalidCommandError('app', `expected [${APP_COMMAND_VERSION}, op, ...]`);
  const [, op, a, b, c, d] = raw as unknown[];
  const n = raw.length - 1;
  const arity = (k: number) => { if (n !== k) throw new InvalidCommandError('op', `${String(op)} takes ${k - 1} fields, got ${n - 1}`); };
  let cmd: AppCommand;
  switch (op) {
    case 'enqueue': arity(5); cmd = { op, queue: a as string, body: b as string, delayMs: c as number, maxDeliveries: d as number }; break;
    case 'claim': arity(4); cmd = { op, queue: a as string, max: b as number, visibilityMs: c as number }; break;
    case 'ack': arity(4); cmd = { op, queue: a as string, claimToken: b as string, ids: c as string[] }; break;
    case 'nack': arity(5); cmd = { op, queue: a as string, claimToken: b as string, ids: c as string[], delayMs: d as number }; break;
    case 'extend': arity(5); cmd = { op, queue: a as string, claimToken: b as string, ids: c as string[], visibilityMs: d as number }; break;
    case 'lock': arity(4); cmd = { op, name: a as string, owner: b as string, ttlMs: c as number }; break;
    case 'renew': arity(5); cmd = { op, name: a as string, owner: b as string, fencingToken: c as number, ttlMs: d as number }; break;
    case 'unlock': arity(4); cmd = { op, name: a as string, owner: b as string, fencingToken: c as number }; break;
    case 'outbox-add': arity(3); cmd = { op, body: a as string, contentType: b as string }; break;
    case 'outbox-done': arity(2); cmd = { op, id: a as string }; break;
    default: throw new InvalidCommandError('op', `unknown operation ${JSON.stringify(op)}`);
  }
  return validateAppCommand(cmd);
}

export function appFingerprint(c: AppCommand): string {
  return createHash('sha256').update(APP_MACHINE_ID).update(encodeAppPayload(c)).digest('hex').slice(0, 32);
}

const fail = (field: string, reason: string): never => {
  throw new InvalidCommandError(field, reason);
};

function name(field: string, v: unknown): void {
  if (typeof v !== 'string' || !APP_NAME_RE.test(v)) fail(field, `must be 1..128 of letters, digits, "_", "-", "." (not first), got ${JSON.stringify(v)?.slice(0, 80)}`);
}
function int(field: string, v: unknown, min: number, max: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) fail(field, `must be an integer in ${min}..${max}, got ${String(v)}`);
}
function text(field: string, v: unknown, maxBytes: number, min = 0): void {
  if (typeof v !== 'string') fail(field, 'must be a string');
  const len = Buffer.byteLength(v as string);
  if (len < min || len > maxBytes) fail(field, `must be ${min}..${maxBytes} bytes, got ${len}`);
}
function ids(v: unknown): void {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_IDS) fail('ids', `must be an array of 1..${MAX_IDS} message ids`);
  for (const [i, x] of (v as unknown[]).entries()) text(`ids[${i}]`, x, 64, 1);
}

/** Checks every field; returns the command. Throws InvalidCommandError naming the field. */
export function validateAppCommand(c: AppCommand): AppCommand {
  switch (c.op) {
    case 'enqueue': name('queue', c.queue); text('body', c.body, MAX_APP_BODY_BYTES); int('delayMs', c.delayMs, 0, MAX_APP_TTL_MS); int('maxDeliveries', c.maxDeliveries, 0, 1000); break;
    case 'claim': name('queue', c.queue); int('max', c.max, 1, MAX_CLAIM); int('visibilityMs', c.visibilityMs, 1, MAX_APP_TTL_MS); break;
    case 'ack': name('queue', c.queue); text('claimToken', c.claimToken, 64, 1); ids(c.ids); break;
    case 'nack': name('queue', c.queue); text('claimToken', c.claimToken, 64, 1); ids(c.ids); int('delayMs', c.delayMs, 0, MAX_APP_TTL_MS); break;
    case 'extend': name('queue', c.queue); text('claimToken', c.claimToken, 64, 1); ids(c.ids); int('visibilityMs', c.visibilityMs, 1, MAX_APP_TTL_MS); break;
    case 'lock': name('name', c.name); text('owner', c.owner, MAX_OWNER, 1); int('ttlMs', c.ttlMs, 1, MAX_APP_TTL_MS); break;
    case 'renew': name('name', c.name); text('owner', c.owner, MAX_OWNER, 1); int('fencingToken', c.fencingToken, 1, Number.MAX_SAFE_INTEGER); int('ttlMs', c.ttlMs, 1, MAX_APP_TTL_MS); break;
    case 'unlock': name('name', c.name); text('owner', c.owner, MAX_OWNER, 1); int('fencingToken', c.fencingToken, 1, Number.MAX_SAFE_INTEGER); break;
    case 'outbox-add': text('body', c.body, MAX_APP_BODY_BYTES); text('contentType', c.contentType, 128, 1); break;
    case 'outbox-done': text('id', c.id, 64, 1); break;
    default: fail('op', `unknown operation ${JSON.stringify((c as { op: unknown }).op)}`);
  }
  return c;
}
