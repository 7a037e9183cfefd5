// Queues, locks, elections and the shared session store through real
// processes: workers on three nodes consume a queue while leaders are killed
// (every message acked exactly once, none lost); a client paused past its lock
// TTL has its late write refused by the fencing check; a session created
// through one node is seen through another and survives the first one's death.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import session from 'express-session';
import { QuorateClient, QuorateHttpError, type QueueMessage } from '../../src/api/client.js';
import { quorateSessionStore } from '../../src/session-store.js';
import { TOKEN, TestCluster, sleep, waitFor } from './harness.js';

const MESSAGES = 300;

describe('queues, locks, elections, sessions, outbox', () => {
  let c: TestCluster | undefined;
  // The outbox's webhook: records every delivery (id, body, fencing token); the first 3 answer 500 (delivery retries).
  const deliveries: { id: string; body: string; token: number }[] = [];
  let failFirst = 3;
  const webhook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      if (failFirst > 0) {
        failFirst--;
        res.statusCode = 500;
        res.end('not now');
        return;
      }
      deliveries.push({ id: String(req.headers['idempotency-key']), body, token: Number(req.headers['x-quorate-fencing-token']) });
      res.end('ok');
    });
  });
  before(async () => {
    await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    await c?.stop();
    webhook.close();
  });
  const clientVia = (i: number) => new QuorateClient({ urls: [c!.nodes[i]!.url, ...c!.nodes.filter((_, j) => j !== i).map((n) => n.url)], token: TOKEN, timeoutMs: 15_000 });

  test('3 workers on 3 nodes consume every message exactly once while the leader is killed twice', async () => {
    c = await TestCluster.start({
      nodes: 3,
      extraConfig: () => ({ outbox: { webhookUrl: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook` }, database: { outboxPollIntervalSeconds: 1 } }),
    });
    await c.waitLeader(60_000);
    const q = c.client({ timeoutMs: 15_000 }).queue('work');
    for (let i = 0; i < MESSAGES; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, MESSAGES - i) }, (_, k) => q.enqueue(`m-${i + k}`, { idempotencyKey: `enqueue-${i + k}` })));
    }
    const acks = new Map<string, number>();
    const runs = new Map<string, number>();
    const refused: string[] = [];
    const workers = [0, 1, 2].map((i) => clientVia(i).queue('work').work(async (m: QueueMessage) => {
      runs.set(m.body, (runs.get(m.body) ?? 0) + 1);
      await sleep(5);
    }, {
      concurrency: 5, visibilityMs: 20_000, waitMs: 1000,
      onAck: (m) => acks.set(m.body, (acks.get(m.body) ?? 0) + 1),
      onError: (e) => { if (e instanceof QuorateHttpError && e.code === 'stale_claim') refused.push(e.message); },
    }));
    const started = Date.now();
    const phases: number[] = [];
    const kills: string[] = [];
    for (const threshold of [MESSAGES / 3, (2 * MESSAGES) / 3]) {
      await waitFor(`${threshold} messages acked`, () => acks.size >= threshold, 90_000);
      const leader = await c.waitLeader(60_000);
      phases.push(Date.now() - started);
      kills.push(`${c.nodes[leader]!.name} at ${acks.size} acked`);
      c.kill(leader, 'SIGKILL');
      await c.waitExit(leader);
      await c.waitLeader(60_000, [leader]);
      c.startNode(leader);
    }
    await waitFor('every message acked', () => acks.size >= MESSAGES, 120_000);
    await Promise.all(workers.map((w) => w.stop()));
    const tookMs = Date.now() - started;
    const twice = [...acks].filter(([, n]) => n !== 1);
    assert.deepEqual(twice, [], 'no message acked twice');
    const missing = Array.from({ length: MESSAGES }, (_, i) => `m-${i}`).filter((b) => !acks.has(b));
    assert.deepEqual(missing, [], 'no message lost');
    const stats = await q.stats();
    assert.equal(stats['acked'], MESSAGES);
    assert.equal(stats['enqueued'], MESSAGES, 'enqueue retries were deduplicated');
    assert.equal(stats['ready'], 0);
    assert.equal(stats['inFlight'], 0);
    assert.equal(stats['deadLettered'], 0);
    const redelivered = [...runs].filter(([, n]) => n > 1).length;
    console.log(`# queue: ${MESSAGES} messages acked exactly once in ${tookMs} ms across leader kills (${kills.join(', ')}); handler re-runs ${redelivered}, stale acks refused ${refused.length}`);
  });

  test('locks: contention, strictly increasing fencing tokens, a paused holder\'s late write refused by the fencing check', async () => {
    assert.ok(c);
    await c.waitLeader(60_000);
    // The application's own storage: it refuses a write whose token is older than one it has seen.
    let highest = 0;
    const writes: string[] = [];
    const store = (token: number, what: string): boolean => {
      if (token < highest) return false;
      highest = token;
      writes.push(what);
      return true;
    };
    const a = clientVia(0).lock('resource');
    const b = clientVia(1).lock('resource');
    const leaseA = await a.acquire({ ttlMs: 1500 });
    assert.ok(store(leaseA.fencingToken, 'A1'));
    await assert.rejects(b.acquire({ ttlMs: 1500 }), (e: unknown) => e instanceof QuorateHttpError && e.code === 'lock_held');
    // A "pauses" (no renewals) past its TTL; B, waiting, gets the lock with a higher token.
    const gotB = b.withLock(async (lease, signal) => {
      assert.ok(lease.fencingToken > leaseA.fencingToken, `${lease.fencingToken} > ${leaseA.fencingToken}`);
      assert.ok(store(lease.fencingToken, 'B1'));
      await sleep(300);
      assert.equal(signal.aborted, false);
      return lease.fencingToken;
    }, { ttlMs: 3000, waitMs: 20_000 });
    const tokenB = await gotB;
    // A wakes up and writes with its old token: refused by the storage's fencing check; its renewal is refused too.
    assert.equal(store(leaseA.fencingToken, 'A2 (late)'), false);
    await assert.rejects(a.renew(leaseA.fencingToken), (e: unknown) => e instanceof QuorateHttpError && e.code === 'not_lock_holder');
    assert.deepEqual(writes, ['A1', 'B1']);
    // Released by withLock: A gets it again, with a token higher than B's.
    const again = await a.acquire({ ttlMs: 1000, waitMs: 5000 });
    assert.ok(again.fencingToken > tokenB);
    await a.release(again.fencingToken);

    // Elections: the first campaigner leads; the second leads after it resigns, with a higher token.
    const e1 = clientVia(0).election('scheduler', { value: 'app-1', ttlMs: 3000 });
    const e2 = clientVia(2).election('scheduler', { value: 'app-2', ttlMs: 3000 });
    const l1 = await e1.campaign();
    assert.deepEqual(await e2.leader(), { value: 'app-1', fencingToken: l1.fencingToken });
    const pending = e2.campaign();
    await sleep(300);
    await l1.resign();
    const l2 = await pending;
    assert.ok(l2.fencingToken > l1.fencingToken);
    assert.equal((await e1.leader())?.value, 'app-2');
    await l2.resign();
  });

  test('sessions: a login through node A is seen through node B, and survives node A\'s death', async () => {
    assert.ok(c);
    const leader = await c.waitLeader(60_000);
    const A = leader; // kill the leader: the harder case
    const B = (leader + 1) % 3;
    const Store = quorateSessionStore(session);
    const app = (node: number) => {
      const mw = session({ secret: 'test-secret', resave: false, saveUninitialized: false, store: new Store({ client: clientVia(node) }), cookie: { maxAge: 60_000 } });
      return http.createServer((req, res) => {
        mw(req as never, res as never, () => {
          const s = (req as unknown as { session: { user?: string; save(cb: (e?: unknown) => void): void } }).session;
          if (req.url === '/login') {
            s.user = 'alice';
            s.save(() => res.end('ok'));
          } else {
            res.end(JSON.stringify({ user: s.user ?? null }));
          }
        });
      }).listen(0, '127.0.0.1');
    };
    const [sa, sb] = [app(A), app(B)];
    try {
      await Promise.all([sa, sb].map((s) => new Promise((r) => s.once('listening', r))));
      const url = (s: http.Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
      const login = await fetch(`${url(sa)}/login`);
      assert.equal(await login.text(), 'ok');
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      const viaB = await fetch(`${url(sb)}/me`, { headers: { cookie } });
      assert.deepEqual(await viaB.json(), { user: 'alice' });
      c.kill(A, 'SIGKILL');
      await c.waitExit(A);
      await c.waitLeader(60_000, [A]);
      const after = await fetch(`${url(sb)}/me`, { headers: { cookie } });
      assert.deepEqual(await after.json(), { user: 'alice' }, 'the session survives node A');
      const none = await fetch(`${url(sb)}/me`);
      assert.deepEqual(await none.json(), { user: null });
    } finally {
      sa.close();
      sb.close();
      c.startNode(A);
    }
  });

  test('outbox: the webhook receives every message, in order, once per id, across a leader kill', async () => {
    assert.ok(c);
    await c.waitLeader(60_000);
    const post = async (i: number) => {
      const r = await c!.client({ timeoutMs: 15_000 }).request<{ id: string }>('POST', '/v1/outbox', { write: true, body: { body: JSON.stringify({ n: i }) }, idempotencyKey: `outbox-${i}` });
      return r.body.id;
    };
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await post(i));
    await waitFor('some messages delivered', () => deliveries.length >= 5, 60_000);
    const leader = await c.waitLeader(60_000);
    c.kill(leader, 'SIGKILL');
    await c.waitExit(leader);
    await c.waitLeader(60_000, [leader]);
    for (let i = 30; i < 45; i++) ids.push(await post(i));
    const distinct = () => new Set(deliveries.map((d) => d.id));
    await waitFor('every message delivered', () => ids.every((id) => distinct().has(id)), 90_000);
    // Once per id: the receiver deduplicates by Idempotency-Key; every copy of an id carries the same body.
    const byId = new Map<string, Set<string>>();
    for (const d of deliveries) byId.set(d.id, (byId.get(d.id) ?? new Set()).add(d.body));
    for (const [i, id] of ids.entries()) assert.deepEqual([...byId.get(id)!], [JSON.stringify({ n: i })], id);
    assert.equal(byId.size, ids.length, 'nothing but the posted messages');
    // In order: first receipts follow the outbox order.
    const first = [...new Set(deliveries.map((d) => d.id))];
    assert.deepEqual(first, ids);
    const tokens = deliveries.map((d) => d.token);
    assert.deepEqual(tokens, [...tokens].sort((a, b) => a - b), 'fencing tokens never decrease');
    await waitFor('the outbox is empty', async () => (await c!.client().request<{ size: number }>('GET', '/v1/outbox')).body.size === 0, 30_000);
    console.log(`# outbox: ${ids.length} messages, ${deliveries.length} deliveries (${deliveries.length - ids.length} redelivered after the kill of ${c.nodes[leader]!.name}), 3 refused by the webhook and retried`);
    c.startNode(leader);
  });
});
