import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NodeError } from '../node/errors.js';
import { MAX_VALUE_BYTES } from '../state/index.js';
import { call, harness, type Harness } from '../../test/support/api.js';

let h: Harness;
before(async () => {
  h = await harness({ server: { tokenCheckIntervalMs: 0 } });
});
after(async () => {
  await h.close();
});

function resetNode(): void {
  h.node.leader = true;
  h.node.statusOverrides = {};
  h.node.leaderName = undefined;
  h.node.leaderUrl = undefined;
}

describe('health endpoints', () => {
  test('ping answers healthy with node name, role and leader, without a token', async () => {
    resetNode();
    const r = await call(h.url, 'GET', '/system/health/ping', { token: null });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'healthy', nodeName: 'node1', role: 'primary', leader: 'node1' });
  });

  test('ping answers 503 unhealthy with the storage error as a reason', async () => {
    resetNode();
    h.node.statusOverrides = { storageHealthy: false, storageError: 'EIO writing wal segment 3' };
    const r = await call(h.url, 'GET', '/system/health/ping', { token: null });
    assert.equal(r.status, 503);
    assert.equal(r.body['status'], 'unhealthy');
    assert.deepEqual(r.body['reasons'], ['storage failed: EIO writing wal segment 3']);
  });

  test('leader is 200 on a leader with quorum, 503 without quorum or on a follower', async () => {
    resetNode();
    assert.equal((await call(h.url, 'GET', '/system/health/leader', { token: null })).status, 200);
    h.node.statusOverrides = { quorumMet: false, votersReachable: 1, votersTotal: 3 };
    const noQuorum = await call(h.url, 'GET', '/system/health/leader', { token: null });
    assert.equal(noQuorum.status, 503);
    assert.match(String((noQuorum.body['reasons'] as string[])[0]), /quorum not met: 1 of 3 voters reachable/);
    resetNode();
    h.node.leader = false;
    h.node.leaderName = 'node2';
    const follower = await call(h.url, 'GET', '/system/health/leader', { token: null });
    assert.equal(follower.status, 503);
    assert.match(String((follower.body['reasons'] as string[])[0]), /not the leader/);
  });

  test('standby is 200 on a caught-up follower, 503 on the leader, when lagging or with no leader', async () => {
    resetNode();
    h.node.leader = false;
    h.node.leaderName = 'node2';
    h.node.leaderUrl = 'http://127.0.0.1:1';
    assert.equal((await call(h.url, 'GET', '/system/health/standby', { token: null })).status, 200);
    h.node.statusOverrides = { commitIndex: 5000, appliedIndex: 10 };
    const lagging = await call(h.url, 'GET', '/system/health/standby', { token: null });
    assert.equal(lagging.status, 503);
    assert.match(String((lagging.body['reasons'] as string[])[0]), /lagging: 4990 entries behind/);
    h.node.statusOverrides = {};
    h.node.leaderName = undefined;
    assert.equal((await call(h.url, 'GET', '/system/health/standby', { token: null })).status, 503);
    resetNode();
    const onLeader = await call(h.url, 'GET', '/system/health/standby', { token: null });
    assert.equal(onLeader.status, 503);
    assert.match(String((onLeader.body['reasons'] as string[])[0]), /is the leader/);
  });

  test('ready is 200 on a leader with quorum or a follower that knows its leader, 503 otherwise', async () => {
    resetNode();
    assert.equal((await call(h.url, 'GET', '/system/health/ready', { token: null })).status, 200);
    h.node.statusOverrides = { quorumMet: false };
    assert.equal((await call(h.url, 'GET', '/system/health/ready', { token: null })).status, 503);
    resetNode();
    h.node.leader = false;
    h.node.leaderName = 'node2';
    h.node.leaderUrl = 'http://127.0.0.1:1';
    assert.equal((await call(h.url, 'GET', '/system/health/ready', { token: null })).status, 200);
    h.node.leaderName = undefined;
    h.node.leaderUrl = undefined;
    const none = await call(h.url, 'GET', '/system/health/ready', { token: null });
    assert.equal(none.status, 503);
    assert.match(String((none.body['reasons'] as string[])[0]), /no leader is known/);
    resetNode();
  });

  test('cluster health needs a token and has exactly the SPEC shape', async () => {
    resetNode();
    assert.equal((await call(h.url, 'GET', '/system/health/cluster', { token: null })).status, 401);
    const r = await call(h.url, 'GET', '/system/health/cluster', { token: 'reader' });
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body).sort(), ['clusterHealthy', 'failoverSafe', 'failureTolerance', 'leaderNode', 'nodes', 'quorumMet', 'redisConnected', 'term', 'writeQuorum',
      // SPEC §4: "the cluster body also reports paused, drained nodes and the failover mode".
      'failoverMode', 'paused', 'drained', 'autoFailover'].sort());
    assert.equal(r.body['failoverMode'], 'automatic');
    assert.equal(r.body['paused'], false);
    assert.equal(r.body['clusterHealthy'], true);
    assert.equal(r.body['leaderNode'], 'node1');
    assert.equal(r.body['term'], h.node.status().term);
    assert.equal(r.body['writeQuorum'], 2);
    assert.equal(r.body['quorumMet'], true);
    assert.equal(r.body['failoverSafe'], true);
    assert.equal(r.body['failureTolerance'], 1);
    assert.equal(r.body['redisConnected'], null, 'a node that does not use Redis reports null, not a disconnection');
    const nodes = r.body['nodes'] as Record<string, unknown>[];
    assert.equal(nodes.length, 1);
    assert.deepEqual(Object.keys(nodes[0]!).sort(), ['databaseMode', 'drained', 'lastHeartbeat', 'matchIndex', 'nodeName', 'replicationLagEntries', 'replicationLagMs', 'role', 'status'].sort());
    assert.deepEqual(
      { nodeName: nodes[0]!['nodeName'], role: nodes[0]!['role'], status: nodes[0]!['status'], databaseMode: nodes[0]!['databaseMode'] },
      { nodeName: 'node1', role: 'primary', status: 'healthy', databaseMode: 'local-sync' },
    );
  });
});

describe('auth', () => {
  test('401 unauthorized with WWW-Authenticate without a token or with a bad one', async () => {
    resetNode();
    const none = await call(h.url, 'GET', '/v1/kv/a', { token: null });
    assert.equal(none.status, 401);
    assert.equal(none.body['error'], 'unauthorized');
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    const bad = await call(h.url, 'GET', '/v1/kv/a', { token: 'wrong-token' });
    assert.equal(bad.status, 401);
    assert.match(String(bad.body['message']), /invalid bearer token/);
    const notBearer = await call(h.url, 'GET', '/v1/kv/a', { token: null, headers: { authorization: 'Basic abc' } });
    assert.equal(notBearer.status, 401);
  });

  test('403 forbidden naming the required role when a reader writes', async () => {
    resetNode();
    const r = await call(h.url, 'PUT', '/v1/kv/a', { token: 'reader', body: { value: 'x' } });
    assert.equal(r.status, 403);
    assert.equal(r.body['error'], 'forbidden');
    assert.equal(r.body['requiredRole'], 'operator');
    assert.match(String(r.body['message']), /needs role operator; token "viewer" has role reader/);
  });

  test('an operator may write KV but not switch over; admin may', async () => {
    resetNode();
    assert.equal((await call(h.url, 'PUT', '/v1/kv/op-key', { token: 'operator', body: { value: 'x' } })).status, 200);
    const sw = await call(h.url, 'POST', '/v1/cluster/switchover', { token: 'operator', body: {} });
    assert.equal(sw.status, 403);
    assert.equal(sw.body['requiredRole'], 'admin');
  });

  test('tokens.json changes are picked up without a restart', async () => {
    resetNode();
    assert.equal((await call(h.url, 'GET', '/v1/cluster/status', { token: 'late-token' })).status, 401);
    writeFileSync(join(h.dir, 'tokens.json'), JSON.stringify([
      { token: 'operator-secret-token', role: 'operator', name: 'ops' },
      { token: 'reader-secret-token', role: 'reader', name: 'viewer' },
      { token: 'late-token', role: 'reader', name: 'late' },
    ]));
    assert.equal((await call(h.url, 'GET', '/v1/cluster/status', { token: 'late-token' })).status, 200);
  });
});

describe('kv', () => {
  test('put, get, delete round trip with revisions', async () => {
    resetNode();
    const put = await call(h.url, 'PUT', '/v1/kv/app/config%2Fx', { body: { value: 'v1' } });
    assert.equal(put.status, 200);
    const rev = put.body['revision'] as number;
    assert.ok(rev > 0);
    assert.equal(put.headers.get('x-quorate-served-by'), 'node1');
    const get = await call(h.url, 'GET', '/v1/kv/app/config%2Fx', { token: 'reader' });
    assert.equal(get.status, 200);
    assert.deepEqual(get.body, { key: 'app/config/x', value: 'v1', revision: rev, createRevision: rev, version: 1 });
    const del = await call(h.url, 'DELETE', '/v1/kv/app/config%2Fx');
    assert.deepEqual(del.body, { revision: rev + 1, deleted: true });
    const again = await call(h.url, 'DELETE', '/v1/kv/app/config%2Fx');
    assert.deepEqual(again.body, { revision: rev + 1, deleted: false });
  });

  test('a linearizable GET on the leader passes the read barrier; a stale one does not', async () => {
    resetNode();
    await call(h.url, 'PUT', '/v1/kv/lin', { body: { value: '1' } });
    const before = h.node.readBarriers;
    await call(h.url, 'GET', '/v1/kv/lin');
    assert.equal(h.node.readBarriers, before + 1);
    await call(h.url, 'GET', '/v1/kv/lin?consistency=stale');
    assert.equal(h.node.readBarriers, before + 1);
  });

  test('404 not_found for an unknown key and for an unknown route', async () => {
    resetNode();
    const key = await call(h.url, 'GET', '/v1/kv/does/not/exist');
    assert.equal(key.status, 404);
    assert.equal(key.body['error'], 'not_found');
    const route = await call(h.url, 'GET', '/v1/nope');
    assert.equal(route.status, 404);
    assert.equal(route.body['error'], 'not_found');
  });

  test('405 with Allow for a wrong method', async () => {
    resetNode();
    const r = await call(h.url, 'POST', '/v1/cluster/status');
    assert.equal(r.status, 405);
    assert.equal(r.body['error'], 'method_not_allowed');
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
  });

  test('400 invalid_json for malformed JSON and for a non-JSON Content-Type', async () => {
    resetNode();
    const r = await call(h.url, 'PUT', '/v1/kv/a', { raw: '{"value": ', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(r.body['error'], 'invalid_json');
    const ct = await call(h.url, 'PUT', '/v1/kv/a', { raw: '{"value":"x"}', headers: { 'content-type': 'text/plain' } });
    assert.equal(ct.status, 400);
    assert.equal(ct.body['error'], 'invalid_content_type');
  });

  test('hostile JSON bodies are refused naming the field and change nothing', async () => {
    resetNode();
    const before = h.node.kv.revision;
    const json = { 'content-type': 'application/json' };
    // Deep nesting where a string is expected.
    const deep = await call(h.url, 'PUT', '/v1/kv/hostile', { raw: `{"value":${'['.repeat(200_000)}${']'.repeat(200_000)}}`, headers: json });
    assert.equal(deep.status, 400);
    assert.match(String(deep.body['message']), /^value: must be a string, got an array/);
    // Far more txn entries than allowed: refused by count, naming the list.
    const many = await call(h.url, 'POST', '/v1/kv/txn', { body: { compare: Array.from({ length: 20_000 }, (_, i) => ({ key: `k${i}`, target: 'exists', value: true })), success: [] } });
    assert.equal(many.status, 400);
    assert.equal(many.body['field'], 'compare');
    assert.match(String(many.body['message']), /^compare: 20000 compares exceed the limit of 128/);
    const ops = await call(h.url, 'POST', '/v1/kv/txn', { body: { success: Array.from({ length: 129 }, (_, i) => ({ type: 'delete', key: `k${i}` })) } });
    assert.match(String(ops.body['message']), /^success: 129 ops exceed the limit of 128/);
    // A prototype key is just an unknown field.
    const proto = await call(h.url, 'PUT', '/v1/kv/hostile', { raw: '{"value":"x","__proto__":{"ttlMs":1}}', headers: json });
    assert.equal(proto.status, 400);
    assert.match(String(proto.body['message']), /^__proto__: unknown field/);
    // Not UTF-8; numbers beyond the safe range.
    const bin = await call(h.url, 'PUT', '/v1/kv/hostile', { raw: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), headers: json });
    assert.equal(bin.body['error'], 'invalid_json');
    assert.match(String(bin.body['message']), /not valid UTF-8/);
    const huge = await call(h.url, 'PUT', '/v1/kv/hostile', { raw: '{"value":"x","ifRevision":1e400}', headers: json });
    assert.match(String(huge.body['message']), /^ifRevision: must be a non-negative integer/);
    assert.equal(h.node.kv.revision, before);
    assert.equal(h.node.kv.get('hostile'), undefined);
  });

  test('400 naming the bad field', async () => {
    resetNode();
    const value = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 5 } });
    assert.equal(value.status, 400);
    assert.match(String(value.body['message']), /^value: must be a string/);
    const ifRev = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x', ifRevision: -1 } });
    assert.match(String(ifRev.body['message']), /^ifRevision: must be a non-negative integer/);
    const unknown = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x', ifRev: 1 } });
    assert.match(String(unknown.body['message']), /^ifRev: unknown field/);
    const limit = await call(h.url, 'GET', '/v1/kv?limit=abc');
    assert.match(String(limit.body['message']), /^limit: must be a positive integer/);
    const typo = await call(h.url, 'DELETE', '/v1/kv/a?ifrevision=3');
    assert.equal(typo.status, 400);
    assert.match(String(typo.body['message']), /^ifrevision: unknown query parameter/);
    const cons = await call(h.url, 'GET', '/v1/kv/a?consistency=eventual');
    assert.match(String(cons.body['message']), /^consistency: must be linearizable or stale/);
    const ik = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' }, headers: { 'idempotency-key': 'k'.repeat(257) } });
    assert.equal(ik.status, 400);
    assert.match(String(ik.body['message']), /^Idempotency-Key: is 257 bytes/);
  });

  test('409 revision_mismatch with currentRevision', async () => {
    resetNode();
    const first = await call(h.url, 'PUT', '/v1/kv/cas', { body: { value: 'a', ifRevision: 0 } });
    assert.equal(first.status, 200);
    const r = await call(h.url, 'PUT', '/v1/kv/cas', { body: { value: 'b', ifRevision: 0 } });
    assert.equal(r.status, 409);
    assert.equal(r.body['error'], 'revision_mismatch');
    assert.equal(r.body['currentRevision'], first.body['revision']);
    const del = await call(h.url, 'DELETE', `/v1/kv/cas?ifRevision=${(first.body['revision'] as number) + 100}`);
    assert.equal(del.status, 409);
    assert.equal(del.body['currentRevision'], first.body['revision']);
  });

  test('413 value_too_large for a value over the limit, naming the field', async () => {
    resetNode();
    const r = await call(h.url, 'PUT', '/v1/kv/big', { body: { value: 'x'.repeat(MAX_VALUE_BYTES + 1) } });
    assert.equal(r.status, 413);
    assert.equal(r.body['error'], 'value_too_large');
    assert.match(String(r.body['message']), /^value: /);
    const key = await call(h.url, 'PUT', `/v1/kv/${'k'.repeat(5000)}`, { body: { value: 'x' } });
    assert.equal(key.status, 413);
    assert.equal(key.body['error'], 'key_too_large');
  });

  test('413 body_too_large for a body over 2 MiB (declared or streamed)', async () => {
    resetNode();
    const declared = await call(h.url, 'PUT', '/v1/kv/big', { raw: 'x'.repeat(3 * 1024 * 1024), headers: { 'content-type': 'application/json' } });
    assert.equal(declared.status, 413);
    assert.equal(declared.body['error'], 'body_too_large');
    // Chunked, no Content-Length: the server stops reading past the limit.
    const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${h.url}/v1/kv/big`, { method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Bearer admin-secret-token' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      const chunk = Buffer.alloc(256 * 1024, 0x78);
      let sent = 0;
      const pump = (): void => {
        while (sent < 12) {
          sent++;
          if (!req.write(chunk)) { req.once('drain', pump); return; }
        }
        req.end();
      };
      pump();
    });
    assert.equal(streamed.status, 413);
    assert.equal(JSON.parse(streamed.body).error, 'body_too_large');
  });

  test('429 overloaded with Retry-After in seconds when propose is overloaded', async () => {
    resetNode();
    h.node.failNextPropose = new NodeError('overloaded', 'too many uncommitted bytes; retry later', { retryAfterMs: 2500 });
    const r = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' } });
    assert.equal(r.status, 429);
    assert.equal(r.body['error'], 'overloaded');
    assert.equal(r.headers.get('retry-after'), '3');
  });

  test('504 commit_unknown and 503 quorum_not_met pass through from the node', async () => {
    resetNode();
    h.node.failNextPropose = new NodeError('commit_unknown', 'the entry was proposed but not applied within 5000 ms');
    const r = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' } });
    assert.equal(r.status, 504);
    assert.equal(r.body['error'], 'commit_unknown');
    h.node.failNextPropose = new NodeError('quorum_not_met', 'Quorum not met: 1 of 3 voters reachable');
    const q = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' } });
    assert.equal(q.status, 503);
    assert.equal(q.body['error'], 'quorum_not_met');
  });

  test('an unexpected exception is 500 internal without internals, and the stack is logged', async () => {
    resetNode();
    h.node.failNextPropose = new Error('secret /var/lib/quorate path exploded');
    const r = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' } });
    assert.equal(r.status, 500);
    assert.equal(r.body['error'], 'internal');
    assert.doesNotMatch(r.text, /secret|exploded/);
    const logged = h.logs.find((l) => l['msg'] === 'internal error while serving a request');
    assert.ok(logged);
    assert.match(JSON.stringify(logged['err']), /exploded/);
  });

  test('503 no_leader on a follower that knows no leader, saying what to do', async () => {
    resetNode();
    h.node.leader = false;
    const r = await call(h.url, 'PUT', '/v1/kv/a', { body: { value: 'x' } });
    assert.equal(r.status, 503);
    assert.equal(r.body['error'], 'no_leader');
    assert.match(String(r.body['message']), /retry.*quorate status/i);
    resetNode();
  });

  test('stale reads are served locally by a follower', async () => {
    resetNode();
    await call(h.url, 'PUT', '/v1/kv/stale-key', { body: { value: 'local' } });
    h.node.leader = false; // and no leader known: a linearizable read could not be served
    const stale = await call(h.url, 'GET', '/v1/kv/stale-key?consistency=stale');
    assert.equal(stale.status, 200);
    assert.equal(stale.body['value'], 'local');
    assert.equal(stale.headers.get('x-quorate-served-by'), 'node1');
    const lin = await call(h.url, 'GET', '/v1/kv/stale-key');
    assert.equal(lin.status, 503);
    resetNode();
  });

  test('listing returns sorted items, the store revision and more, with limit capped', async () => {
    resetNode();
    for (const k of ['ls/b', 'ls/a', 'ls/c', 'other']) await call(h.url, 'PUT', `/v1/kv/${k}`, { body: { value: k } });
    const r = await call(h.url, 'GET', '/v1/kv?prefix=ls/&limit=2', { token: 'reader' });
    assert.equal(r.status, 200);
    const items = r.body['items'] as Record<string, unknown>[];
    assert.deepEqual(items.map((i) => i['key']), ['ls/a', 'ls/b']);
    assert.deepEqual(Object.keys(items[0]!).sort(), ['createRevision', 'key', 'revision', 'value', 'version']);
    assert.equal(r.body['more'], true);
    assert.equal(r.body['revision'], h.node.kv.revision);
    const rest = await call(h.url, 'GET', '/v1/kv?prefix=ls/&startAfter=ls/b&limit=999999');
    assert.deepEqual((rest.body['items'] as Record<string, unknown>[]).map((i) => i['key']), ['ls/c']);
    assert.equal(rest.body['more'], false);
  });

  test('txn applies the success branch when compares hold and the failure branch otherwise', async () => {
    resetNode();
    const p = await call(h.url, 'PUT', '/v1/kv/tx/a', { body: { value: '1' } });
    const rev = p.body['revision'] as number;
    const ok = await call(h.url, 'POST', '/v1/kv/txn', {
      token: 'operator',
      body: { compare: [{ key: 'tx/a', target: 'revision', op: '=', value: rev }], success: [{ type: 'put', key: 'tx/b', value: '2' }, { type: 'delete', key: 'tx/a' }], failure: [] },
    });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { succeeded: true, revision: rev + 1, responses: [{ type: 'put', revision: rev + 1 }, { type: 'delete', deleted: true }] });
    const no = await call(h.url, 'POST', '/v1/kv/txn', {
      body: { compare: [{ key: 'tx/a', target: 'exists', op: '=', value: true }], success: [], failure: [{ op: 'put', key: 'tx/c', value: '3' }] },
    });
    assert.equal(no.body['succeeded'], false);
    assert.equal((await call(h.url, 'GET', '/v1/kv/tx/c')).body['value'], '3');
    const bad = await call(h.url, 'POST', '/v1/kv/txn', { body: { compare: [], success: [{ type: 'put', key: 'x', value: 1 }] } });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body['message']), /^success\[0\]\.value: must be a string/);
    const dup = await call(h.url, 'POST', '/v1/kv/txn', { body: { success: [{ type: 'delete', key: 'x' }, { type: 'delete', key: 'x' }] } });
    assert.equal(dup.status, 400);
    assert.match(String(dup.body['message']), /success\[1\]\.key/);
  });

  test('Idempotency-Key is passed to propose and a retry returns the original result', async () => {
    resetNode();
    const a = await call(h.url, 'PUT', '/v1/kv/idem', { body: { value: '1' }, headers: { 'idempotency-key': 'req-42' } });
    const b = await call(h.url, 'PUT', '/v1/kv/idem', { body: { value: '1' }, headers: { 'idempotency-key': 'req-42' } });
    assert.deepEqual(a.body, b.body);
    assert.equal(h.node.proposals.at(-1)?.idempotencyKey, 'req-42');
  });

  test('an Idempotency-Key reused for a different request answers 422 idempotency_key_reused and changes nothing', async () => {
    resetNode();
    const ik = { 'idempotency-key': 'reuse-1' };
    const first = await call(h.url, 'PUT', '/v1/kv/reuse/a', { body: { value: '1' }, headers: ik });
    assert.equal(first.status, 200);
    const other = [
      await call(h.url, 'PUT', '/v1/kv/reuse/a', { body: { value: '2' }, headers: ik }), // other body
      await call(h.url, 'PUT', '/v1/kv/reuse/b', { body: { value: '1' }, headers: ik }), // other path
      await call(h.url, 'DELETE', '/v1/kv/reuse/a', { headers: ik }), // other method
      await call(h.url, 'POST', '/v1/kv/txn', { body: { success: [{ type: 'put', key: 'reuse/a', value: '1' }] }, headers: ik }),
    ];
    for (const r of other) {
      assert.equal(r.status, 422, r.text);
      assert.equal(r.body['error'], 'idempotency_key_reused');
      assert.equal(r.body['field'], 'Idempotency-Key');
      assert.match(String(r.body['message']), /already used for a different request.*nothing was changed.*new Idempotency-Key/);
    }
    const a = await call(h.url, 'GET', '/v1/kv/reuse/a');
    assert.equal(a.body['value'], '1');
    assert.equal(a.body['revision'], first.body['revision']);
    assert.equal((await call(h.url, 'GET', '/v1/kv/reuse/b')).status, 404);
    // The same request again still gets the first result (JSON formatting does not matter).
    const again = await call(h.url, 'PUT', '/v1/kv/reuse/a', { raw: '{ "value" : "1" }', headers: { ...ik, 'content-type': 'application/json' } });
    assert.deepEqual(again.body, first.body);
  });
});

describe('cluster endpoints', () => {
  test('status has the fields the CLI reads', async () => {
    resetNode();
    const r = await call(h.url, 'GET', '/v1/cluster/status', { token: 'reader' });
    assert.equal(r.status, 200);
    for (const k of ['id', 'nodeName', 'role', 'term', 'leader', 'commitIndex', 'appliedIndex', 'peers']) assert.ok(k in r.body, k);
    assert.equal(r.body['nodeName'], 'node1');
    assert.equal(r.body['leader'], 'node1');
    const peer = (r.body['peers'] as Record<string, unknown>[])[0]!;
    for (const k of ['nodeName', 'id', 'role', 'matchIndex', 'lastContact']) assert.ok(k in peer, k);
  });

  test('failover-safe answers {failoverSafe} and caps waitMs', async () => {
    resetNode();
    const r = await call(h.url, 'GET', '/v1/cluster/failover-safe?waitMs=999999', { token: 'reader' });
    assert.equal(r.status, 200);
    assert.equal(r.body['failoverSafe'], true);
    assert.deepEqual(r.body['caughtUp'], ['node2']);
  });

  test('switchover (admin) reports the new leader; a refused transfer is 409', async () => {
    resetNode();
    const r = await call(h.url, 'POST', '/v1/cluster/switchover', { body: { to: 'node3' } });
    assert.equal(r.status, 200);
    assert.equal(r.body['to'], 'node3');
    assert.equal(r.body['leader'], 'node3');
    const refused = await call(h.url, 'POST', '/v1/cluster/switchover', { body: { to: 'nobody' } });
    assert.equal(refused.status, 409);
    assert.equal(refused.body['error'], 'invalid_transfer');
    const empty = await call(h.url, 'POST', '/v1/cluster/switchover');
    assert.equal(empty.status, 200);
  });

  test('snapshot (admin) answers the index', async () => {
    resetNode();
    const r = await call(h.url, 'POST', '/v1/cluster/snapshot');
    assert.equal(r.status, 200);
    assert.equal(typeof r.body['index'], 'number');
    assert.equal((await call(h.url, 'POST', '/v1/cluster/snapshot', { token: 'operator' })).status, 403);
  });

  test('dump has appliedIndex and revision, and the checksum only when asked', async () => {
    resetNode();
    const plain = await call(h.url, 'GET', '/v1/cluster/dump', { token: 'reader' });
    assert.deepEqual(Object.keys(plain.body).sort(), ['appliedIndex', 'nodeName', 'revision']);
    const withSum = await call(h.url, 'GET', '/v1/cluster/dump?checksum=1', { token: 'reader' });
    assert.equal(withSum.body['checksum'], h.node.kv.checksum());
    assert.equal(withSum.body['appliedIndex'], h.node.machines.appliedIndex);
  });

  test('metrics are Prometheus text including the node metrics and HTTP request counts', async () => {
    resetNode();
    await call(h.url, 'PUT', '/v1/kv/m', { body: { value: 'x' } });
    const r = await call(h.url, 'GET', '/metrics', { token: 'reader' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(r.text, /^# HELP quorate_proposals_total /m);
    assert.match(r.text, /^quorate_proposals_total\{type="put"\} \d+$/m);
    assert.match(r.text, /^quorate_http_requests_total\{method="PUT",route="\/v1\/kv\/\{key\}",status="200"\} \d+$/m);
    assert.match(r.text, /^# TYPE quorate_http_request_duration_seconds histogram$/m);
  });
});

describe('request logging', () => {
  test('one debug line per request with method, path, status, ms and servedBy; failures at warn', async () => {
    resetNode();
    await call(h.url, 'GET', '/system/health/ping', { token: null });
    await call(h.url, 'GET', '/v1/kv/missing-for-log');
    const ok = h.logs.find((l) => l['msg'] === 'request' && l['path'] === '/system/health/ping');
    assert.ok(ok);
    assert.equal(ok['level'], 'debug');
    assert.equal(ok['method'], 'GET');
    assert.equal(ok['status'], 200);
    assert.equal(ok['servedBy'], 'node1');
    assert.equal(typeof ok['ms'], 'number');
    const failed = h.logs.find((l) => l['msg'] === 'request failed' && l['path'] === '/v1/kv/missing-for-log');
    assert.ok(failed);
    assert.equal(failed['level'], 'warn');
    assert.equal(failed['status'], 404);
  });
});
