// Two (or more) real quorate node processes in database.mode
// "external-shared" on a private PostgreSQL, led by the Redis lease in a
// private redis-server, and a writer that keeps writing through any node and
// records what was acknowledged.
import { TestCluster, http, sleep, TOKEN } from './harness.js';
import { TestPostgres } from '../support/pg-server.js';
import { TestRedis } from '../support/redis-server.js';

export interface ExternalCluster {
  readonly c: TestCluster;
  readonly db: TestPostgres;
  readonly redis: TestRedis;
  stop(): Promise<void>;
}

export async function startExternalCluster(o: { nodes?: number; ttlSeconds?: number; renewSeconds?: number; extra?: Record<string, unknown>; env?: Record<string, string>; cluster?: Record<string, unknown>; database?: Record<string, unknown> } = {}): Promise<ExternalCluster> {
  const db = await TestPostgres.start();
  let redis: TestRedis | undefined;
  try {
    redis = await TestRedis.start();
    const c = await TestCluster.start({
      nodes: o.nodes ?? 2,
      cluster: { coordination: 'redis', leaderLockTtlSeconds: o.ttlSeconds ?? 3, leaderRenewalIntervalSeconds: o.renewSeconds ?? 1, ...(o.cluster ?? {}) },
      redis: { enabled: true, connectionString: redis.address },
      ...(o.env ? { env: () => o.env } : {}),
      extraConfig: () => ({ ...(o.extra ?? {}), database: { mode: 'external-shared', ...(o.database ?? {}), external: { connectionString: db.connectionString, ...((o.database?.['external'] as Record<string, unknown> | undefined) ?? {}) } } }),
    });
    const r = redis;
    return { c, db, redis: r, stop: async () => { await c.stop(); await r.stop(); await db.stop(); } };
  } catch (e) {
    await redis?.stop();
    await db.stop();
    throw e;
  }
}

export interface RaftExternalCluster {
  readonly c: TestCluster;
  readonly db: TestPostgres;
  stop(): Promise<void>;
}

/**
 * Three (or more) real node processes in database.mode "external-shared" led by Raft (cluster.coordination
 * "raft", src/external/raft-lead.ts) on a private PostgreSQL; `beforeNodes` runs against the database first
 * (e.g. a fence row left by a Redis-led era).
 */
export async function startRaftExternalCluster(o: { nodes?: number; env?: Record<string, string>; beforeNodes?: (db: TestPostgres) => Promise<void> } = {}): Promise<RaftExternalCluster> {
  const db = await TestPostgres.start();
  try {
    await o.beforeNodes?.(db);
    const c = await TestCluster.start({
      nodes: o.nodes ?? 3,
      cluster: { coordination: 'raft' },
      ...(o.env ? { env: () => o.env } : {}),
      extraConfig: () => ({ database: { mode: 'external-shared', external: { connectionString: db.connectionString } } }),
    });
    return { c, db, stop: async () => { await c.stop(); await db.stop(); } };
  } catch (e) {
    await db.stop();
    throw e;
  }
}

/** `sentAt`: when this attempt was sent; `at`: when its answer came. */
export interface WriteOutcome { key: string; value: string; status: number; code?: string; message?: string; sentAt: number; at: number; via: string }

/** Writes w/<n> = v<n> through `urls` (first that answers), `concurrency` at a time, until stop(). */
export class Writer {
  readonly acked = new Map<string, string>();
  readonly outcomes: WriteOutcome[] = [];
  #n = 0;
  #stopped = false;
  readonly #loops: Promise<void>[] = [];

  constructor(readonly urls: () => string[], concurrency = 4, readonly prefix = 'w') {
    for (let i = 0; i < concurrency; i++) this.#loops.push(this.#loop());
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const n = this.#n++;
      const key = `${this.prefix}/${n}`;
      const value = `v${n}`;
      let done = false;
      for (const url of this.urls()) {
        const sentAt = Date.now();
        const r = await http(url, 'PUT', `/v1/kv/${encodeURIComponent(key)}`, { token: TOKEN, body: { value } }).catch((e: Error) => ({ status: 0, body: { error: 'fetch_failed', message: e.message } as Record<string, unknown> }));
        const err = r.status === 200 ? undefined : { code: r.body['error'] as string | undefined, message: r.body['message'] as string | undefined };
        this.outcomes.push({ key, value, status: r.status, sentAt, ...(err?.code ? { code: err.code } : {}), ...(err?.message ? { message: err.message } : {}), at: Date.now(), via: url });
        if (r.status === 200) {
          this.acked.set(key, value);
          done = true;
          break;
        }
        // commit_unknown: the outcome is unknown, do not try the same key elsewhere (it may have landed).
        if (err?.code === 'commit_unknown') break;
      }
      if (!done) await sleep(50);
    }
  }

  /** The first acknowledged write sent after `t`. */
  firstAckAfter(t: number): WriteOutcome | undefined {
    return this.outcomes.find((o) => o.status === 200 && o.sentAt > t);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }
}
