// Failover of a two-node cluster with a Redis
// witness (src/coord/WITNESS.md) on loopback: two real nodes, a private
// redis-server with appendonly yes / appendfsync always, one writer. Each
// round kills -9 the leader and measures (from the kill) when the standby
// says it leads and when the next write is acknowledged, then restarts the
// killed node and waits until it is back in the in-sync set. Run by
// `npm run bench:witness` (./witness-failover.ts) and `npm run bench`
// (./cluster.ts, next to the three-node figures).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { TOKEN, TestCluster, http, sleep, waitFor } from '../test/integration/harness.js';
import { TestRedis } from '../test/support/redis-server.js';

export interface WitnessFailoverOptions {
  readonly ttlSeconds: number;
  readonly renewSeconds: number;
  readonly rounds: number;
  /** inSyncDegrade: writes resume with the standby alone; otherwise when the old leader is back (restarted at once). */
  readonly degrade: boolean;
}

function summary(xs: number[]): { samples: number[]; min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { samples: xs.map(Math.round), min: Math.round(s[0] ?? 0), median: Math.round(s[Math.floor(s.length / 2)] ?? 0), max: Math.round(s.at(-1) ?? 0) };
}

async function leaderOf(c: TestCluster, alive: number[]): Promise<number> {
  for (const i of alive) {
    const r = await http(c.nodes[i]!.url, 'GET', '/system/health/leader').catch(() => undefined);
    if (r && r.body['leader'] === c.nodes[i]!.name) return i;
  }
  return -1;
}

export async function witnessFailover(o: WitnessFailoverOptions): Promise<Record<string, unknown>> {
  const { ttlSeconds: TTL_S, renewSeconds: RENEW_S, rounds: ROUNDS, degrade: DEGRADE } = o;
  const dir = mkdtempSync(join(tmpdir(), 'quorate-bench-witness-'));
  const redis = await TestRedis.start({ persistDir: dir });
  const c = await TestCluster.start({
    nodes: 2, cluster: { coordination: 'redis', leaderLockTtlSeconds: TTL_S, leaderRenewalIntervalSeconds: RENEW_S },
    redis: { enabled: true, connectionString: redis.address, keyPrefix: 'bench:' }, database: DEGRADE ? { inSyncDegrade: true } : {},
  });
  const leads: number[] = [];
  const writes: number[] = [];
  try {
    const client = c.client({ timeoutMs: 2000 });
    let leader = -1;
    await waitFor('a leader', async () => (leader = await leaderOf(c, [0, 1])) >= 0, 30_000);
    for (let r = 0; r < ROUNDS; r++) {
      await waitFor('both in the in-sync set', async () => {
        const s = await http(c.nodes[leader]!.url, 'GET', '/v1/cluster/status', { token: TOKEN }).catch(() => undefined);
        return JSON.stringify((s?.body['witness'] as { inSync?: unknown } | undefined)?.inSync) === '[1,2]';
      }, 30_000);
      await client.kvPut('bench', `before-${r}`);
      const standby = 1 - leader;
      const t0 = performance.now();
      c.kill(leader);
      await c.waitExit(leader);
      await waitFor('the standby leads', async () => (await leaderOf(c, [standby])) === standby, 30_000);
      leads.push(performance.now() - t0);
      if (!DEGRADE) c.startNode(leader);
      for (;;) {
        try { await client.kvPut('bench', `after-${r}`); break; } catch { await sleep(20); }
      }
      writes.push(performance.now() - t0);
      if (DEGRADE) c.startNode(leader);
      leader = standby;
    }
  } finally {
    await c.stop();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { bench: 'witness-failover', nodes: 2, ttlSeconds: TTL_S, renewSeconds: RENEW_S, inSyncDegrade: DEGRADE, rounds: ROUNDS,
    killToStandbyLeadsMs: summary(leads), killToWriteAcknowledgedMs: summary(writes),
    note: DEGRADE ? 'writes resume once the lease expired and the dead node left the in-sync set (electionTimeoutMs 1000)' : 'the old leader is restarted at once; writes resume when it is back' };
}
