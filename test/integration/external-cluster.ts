// Two (or more) real quorate node processes in database.mode
// "external-shared" on a private PostgreSQL, led by the Redis lease in a
// private redis-server, and a writer that keeps writing through any node and
// records what was acknowledged.
import { TestCluster, http, sleep, TOKEN } from './harness.js';
import type { HistoryEntry, KvOp, KvOutput } from '../sim/linearizability.js';
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
    // Bounded: a failed assertion never calls stop(), and the writer must not keep the test process alive.
    const until = Date.now() + 300_000;
    while (!this.#stopped && Date.now() < until) {
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

/**
 * `count` KV clients recording a history for the linearizability checker: each reads (linearizable) or writes
 * one of three keys at a random node of `urls()` until `running()` turns false (or no node is left). A failed
 * read observed nothing and is left out; a definite refusal of a write (nothing appended: no leader, refused by
 * the fence, the database unavailable before COMMIT) is left out; anything else but an acknowledgement is
 * indeterminate (it may have landed).
 */
export function kvHistoryClients(o: { count: number; urls: () => string[]; running: () => boolean; history: HistoryEntry[]; t0: number }): Promise<void>[] {
  const { history, t0 } = o;
  let n = 0;
  // Bounded: a failed assertion leaves running() true, and the clients must not keep the test process alive.
  const until = Date.now() + 300_000;
  return Array.from({ length: o.count }, async (_, client) => {
    while (o.running() && Date.now() < until) {
      const urls = o.urls();
      if (urls.length === 0) return;
      const url = urls[Math.floor(Math.random() * urls.length)]!;
      const key = `k${Math.floor(Math.random() * 3)}`;
      const invokeAt = performance.now() - t0;
      if (Math.random() < 0.5) {
        const op: KvOp = { kind: 'read', key };
        const r = await http(url, 'GET', `/v1/kv/${key}?consistency=linearizable`, { token: TOKEN }).catch(() => undefined);
        const returnAt = performance.now() - t0;
        if (r?.status === 200) history.push({ client, op, output: { kind: 'read', value: r.body['value'] as string }, invokeAt, returnAt });
        else if (r?.status === 404) history.push({ client, op, output: { kind: 'read', value: null }, invokeAt, returnAt });
      } else {
        const value = `v${n++}`;
        const op: KvOp = { kind: 'write', key, value };
        const r = await http(url, 'PUT', `/v1/kv/${key}`, { token: TOKEN, body: { value } }).catch(() => undefined);
        const returnAt = performance.now() - t0;
        const output: KvOutput | undefined = r?.status === 200 ? { kind: 'ok' } : undefined;
        const refused = r?.status === 503 && ['no_leader', 'not_leader', 'storage_failed'].includes(String(r.body['error']));
        if (!refused) history.push({ client, op, output, invokeAt, ...(output ? { returnAt } : { returnAt: undefined }) });
      }
      const last = history.at(-1);
      if (last?.client === client && last.output === undefined) await sleep(20);
    }
  });
}
