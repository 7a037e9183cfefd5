// Cross-key rules of Redis (the leader mirror and the leader lease):
// - redis.connectionString must parse (host:port[,password=…][,ssl=…] or a
//   redis:// / rediss:// URL); the message never echoes it (it may hold a password);
// - leaderRenewalIntervalSeconds < leaderLockTtlSeconds (the mirror's record
//   and the lease must be rewritten before they expire);
// - coordination "redis" needs redis.enabled, leaves the leader room to step
//   down before its lease expires (src/coord/redis-lease.ts stepDownAfterMs);
//   with database.mode "local-sync" Redis is the witness of an in-sync set
//   (src/coord/WITNESS.md), which is what makes a node's own copy safe to promote;
// - database.inSyncDegrade needs that witness.
import { parseRedisConnectionString, RedisConnectionStringError } from '../coord/redis-conn.js';
import { CLOCK_RATE_BOUND, DEFAULT_STOP_BUDGET_MS, stepDownAfterMs } from '../coord/redis-lease.js';
import type { ConfigIssue } from './errors.js';
import type { RawConfig } from './schema.js';

export function redisIssues(c: RawConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });
  const cl = c.cluster;
  const usesRedis = c.redis.enabled || cl.coordination === 'redis';
  if (usesRedis) {
    try {
      parseRedisConnectionString(c.redis.connectionString, c.redis.tlsEnabled);
    } catch (e) {
      if (!(e instanceof RedisConnectionStringError)) throw e;
      add('redis.connectionString', `the value (not shown: it may hold a password) ${e.message}`);
    }
    if (cl.leaderRenewalIntervalSeconds >= cl.leaderLockTtlSeconds) {
      add('cluster.leaderRenewalIntervalSeconds', `must be below cluster.leaderLockTtlSeconds (${cl.leaderLockTtlSeconds}), got ${cl.leaderRenewalIntervalSeconds}: the leader record in Redis would expire before it is renewed`);
    }
  }
  if (cl.coordination === 'redis') {
    if (!c.redis.enabled) add('cluster.coordination', '"redis" needs redis.enabled: true (and redis.connectionString): the leader lease is kept in Redis');
    const ttlMs = cl.leaderLockTtlSeconds * 1000;
    const room = stepDownAfterMs(ttlMs);
    if (cl.leaderRenewalIntervalSeconds < cl.leaderLockTtlSeconds && room <= cl.leaderRenewalIntervalSeconds * 1000) {
      add('cluster.leaderLockTtlSeconds', `${cl.leaderLockTtlSeconds} s leaves the leader ${room} ms after a renewal before it must step down (TTL / ${1 + CLOCK_RATE_BOUND} − ${DEFAULT_STOP_BUDGET_MS} ms for its stop), not more than leaderRenewalIntervalSeconds (${cl.leaderRenewalIntervalSeconds} s): raise the TTL or renew more often`);
    }
  }
  if (cl.coordination === 'redis' && c.database.mode === 'local-sync' && cl.failover !== 'automatic') {
    add('cluster.failover', `${JSON.stringify(cl.failover)} is not available with the Redis witness (cluster.coordination "redis"): an in-sync standby takes the lease by itself when it expires; remove the key or set it to "automatic"`);
  }
  if (c.database.inSyncDegrade && !(cl.coordination === 'redis' && c.database.mode === 'local-sync')) {
    add('database.inSyncDegrade', 'true needs cluster.coordination "redis" with database.mode "local-sync" (the Redis witness keeps the in-sync set it shrinks); remove the key or set cluster.coordination to "redis"');
  }
  return issues;
}
