import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CommitUnknownError, QuorateClient, QuorateHttpError, UnavailableError, type WatchEvent } from './client.js';

interface Seen { method: string; url: string; key: string | undefined; auth: string | undefined; body: string }
type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen, n: number) => void;

const servers: Server[] = [];
after(() => { for (const s of servers) { s.closeAllConnections(); s.close(); } });

async function fake(handler: Handler): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', key: header(req, 'idempotency-key'), auth: header(req, 'authorization'), body };
      seen.push(s);
      handler(req, res, s, seen.length);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

test('503 no_leader then success: retried, token sent', async () => {
  const f = await fake((_req, res, _s, n) => {
    if (n === 1) json(res, 503, { error: 'no_leader', message: 'no leader elected yet' });
    else json(res, 200, { key: 'a', value: '1', revision: 3, createRevision: 2 });
  });
  const c = new QuorateClient({ urls: [f.url], token: 'tok', backoffMs: 5 });
  const v = await c.kvGet('a');
  assert.deepEqual(v, { key: 'a', value: '1', revision: 3, createRevision: 2 });
  assert.equal(f.seen.length, 2);
  assert.equal(f.seen[0]!.auth, 'Bearer tok');
});

test('a write whose connection drops after sending is retried with the SAME Idempotency-Key', async () => {
  const f = await fake((req, res, _s, n) => {
    if (n === 1) { req.socket.destroy(); return; }
    json(res, 200, { revision: 7 });
  });
  const c = new QuorateClient({ urls: [f.url], backoffMs: 5 });
  const r = await c.kvPut('cfg/x', 'v', { ttlMs: 30000 });
  assert.equal(r.revision, 7);
  assert.equal(f.seen.length, 2);
  assert.ok(f.seen[0]!.key !== undefined && f.seen[0]!.key.length >= 32);
  assert.equal(f.seen[1]!.key, f.seen[0]!.key);
  assert.equal(f.seen[0]!.method, 'PUT');
  assert.equal(f.seen[0]!.url, '/v1/kv/cfg/x');
  assert.deepEqual(JSON.parse(f.seen[0]!.body), { value: 'v', ttlMs: 30000 });
});

test('different calls get different Idempotency-Keys; a caller key is used as given', async () => {
  const f = await fake((_req, res) => json(res, 200, { revision: 1, deleted: true }));
  const c = new QuorateClient({ urls: [f.url] });
  await c.kvPut('a', '1');
  await c.kvPut('a', '1');
  await c.kvDelete('a', { idempotencyKey: 'mine', ifRevision: 4 });
  assert.notEqual(f.seen[0]!.key, f.seen[1]!.key);
  assert.equal(f.seen[2]!.key, 'mine');
  assert.equal(f.seen[2]!.url, '/v1/kv/a?ifRevision=4');
});

test('409 revision_mismatch surfaces currentRevision, not retried', async () => {
  const f = await fake((_req, res) => json(res, 409, { error: 'revision_mismatch', message: 'revision is 5, not 3', currentRevision: 5 }));
  const c = new QuorateClient({ urls: [f.url] });
  await assert.rejects(c.kvPut('a', 'b', { ifRevision: 3 }), (err: unknown) => {
    assert.ok(err instanceof QuorateHttpError);
    assert.equal(err.status, 409);
    assert.equal(err.code, 'revision_mismatch');
    assert.equal(err.currentRevision, 5);
    assert.match(err.message, /revision is 5/);
    return true;
  });
  assert.equal(f.seen.length, 1);
  assert.deepEqual(JSON.parse(f.seen[0]!.body), { value: 'b', ifRevision: 3 });
});

test('504 commit_unknown → CommitUnknownError after retries, all with one key', async () => {
  const f = await fake((_req, res) => json(res, 504, { error: 'commit_unknown', message: 'leader lost after proposing' }));
  const c = new QuorateClient({ urls: [f.url], commitUnknownRetries: 2, backoffMs: 5 });
  await assert.rejects(c.kvPut('a', 'b'), (err: unknown) => {
    assert.ok(err instanceof CommitUnknownError);
    assert.equal(err.code, 'commit_unknown');
    assert.equal(err.idempotencyKey, f.seen[0]!.key);
    return true;
  });
  assert.equal(f.seen.length, 3);
  assert.equal(new Set(f.seen.map((s) => s.key)).size, 1);
});

test('504 then the retry answers with the original result', async () => {
  const f = await fake((_req, res, _s, n) => (n === 1 ? json(res, 504, { error: 'commit_unknown' }) : json(res, 200, { revision: 9 })));
  const c = new QuorateClient({ urls: [f.url], backoffMs: 5 });
  assert.equal((await c.kvPut('a', 'b')).revision, 9);
  assert.equal(f.seen[0]!.key, f.seen[1]!.key);
});

test('failover from a dead URL to the next, remembered for later calls', async () => {
  const dead = await deadUrl();
  const f = await fake((_req, res) => json(res, 200, { revision: 2 }));
  const c = new QuorateClient({ urls: [dead, f.url], backoffMs: 5 });
  assert.equal((await c.kvPut('k', 'v')).revision, 2);
  assert.equal(c.currentUrl, f.url);
  await c.kvPut('k', 'v');
  assert.equal(f.seen.length, 2);
});

test('UnavailableError when no URL answers', async () => {
  const c = new QuorateClient({ urls: [await deadUrl(), await deadUrl()], backoffMs: 5 });
  await assert.rejects(c.clusterStatus(), (err: unknown) => {
    assert.ok(err instanceof UnavailableError);
    assert.equal(err.code, 'unavailable');
    assert.match(err.message, /cannot reach .*connection refused/);
    return true;
  });
});

test('429 honours Retry-After', async () => {
  const f = await fake((_req, res, _s, n) => (n === 1 ? json(res, 429, { error: 'overloaded' }, { 'retry-after': '1' }) : json(res, 200, { revision: 1 })));
  const c = new QuorateClient({ urls: [f.url], backoffMs: 5 });
  const t0 = Date.now();
  await c.kvPut('a', 'b');
  assert.ok(Date.now() - t0 >= 950, `waited ${Date.now() - t0} ms`);
  assert.equal(f.seen[0]!.key, f.seen[1]!.key);
});

test('503 after the retries are spent surfaces QuorateHttpError (nothing applied)', async () => {
  const f = await fake((_req, res) => json(res, 503, { error: 'quorum_not_met', message: 'Quorum not met: 1 of 2 voters reachable' }));
  const c = new QuorateClient({ urls: [f.url], timeoutMs: 10_000, backoffMs: 5, busyRetries: 2 });
  await assert.rejects(c.kvPut('a', 'b'), (err: unknown) => err instanceof QuorateHttpError && err.status === 503 && err.code === 'quorum_not_met');
  assert.equal(f.seen.length, 3);
});

test('503 until the deadline surfaces QuorateHttpError, not commit-unknown (no attempt is started without time to finish)', async () => {
  // The server answers slowly enough that an attempt started near the
  // deadline would be cut off (an unknown outcome); the client must stop
  // with the definite 503 it already has.
  const f = await fake((_req, res) => void setTimeout(() => json(res, 503, { error: 'quorum_not_met', message: 'Quorum not met' }), 20));
  const c = new QuorateClient({ urls: [f.url], timeoutMs: 2000, backoffMs: 5, busyRetries: 1000 });
  await assert.rejects(c.kvPut('a', 'b'), (err: unknown) => err instanceof QuorateHttpError && err.status === 503);
});

test('kvGet 404 → undefined; kvList normalises; health answers 503 without throwing', async () => {
  const f = await fake((req, res) => {
    if (req.url?.startsWith('/v1/kv/missing')) json(res, 404, { error: 'not_found', message: 'no such key' });
    else if (req.url?.startsWith('/v1/kv?')) json(res, 200, { kvs: [{ key: 'p/a', value: '1', revision: 1 }], revision: 4 });
    else if (req.url === '/system/health/leader') json(res, 503, { status: 'unhealthy', reasons: ['not the leader'] });
    else if (req.url === '/system/health/cluster') json(res, 200, { clusterHealthy: true, leaderNode: 'node1', term: 2, nodes: [], writeQuorum: 2, quorumMet: true, failoverSafe: true, failureTolerance: 1 });
    else if (req.url?.startsWith('/v1/cluster/failover-safe')) json(res, 200, { failoverSafe: false });
    else if (req.url === '/metrics') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('quorate_term 2\n'); }
    else json(res, 404, { error: 'not_found' });
  });
  const c = new QuorateClient({ urls: [f.url] });
  assert.equal(await c.kvGet('missing'), undefined);
  const l = await c.kvList('p/', 10);
  assert.equal(l.items.length, 1);
  assert.equal(l.revision, 4);
  assert.ok(f.seen.some((s) => s.url === '/v1/kv?prefix=p%2F&limit=10'));
  const h = await c.health('leader');
  assert.equal(h.ok, false);
  assert.deepEqual(h.body.reasons, ['not the leader']);
  assert.equal((await c.health('cluster')).leaderNode, 'node1');
  assert.equal((await c.failoverSafe(100)).safe, false);
  assert.ok(f.seen.some((s) => s.url === '/v1/cluster/failover-safe?waitMs=100'));
  assert.equal(await c.metrics(), 'quorate_term 2\n');
});

test('watch parses SSE and resumes after the last revision when the stream drops', async () => {
  const f = await fake((req, res, _s, n) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (n === 1) {
      res.write(': keep-alive\n\n');
      res.write('event: put\nid: 5\ndata: {"type":"put","key":"a","value":"1","revision":5}\n\n');
      res.write('data: {"type":"delete","key":"b",\r\ndata: "revision":6}\r\n\r\n');
      setTimeout(() => req.socket.destroy(), 20);
    } else {
      res.write('data: {"type":"put","key":"c","value":"3","revision":7}\n\n');
    }
  });
  const c = new QuorateClient({ urls: [f.url], backoffMs: 5 });
  const events: WatchEvent[] = [];
  await new Promise<void>((resolve) => {
    const close = c.watch('', 5, (e) => {
      events.push(e);
      if (events.length === 3) { close(); resolve(); }
    });
  });
  assert.deepEqual(events.map((e) => [e.type, e.key, e.revision]), [['put', 'a', 5], ['delete', 'b', 6], ['put', 'c', 7]]);
  assert.equal(f.seen[0]!.url, '/v1/watch?prefix=&fromRevision=5');
  assert.equal(f.seen[1]!.url, '/v1/watch?prefix=&fromRevision=7');
});
