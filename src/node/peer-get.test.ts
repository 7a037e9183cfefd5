import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { peerGet } from './peer-get.js';

describe('peerGet (a node\'s probes of other members\' APIs)', () => {
  let server: http.Server;
  let base = '';
  let connections = 0;
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/ping') return void res.end(JSON.stringify({ ok: true, probe: req.headers['x-quorate-probe'] ?? null }));
      if (req.url === '/down') {
        res.writeHead(503, { 'content-type': 'application/json' });
        return void res.end('{"error":"unavailable"}');
      }
      if (req.url === '/big') return void res.end(Buffer.alloc(1024 * 1024 + 1, 0x61));
      if (req.url === '/cut') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial');
        return void setTimeout(() => res.socket?.destroy(), 20);
      }
      // '/hang': never answers.
    });
    server.keepAliveTimeout = 10_000;
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('resolves with the status and body whatever the status, sends the headers given, and reuses its connection', async () => {
    const before = connections;
    const a = await peerGet(`${base}/ping`, 2000, { 'x-quorate-probe': 'p1' });
    assert.deepEqual([a.status, JSON.parse(a.body)], [200, { ok: true, probe: 'p1' }]);
    const b = await peerGet(`${base}/down`, 2000);
    assert.deepEqual([b.status, b.body], [503, '{"error":"unavailable"}']);
    assert.equal(connections - before, 1, 'the second request went over the kept-alive connection');
  });

  it('rejects with TimeoutError when no answer comes in time, and with the connection error when nothing listens', async () => {
    const t0 = Date.now();
    await assert.rejects(peerGet(`${base}/hang`, 150), (e: Error) => e.name === 'TimeoutError' && /within 150 ms/.test(e.message));
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await assert.rejects(peerGet(`http://127.0.0.1:${port}/ping`, 2000), (e: Error & { code?: string }) => e.code === 'ECONNREFUSED');
  });

  it('rejects an answer over 1 MiB, one cut short, and a URL that is not http(s)', async () => {
    await assert.rejects(peerGet(`${base}/big`, 5000), /over 1048576 bytes/);
    await assert.rejects(peerGet(`${base}/cut`, 5000));
    await assert.rejects(peerGet('ftp://127.0.0.1/x', 1000), /not an http or https URL/);
    await assert.rejects(peerGet('not a url', 1000), TypeError);
  });
});
