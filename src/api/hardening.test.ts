// Resource bounds of the HTTP API, over real sockets: slow and non-reading
// watch consumers, watch caps, header/body deadlines, unauthenticated bodies,
// the connection cap and start-up failures. No timing assertions: each test
// waits for the event it expects, with generous upper bounds.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FakeNode } from '../../test/support/fake-node.js';
import type { FilesService } from './ports-files.js';
import { ApiStartError, startApiServer, type ApiServerOptions } from './server.js';
import { harness, TOKENS, type Harness } from '../../test/support/api.js';

/** Polls `cond` (every 10 ms) until true; fails after `timeoutMs` naming `what`. */
async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface RawConn {
  readonly socket: Socket;
  /** Everything received so far (latin1). */
  received(): string;
  /** Resolves once the socket closed (by either side); `error` is the socket error, if any. */
  readonly closed: Promise<{ error?: NodeJS.ErrnoException }>;
}

/** A raw TCP client: the test decides exactly what is sent and when. */
function rawConnect(port: number): Promise<RawConn> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    let error: NodeJS.ErrnoException | undefined;
    socket.on('data', (c: Buffer) => { data += c.toString('latin1'); });
    socket.on('error', (e: NodeJS.ErrnoException) => { error = e; });
    const closed = new Promise<{ error?: NodeJS.ErrnoException }>((r) => socket.once('close', () => r(error !== undefined ? { error } : {})));
    socket.once('connect', () => resolve({ socket, received: () => data, closed }));
    socket.once('error', reject);
  });
}

const bearer = (role: keyof typeof TOKENS): string => `Authorization: Bearer ${TOKENS[role]}\r\n`;

/** Opens GET /v1/watch on a raw socket and waits for the response head. */
async function rawWatch(port: number, token: keyof typeof TOKENS, prefix: string): Promise<RawConn> {
  const c = await rawConnect(port);
  c.socket.write(`GET /v1/watch?prefix=${encodeURIComponent(prefix)} HTTP/1.1\r\nHost: t\r\n${bearer(token)}\r\n`);
  await waitFor(() => c.received().includes('\r\n\r\n'), 'the watch response head', 15_000);
  return c;
}

function statusOf(text: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return m ? Number(m[1]) : 0;
}

async function withHarness(server: Parameters<typeof harness>[0], fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = await harness(server);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

describe('watch stream bounds', { timeout: 120_000 }, () => {
  test('a watch consumer that stops reading is disconnected: socket destroyed, watcher freed, logged', async () => {
    await withHarness({ server: { limits: { watchMaxBufferedBytes: 512 * 1024 } } }, async (h) => {
      const slow = await rawWatch(h.server.port, 'reader', 'big/');
      assert.equal(statusOf(slow.received()), 200);
      slow.socket.pause(); // stops reading: the kernel buffers fill, then the server's
      assert.equal(h.node.kv.watcherCount, 1);
      const value = 'v'.repeat(256 * 1024);
      const closedLog = () => h.logs.some((l) => l['event'] === 'watch_closed_slow_consumer');
      // Far more than loopback socket buffers hold (a few MiB); stops as soon as the server gives up.
      for (let i = 0; i < 400 && !closedLog(); i++) {
        await h.node.propose({ type: 'put', key: `big/${i % 8}`, value });
        await new Promise((r) => setImmediate(r));
      }
      await waitFor(closedLog, 'the slow-consumer log line');
      const line = h.logs.find((l) => l['event'] === 'watch_closed_slow_consumer')!;
      assert.equal(line['token'], 'viewer');
      assert.equal(line['prefix'], 'big/');
      assert.match(String(line['msg']), /watch consumer too slow .*limit 524288/);
      assert.equal(h.node.kv.watcherCount, 0, 'the watcher is unsubscribed');
      // The server destroyed the socket: once the client reads again it sees the end.
      slow.socket.resume();
      await slow.closed;
      // Slots are free again and the node keeps serving watches.
      const again = await rawWatch(h.server.port, 'reader', 'big/');
      assert.equal(statusOf(again.received()), 200);
      again.socket.destroy();
    });
  });

  test('watches are capped per token and per node with 429 too_many_watches naming the limit', async () => {
    await withHarness({ server: { limits: { maxWatches: 3, maxWatchesPerToken: 2 } } }, async (h) => {
      const port = h.server.port;
      const a = await rawWatch(port, 'reader', 'cap/');
      const b = await rawWatch(port, 'reader', 'cap/');
      const perToken = await rawWatch(port, 'reader', 'cap/');
      assert.equal(statusOf(perToken.received()), 429);
      await waitFor(() => perToken.received().includes('"error":"too_many_watches"'), 'the 429 body');
      assert.match(perToken.received(), /token \\"viewer\\" already has 2 watch streams open on this node, the limit per token \(2\); close watches/);
      assert.match(perToken.received(), /"limit":"token"/i);
      assert.match(perToken.received(), /retry-after: 5/i);
      const c = await rawWatch(port, 'operator', 'cap/');
      assert.equal(statusOf(c.received()), 200);
      const perNode = await rawWatch(port, 'admin', 'cap/');
      assert.equal(statusOf(perNode.received()), 429);
      await waitFor(() => perNode.received().includes('"limit":"node"'), 'the 429 body');
      assert.match(perNode.received(), /already serves 3 watch streams, its limit per node \(3\)/);
      assert.equal(h.node.kv.watcherCount, 3, 'refused watches never subscribed');
      // Closing one frees its slot.
      a.socket.destroy();
      await waitFor(() => h.node.kv.watcherCount === 2, 'the closed watch to be released');
      const d = await rawWatch(port, 'reader', 'cap/');
      assert.equal(statusOf(d.received()), 200);
      for (const s of [b, c, d, perToken, perNode]) s.socket.destroy();
    });
  });
});

describe('request deadlines', { timeout: 120_000 }, () => {
  const fast = { limits: { headersTimeoutMs: 300, requestTimeoutMs: 600, timeoutCheckIntervalMs: 50 } };

  test('a client that trickles its body past the request deadline gets 408 request_timeout and is disconnected', async () => {
    await withHarness({ server: fast }, async (h) => {
      const c = await rawConnect(h.server.port);
      c.socket.write(`PUT /v1/kv/slow HTTP/1.1\r\nHost: t\r\n${bearer('admin')}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"value":"`);
      const drip = setInterval(() => { if (!c.socket.destroyed) c.socket.write('x'); }, 50);
      try {
        await c.closed;
      } finally {
        clearInterval(drip);
      }
      assert.equal(statusOf(c.received()), 408, c.received());
      assert.match(c.received(), /"error":"request_timeout"/);
      assert.equal(h.node.kv.get('slow'), undefined, 'nothing was written');
    });
  });

  test('a client that never finishes its headers gets 408 and is disconnected', async () => {
    await withHarness({ server: fast }, async (h) => {
      const c = await rawConnect(h.server.port);
      c.socket.write('GET /v1/kv/x HTTP/1.1\r\nHost: t\r\n');
      await c.closed;
      assert.equal(statusOf(c.received()), 408, c.received());
    });
  });

  /** A files port whose put reads the whole body (the deadline is the API's; the log is not involved here). */
  const filesPort = (received: { bytes: number; error?: string }): FilesService => ({
    maxFileBytes: 1 << 20,
    async put(_path, body) {
      try {
        for await (const c of body) received.bytes += c.length;
      } catch (e) {
        received.error = (e as Error).message;
        throw e;
      }
      return { revision: 7, size: received.bytes, sha256: '0'.repeat(64) };
    },
    delete: () => Promise.reject(new Error('unused')),
    readBarrier: () => Promise.resolve(),
    caughtUp: () => Promise.resolve(),
    list: () => ({ files: [], more: false, appliedIndex: 0 }),
    open: () => Promise.resolve(undefined),
    verify: () => Promise.resolve(),
    checksum: () => Promise.resolve({ appliedIndex: 0, checksum: '' }),
  });
  const streamed = (received: { bytes: number; error?: string }): { server: Partial<ApiServerOptions> } => ({ server: { files: filesPort(received), limits: { headersTimeoutMs: 300, requestTimeoutMs: 600, streamIdleTimeoutMs: 400, timeoutCheckIntervalMs: 50 } } });

  test('a file upload that keeps sending is not cut by the 60 s-style total deadline, only by an idle gap', async () => {
    const received = { bytes: 0 };
    await withHarness(streamed(received), async (h) => {
      const c = await rawConnect(h.server.port);
      // 40 bytes at one every 50 ms: about 2 s, well past requestTimeoutMs (600 ms), never idle for 400 ms.
      c.socket.write(`PUT /v1/files/slow.bin HTTP/1.1\r\nHost: t\r\n${bearer('admin')}Content-Type: application/octet-stream\r\nContent-Length: 40\r\n\r\n`);
      let sent = 0;
      await new Promise<void>((resolve) => {
        const drip = setInterval(() => {
          if (c.socket.destroyed || sent === 40) {
            clearInterval(drip);
            resolve();
            return;
          }
          c.socket.write('x');
          sent++;
        }, 50);
      });
      await waitFor(() => c.received().includes('"revision":7'), 'the upload\'s answer');
      assert.equal(statusOf(c.received()), 200, c.received());
      assert.equal(received.bytes, 40);
      c.socket.destroy();
    });
  });

  test('a file upload whose client stops sending gets 408 request_timeout once idle, and its body read fails', async () => {
    const received: { bytes: number; error?: string } = { bytes: 0 };
    await withHarness(streamed(received), async (h) => {
      const c = await rawConnect(h.server.port);
      c.socket.write(`PUT /v1/files/stalled.bin HTTP/1.1\r\nHost: t\r\n${bearer('admin')}Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789`);
      await c.closed;
      assert.equal(statusOf(c.received()), 408, c.received());
      assert.match(c.received(), /"error":"request_timeout"/);
      assert.match(c.received(), /files\.uploadIdleTimeoutMs/);
      assert.match(c.received(), /\r\nconnection: close\r\n/i);
      await waitFor(() => received.error !== undefined, 'the handler to see its body fail');
      assert.equal(received.bytes, 10);
    });
  });

  test('a KV write still has the total deadline when a files port is configured', async () => {
    await withHarness(streamed({ bytes: 0 }), async (h) => {
      const c = await rawConnect(h.server.port);
      c.socket.write(`PUT /v1/kv/slow HTTP/1.1\r\nHost: t\r\n${bearer('admin')}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"value":"`);
      const drip = setInterval(() => { if (!c.socket.destroyed) c.socket.write('x'); }, 50);
      try {
        await c.closed;
      } finally {
        clearInterval(drip);
      }
      assert.equal(statusOf(c.received()), 408, c.received());
      assert.match(c.received(), /the whole request within 600 ms/);
      assert.equal(h.node.kv.get('slow'), undefined, 'nothing was written');
    });
  });

  test('a watch stream is not cut by the request deadline (it covers receiving the request only)', async () => {
    await withHarness({ server: fast }, async (h) => {
      const w = await rawWatch(h.server.port, 'reader', 'live/');
      // Well past both deadlines and many deadline checks.
      await new Promise((r) => setTimeout(r, 2000));
      await h.node.propose({ type: 'put', key: 'live/k', value: 'still-here' });
      await waitFor(() => w.received().includes('still-here'), 'the event on the long-lived stream');
      assert.equal(statusOf(w.received()), 200);
      w.socket.destroy();
    });
  });
});

describe('unauthenticated requests', { timeout: 120_000 }, () => {
  for (const [name, auth, status] of [['no token', '', 401], ['a reader token on a write', bearer('reader'), 403]] as const) {
    test(`${status} (${name}) is answered without reading the body and the connection is closed`, async () => {
      await withHarness({}, async (h) => {
        const c = await rawConnect(h.server.port);
        c.socket.write(`PUT /v1/kv/unauth HTTP/1.1\r\nHost: t\r\n${auth}Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"value":"`);
        // Keep trickling: before the fix the server waited for all 1 MB (up to 300 s).
        const drip = setInterval(() => { if (!c.socket.destroyed) c.socket.write('x'); }, 50);
        let result: { error?: NodeJS.ErrnoException };
        try {
          result = await c.closed;
        } finally {
          clearInterval(drip);
        }
        assert.equal(statusOf(c.received()), status, `${c.received()} ${String(result.error)}`);
        assert.match(c.received(), /\r\nconnection: close\r\n/i);
        assert.equal(h.node.kv.get('unauth'), undefined);
      });
    });
  }

  test('401 on a keep-alive GET closes the connection too', async () => {
    await withHarness({}, async (h) => {
      const c = await rawConnect(h.server.port);
      c.socket.write('GET /v1/kv/x HTTP/1.1\r\nHost: t\r\n\r\n');
      await c.closed;
      assert.equal(statusOf(c.received()), 401);
    });
  });
});

describe('connection cap', { timeout: 120_000 }, () => {
  test('connections beyond maxConnections are refused; a freed slot is usable again', async () => {
    await withHarness({ server: { limits: { maxConnections: 2 } } }, async (h) => {
      const port = h.server.port;
      const a = await rawConnect(port);
      const b = await rawConnect(port);
      // Make sure the server accepted both (each answers a request on its connection).
      for (const c of [a, b]) {
        c.socket.write('GET /system/health/ping HTTP/1.1\r\nHost: t\r\n\r\n');
        await waitFor(() => statusOf(c.received()) === 200, 'ping on an accepted connection');
      }
      const excess = await rawConnect(port);
      excess.socket.write('GET /system/health/ping HTTP/1.1\r\nHost: t\r\n\r\n');
      await excess.closed;
      assert.equal(excess.received(), '', 'the excess connection got no answer');
      await waitFor(() => h.logs.some((l) => l['event'] === 'api_connections_refused'), 'the refusal log line');
      a.socket.destroy();
      await a.closed;
      // The server notices the close asynchronously: retry until a new connection is served.
      let served = false;
      for (let i = 0; i < 200 && !served; i++) {
        const c = await rawConnect(port);
        c.socket.write('GET /system/health/ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
        await c.closed;
        served = statusOf(c.received()) === 200;
        if (!served) await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(served, 'a connection is served once a slot is free');
      b.socket.destroy();
    });
  });
});

describe('start-up failures name the config key', { timeout: 120_000 }, () => {
  const start = async (dir: string, extra: Partial<Parameters<typeof startApiServer>[0]>) => {
    const node = new FakeNode({ nodeName: 'n', dataDir: dir });
    return startApiServer({ cluster: node, kv: node.kvService, security: node.security, host: '127.0.0.1', port: 0, dataDir: dir, logger: pino({ level: 'silent' }), ...extra });
  };

  test('an API address in use rejects with ApiStartError naming node.apiAddress', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-api-start-'));
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(start(dir, { port }), (e: unknown) => {
        assert.ok(e instanceof ApiStartError);
        assert.equal(e.key, 'node.apiAddress');
        assert.equal(e.message, `node.apiAddress 127.0.0.1:${port} is already in use (EADDRINUSE): another process (or another quorate node) listens there; stop it or choose another port in node.apiAddress`);
        return true;
      });
    } finally {
      await new Promise((r) => blocker.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('missing or unusable security.apiTls files reject with ApiStartError naming the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-api-start-'));
    try {
      const cert = join(dir, 'missing.crt');
      await assert.rejects(start(dir, { tls: { certFile: cert, keyFile: join(dir, 'missing.key') } }), (e: unknown) => {
        assert.ok(e instanceof ApiStartError);
        assert.equal(e.key, 'security.apiTls.certFile');
        assert.match(e.message, /^security\.apiTls\.certFile: cannot read ".*missing\.crt" \(no such file\)/);
        return true;
      });
      writeFileSync(join(dir, 'junk.crt'), 'not a certificate');
      await assert.rejects(start(dir, { tls: { certFile: join(dir, 'junk.crt'), keyFile: join(dir, 'missing.key') } }), (e: unknown) => {
        assert.ok(e instanceof ApiStartError);
        assert.equal(e.key, 'security.apiTls.keyFile');
        assert.match(e.message, /^security\.apiTls\.keyFile: cannot read/);
        return true;
      });
      writeFileSync(join(dir, 'junk.key'), 'not a key');
      await assert.rejects(start(dir, { tls: { certFile: join(dir, 'junk.crt'), keyFile: join(dir, 'junk.key') } }), (e: unknown) => {
        assert.ok(e instanceof ApiStartError);
        assert.match(e.message, /^security\.apiTls\.certFile \/ security\.apiTls\.keyFile: .* are not a usable PEM certificate and private key pair/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
