// coordination "raft" with redis.enabled: the Raft leader mirrors its name,
// term and API URL to Redis (`<prefix>leader`), every node cross-checks the
// record, and /system/health/cluster reports redisConnected. Real node
// processes and a private redis-server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { TestCluster, TOKEN, http, waitFor } from './harness.js';
import { TestRedis } from '../support/redis-server.js';

interface Rec { nodeName: string; term: number; apiUrl: string }

test('the Raft leader is mirrored to Redis and cross-checked: a record naming another leader is a Split-brain warning; Redis down is reported', async () => {
  const redis = await TestRedis.start();
  const raw = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
  raw.on('error', () => undefined); // the test's own client sees Redis killed too
  await raw.connect();
  const c = await TestCluster.start({ nodes: 3, redis: { enabled: true, connectionString: `${redis.address},ssl=false`, keyPrefix: 'it:' }, cluster: { leaderLockTtlSeconds: 3, leaderRenewalIntervalSeconds: 1 } });
  const record = async (): Promise<Rec | undefined> => {
    const v = await raw.get('it:leader').catch(() => null);
    return v === null ? undefined : JSON.parse(v) as Rec;
  };
  const health = async (i: number) => (await http(c.nodes[i]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body;
  try {
    const l = await c.waitLeader();
    const term = (await health(l))['term'] as number;
    await waitFor('the leader is mirrored', async () => {
      const r = await record();
      return r?.nodeName === c.nodes[l]!.name && r.term === term && r.apiUrl === c.nodes[l]!.url;
    });
    assert.equal((await health(l))['redisConnected'], true);
    const ttl = await raw.pttl('it:leader');
    assert.ok(ttl > 0 && ttl <= 3000, `the record expires (leaderLockTtlSeconds), pttl ${ttl}`);

    // The leader dies: the new one rewrites the record with its higher term.
    c.kill(l, 'SIGKILL');
    const l2 = await c.waitLeader(20_000, [l]);
    await waitFor('the new leader is mirrored', async () => {
      const r = await record();
      return r?.nodeName === c.nodes[l2]!.name && r.term > term;
    });
    const term2 = (await record())!.term;

    // A record of a higher term naming another node: no leader overwrites it, every node sees the mismatch.
    await raw.set('it:leader', JSON.stringify({ nodeName: 'ghost', term: term2 + 100, apiUrl: 'http://ghost.invalid' }), 'PX', 60_000);
    await waitFor('the leader reports a split-brain warning', async () => String((await health(l2))['splitBrainWarning'] ?? '').includes('Redis names ghost leader'), 10_000);
    await waitFor('Split-brain warning logged', () => c.log(l2).includes(`Split-brain warning: Redis names ghost leader of term ${term2 + 100}, but ${c.nodes[l2]!.name} leads term ${term2}`), 10_000);
    assert.equal((await health(l2))['clusterHealthy'], false, 'a split-brain warning makes the cluster unhealthy');
    // The bogus record goes: the leader writes itself again and the warning clears.
    await raw.del('it:leader');
    await waitFor('the warning clears', async () => (await health(l2))['splitBrainWarning'] === undefined, 10_000);
    await waitFor('the leader writes itself again', async () => (await record())?.nodeName === c.nodes[l2]!.name, 10_000);

    // Redis down: the leader says so, health reports it, Raft goes on.
    await redis.kill();
    await waitFor('redisConnected false', async () => (await health(l2))['redisConnected'] === false, 10_000);
    await waitFor('the leader logs the failure', () => c.log(l2).includes(`Leader election failed: Redis unreachable at ${redis.address} (`), 10_000);
    const put = await http(c.nodes[l2]!.url, 'PUT', '/v1/kv/still', { token: TOKEN, body: { value: 'writable' } });
    assert.equal(put.status, 200, 'with coordination raft, writes go on without Redis');
    await redis.restart();
    raw.disconnect();
    const raw2 = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
    await raw2.connect();
    await waitFor('the leader is mirrored again after Redis came back empty', async () => JSON.parse((await raw2.get('it:leader')) ?? '{}').nodeName === c.nodes[l2]!.name, 15_000);
    await waitFor('redisConnected true again', async () => (await health(l2))['redisConnected'] === true, 10_000);
    raw2.disconnect();
  } finally {
    raw.disconnect();
    await c.stop();
    await redis.stop();
  }
});
