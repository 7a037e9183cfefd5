import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from './load.js';
import { ConfigError } from './errors.js';
import { configSchema } from './schema.js';
import { redisIssues } from './redis-rules.js';

function issuesOf(obj: unknown): { path: string; message: string }[] {
  try {
    parseConfig(obj, {}, { baseDir: '/srv/q' });
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.issues.map((i) => ({ path: i.path, message: i.message }));
  }
}

test('redis.enabled with the seed connection string form loads: the Raft leader is mirrored to Redis', () => {
  const c = parseConfig({ redis: { enabled: true, connectionString: '10.0.1.20:6379,password=YOUR_REDIS_PASSWORD_HERE,ssl=false', keyPrefix: 'rppam:' }, cluster: { leaderLockTtlSeconds: 30, leaderRenewalIntervalSeconds: 10 } }, {}, { baseDir: '/srv/q' });
  assert.equal(c.redis.enabled, true);
  assert.equal(c.redis.keyPrefix, 'rppam:');
  assert.equal(parseConfig({ redis: { enabled: true, connectionString: 'rediss://user:pw@redis.example:6380/2' } }, {}).redis.connectionString, 'rediss://user:pw@redis.example:6380/2');
});

test('a Redis connection string that does not parse is refused naming redis.connectionString, never echoing it', () => {
  for (const cs of ['redis://:hunter2@h:99999', 'h:6379,password=hunter2,sll=true', 'http://h:6379', 'h:6379,password=hunter2,ssl=maybe']) {
    const issues = issuesOf({ redis: { enabled: true, connectionString: cs } });
    assert.equal(issues.length, 1, cs);
    assert.equal(issues[0]!.path, 'redis.connectionString');
    assert.match(issues[0]!.message, /^the value \(not shown: it may hold a password\) /);
    assert.doesNotMatch(issues[0]!.message, /hunter2/);
  }
  assert.match(issuesOf({ redis: { enabled: true, connectionString: 'h:6379,ssl=false', tlsEnabled: true } })[0]!.message, /ssl=false but redis\.tlsEnabled is true/);
});

test('leaderRenewalIntervalSeconds must be below leaderLockTtlSeconds when Redis is used', () => {
  const issues = issuesOf({ redis: { enabled: true }, cluster: { leaderLockTtlSeconds: 10, leaderRenewalIntervalSeconds: 10 } });
  assert.deepEqual(issues.map((i) => i.path), ['cluster.leaderRenewalIntervalSeconds']);
  assert.match(issues[0]!.message, /must be below cluster\.leaderLockTtlSeconds \(10\), got 10/);
});

test('coordination "redis" needs redis.enabled and room to step down before the lease expires; with local-sync it is the witness; inSyncDegrade needs it', () => {
  const raw = (o: Record<string, unknown>) => configSchema.parse(o);
  const local = redisIssues(raw({ cluster: { coordination: 'redis' } }));
  assert.deepEqual(local.map((i) => i.path), ['cluster.coordination']);
  assert.match(local[0]!.message, /needs redis\.enabled: true/);
  assert.deepEqual(redisIssues(raw({ cluster: { coordination: 'redis' }, redis: { enabled: true }, database: { inSyncDegrade: true } })), []);
  const degrade = redisIssues(raw({ database: { inSyncDegrade: true } }));
  assert.deepEqual(degrade.map((i) => i.path), ['database.inSyncDegrade']);
  assert.match(degrade[0]!.message, /needs cluster\.coordination "redis" with database\.mode "local-sync"/);
  const manual = redisIssues(raw({ cluster: { coordination: 'redis', failover: 'manual' }, redis: { enabled: true } }));
  assert.deepEqual(manual.map((i) => i.path), ['cluster.failover']);
  assert.match(manual[0]!.message, /not available with the Redis witness/);
  const ok = redisIssues(raw({ cluster: { coordination: 'redis' }, redis: { enabled: true }, database: { mode: 'external-shared' } }));
  assert.deepEqual(ok, []);
  const tight = redisIssues(raw({ cluster: { coordination: 'redis', leaderLockTtlSeconds: 2, leaderRenewalIntervalSeconds: 1 }, redis: { enabled: true }, database: { mode: 'external-shared' } }));
  assert.deepEqual(tight, [], 'TTL 2 s, renewal 1 s: the leader steps down 1480 ms after a renewal was sent, more than 1 s');
  const none = redisIssues(raw({ cluster: { coordination: 'redis', leaderLockTtlSeconds: 60, leaderRenewalIntervalSeconds: 59 }, redis: { enabled: true }, database: { mode: 'external-shared' } }));
  assert.deepEqual(none.map((i) => i.path), ['cluster.leaderLockTtlSeconds']);
  assert.match(none[0]!.message, /^60 s leaves the leader 58905 ms after a renewal before it must step down .*not more than leaderRenewalIntervalSeconds \(59 s\)/);
});
