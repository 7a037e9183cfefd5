// The Redis leader lease (`cluster.coordination: "redis"`): a second
// implementation of the Leadership seam (src/node/leadership.ts). Design
// notes: ./README.md.
//
// - The lease is one key, `<prefix>leader`, whose value (JSON: owner,
//   nodeName, term, apiUrl, acquiredAtMs) is fixed at acquisition. Every
//   transition is one Lua script over it: acquire (SET NX PX, the fencing
//   token from INCR on `<prefix>fencing-token`, never below the floor the
//   caller gives), renew (compare the whole value, PEXPIRE), release
//   (compare, DEL). Expiry is Redis's own clock (PX/PEXPIRE); each script
//   also answers Redis TIME, logged with the transitions.
// - The term of this Leadership is the fencing token: strictly increasing
//   across acquisitions, never backwards even if Redis lost its data (the
//   floor: the highest token this process has seen, and `minToken()`, e.g.
//   the highest token recorded in PostgreSQL).
// - A leader that cannot renew steps down *before* the lease can expire in
//   Redis: at the monotonic time the last successful renewal was sent, plus
//   the TTL divided by (1 + CLOCK_RATE_BOUND), minus `stopBudgetMs` (the time
//   its own stop may take). Redis started the TTL after it received that
//   renewal, so later than it was sent. `current()` checks the deadline
//   synchronously, so a write that reaches the node before the timer fires
//   (after a process pause, I/O is polled before timers) already sees that
//   the lease is gone. The wall clock is never read for timing.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Leadership, LeadershipState } from '../node/leadership.js';
import { redisErrorText } from './redis-conn.js';
import type { RedisLink } from './redis-link.js';

/** The clock-rate bound: this node's monotonic clock and Redis's may run apart by at most 1% over one TTL. */
export const CLOCK_RATE_BOUND = 0.01;
/** Default time a stepping-down leader allows for its own stop (leader services; later the VIP and jobs). */
export const DEFAULT_STOP_BUDGET_MS = 500;

/** How long after a renewal was sent the leader may still act on it. */
export function stepDownAfterMs(ttlMs: number, stopBudgetMs = DEFAULT_STOP_BUDGET_MS): number {
  return Math.floor(ttlMs / (1 + CLOCK_RATE_BOUND)) - stopBudgetMs;
}

export interface LeaseHolder {
  readonly nodeName: string;
  readonly term: number;
  readonly apiUrl: string;
}

interface LeaseValue extends LeaseHolder {
  readonly owner: string;
  readonly acquiredAtMs: number;
}

const ACQUIRE = `
local t = redis.call('TIME')
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur, t[1], t[2]} end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[5])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
local v = cjson.encode({owner = ARGV[1], nodeName = ARGV[2], apiUrl = ARGV[3], term = token,
  acquiredAtMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)})
redis.call('SET', KEYS[1], v, 'NX', 'PX', ARGV[4])
return {1, v, t[1], t[2]}`;

const RENEW = `
local t = redis.call('TIME')
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cur, t[1], t[2]}
end
return {0, cur or '', t[1], t[2]}`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type Reply = [number, string, string, string];

export interface RedisLeaseOptions {
  readonly link: RedisLink;
  readonly keyPrefix: string;
  readonly nodeName: string;
  readonly apiUrl: string;
  readonly ttlMs: number;
  readonly renewMs: number;
  readonly logger: Logger;
  /** The time this node's stop may take (default DEFAULT_STOP_BUDGET_MS). */
  readonly stopBudgetMs?: number;
  /** How often a standby looks at the lease (default min(renewMs, 1000)). */
  readonly pollMs?: number;
  /** A floor for the next fencing token (e.g. the highest recorded in PostgreSQL); asked before each acquisition. */
  readonly minToken?: () => Promise<number>;
  /** Monotonic milliseconds (default performance.now). */
  readonly now?: () => number;
}

export class RedisLease implements Leadership {
  readonly #o: RedisLeaseOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #owner = randomUUID();
  readonly #stepDownAfterMs: number;
  readonly #pollMs: number;
  readonly #listeners = new Set<(s: LeadershipState) => void>();
  #value: string | undefined;
  #token = 0;
  #highestToken = 0;
  #deadline = 0;
  #lastSentAt = 0;
  #state: LeadershipState = { leading: false, term: 0, quorum: false };
  #holder: LeaseHolder | undefined;
  #timer: NodeJS.Timeout | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #busy = false;
  #stopped = false;
  #warning: string | undefined;
  #warnedRegression = 0;

  constructor(o: RedisLeaseOptions) {
    if (!(o.renewMs > 0 && o.renewMs < o.ttlMs)) throw new Error(`the lease renewal interval (${o.renewMs} ms) must be below its TTL (${o.ttlMs} ms)`);
    this.#o = o;
    this.#log = o.logger;
    this.#now = o.now ?? (() => performance.now());
    this.#stepDownAfterMs = stepDownAfterMs(o.ttlMs, o.stopBudgetMs);
    if (this.#stepDownAfterMs <= o.renewMs) {
      throw new Error(`the lease TTL (${o.ttlMs} ms) leaves ${this.#stepDownAfterMs} ms after a renewal before the leader must step down, not more than the renewal interval (${o.renewMs} ms): raise the TTL or renew more often`);
    }
    this.#pollMs = o.pollMs ?? Math.min(o.renewMs, 1000);
  }

  get key(): string { return `${this.#o.keyPrefix}leader`; }
  get counterKey(): string { return `${this.#o.keyPrefix}fencing-token`; }
  /** Milliseconds after a renewal was sent at which an unrenewed leader steps down. */
  get stepDownAfter(): number { return this.#stepDownAfterMs; }

  /** Start contending (connects; polls, acquires, renews). */
  start(): void {
    // The first look once the first connection attempt settled (not a false "unreachable" at start).
    void this.#o.link.open().finally(() => this.#schedule(0));
  }

  /** Stop for good: step down, release the lease (compare-and-delete) so a standby takes over at once, close nothing (the link is the caller's). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    const value = this.#value;
    if (this.#state.leading) this.#stepDown('node stopping', 'info');
    if (value !== undefined) await this.#release(value);
  }

  current(): LeadershipState {
    if (this.#state.leading && this.#now() >= this.#deadline) this.#stepDown(this.#lateReason(), 'error');
    return this.#state;
  }

  onChange(listener: (s: LeadershipState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Who holds the lease, as last seen (this node while it leads). */
  holder(): LeaseHolder | undefined {
    return this.current().leading ? { nodeName: this.#o.nodeName, term: this.#token, apiUrl: this.#o.apiUrl } : this.#holder;
  }

  /**
   * Step down now on evidence from elsewhere (the external-shared log's fencing row holds a newer token): stop
   * leading at once; the key is released only if it still holds this node's value (compare-and-delete).
   */
  stepDown(why: string): void {
    this.#stepDown(why, 'error');
  }

  /** The last split-brain evidence seen, for the status. */
  get warning(): string | undefined { return this.#warning; }

  /** The highest fencing token this node has seen. */
  get highestToken(): number { return this.#highestToken; }

  // ------------------------------------------------------------------ loop

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), Math.max(0, ms));
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    if (this.#stopped || this.#busy) return;
    this.#busy = true;
    try {
      if (this.current().leading) await this.#renew();
      else await this.#contend();
    } finally {
      this.#busy = false;
    }
    if (this.#stopped) return;
    if (this.#state.leading) this.#schedule(this.#lastSentAt + this.#o.renewMs - this.#now());
    else this.#schedule(this.#pollMs);
  }

  async #contend(): Promise<void> {
    const { link } = this.#o;
    try {
      const cur = await link.client.get(this.key);
      if (cur !== null) {
        link.succeeded();
        this.#saw(cur);
        return;
      }
      const floor = Math.max(this.#highestToken, this.#o.minToken ? await this.#o.minToken() : 0);
      const sentAt = this.#now();
      const r = (await link.client.eval(ACQUIRE, 2, this.key, this.counterKey, this.#owner, this.#o.nodeName, this.#o.apiUrl, String(this.#o.ttlMs), String(floor))) as Reply;
      link.succeeded();
      if (r[0] !== 1) {
        this.#saw(r[1]);
        return;
      }
      const v = parse(r[1]);
      if (!v || this.#stopped) {
        if (v && this.#stopped) await this.#release(r[1]);
        return;
      }
      this.#value = r[1];
      this.#token = v.term;
      this.#highestToken = Math.max(this.#highestToken, v.term);
      this.#holder = v;
      this.#warning = undefined;
      this.#renewed(sentAt);
      this.#set({ leading: true, term: v.term, quorum: true });
      this.#log.info(
        { event: 'lease_acquired', fencingToken: v.term, redis: link.target.display, redisTimeMs: redisMs(r), ttlMs: this.#o.ttlMs, stepDownAfterMs: this.#stepDownAfterMs },
        `${this.#o.nodeName} acquired the leader lease in Redis (fencing token ${v.term}); renewing every ${this.#o.renewMs} ms, TTL ${this.#o.ttlMs} ms`,
      );
    } catch (e) {
      link.failed(e, 'this node cannot become leader until it can reach Redis');
    }
  }

  async #renew(): Promise<void> {
    const { link } = this.#o;
    const value = this.#value!;
    const sentAt = this.#now();
    let r: Reply;
    try {
      r = (await link.client.eval(RENEW, 1, this.key, value, String(this.#o.ttlMs))) as Reply;
    } catch (e) {
      const left = Math.max(0, Math.round(this.#deadline - this.#now()));
      link.failed(e, `the leader cannot renew its lease and steps down in ${left} ms unless a renewal succeeds`);
      return;
    }
    link.succeeded();
    // A pause between sending and this answer: the deadline decides, not the answer.
    if (!this.current().leading || this.#value !== value) return;
    if (r[0] === 1) {
      this.#renewed(sentAt);
      return;
    }
    if (r[1] === '') {
      this.#stepDown(`the leader lease (fencing token ${this.#token}) is gone from Redis at ${link.target.display} (it expired there, or Redis lost its data)`, 'error');
      return;
    }
    const other = parse(r[1]);
    this.#saw(r[1]);
    const who = other ? `${other.nodeName} holds the leader lease with fencing token ${other.term}` : 'another owner holds the leader lease';
    this.#warning = `${who} while ${this.#o.nodeName} believed it led with fencing token ${this.#token}`;
    this.#log.error({ event: 'split_brain', fencingToken: this.#token, holder: other?.nodeName, holderToken: other?.term }, `Split-brain warning: ${this.#warning}; ${this.#o.nodeName} steps down. Check that every node reaches the same Redis`);
    this.#stepDown(`${who}`, 'warn');
  }

  #renewed(sentAt: number): void {
    this.#lastSentAt = sentAt;
    this.#deadline = sentAt + this.#stepDownAfterMs;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(() => { this.current(); }, Math.max(0, this.#deadline - this.#now()) + 1);
    this.#deadlineTimer.unref();
  }

  #lateReason(): string {
    const ago = Math.round(this.#now() - this.#lastSentAt);
    const problem = this.#o.link.problem;
    return `no renewal of the leader lease succeeded in time (the last successful one was sent ${ago} ms ago; the lease may expire in Redis ${this.#o.ttlMs} ms after it)${problem !== undefined ? `: ${problem}` : ''}`;
  }

  #stepDown(why: string, level: 'info' | 'warn' | 'error'): void {
    if (!this.#state.leading) return;
    const value = this.#value;
    this.#value = undefined;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#set({ leading: false, term: this.#token, quorum: false });
    if (this.#holder?.term === this.#token && this.#holder.nodeName === this.#o.nodeName) this.#holder = undefined;
    this.#log[level]({ event: 'lease_lost', fencingToken: this.#token, reason: why }, `${this.#o.nodeName} stepped down as leader (fencing token ${this.#token}): ${why}`);
    // Best effort: a lease still held in Redis is released so that a standby need not wait out its TTL.
    if (value !== undefined && !this.#stopped) void this.#release(value);
    this.#schedule(this.#pollMs);
  }

  async #release(value: string): Promise<void> {
    try {
      const n = (await this.#o.link.client.eval(RELEASE, 1, this.key, value)) as number;
      if (n === 1) this.#log.info({ event: 'lease_released', fencingToken: parse(value)?.term }, 'released the leader lease in Redis');
    } catch (e) {
      this.#log.debug({ event: 'lease_release_failed', err: redisErrorText(e) }, 'could not release the leader lease (it expires by its TTL)');
    }
  }

  /** A lease value seen in Redis (held by someone, maybe this node's earlier one). */
  #saw(raw: string): void {
    const v = parse(raw);
    if (!v) {
      this.#log.warn({ event: 'lease_unreadable', key: this.key }, `the leader lease key ${this.key} holds a value quorate did not write; it will be taken when it expires`);
      return;
    }
    this.#holder = v;
    if (v.term < this.#highestToken && v.term !== this.#warnedRegression) {
      this.#warnedRegression = v.term;
      this.#log.warn({ event: 'fencing_token_regressed', fencingToken: v.term, highestSeen: this.#highestToken, holder: v.nodeName },
        `the leader lease in Redis carries fencing token ${v.term}, below ${this.#highestToken} seen before (Redis lost its data?); writes fenced by the higher token stay rejected`);
    }
    this.#highestToken = Math.max(this.#highestToken, v.term);
    if (!this.#state.leading && this.#state.term !== v.term) this.#set({ leading: false, term: v.term, quorum: false });
  }

  #set(s: LeadershipState): void {
    this.#state = s;
    for (const l of this.#listeners) l(s);
  }
}

function parse(raw: string): LeaseValue | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LeaseValue>;
    if (typeof v.owner !== 'string' || typeof v.nodeName !== 'string' || typeof v.apiUrl !== 'string' || typeof v.term !== 'number' || !Number.isSafeInteger(v.term)) return undefined;
    return { owner: v.owner, nodeName: v.nodeName, apiUrl: v.apiUrl, term: v.term, acquiredAtMs: typeof v.acquiredAtMs === 'number' ? v.acquiredAtMs : 0 };
  } catch {
    return undefined;
  }
}

function redisMs(r: Reply): number {
  return Number(r[2]) * 1000 + Math.floor(Number(r[3]) / 1000);
}
