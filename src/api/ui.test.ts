// The dashboard's server side: assets with a strict CSP, whoami, the
// gathered views of every member, and CORS for member origins only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKENS, harness } from '../../test/support/api.js';
import type { PeerInfo } from './ports.js';

function peer(name: string, id: number, apiUrl: string): PeerInfo {
  return { id, nodeName: name, apiUrl, peerUrl: 'http://127.0.0.1:1', role: 'standby', status: 'healthy', matchIndex: 0, replicationLagEntries: 0, replicationLagMs: 0, lastHeartbeat: undefined, self: false };
}

test('/ui/ serves the page without a token, with a CSP that allows only the node and its members', async () => {
  const h = await harness();
  try {
    h.node.otherPeers = [peer('node2', 2, 'http://127.0.0.1:7999')];
    const r = await fetch(`${h.url}/ui/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/html/);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self';/);
    assert.match(csp, /connect-src 'self' http:\/\/127\.0\.0\.1:7999;/);
    assert.doesNotMatch(csp, /unsafe/);
    assert.match(await r.text(), /app\.js/);
    const js = await fetch(`${h.url}/ui/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    const redirect = await fetch(`${h.url}/ui`, { redirect: 'manual' });
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get('location'), '/ui/');
    for (const bad of ['/ui/..%2Fpackage.json', '/ui/nope.js', '/ui/sub/app.js']) {
      assert.equal((await fetch(`${h.url}${bad}`)).status, 404, bad);
    }
  } finally {
    await h.close();
  }
});

test('whoami names the token and its role; no token is 401', async () => {
  const h = await harness();
  try {
    const r = await fetch(`${h.url}/v1/auth/whoami`, { headers: { authorization: `Bearer ${TOKENS.reader}` } });
    assert.deepEqual(await r.json(), { name: 'viewer', role: 'reader', nodeName: 'node1' });
    assert.equal((await fetch(`${h.url}/v1/auth/whoami`)).status, 401);
  } finally {
    await h.close();
  }
});

test('views: every member answers with its own status; one that is down is reported unreachable', async () => {
  const a = await harness({ nodeName: 'node1', nodeId: 1 });
  const b = await harness({ nodeName: 'node2', nodeId: 2, leader: false });
  try {
    a.node.otherPeers = [peer('node2', 2, b.url), peer('node3', 3, 'http://127.0.0.1:1')];
    const r = await fetch(`${a.url}/v1/cluster/views`, { headers: { authorization: `Bearer ${TOKENS.reader}` } });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { servedBy: string; views: { nodeName: string; ok: boolean; error?: string; status?: { nodeName: string; raftRole: string } }[] };
    assert.equal(body.servedBy, 'node1');
    const by = new Map(body.views.map((v) => [v.nodeName, v]));
    assert.equal(by.get('node1')?.status?.raftRole, 'leader');
    assert.equal(by.get('node2')?.ok, true);
    assert.equal(by.get('node2')?.status?.nodeName, 'node2', 'node2 answered with its own view');
    assert.equal(by.get('node2')?.status?.raftRole, 'follower');
    assert.equal(by.get('node3')?.ok, false);
    assert.match(by.get('node3')?.error ?? '', /unreachable/);
  } finally {
    await b.close();
    await a.close();
  }
});

test('CORS: a member origin may call (preflight answered); any other origin gets no CORS headers', async () => {
  const h = await harness();
  try {
    h.node.otherPeers = [peer('node2', 2, 'http://127.0.0.1:7999')];
    const member = 'http://127.0.0.1:7999';
    const pre = await fetch(`${h.url}/v1/cluster/status`, { method: 'OPTIONS', headers: { origin: member, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), member);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
    const ok = await fetch(`${h.url}/v1/cluster/status`, { headers: { origin: member, authorization: `Bearer ${TOKENS.reader}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), member);
    const evil = await fetch(`${h.url}/v1/cluster/status`, { headers: { origin: 'http://evil.example:80', authorization: `Bearer ${TOKENS.reader}` } });
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
    const evilPre = await fetch(`${h.url}/v1/cluster/status`, { method: 'OPTIONS', headers: { origin: 'http://evil.example:80', 'access-control-request-method': 'GET' } });
    assert.notEqual(evilPre.status, 204);
    assert.equal(evilPre.headers.get('access-control-allow-origin'), null);
  } finally {
    await h.close();
  }
});
