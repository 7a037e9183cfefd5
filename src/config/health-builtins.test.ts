// The built-in health checks `database` and `redis` at config load: accepted
// with what they check; `redis` without redis.enabled refused naming the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from './index.js';

const base = { node: { dataDir: '/srv/q' }, security: { tls: 'off' } };
const load = (extra: Record<string, unknown>) => parseConfig({ ...base, ...extra }, {}, { baseDir: '/srv/q' });

test('the database check loads without anything else; the redis check loads with redis.enabled', () => {
  const c = load({ health: { checks: [{ name: 'db', builtin: 'database', critical: true, timeoutMs: 500 }] } });
  assert.equal(c.health.checks[0]!.builtin, 'database');
  const r = load({ redis: { enabled: true, connectionString: '127.0.0.1:6390' }, health: { checks: [{ name: 'cache', builtin: 'redis' }] } });
  assert.equal(r.health.checks[0]!.builtin, 'redis');
});

test('a redis check without redis.enabled is refused at load naming the key; so is an unknown built-in', () => {
  for (const [health, path, re] of [
    [{ checks: [{ name: 'ok', builtin: 'database' }, { name: 'cache', builtin: 'redis' }] }, 'health.checks[1].builtin', /"redis" .*redis\.enabled: true/],
    [{ checks: [{ name: 'x', builtin: 'postgres' }] }, 'health.checks[0].builtin', /storage-writable.*disk-free.*database.*redis/],
  ] as const) {
    assert.throws(() => load({ health }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.ok(e.issues.some((i) => i.path === path && re.test(i.message)), JSON.stringify(e.issues));
      return true;
    });
  }
  // Through the environment too: QUORATE_REDIS_ENABLED=false wins over the file.
  assert.throws(() => parseConfig({ ...base, redis: { enabled: true }, health: { checks: [{ name: 'cache', builtin: 'redis' }] } }, { QUORATE_REDIS_ENABLED: 'false' }, { baseDir: '/srv/q' }), /health\.checks\[0\]\.builtin/);
});
