// The built-in health checks `database` and `redis` against the real things:
// the SQL machine's read path (a read worker process on the SQLite file) and
// the Redis connection of the leader mirror (a private redis-server).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../config/index.js';
import { leaderMirrorFor } from '../coord/mirror-wiring.js';
import { MetricsRegistry } from '../ops/metrics.js';
import { SqlStateMachine } from '../sql/machine.js';
import { TestRedis } from '../../test/support/redis-server.js';
import { waitFor } from '../../test/integration/harness.js';
import { AppHealth, DATABASE_CHECK_SQL, type BuiltinProbes, type CheckSpec } from './app-health.js';

const log = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function check(builtin: 'database' | 'redis', timeoutMs: number): CheckSpec {
  return { name: builtin, builtin, minFreePercent: 10, intervalMs: 100, timeoutMs, failuresBeforeUnhealthy: 1, critical: true };
}

function health(spec: CheckSpec, probes: Partial<BuiltinProbes>): AppHealth {
  const unused = () => Promise.reject(new Error('not probed in this test'));
  const h = new AppHealth({ specs: [spec], dataDir: tmpdir(), logger: log, metrics: new MetricsRegistry(), probes: { database: unused, redis: unused, ...probes } });
  h.start();
  cleanups.push(async () => h.stop());
  return h;
}

const status = (h: AppHealth) => h.view().checks[0]!;

describe('built-in health checks', () => {
  it('database: healthy while the SQL read path answers; unhealthy, naming it, when a read does not answer within the timeout', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quorate-health-db-'));
    // One read worker, so a long query holds the read path; the query limit ends it after 3 s.
    const sql = await SqlStateMachine.open({ dir, logger: log, onFatal: (e) => assert.fail(e), readers: 1, limits: { queryTimeoutMs: 3000 } });
    cleanups.push(async () => { await sql.close(); await rm(dir, { recursive: true, force: true }); });
    const h = health(check('database', 300), { database: async () => { await sql.query(DATABASE_CHECK_SQL, []); } });
    await waitFor('the database check ran healthy', () => status(h).lastRunAt !== null && status(h).healthy && status(h).lastError === null, 20_000);
    const long = sql.query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c', []).catch((e: Error) => e);
    await waitFor('the database check fails while the read path is held', () => !status(h).healthy, 20_000);
    assert.match(status(h).lastError ?? '', /the SQL database \(a read through its read path\) did not answer within 300 ms/);
    assert.deepEqual(h.view().failingCritical, ['database']);
    assert.match(String(await long), /ran longer than 3000 ms/);
    await waitFor('the database check is healthy again once the read path answers', () => status(h).healthy, 20_000);
  });

  it('redis: healthy while the node\'s Redis connection answers PING; unhealthy after Redis is killed; healthy again after it restarts', async () => {
    const redis = await TestRedis.start();
    cleanups.push(() => redis.stop());
    const config = parseConfig({ node: { nodeName: 'n1', dataDir: tmpdir() }, security: { tls: 'off' }, redis: { enabled: true, connectionString: redis.address } }, {}, { baseDir: tmpdir() });
    const mirror = leaderMirrorFor(config, log, () => ({ leading: false, term: 1, leaderName: undefined }))!;
    mirror.start();
    cleanups.push(() => mirror.stop());
    const h = health(check('redis', 1000), { redis: () => mirror.ping() });
    await waitFor('the redis check ran healthy', () => status(h).lastRunAt !== null && status(h).healthy && status(h).lastError === null, 20_000);
    await redis.kill();
    await waitFor('the redis check fails once Redis is gone', () => !status(h).healthy, 20_000);
    assert.match(status(h).lastError ?? '', /^Redis \(PING\) (failed: |did not answer within 1000 ms)/);
    await redis.restart();
    await waitFor('the redis check is healthy again after Redis restarted', () => status(h).healthy, 30_000);
  });
});
