// `npm run bench:redis`: failover of the Redis leader lease (src/coord/redis-lease.ts)
// on loopback, with a private redis-server and two contending processes:
// - kill -9 of the holder → the standby holds the lease (≈ TTL + up to one poll);
// - clean stop (SIGTERM: the lease is released) → the standby holds it (≈ one poll);
// - Redis kill -9 → the holder steps down (before the TTL: TTL/1.01 − 500 ms after
//   its last successful renewal was sent).
// BENCH_TTL_MS (default 2000), BENCH_RENEW_MS (500), BENCH_ROUNDS (5).
// Prints one JSON report. Not part of `npm test`.
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { parseRedisConnectionString, RedisLease, RedisLink, stepDownAfterMs } from '../src/coord/index.js';
import { TestRedis } from '../test/support/redis-server.js';
import { LeaseProc } from '../test/integration/lease-proc.js';
import { sleep, waitFor } from '../test/integration/harness.js';

const TTL_MS = Number(process.env['BENCH_TTL_MS'] ?? 2000);
const RENEW_MS = Number(process.env['BENCH_RENEW_MS'] ?? 500);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);

function summary(xs: number[]): { samples: number[]; min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { samples: xs.map(Math.round), min: Math.round(s[0] ?? 0), median: Math.round(s[Math.floor(s.length / 2)] ?? 0), max: Math.round(s.at(-1) ?? 0) };
}

async function takeovers(redis: TestRedis, signal: 'SIGKILL' | 'SIGTERM'): Promise<number[]> {
  const times: number[] = [];
  let n = 0;
  const spawnOne = () => new LeaseProc(`n${n++}`, { redis: redis.address, ttlMs: TTL_MS, renewMs: RENEW_MS, prefix: `bench-${signal}:` });
  let holder = spawnOne();
  await holder.waitLeading();
  let standby = spawnOne();
  for (let r = 0; r < ROUNDS; r++) {
    await standby.waitWatching();
    await sleep(RENEW_MS * 2);
    const t0 = Date.now();
    holder.signal(signal);
    await standby.waitLeading(TTL_MS + 20_000);
    times.push(standby.firstAt((e) => e.event === 'state' && e.leading === true)! - t0);
    await holder.stop();
    holder = standby;
    standby = spawnOne();
  }
  await holder.stop();
  await standby.stop();
  return times;
}

async function redisDownStepDowns(redis: TestRedis): Promise<number[]> {
  const times: number[] = [];
  const link = new RedisLink(parseRedisConnectionString(redis.address), pino({ level: 'silent' }), { commandTimeoutMs: 300, name: 'bench' });
  const lease = new RedisLease({ link, logger: pino({ level: 'silent' }), keyPrefix: 'bench-down:', nodeName: 'bench', apiUrl: 'http://bench.invalid', ttlMs: TTL_MS, renewMs: RENEW_MS });
  let downAt = 0;
  lease.onChange((s) => { if (!s.leading) downAt = performance.now(); });
  lease.start();
  for (let r = 0; r < ROUNDS; r++) {
    await waitFor('the lease is held', () => lease.current().leading, 20_000);
    await sleep(RENEW_MS * 2);
    const t0 = performance.now();
    downAt = 0;
    await redis.kill();
    await waitFor('the holder steps down', () => downAt !== 0, TTL_MS + 10_000);
    times.push(downAt - t0);
    await redis.restart();
  }
  await lease.stop();
  await link.close();
  return times;
}

const redis = await TestRedis.start();
try {
  const kill = await takeovers(redis, 'SIGKILL');
  const clean = await takeovers(redis, 'SIGTERM');
  const down = await redisDownStepDowns(redis);
  console.log(JSON.stringify({
    bench: 'redis-lease-failover',
    ttlMs: TTL_MS, renewMs: RENEW_MS, pollMs: Math.min(RENEW_MS, 1000), stepDownAfterMs: stepDownAfterMs(TTL_MS), rounds: ROUNDS,
    killHolderTakeoverMs: summary(kill),
    cleanStopTakeoverMs: summary(clean),
    redisKilledStepDownMs: summary(down),
  }, null, 2));
} finally {
  await redis.stop();
}
