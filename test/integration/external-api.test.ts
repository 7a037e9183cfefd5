// The HTTP API on an external-shared cluster (two real node processes, a
// private PostgreSQL and redis-server): the KV under a leader kill -9 checked
// with the linearizability checker (reads `consistency=linearizable` on
// either node, writes through either node), SQL (PostgreSQL's, fenced) and
// tokens through the PostgreSQL log, both nodes' state identical (dump
// checksums), status and metrics, and the Raft-only operations refused
// naming the mode; a clean stop of the leader hands the lease over at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHistory, type HistoryEntry } from '../sim/linearizability.js';
import { http, sleep, waitFor, TOKEN } from './harness.js';
import { kvHistoryClients, startExternalCluster } from './external-cluster.js';

test('external-shared: linearizable KV across a leader kill, SQL, tokens, identical state on both nodes', async () => {
  const x = await startExternalCluster({ ttlSeconds: 3, renewSeconds: 1 });
  const { c } = x;
  try {
    const l = await c.waitLeader(30_000);
    const other = 1 - l;
    await c.waitReady(other, 20_000);

    // SQL (PostgreSQL's, in database.external.sqlSchema): execute on the standby (forwarded to the leader), read on the leader.
    const exec = await http(c.nodes[other]!.url, 'POST', '/v1/db/execute', { token: TOKEN, body: { statements: [['CREATE TABLE t (id serial PRIMARY KEY, v text)'], ['INSERT INTO t (v) VALUES ($1)', 'one']] } });
    assert.equal(exec.status, 200, JSON.stringify(exec.body));
    const rows = await http(c.nodes[l]!.url, 'POST', '/v1/db/query', { token: TOKEN, body: { sql: 'SELECT v FROM t', params: [], consistency: 'linearizable' } });
    assert.deepEqual(rows.body['rows'], [['one']]);
    // A managed token created on the standby works on both nodes.
    const tok = await http(c.nodes[other]!.url, 'POST', '/v1/tokens', { token: TOKEN, body: { name: 'grafana', role: 'reader' } });
    assert.equal(tok.status, 201, JSON.stringify(tok.body));
    for (const n of c.nodes) {
      await waitFor(`the new token works on ${n.name}`, async () => (await http(n.url, 'GET', '/v1/cluster/status', { token: tok.body['token'] as string })).status === 200, 10_000);
    }
    const st = await http(c.nodes[other]!.url, 'GET', '/v1/cluster/status', { token: TOKEN });
    assert.equal(st.status, 200);
    assert.equal(st.body['leader'], c.nodes[l]!.name, JSON.stringify(st.body).slice(0, 500));
    assert.equal((await http(c.nodes[l]!.url, 'GET', '/metrics', { token: TOKEN })).status, 200);
    const sw = await http(c.nodes[l]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: {} });
    assert.equal(sw.status, 409);
    assert.equal(sw.body['error'], 'feature_unavailable');
    assert.match(String(sw.body['message']), /not available with database\.mode "external-shared"/);

    // The KV: 4 clients, 3 keys, reads and writes on random nodes, the leader killed in the middle.
    const history: HistoryEntry[] = [];
    const t0 = performance.now();
    let stop = false;
    const alive = () => c.nodes.filter((nd) => nd.exitCode === undefined);
    const clients = kvHistoryClients({ count: 4, urls: () => alive().map((nd) => nd.url), running: () => !stop, history, t0 });
    await sleep(1500);
    c.kill(l, 'SIGKILL');
    await c.waitExit(l);
    await c.waitLeader(30_000, [l]);
    await sleep(1500);
    stop = true;
    await Promise.all(clients);
    const acked = history.filter((h) => h.op.kind === 'write' && h.output !== undefined).length;
    const check = checkHistory(history);
    assert.equal(check.result, 'linearizable', JSON.stringify(check).slice(0, 2000));
    console.log(`# KV history across a leader kill: ${history.length} ops (${acked} acknowledged writes), linearizable`);

    // The killed node comes back, rebuilds its state from PostgreSQL, and holds exactly what the other holds.
    c.startNode(l);
    await c.waitReady(l, 30_000);
    await waitFor('both nodes hold the same state', async () => {
      const d = await Promise.all(c.nodes.map((nd) => http(nd.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined)));
      const sums = new Set(d.map((r) => (r?.status === 200 ? `${r.body['appliedIndex']}/${r.body['checksum']}/${r.body['sqlChecksum']}` : 'down')));
      return sums.size === 1 && !sums.has('down');
    }, 20_000);
    const again = await http(c.nodes[l]!.url, 'POST', '/v1/db/query', { token: TOKEN, body: { sql: 'SELECT v FROM t', params: [] } });
    assert.deepEqual(again.body['rows'], [['one']], 'the restarted node reads the SQL table in PostgreSQL');

    // A clean stop (SIGTERM) releases the lease: the other node leads within a poll, not after the TTL.
    const leader = await c.waitLeader(10_000);
    const stoppedAt = Date.now();
    c.kill(leader, 'SIGTERM');
    assert.equal(await c.waitExit(leader), 0);
    await c.waitLeader(10_000, [leader]);
    const handoverMs = Date.now() - stoppedAt;
    console.log(`# clean stop of the leader: the other node leads after ${handoverMs} ms (TTL 3000 ms)`);
    assert.match(c.log(leader), /node stopped cleanly/);
  } finally {
    await x.stop();
  }
});
