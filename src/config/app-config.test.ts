// The application integration sections (health, hooks, outbox): defaults, and
// bad values refused at load naming the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from './index.js';

const base = { node: { dataDir: '/srv/q' }, security: { tls: 'off' } };
const load = (extra: Record<string, unknown>) => parseConfig({ ...base, ...extra }, {}, { baseDir: '/srv/q' });
function refused(extra: Record<string, unknown>, path: string, msg: RegExp): void {
  assert.throws(() => load(extra), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.ok(e.issues.some((i) => i.path === path && msg.test(i.message)), JSON.stringify(e.issues));
    return true;
  });
}

test('health, hooks and outbox default to off', () => {
  const c = load({});
  assert.deepEqual(c.health, { checks: [], failoverOnFailure: false });
  assert.deepEqual(c.hooks, { timeoutMs: 30_000 });
  assert.equal(c.outbox.webhookUrl, '');
  assert.equal(c.database.outboxPollIntervalSeconds, 5);
  const h = load({ health: { checks: [{ name: 'db', command: ['/bin/true'], critical: true }, { name: 'disk', builtin: 'disk-free', minFreePercent: 15 }], failoverOnFailure: true } }).health;
  assert.equal(h.checks[0]!.intervalMs, 5000);
  assert.equal(h.checks[0]!.failuresBeforeUnhealthy, 3);
  assert.equal(h.checks[1]!.minFreePercent, 15);
});

test('bad health checks, hooks and outbox values are refused naming the key', () => {
  refused({ health: { checks: [{ name: 'x' }] } }, 'health.checks[0]', /exactly one of command, url, builtin, got none/);
  refused({ health: { checks: [{ name: 'x', command: 'true', url: 'http://a:1/' }] } }, 'health.checks[0]', /got command and url/);
  refused({ health: { checks: [{ name: 'x', command: 'true' }, { name: 'x', builtin: 'storage-writable' }] } }, 'health.checks[1].name', /duplicates/);
  refused({ health: { checks: [{ name: 'x', builtin: 'ram' }] } }, 'health.checks[0].builtin', /storage-writable/);
  refused({ health: { checks: [{ name: 'x', command: 'true' }], failoverOnFailure: true } }, 'health.failoverOnFailure', /critical/);
  refused({ health: { checks: [{ name: 'x', command: 'true', intervalMs: 5 }] } }, 'health.checks[0].intervalMs', /100/);
  refused({ hooks: { onStart: [] } }, 'hooks.onStart', /at least 1/);
  refused({ hooks: { onStart: 7 } }, 'hooks.onStart', /argv array/);
  refused({ hooks: { onStop: 'x', bogus: 1 } }, 'hooks.bogus', /unknown key/);
  refused({ outbox: { webhookUrl: 'ftp://x/y' } }, 'outbox.webhookUrl', /http/);
  refused({ database: { outboxPollIntervalSeconds: 0 } }, 'database.outboxPollIntervalSeconds', /1/);
});
