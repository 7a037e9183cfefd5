import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { FakeNode } from '../../test/support/fake-node.js';
import { startApiServer } from './server.js';
import { call, harness, TOKENS, writeTokens, type Harness } from '../../test/support/api.js';

let h: Harness;
before(async () => {
  h = await harness({ server: { watchHeartbeatMs: 50 } });
});
after(async () => {
  await h.close();
});

interface Stream {
  readonly res: IncomingMessage;
  readonly events: { id: string; data: Record<string, unknown> }[];
  readonly comments: string[];
  /** Resolves once `n` events arrived. */
  until(n: number): Promise<void>;
  close(): void;
}

function openWatch(path: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(`${h.url}${path}`, { headers: { authorization: `Bearer ${TOKENS.reader}`, accept: 'text/event-stream' } }, (res) => {
      const events: Stream['events'] = [];
      const comments: string[] = [];
      const waiters: { n: number; resolve: () => void }[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id = '';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('data: ')) data = line.slice(6);
          }
          if (data !== '') events.push({ id, data: JSON.parse(data) as Record<string, unknown> });
        }
        for (const w of waiters.splice(0)) {
          if (events.length >= w.n) w.resolve();
          else waiters.push(w);
        }
      });
      resolve({
        res,
        events,
        comments,
        until: (n) => (events.length >= n ? Promise.resolve() : new Promise((r) => waiters.push({ n, resolve: r }))),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('watch (server-sent events)', () => {
  test('streams live events under the prefix with id = revision', async () => {
    const s = await openWatch('/v1/watch?prefix=w1/');
    assert.equal(s.res.statusCode, 200);
    assert.match(String(s.res.headers['content-type']), /^text\/event-stream/);
    await call(h.url, 'PUT', '/v1/kv/w1/a', { body: { value: 'A' } });
    await call(h.url, 'PUT', '/v1/kv/other', { body: { value: 'ignored' } });
    const d = await call(h.url, 'DELETE', '/v1/kv/w1/a');
    await s.until(2);
    s.close();
    assert.deepEqual(s.events.map((e) => [e.data['type'], e.data['key']]), [['put', 'w1/a'], ['delete', 'w1/a']]);
    assert.equal(s.events[0]!.data['value'], 'A');
    assert.equal(s.events[1]!.id, String(d.body['revision']));
  });

  test('resumes from a revision: replays history, then continues live', async () => {
    const r1 = await call(h.url, 'PUT', '/v1/kv/w2/a', { body: { value: '1' } });
    await call(h.url, 'PUT', '/v1/kv/w2/b', { body: { value: '2' } });
    const from = r1.body['revision'] as number;
    const s = await openWatch(`/v1/watch?prefix=w2/&fromRevision=${from + 1}`);
    await s.until(1);
    assert.deepEqual(s.events.map((e) => e.data['key']), ['w2/b']);
    await call(h.url, 'PUT', '/v1/kv/w2/c', { body: { value: '3' } });
    await s.until(2);
    s.close();
    assert.deepEqual(s.events.map((e) => e.data['key']), ['w2/b', 'w2/c']);
  });

  test('sends heartbeat comments', async () => {
    const s = await openWatch('/v1/watch?prefix=hb/');
    await new Promise((r) => setTimeout(r, 160));
    s.close();
    assert.ok(s.comments.filter((c) => c === 'heartbeat').length >= 1, JSON.stringify(s.comments));
  });

  test('a start revision older than the history is 410 compacted with oldestRevision', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-watch-'));
    writeTokens(dir);
    // A node whose KV keeps only 2 events of history.
    const node = new FakeNode({ nodeName: 'tiny', dataDir: dir, kv: { watchHistoryEvents: 2 } });
    const srv = await startApiServer({ cluster: node, kv: node.kvService, security: node.security, host: '127.0.0.1', port: 0, dataDir: dir, logger: pino({ level: 'silent' }) });
    try {
      const url = `http://127.0.0.1:${srv.port}`;
      for (let i = 0; i < 5; i++) await call(url, 'PUT', `/v1/kv/k${i}`, { body: { value: String(i) } });
      const r = await call(url, 'GET', '/v1/watch?fromRevision=1', { token: 'reader' });
      assert.equal(r.status, 410);
      assert.equal(r.body['error'], 'compacted');
      assert.equal(r.body['oldestRevision'], node.kv.oldestWatchRevision);
      const bad = await call(url, 'GET', '/v1/watch?fromRevision=x', { token: 'reader' });
      assert.equal(bad.status, 400);
      assert.match(String(bad.body['message']), /^fromRevision: must be a non-negative integer/);
    } finally {
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a client that disconnects is unsubscribed', async () => {
    const s = await openWatch('/v1/watch?prefix=gone/');
    s.close();
    await new Promise((r) => setTimeout(r, 50));
    // Writes after the disconnect must not throw or leak; the server keeps serving.
    const r = await call(h.url, 'PUT', '/v1/kv/gone/x', { body: { value: 'x' } });
    assert.equal(r.status, 200);
  });

  test('close() ends open watch streams', async () => {
    const other = await harness({});
    const req = await new Promise<IncomingMessage>((resolve, reject) => {
      const q = request(`${other.url}/v1/watch`, { headers: { authorization: `Bearer ${TOKENS.reader}` } }, resolve);
      q.on('error', reject);
      q.end();
    });
    const ended = new Promise<void>((r) => {
      req.on('end', () => r());
      req.on('close', () => r());
      req.resume();
    });
    await other.close();
    await ended;
  });
});
