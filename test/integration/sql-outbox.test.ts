// The transactional outbox of replicated SQL through real processes: an
// application transaction inserts a business row and a `quorate_outbox` row
// together (or neither); the leader delivers the rows to the webhook in order
// with `sql-<id>` as Idempotency-Key, removes them through the log, and a new
// leader resumes after the old one is killed with -9: every committed row
// reaches the webhook (once per id after deduplication), a rolled-back one
// never. The nodes' `database` health check runs on the same processes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { QuorateClient } from '../../src/api/client.js';
import { TOKEN, TestCluster, http as request, waitFor } from './harness.js';

interface ExecBody { results: { rowsAffected: number; lastInsertId: number }[] }

describe('the SQL outbox (quorate_outbox rows)', () => {
  let c: TestCluster | undefined;
  const deliveries: { id: string; body: string; contentType: string; token: number }[] = [];
  const webhook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      deliveries.push({ id: String(req.headers['idempotency-key']), body, contentType: String(req.headers['content-type']), token: Number(req.headers['x-quorate-fencing-token']) });
      // A slow receiver (100 ms per message), so the leader is killed in the middle of the stream.
      setTimeout(() => res.end('ok'), 100);
    });
  });
  after(async () => {
    await c?.stop();
    webhook.close();
  });

  test('rows inserted in the app\'s transaction reach the webhook once per id, in order, across a leader kill; a rolled-back row never does', async () => {
    await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
    const hook = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`;
    c = await TestCluster.start({
      nodes: 3,
      extraConfig: () => ({
        outbox: { webhookUrl: hook },
        database: { outboxPollIntervalSeconds: 1 },
        health: { checks: [{ name: 'db', builtin: 'database', intervalMs: 500, timeoutMs: 5000, critical: true }] },
      }),
    });
    const cl = c;
    await cl.waitLeader(60_000);
    const client: QuorateClient = cl.client({ timeoutMs: 15_000 });
    const execute = async (statements: unknown[][], key: string) => (await client.request<ExecBody>('POST', '/v1/db/execute', { body: { statements, transaction: true }, write: true, idempotencyKey: key })).body;
    await execute([['CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL UNIQUE)']], 'schema');
    const expected = new Map<string, string>();
    const order = async (i: number) => {
      const item = `item-${i}`;
      const r = await execute([
        ['INSERT INTO orders (item) VALUES (?)', item],
        ["INSERT INTO quorate_outbox (body) VALUES (json_object('order', (SELECT id FROM orders WHERE item = ?), 'item', ?))", item, item],
      ], `order-${i}`);
      expected.set(`sql-${r.results[1]!.lastInsertId}`, item);
    };
    for (let i = 0; i < 20; i++) await order(i);
    // The business row fails (duplicate item): the outbox row inserted before it in the same transaction is rolled back.
    const dup = await client.request('POST', '/v1/db/execute', {
      body: { transaction: true, statements: [["INSERT INTO quorate_outbox (body, content_type) VALUES ('{\"rolled\":\"back\"}', 'application/x-never')"], ['INSERT INTO orders (item) VALUES (?)', 'item-0']] },
      write: true, idempotencyKey: 'dup',
    }).then(() => 200, (e: { status?: number }) => e.status);
    assert.equal(dup, 400);

    // The database check ran on every node (through the SQL read path) and is healthy.
    for (const n of cl.nodes) {
      await waitFor(`${n.name}'s database check ran`, async () => {
        const r = await request(n.url, 'GET', '/v1/checks', { token: TOKEN });
        const db = (r.body['checks'] as { name: string; healthy: boolean; lastRunAt: string | null; lastError: string | null }[] | undefined)?.find((x) => x.name === 'db');
        return db !== undefined && db.lastRunAt !== null && db.healthy && db.lastError === null;
      }, 30_000);
    }

    await waitFor('some rows delivered', () => deliveries.length >= 5, 60_000);
    const leader = await cl.waitLeader(60_000);
    const killedAt = Date.now();
    cl.kill(leader, 'SIGKILL');
    const leftAtKill = [...expected.keys()].filter((id) => !deliveries.some((d) => d.id === id)).length;
    assert.ok(leftAtKill > 0, 'the leader is killed while rows are still to deliver');
    await cl.waitExit(leader);
    await cl.waitLeader(60_000, [leader]);
    for (let i = 20; i < 30; i++) await order(i);
    const distinct = () => new Set(deliveries.map((d) => d.id));
    await waitFor('every committed row delivered', () => [...expected.keys()].every((id) => distinct().has(id)), 60_000);
    const resumedMs = Date.now() - killedAt;

    // Once per id after deduplication by Idempotency-Key: every copy of an id carries the same body; nothing else arrived.
    const byId = new Map<string, Set<string>>();
    for (const d of deliveries) byId.set(d.id, (byId.get(d.id) ?? new Set()).add(d.body));
    assert.deepEqual([...byId.keys()].sort(), [...expected.keys()].sort(), 'exactly the committed rows (the rolled-back one never)');
    for (const [id, item] of expected) {
      const bodies = [...byId.get(id)!].map((b) => JSON.parse(b) as { item: string; order: number });
      assert.equal(bodies.length, 1, `${id}: one body`);
      assert.equal(bodies[0]!.item, item, id);
    }
    assert.ok(deliveries.every((d) => d.contentType === 'application/json'));
    // In order: first receipts follow the row ids.
    const first = [...new Set(deliveries.map((d) => d.id))];
    assert.deepEqual(first, [...first].sort((a, b) => Number(a.slice(4)) - Number(b.slice(4))));
    const tokens = deliveries.map((d) => d.token);
    assert.deepEqual(tokens, [...tokens].sort((a, b) => a - b), 'fencing tokens never decrease');
    // Delivered rows are removed through the log: the table is empty on the new leader (linearizable read).
    await waitFor('quorate_outbox is empty', async () => {
      const r = await client.request<{ rows: unknown[][] }>('POST', '/v1/db/query', { body: { sql: 'SELECT count(*) FROM quorate_outbox', params: [], consistency: 'linearizable' } });
      return r.body.rows[0]![0] === 0;
    }, 30_000);
    const orders = await client.request<{ rows: unknown[][] }>('POST', '/v1/db/query', { body: { sql: 'SELECT count(*) FROM orders', params: [], consistency: 'linearizable' } });
    assert.deepEqual(orders.body.rows, [[30]]);
    console.log(`# sql outbox: ${expected.size} rows, ${deliveries.length} deliveries (${deliveries.length - expected.size} redelivered after the kill of ${cl.nodes[leader]!.name}, ${leftAtKill} of the first 20 not yet delivered at the kill); all delivered ${resumedMs} ms after the kill`);
  });
});
