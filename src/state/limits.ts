// Size limits and input validation shared by the state machine and the API
// layer. The API layer validates before proposing; apply() re-checks so a bad
// entry that reached the log yields the same error result on every node.
import { InvalidCommandError, InvalidKeyError, TooLargeError } from './errors.js';

export const MAX_KEY_BYTES = 4 * 1024;
export const MAX_VALUE_BYTES = 1024 * 1024;
export const MAX_IDEMPOTENCY_KEY_BYTES = 256;
/** Compares per txn, and ops per txn branch (etcd's default is 128 too). */
export const MAX_TXN_COMPARES = 128;
export const MAX_TXN_OPS = 128;
/** Keys per expire command. */
export const MAX_EXPIRE_KEYS = 1000;
/** Longest TTL accepted: 10 years. */
export const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

/** Client-session defaults (Raft dissertation §6.3). Must be equal on every node. */
export const DEFAULT_SESSION_MAX = 100_000;
export const DEFAULT_SESSION_TTL_MS = 24 * 3600 * 1000;
/** Watch history defaults (node-local memory; does not affect replicated state). */
export const DEFAULT_WATCH_HISTORY_EVENTS = 10_000;
export const DEFAULT_WATCH_HISTORY_BYTES = 64 * 1024 * 1024;

const textEncoder = new TextEncoder();

/** UTF-8 byte length without allocating for ASCII-only strings. */
export function utf8Bytes(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return textEncoder.encode(s).length;
  }
  return s.length;
}

const LONE_SURROGATE = /\p{Surrogate}/u;

/** Throws InvalidKeyError / TooLargeError; returns the key for chaining. */
export function validateKey(key: string): string {
  if (typeof key !== 'string') throw new InvalidKeyError(String(key), 'must be a string');
  if (key.length === 0) throw new InvalidKeyError(key, 'must not be empty');
  if (key.includes('\u0000')) throw new InvalidKeyError(key, 'must not contain NUL');
  // A lone surrogate has no UTF-8 form: it would change on the wire.
  if (LONE_SURROGATE.test(key)) throw new InvalidKeyError(key, 'must be well-formed Unicode (lone surrogate)');
  const bytes = utf8Bytes(key);
  if (bytes > MAX_KEY_BYTES) throw new TooLargeError('key', bytes, MAX_KEY_BYTES);
  return key;
}

/** Throws InvalidCommandError (not a string, lone surrogate) / TooLargeError. */
export function validateValue(value: string): string {
  if (typeof value !== 'string') throw new InvalidCommandError('value', 'must be a string');
  if (LONE_SURROGATE.test(value)) throw new InvalidCommandError('value', 'must be well-formed Unicode (lone surrogate)');
  const bytes = utf8Bytes(value);
  if (bytes > MAX_VALUE_BYTES) throw new TooLargeError('value', bytes, MAX_VALUE_BYTES);
  return value;
}
