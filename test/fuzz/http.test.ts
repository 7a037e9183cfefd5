// Fuzzing the HTTP API of a live in-process node (the API server over a
// FakeNode with the real replicated machines): random methods, paths, headers
// and bodies. Every answer is a documented status with a JSON error body;
// none is 500; a rejected request changes no state; the server keeps serving.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ERROR_STATUS } from '../../src/api/errors.js';
import { routeTable } from '../../src/api/server.js';
import { TOKENS, harness, type Harness } from '../support/api.js';
import { budget, timeoutMs } from './budget.js';

interface Answer { status: number; body: string; aborted: boolean }

function send(port: number, method: string, path: string, headers: Record<string, string>, body: Uint8Array | undefined): Promise<Answer | undefined> {
  return new Promise((resolve, reject) => {
    let req: http.ClientRequest;
    try {
      req = http.request({ host: '127.0.0.1', port, method, path, headers: { ...headers, connection: 'close' }, timeout: 4000 });
    } catch {
      resolve(undefined); // the client library refuses it (invalid method/header/path): nothing was sent
      return;
    }
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), aborted: false }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body: '', aborted: true }));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve({ status: 0, body: '', aborted: true });
    });
    req.on('error', (e: NodeJS.ErrnoException & { rawPacket?: Buffer }) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return resolve({ status: 0, body: '', aborted: true });
      // The answer to a HEAD the server could not parse carries a body (it cannot know the method
      // of a malformed request): Node's client then fails on the body; read the answer it got.
      const raw = e.rawPacket?.toString('latin1') ?? '';
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(raw);
      if (method === 'HEAD' && m !== null) return resolve({ status: Number(m[1]), body: raw.slice(raw.indexOf('\r\n\r\n') + 4), aborted: false });
      reject(e);
    });
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

const ROUTES = routeTable().map((r) => r.route.replace('{key}', 'fuzz-key').replace('{name}', 'fuzz-token'));
const segment = fc.oneof(fc.constantFrom('v1', 'kv', 'tokens', 'audit', 'cluster', '..', '%', '%2F', '%00', '', 'txn', 'a'.repeat(300)), fc.string({ maxLength: 12 }).map(encodeURIComponent));
const path = fc.oneof(
  fc.constantFrom(...ROUTES),
  fc.tuple(fc.constantFrom(...ROUTES), fc.array(segment, { maxLength: 3 })).map(([r, s]) => [r, ...s].join('/')),
  fc.array(segment, { maxLength: 5 }).map((s) => `/${s.join('/')}`),
).chain((p) => fc.tuple(fc.constant(p), fc.option(fc.oneof(fc.constantFrom('limit=1', 'limit=-1', 'prefix=a', 'consistency=stale', 'ifRevision=x', 'waitMs=1', '=', '&&'), fc.string({ maxLength: 20 }).map(encodeURIComponent)))))
  .map(([p, q]) => (q === null ? p : `${p}?${q}`));
const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'), fc.stringMatching(/^[A-Z]{1,10}$/));
const auth = fc.oneof(fc.constant(undefined), fc.constantFrom(...Object.values(TOKENS)).map((t) => `Bearer ${t}`), fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }).map((t) => `Bearer ${t}`));
const contentType = fc.oneof(fc.constant(undefined), fc.constantFrom('application/json', 'text/plain', 'application/json; charset=utf-8', 'application/x+json'), fc.string({ maxLength: 30 }));
const jsonBody = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.record({ name: fc.string({ maxLength: 70 }), role: fc.constantFrom('reader', 'operator', 'admin', 'root'), ttlSeconds: fc.oneof(fc.integer(), fc.double()) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.record({ value: fc.string(), ttlMs: fc.integer(), to: fc.string(), nodeName: fc.string(), failover: fc.string(), drained: fc.boolean() }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
).map((s) => new Uint8Array(Buffer.from(s)));
const body = fc.option(fc.oneof(jsonBody, fc.uint8Array({ maxLength: 300 })));
const extraHeaders = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), fc.string({ maxLength: 40 }), { maxKeys: 3 });

describe('fuzz: HTTP API of a live node', { timeout: timeoutMs(120_000) }, () => {
  let h: Harness;
  before(async () => {
    // A generous failed-auth limit: the property sends many bad tokens from one address.
    h = await harness({ server: { authLimit: { burst: 1e9 }, limits: { closeLingerMs: 100 } } });
  });
  after(() => h.close());

  const state = () => JSON.stringify({ kv: h.node.kv.checksum(), tokens: h.node.security.listTokens(), revision: h.node.kv.revision });

  it('answers every request with a documented status and JSON error, never 500, and a rejected request changes nothing', async () => {
    const port = Number(new URL(h.url).port);
    const statuses = new Set<number>(Object.values(ERROR_STATUS));
    await fc.assert(fc.asyncProperty(method, path, auth, contentType, body, extraHeaders, async (m, p, a, ct, b, extra) => {
      const headers: Record<string, string> = { ...extra };
      if (a !== undefined) headers['authorization'] = a;
      if (ct !== undefined) headers['content-type'] = ct;
      const before = state();
      const r = await send(port, m, p, headers, b ?? undefined);
      if (r === undefined) return;
      if (r.aborted) {
        // Only streams (watch) and long polls may outlast the client's deadline.
        assert.ok(/^\/v1\/(watch|cluster\/failover-safe)/.test(p), `${m} ${p}: no answer`);
        return;
      }
      assert.notEqual(r.status, 500, `${m} ${p}: 500 ${r.body}`);
      if (r.status >= 400) {
        assert.ok(statuses.has(r.status), `${m} ${p}: undocumented status ${r.status}`);
        if (m !== 'HEAD' || r.body !== '') {
          const e = JSON.parse(r.body) as { error?: unknown; message?: unknown; status?: unknown };
          // Health probes answer 503 with their own documented body ({"status":"unhealthy", ...}).
          const probe = r.status === 503 && /^\/system\/health\/[a-z]+(\?|$)/.test(p) && typeof e.status === 'string';
          assert.ok(probe || (typeof e.error === 'string' && typeof e.message === 'string'), `${m} ${p}: error body ${r.body}`);
        }
        assert.equal(state(), before, `${m} ${p} answered ${r.status} but changed the state`);
      }
    }), budget(300));
    const ping = await send(port, 'GET', '/system/health/ping', {}, undefined);
    assert.equal(ping?.status, 200, 'the node still serves');
  });
});
