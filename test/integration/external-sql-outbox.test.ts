// The SQL outbox in external-shared mode, where /v1/db/* is PostgreSQL's SQL:
// the application inserts its business row and a `quorate_outbox` row (in
// database.external.sqlSchema) in one /v1/db/execute transaction; the leader
// delivers each committed row to the webhook with `sql-<id>` as
// Idempotency-Key and its fencing token, deletes it in PostgreSQL, and a
// rolled-back row is never delivered. Then the leader is killed with -9 and
// the rows inserted meanwhile are delivered by the new leader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TOKEN, http as request, waitFor } from './harness.js';
import { startExternalCluster } from './external-cluster.js';

test('external-shared: quorate_outbox rows in PostgreSQL reach the webhook once per id, across a leader kill', async () => {
  const deliveries: { id: string; body: string; token: number }[] = [];
  const webhook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      deliveries.push({ id: String(req.headers['idempotency-key']), body, token: Number(req.headers['x-quorate-fencing-token']) });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  const hook = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`;
  const x = await startExternalCluster({ extra: { outbox: { webhookUrl: hook } }, database: { outboxPollIntervalSeconds: 1 } });
  const { c, db } = x;
  try {
    const l = await c.waitLeader(30_000);
    const s = 1 - l;
    await c.waitReady(s, 20_000);
    const exec = async (url: string, statements: unknown[][]) => request(url, 'POST', '/v1/db/execute', { token: TOKEN, body: { statements, transaction: true } });
    const made = await exec(c.nodes[s]!.url, [['CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL UNIQUE)']]);
    assert.equal(made.status, 200, JSON.stringify(made.body));
    const expected = new Map<string, string>();
    const order = async (url: string, item: string) => {
      const r = await exec(url, [
        ['INSERT INTO orders (item) VALUES ($1)', item],
        ["INSERT INTO quorate_outbox (body) VALUES (json_build_object('item', $1::text)::text) RETURNING id", item],
      ]);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const results = r.body['results'] as { rows: number[][] }[];
      expected.set(`sql-${results[1]!.rows[0]![0]}`, item);
    };
    for (let i = 0; i < 5; i++) await order(c.nodes[i % 2]!.url, `item-${i}`);
    // A failing transaction: its outbox row is rolled back with it.
    const dup = await exec(c.nodes[l]!.url, [["INSERT INTO quorate_outbox (body) VALUES ('{\"item\":\"ghost\"}')"], ['INSERT INTO orders (item) VALUES ($1)', 'item-0']]);
    assert.equal(dup.status, 400);
    assert.equal(dup.body['sqlState'], '23505');
    await waitFor('the first rows delivered', async () => new Set(deliveries.map((d) => d.id)).size >= 5, 20_000);
    const firstToken = deliveries[0]!.token;
    assert.ok(firstToken > 0, 'deliveries carry the fencing token');

    // kill -9 of the leader; rows inserted through the survivor are delivered by it under a newer token.
    c.kill(l, 'SIGKILL');
    await c.waitExit(l);
    await c.waitLeader(30_000, [l]);
    for (let i = 5; i < 10; i++) await order(c.nodes[s]!.url, `item-${i}`);
    await waitFor('every committed row delivered', async () => [...expected.keys()].every((id) => deliveries.some((d) => d.id === id)), 30_000);
    for (const [id, item] of expected) assert.deepEqual(JSON.parse(deliveries.find((d) => d.id === id)!.body), { item }, id);
    assert.ok(!deliveries.some((d) => d.body.includes('ghost')), 'the rolled-back row was never delivered');
    assert.ok(deliveries.filter((d) => Number(d.id.slice(4)) > Number([...expected.keys()][4]!.slice(4))).every((d) => d.token > firstToken), 'the new leader delivers under its own token');
    await waitFor('delivered rows deleted in PostgreSQL', async () => (await db.query<{ n: string }>('SELECT count(*) AS n FROM quorate_sql.quorate_outbox'))[0]!.n === '0', 20_000);
  } finally {
    await x.stop();
    webhook.close();
  }
});
