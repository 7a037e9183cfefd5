// Failed authentications per client address (SPEC §4 abuse limits): a token
// bucket per address; each 401 takes one token. An address with an empty
// bucket gets 429 too_many_auth_failures with Retry-After on every call that
// needs a token, WITHOUT its token being checked: otherwise a guesser would
// still learn which guess is right. The bucket refills at a steady rate.
// Bounded memory: at most `maxAddresses` buckets; full buckets are forgotten
// first, then the oldest.
import type { Logger } from 'pino';
import { ApiError, retryAfterSeconds } from './errors.js';

export interface AuthLimitOptions {
  /** Failures allowed at once from one address. */
  readonly burst: number;
  /** Failures per second an address earns back. */
  readonly refillPerSecond: number;
  readonly maxAddresses: number;
}

export const DEFAULT_AUTH_LIMIT: AuthLimitOptions = { burst: 20, refillPerSecond: 0.5, maxAddresses: 10_000 };

interface Bucket {
  tokens: number;
  atMs: number;
  /** A warning was logged for the current lockout. */
  warned: boolean;
}

export class AuthFailureLimiter {
  readonly #o: AuthLimitOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(o: AuthLimitOptions, log: Logger, now: () => number = () => performance.now()) {
    this.#o = o;
    this.#log = log;
    this.#now = now;
  }

  #bucket(address: string): Bucket | undefined {
    const b = this.#buckets.get(address);
    if (b === undefined) return undefined;
    const now = this.#now();
    b.tokens = Math.min(this.#o.burst, b.tokens + ((now - b.atMs) / 1000) * this.#o.refillPerSecond);
    b.atMs = now;
    if (b.tokens >= this.#o.burst) {
      this.#buckets.delete(address);
      return undefined;
    }
    return b;
  }

  /** Throws 429 when `address` has no failures left. */
  check(address: string): void {
    const b = this.#bucket(address);
    if (b === undefined || b.tokens >= 1) return;
    const waitMs = ((1 - b.tokens) / this.#o.refillPerSecond) * 1000;
    throw new ApiError('too_many_auth_failures', `too many failed authentications from ${address}; retry after ${retryAfterSeconds(waitMs)} s with a valid token (\`quorate token ls\` on an admin shell lists tokens)`,
      { retryAfterMs: Math.ceil(waitMs) }, { 'retry-after': retryAfterSeconds(waitMs) });
  }

  /** One failed authentication from `address`. */
  failed(address: string): void {
    let b = this.#bucket(address);
    if (b === undefined) {
      if (this.#buckets.size >= this.#o.maxAddresses) this.#evict();
      b = { tokens: this.#o.burst, atMs: this.#now(), warned: false };
      this.#buckets.set(address, b);
    }
    b.tokens = Math.max(0, b.tokens - 1);
    if (b.tokens < 1 && !b.warned) {
      b.warned = true;
      this.#log.warn({ event: 'auth_rate_limited', address, burst: this.#o.burst }, `too many failed authentications from ${address}: its calls answer 429 until it earns retries back (${this.#o.refillPerSecond}/s)`);
    } else if (b.tokens >= 1) {
      b.warned = false;
    }
  }

  /** Addresses tracked now (tests, metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  #evict(): void {
    // The oldest entry of the Map (insertion order) goes first.
    const first = this.#buckets.keys().next();
    if (first.done !== true) this.#buckets.delete(first.value);
  }
}
