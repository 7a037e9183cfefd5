// One Redis connection as the lease or the mirror uses it: the ioredis
// client, whether it works now (`connected`: the last command succeeded and
// the socket is ready), and the operator's message while it does not:
// `Leader election failed: Redis unreachable at host:port (reason)`, logged
// at the first failure and then every UNREACHABLE_LOG_MS while it lasts, and
// `redis_reachable` once it works again. Never logs the password.
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { redisClient, redisErrorText, type RedisTarget } from './redis-conn.js';

const UNREACHABLE_LOG_MS = 10_000;

export class RedisLink {
  readonly client: Redis;
  readonly target: RedisTarget;
  readonly #log: Logger;
  #ok = false;
  #failingSince: number | undefined;
  #lastLoggedAt = 0;
  #lastError: string | undefined;
  #closed = false;

  constructor(target: RedisTarget, logger: Logger, o: { commandTimeoutMs: number; name: string }) {
    this.target = target;
    this.#log = logger;
    this.client = redisClient(target, { commandTimeoutMs: o.commandTimeoutMs, connectTimeoutMs: Math.max(500, o.commandTimeoutMs), name: o.name });
    // ioredis emits 'error' for every failed (re)connection; without a listener Node would crash the process.
    this.client.on('error', (e: unknown) => { this.#lastError = redisErrorText(e); });
    this.client.on('close', () => { this.#ok = false; });
  }

  /** Opens the connection (reconnects by itself afterwards, with backoff); settles when the first attempt does. */
  open(): Promise<void> {
    return this.client.connect().catch((e: unknown) => { this.#lastError = redisErrorText(e); });
  }

  /** The socket is ready and the last command succeeded. */
  get connected(): boolean {
    return this.#ok && this.client.status === 'ready';
  }

  /** Why Redis does not work now, for health and status (undefined while it works). */
  get problem(): string | undefined {
    if (this.connected) return undefined;
    return `Redis unreachable at ${this.target.display}${this.#lastError !== undefined ? ` (${this.#lastError})` : ''}`;
  }

  /** A command succeeded. */
  succeeded(): void {
    this.#ok = true;
    if (this.#failingSince !== undefined) {
      const downMs = Date.now() - this.#failingSince;
      this.#failingSince = undefined;
      this.#log.info({ event: 'redis_reachable', redis: this.target.display, downMs }, `Redis at ${this.target.display} is reachable again (after ${downMs} ms)`);
    }
  }

  /** A command failed: logs the operator's message (rate-limited); `what` says what could not be done. */
  failed(e: unknown, what: string): void {
    this.#ok = false;
    if (this.#closed) return;
    const reason = redisErrorText(e);
    const shown = this.#lastError !== undefined && /writeable|Connection is closed/i.test(reason) ? this.#lastError : reason;
    const now = Date.now();
    if (this.#failingSince === undefined) this.#failingSince = now;
    if (now - this.#lastLoggedAt < UNREACHABLE_LOG_MS) return;
    this.#lastLoggedAt = now;
    this.#log.error(
      { event: 'leader_election_failed', redis: this.target.display, err: shown, action: what },
      `Leader election failed: Redis unreachable at ${this.target.display} (${shown}); ${what}. Check that Redis is running and that every node can reach it`,
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
