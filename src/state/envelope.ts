// The entry envelope, format 2: which state machine an entry is for, the
// leader-stamped time and the client-session key, around the machine's own
// payload. One msgpack array, positional, absent optionals nil:
//
//   [2, machineId, at, idempotencyKey|nil, payload(bin)]
//
// Format 1 (`[1, at, idempotencyKey|nil, tag, ...body]`, commands.ts) is the
// KV's own layout; it is still applied (it is in existing logs and snapshots'
// logs) and still proposed while any member runs a build that only knows it
// (the cluster feature level, src/node/features.ts). Decoding peeks at the
// version: a version above what this build (or its test cap) applies throws
// UnsupportedCommandVersionError, and the node must stop, not skip.
import { decodeCommand, packCanonicalWithBytes, unpackCanonical, validateEnvelopeFields } from './commands.js';
import type { Command, CommandEnvelope } from './commands.js';
import { decodeKvEntryFast } from './fast-entry.js';
import { InvalidCommandError, UnsupportedCommandVersionError } from './errors.js';

export const ENVELOPE_FORMAT_VERSION = 2;
export const MACHINE_ID_MAX = 64;
const MACHINE_ID_RE = /^[a-z][a-z0-9_-]*$/;

export interface Envelope {
  /** The state machine the payload is for ("kv"). */
  readonly machine: string;
  /** Leader wall-clock ms when proposed: the only time state machines ever see. */
  readonly at: number;
  /** Client-session key: a retry with the same key returns the recorded result. */
  readonly idempotencyKey?: string;
  /** The machine's own encoding of its command. */
  readonly payload: Uint8Array;
}

/** A decoded entry: format 1 is always the KV's; format 2 names its machine. */
export type DecodedEntry =
  | { readonly version: 1; readonly kv: CommandEnvelope }
  | { readonly version: 2; readonly envelope: Envelope; readonly kvCommand?: Command };

function fail(field: string, reason: string): never {
  throw new InvalidCommandError(field, reason);
}

export function validateMachineId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > MACHINE_ID_MAX || !MACHINE_ID_RE.test(id)) {
    fail('machine', `must match ${String(MACHINE_ID_RE)} and be at most ${MACHINE_ID_MAX} characters, got ${JSON.stringify(String(id).slice(0, 80))}`);
  }
  return id;
}

/** Validates, then encodes a format-2 entry; equal envelopes give equal bytes. */
export function encodeEnvelope(e: Envelope): Uint8Array {
  validateMachineId(e.machine);
  validateEnvelopeFields(e.at, e.idempotencyKey);
  if (!(e.payload instanceof Uint8Array)) fail('payload', 'must be bytes');
  return packCanonicalWithBytes([ENVELOPE_FORMAT_VERSION, e.machine, e.at, e.idempotencyKey ?? null], e.payload);
}

/**
 * The machine id of a format-2 entry whose id is a msgpack fixstr (every valid
 * id: at most 64 ASCII characters; ids under 32 are fixstr), read from the
 * bytes without decoding the entry: `[0x95, 0x02, 0xa0|len, id...]`. Undefined
 * when the bytes do not start that way (format 1, a longer id, malformed data):
 * the caller then decodes the entry. msgpack is unambiguous, so an id read here
 * is the one decodeEntry would return if it accepts the entry at all. For the
 * per-entry checks on the write path (is this a settings entry?) that would
 * otherwise decode every entry twice.
 */
export function peekMachineId(data: Uint8Array): string | undefined {
  if (data.length < 3 || data[0] !== 0x95 || data[1] !== ENVELOPE_FORMAT_VERSION) return undefined;
  const tag = data[2]!;
  if ((tag & 0xe0) !== 0xa0) return undefined;
  const len = tag & 0x1f;
  if (data.length < 3 + len) return undefined;
  let id = '';
  for (let i = 3; i < 3 + len; i++) {
    const c = data[i]!;
    if (c >= 0x80) return undefined;
    id += String.fromCharCode(c);
  }
  return id;
}

/**
 * Decodes entry data of either format. `maxVersion` is the newest format this
 * node applies (2; 1 for a node run as the previous release). Throws
 * InvalidCommandError for malformed data (it applies as `invalid_command` on
 * every node) and UnsupportedCommandVersionError for a newer format (fatal).
 */
export function decodeEntry(data: Uint8Array, maxVersion: number = ENVELOPE_FORMAT_VERSION): DecodedEntry {
  if (maxVersion >= ENVELOPE_FORMAT_VERSION) {
    // The common entry (a KV put or delete), read in place and already valid (src/state/fast-entry.ts).
    const f = decodeKvEntryFast(data);
    if (f !== undefined) {
      const base = { machine: 'kv', at: f.at, payload: f.payload };
      return { version: 2, envelope: f.idempotencyKey === undefined ? base : { ...base, idempotencyKey: f.idempotencyKey }, kvCommand: f.command };
    }
  }
  return decodeEntryGeneral(data, maxVersion);
}

/** decodeEntry without the in-place path: every entry through the msgpack decoder (exported for the test that holds the two equal). */
export function decodeEntryGeneral(data: Uint8Array, maxVersion: number = ENVELOPE_FORMAT_VERSION): DecodedEntry {
  let raw: unknown;
  try {
    raw = unpackCanonical(data);
  } catch (err) {
    throw new InvalidCommandError('data', `not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(raw)) fail('data', 'must be an array');
  const v = raw[0];
  if (typeof v === 'number' && Number.isInteger(v) && v > Math.min(maxVersion, ENVELOPE_FORMAT_VERSION)) throw new UnsupportedCommandVersionError(v);
  if (v === 1) return { version: 1, kv: decodeCommand(data) };
  if (v !== ENVELOPE_FORMAT_VERSION) fail('version', `unknown entry format version ${String(v)}`);
  if (raw.length !== 5) fail('envelope', `must have 5 elements, got ${raw.length}`);
  const [, machine, at, ik, payload] = raw as unknown[];
  validateMachineId(machine);
  if (ik !== null && typeof ik !== 'string') fail('idempotencyKey', 'must be a string or nil');
  validateEnvelopeFields(at as number, ik === null ? undefined : (ik as string));
  if (!(payload instanceof Uint8Array)) fail('payload', 'must be bytes (msgpack bin)');
  const base = { machine: machine as string, at: at as number, payload };
  return { version: 2, envelope: ik === null ? base : { ...base, idempotencyKey: ik as string } };
}
