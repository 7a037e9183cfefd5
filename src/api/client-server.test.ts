// The real QuorateClient (src/api/client.ts) against this server and a fake node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { QuorateClient, QuorateHttpError, type WatchEvent } from './client.js';
import { leaderAndFollower, TOKENS, type Harness } from '../../test/support/api.js';

let leader: Harness;
let follower: Harness;
let pair: Awaited<ReturnType<typeof leaderAndFollower>>;
before(async () => {
  pair = await leaderAndFollower();
  ({ leader, follower } = pair);
});
after(() => pair.close());

describe('QuorateClient against the API server', () => {
  test('put, get, list and delete round trip (through a follower)', async () => {
    const c = new QuorateClient({ urls: [follower.url], token: TOKENS.operator });
    const p = await c.kvPut('cfg/mode', 'active');
    assert.ok(p.revision > 0);
    await c.kvPut('cfg/region', 'eu', { ifRevision: 0 });
    const g = await c.kvGet('cfg/mode');
    assert.equal(g?.value, 'active');
    assert.equal(g?.revision, p.revision);
    const l = await c.kvList('cfg/');
    assert.deepEqual(l.items.map((i) => i.key), ['cfg/mode', 'cfg/region']);
    assert.equal(l.more, false);
    const d = await c.kvDelete('cfg/mode');
    assert.equal(d.deleted, true);
    assert.equal(await c.kvGet('cfg/mode'), undefined);
    await assert.rejects(c.kvPut('cfg/region', 'us', { ifRevision: 0 }), (err: unknown) => err instanceof QuorateHttpError && err.status === 409 && err.currentRevision !== undefined);
  });

  test('health, cluster status, dump, failover-safe and metrics', async () => {
    const c = new QuorateClient({ urls: [leader.url], token: TOKENS.admin });
    const ping = await c.health('ping');
    assert.equal(ping.ok, true);
    assert.equal(ping.body.nodeName, 'node1');
    const cluster = await c.health('cluster');
    assert.equal(cluster.leaderNode, 'node1');
    const s = await c.clusterStatus();
    assert.equal(s.nodeName, 'node1');
    assert.equal(s.leader, 'node1');
    const dump = await c.dump({ checksum: true });
    assert.equal(typeof dump.checksum, 'string');
    assert.equal((await c.failoverSafe(10)).safe, true);
    assert.match(await c.metrics(), /quorate_http_requests_total/);
  });

  test('watch delivers events to the client', async () => {
    const c = new QuorateClient({ urls: [leader.url], token: TOKENS.reader });
    const seen: WatchEvent[] = [];
    const start = leader.node.kv.revision + 1;
    let resolve!: () => void;
    const got = new Promise<void>((r) => { resolve = r; });
    const stop = c.watch('cw/', start, (e) => {
      seen.push(e);
      if (seen.length === 2) resolve();
    });
    const w = new QuorateClient({ urls: [leader.url], token: TOKENS.operator });
    await w.kvPut('cw/a', '1');
    await w.kvPut('cw/b', '2');
    await got;
    stop();
    assert.deepEqual(seen.map((e) => [e.type, e.key, e.value]), [['put', 'cw/a', '1'], ['put', 'cw/b', '2']]);
  });
});
