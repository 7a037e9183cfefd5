// Managed API tokens and the audit log over the API (FakeNode with the real
// NodeSecurity and the replicated "tokens"/"audit" machines).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, harness, leaderAndFollower, type Harness } from '../../test/support/api.js';
import { createHmac } from 'node:crypto';
import { FakeNode } from '../../test/support/fake-node.js';

async function until<T>(what: string, f: () => Promise<T | undefined>, deadlineMs = 10_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

type Rec = { actor: string; action: string; target: string | null; address: string; node: string; status: number; result: string; detail: string | null };
const auditRecords = async (url: string): Promise<Rec[]> => (await call(url, 'GET', '/v1/audit')).body['records'] as Rec[];
const auditOf = (url: string, action: string, n = 1) => until(`${n} audit record(s) of ${action}`, async () => {
  const recs = (await auditRecords(url)).filter((r) => r.action === action);
  return recs.length >= n ? recs : undefined;
});

describe('managed API tokens', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(() => h.close());

  it('a created token is shown once, works with its role, and is listed without its secret', async () => {
    const r = await call(h.url, 'POST', '/v1/tokens', { body: { name: 'dash', role: 'reader' } });
    assert.equal(r.status, 201, r.text);
    const token = r.body['token'] as string;
    assert.match(token, /^qrt_[A-Za-z0-9_-]{43}$/);
    assert.equal(r.body['role'], 'reader');
    assert.equal(r.body['expiresAt'], null);
    assert.equal(r.body['createdBy'], 'admin');
    assert.equal((await call(h.url, 'GET', '/v1/cluster/status', { token })).status, 200);
    const denied = await call(h.url, 'POST', '/v1/cluster/snapshot', { token, body: {} });
    assert.equal(denied.status, 403);
    assert.equal(denied.body['requiredRole'], 'admin');
    const ls = await call(h.url, 'GET', '/v1/tokens');
    assert.equal(ls.status, 200);
    assert.ok(!ls.text.includes(token.slice(4)), 'the list never shows a secret');
    assert.deepEqual((ls.body['tokens'] as { name: string }[]).map((t) => t.name), ['dash']);
  });

  it('a revoked token answers 401 at once and the name can be reused', async () => {
    const token = (await call(h.url, 'POST', '/v1/tokens', { body: { name: 'ci', role: 'operator' } })).body['token'] as string;
    assert.equal((await call(h.url, 'GET', '/v1/cluster/status', { token })).status, 200);
    const del = await call(h.url, 'DELETE', '/v1/tokens/ci');
    assert.equal(del.status, 200, del.text);
    const after = await call(h.url, 'GET', '/v1/cluster/status', { token });
    assert.equal(after.status, 401);
    assert.equal(after.body['error'], 'unauthorized');
    assert.equal((await call(h.url, 'DELETE', '/v1/tokens/ci')).status, 404);
    assert.equal((await call(h.url, 'POST', '/v1/tokens', { body: { name: 'ci', role: 'reader' } })).status, 201);
  });

  it('a token with a ttl stops working when it expires and is listed as expired', async () => {
    const token = (await call(h.url, 'POST', '/v1/tokens', { body: { name: 'short', role: 'reader', ttlSeconds: 1 } })).body['token'] as string;
    assert.equal((await call(h.url, 'GET', '/v1/cluster/status', { token })).status, 200);
    await until('the token expires', async () => ((await call(h.url, 'GET', '/v1/cluster/status', { token })).status === 401 ? true : undefined));
    const t = ((await call(h.url, 'GET', '/v1/tokens')).body['tokens'] as { name: string; expired: boolean }[]).find((x) => x.name === 'short');
    assert.equal(t?.expired, true);
  });

  it('bad requests name the field and create nothing', async () => {
    const before = (await call(h.url, 'GET', '/v1/tokens')).text;
    for (const [body, field] of [
      [{ name: 'x y', role: 'reader' }, 'name'],
      [{ name: 'admin', role: 'reader' }, 'name'],
      [{ name: 'ok', role: 'root' }, 'role'],
      [{ name: 'ok', role: 'reader', ttlSeconds: 0 }, 'ttlSeconds'],
      [{ name: 'ok', role: 'reader', extra: 1 }, 'extra'],
    ] as const) {
      const r = await call(h.url, 'POST', '/v1/tokens', { body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body['field'], field);
    }
    assert.equal((await call(h.url, 'POST', '/v1/tokens', { body: { name: 'dash', role: 'admin' } })).body['error'], 'token_exists');
    assert.equal((await call(h.url, 'GET', '/v1/tokens')).text, before);
  });

  it('only an admin manages tokens', async () => {
    assert.equal((await call(h.url, 'POST', '/v1/tokens', { token: 'operator', body: { name: 'x', role: 'admin' } })).status, 403);
    assert.equal((await call(h.url, 'GET', '/v1/tokens', { token: 'reader' })).status, 403);
    assert.equal((await call(h.url, 'DELETE', '/v1/tokens/dash', { token: 'operator' })).status, 403);
  });
});

describe('audit log', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(() => h.close());

  it('records who created and revoked a token, from where, with the result', async () => {
    await call(h.url, 'POST', '/v1/tokens', { body: { name: 'audited', role: 'reader' } });
    await call(h.url, 'DELETE', '/v1/tokens/audited');
    const [created] = await auditOf(h.url, 'POST /v1/tokens');
    assert.equal(created!.actor, 'admin');
    assert.equal(created!.target, 'audited');
    assert.equal(created!.result, 'ok');
    assert.equal(created!.status, 201);
    assert.equal(created!.node, 'node1');
    assert.match(created!.address, /127\.0\.0\.1/);
    assert.equal(created!.detail, '{"name":"audited","role":"reader"}');
    const [revoked] = await auditOf(h.url, 'DELETE /v1/tokens/{name}');
    assert.equal(revoked!.result, 'ok');
  });

  it('records refused admin calls with their error, but not data writes or reads', async () => {
    await call(h.url, 'POST', '/v1/cluster/snapshot', { token: 'operator', body: {} });
    const [refused] = await auditOf(h.url, 'POST /v1/cluster/snapshot');
    assert.equal(refused!.actor, 'ops');
    assert.equal(refused!.result, 'forbidden');
    assert.equal(refused!.status, 403);
    await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' } });
    await call(h.url, 'GET', '/v1/cluster/status');
    await call(h.url, 'POST', '/v1/cluster/snapshot', { body: {} });
    await auditOf(h.url, 'POST /v1/cluster/snapshot', 2);
    const actions = (await auditRecords(h.url)).map((r) => r.action);
    assert.ok(!actions.some((a) => a.includes('/v1/kv') || a.startsWith('GET')), actions.join(', '));
  });

  it('keeps secrets out of the detail', async () => {
    await call(h.url, 'POST', '/v1/cluster/enroll', { body: { apiUrl: 'http://127.0.0.1:1', peerUrl: '127.0.0.1:2', role: 'voter', joinToken: 'sekrit' } });
    const [e] = await auditOf(h.url, 'POST /v1/cluster/enroll');
    assert.ok(!(e!.detail ?? '').includes('sekrit'));
  });

  it('an action served by a follower is recorded on the leader, signed with the cluster secret', async () => {
    const pair = await leaderAndFollower();
    try {
      const r = await call(pair.follower.url, 'POST', '/v1/cluster/snapshot', { body: {} });
      assert.equal(r.status, 200, r.text);
      const [e] = await auditOf(pair.leader.url, 'POST /v1/cluster/snapshot');
      assert.equal(e!.node, 'node2');
      // Forwarded to the leader: recorded once, by the leader, with the client's address "via" the follower.
      await call(pair.follower.url, 'POST', '/v1/tokens', { body: { name: 'fwd', role: 'reader' } });
      const [fwd] = await auditOf(pair.leader.url, 'POST /v1/tokens');
      assert.equal(fwd!.node, 'node1');
      assert.match(fwd!.address, / via /);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal((await auditRecords(pair.leader.url)).filter((x) => x.action === 'POST /v1/tokens').length, 1);
    } finally {
      await pair.close();
    }
  });

  it('refuses an audit entry that is unsigned, badly signed or stale, and records nothing', async () => {
    const before = (await auditRecords(h.url)).length;
    const body = JSON.stringify({ actor: 'x', action: 'forged', address: '1.2.3.4', node: 'n', status: 200, result: 'ok', key: 'k', sentAt: Date.now() });
    assert.equal((await call(h.url, 'POST', '/v1/audit', { token: null, raw: body })).status, 401);
    assert.equal((await call(h.url, 'POST', '/v1/audit', { token: null, raw: body, headers: { 'x-quorate-audit-signature': '0'.repeat(64) } })).status, 403);
    const stale = JSON.stringify({ actor: 'x', action: 'forged', address: '1.2.3.4', node: 'n', status: 200, result: 'ok', key: 'k', sentAt: Date.now() - 3_600_000 });
    // The signature as nodes compute it (src/node/security.ts auditSignature): valid, but the entry is an hour old.
    const sig = createHmac('sha256', FakeNode.CLUSTER_SECRET).update('quorate-audit-v1\n').update(stale).digest('hex');
    assert.equal((await call(h.url, 'POST', '/v1/audit', { token: null, raw: stale, headers: { 'x-quorate-audit-signature': sig } })).status, 403);
    await new Promise((res) => setTimeout(res, 200));
    const recs = await auditRecords(h.url);
    assert.equal(recs.length, before);
    assert.ok(!recs.some((r) => r.action === 'forged'));
  });
});

describe('failed authentications per address', () => {
  let h: Harness;
  before(async () => {
    // One retry earned back every 4 s: long enough for the checks below under any load, short enough to see it come back.
    h = await harness({ server: { authLimit: { burst: 3, refillPerSecond: 0.25 } } });
  });
  after(() => h.close());

  it('answer 429 with Retry-After past the burst, even for a valid token, and log it', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await call(h.url, 'GET', '/v1/cluster/status', { token: `wrong-${i}` })).status, 401);
    const limited = await call(h.url, 'GET', '/v1/cluster/status', { token: 'wrong-again' });
    assert.equal(limited.status, 429);
    assert.equal(limited.body['error'], 'too_many_auth_failures');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal((await call(h.url, 'GET', '/v1/cluster/status')).status, 429, 'a right guess is not revealed while limited');
    assert.equal((await call(h.url, 'GET', '/system/health/ping', { token: null })).status < 500, true, 'health probes need no token and are not limited');
    assert.ok(h.logs.some((l) => l['event'] === 'auth_rate_limited'));
    await until('the address earns a retry back', async () => ((await call(h.url, 'GET', '/v1/cluster/status')).status === 200 ? true : undefined), 20_000);
  });
});
