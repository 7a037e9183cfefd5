// quorate isolate with real node processes: the node is removed at once, the
// cluster secret rotates on the remaining members, the isolated node's
// handshake (old secret) is refused, and the cluster goes on with the new one.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLUSTER_SECRET, MAIN, TOKEN, TestCluster, http, waitFor } from './harness.js';
import { forwardSignature } from '../../src/node/security.js';

describe('isolate', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('the isolated node is removed and refused with the old secret; the rest rotate the secret and keep working across a restart', async () => {
    c = await TestCluster.start({ nodes: 3 });
    await c.waitLeader(40_000);
    for (let n = 0; n < 10; n++) await c.client().kvPut(`k/${n}`, `v${n}`);
    const secret = (i: number) => readFileSync(join(c!.nodes[i]!.dir, 'cluster.secret'), 'utf8').trim();

    const out = await promisify(execFile)(process.execPath, [MAIN, 'isolate', 'node3', '--url', c.nodes[0]!.url, '--token', TOKEN]);
    assert.match(out.stdout, /node3 isolated: .*the cluster secret was rotated/);
    process.stdout.write(`# quorate isolate node3:\n${out.stdout.replace(/^/gm, '# ')}\n`);

    await waitFor('both remaining members switched to the new secret', () => secret(0) !== CLUSTER_SECRET && secret(1) !== CLUSTER_SECRET, 15_000);
    assert.equal(secret(0), secret(1));
    assert.equal(secret(2), CLUSTER_SECRET, 'the isolated node never learns the new secret');

    // The isolated node comes back with the old secret: refused at the handshake.
    c.kill(2);
    await c.waitExit(2);
    c.startNode(2);
    await waitFor('a member refuses the old secret', () => /secret_rotated/.test(c!.log(0)) || /secret_rotated/.test(c!.log(1)), 20_000);
    await waitFor('the isolated node says it is removed or refused', () => /"event":"peer_refused"/.test(c!.log(2)), 20_000);

    // Its identity is refused at the API too: a request it forwards is signed with the old secret.
    const sentAt = Date.now();
    const forged = { node: 'node3', sentAt, method: 'PUT', url: '/v1/kv/forged', forwardedFor: '127.0.0.1' };
    const asNode3 = await http(c.nodes[0]!.url, 'PUT', '/v1/kv/forged', {
      token: TOKEN, body: { value: 'x' },
      headers: { 'x-quorate-forwarded': 'node3', 'x-quorate-forward-at': String(sentAt), 'x-quorate-forward-signature': forwardSignature(Buffer.from(CLUSTER_SECRET, 'hex'), forged), 'x-quorate-forwarded-for': '127.0.0.1' },
    });
    assert.equal(asNode3.status, 403, JSON.stringify(asNode3.body));
    assert.match(String(asNode3.body['message']), /removed or isolated node/);

    // The cluster keeps working, and a member restarted afterwards handshakes with the new secret (both are needed for a quorum of 2).
    await c.client({ urls: [c.nodes[0]!.url, c.nodes[1]!.url] }).kvPut('after', 'isolate');
    assert.equal((await http(c.nodes[0]!.url, 'GET', '/v1/kv/forged', { token: TOKEN })).status, 404, 'the forged write was not applied');
    c.kill(0);
    await c.waitExit(0);
    c.startNode(0);
    const leads = async (i: number) => (await http(c!.nodes[i]!.url, 'GET', '/system/health/leader').catch(() => ({ status: 0 }))).status === 200;
    await waitFor('node1 is back', async () => (await http(c!.nodes[0]!.url, 'GET', '/system/health/ping').catch(() => ({ status: 0 }))).status !== 0, 20_000);
    await waitFor('a leader with a quorum again', async () => (await leads(0)) || (await leads(1)), 20_000);
    await c.client({ urls: [c.nodes[0]!.url, c.nodes[1]!.url] }).kvPut('after-restart', 'yes');
    const r = await http(c.nodes[0]!.url, 'GET', '/v1/kv/after-restart', { token: TOKEN });
    assert.equal(r.body['value'], 'yes');
    const peers = (await http(c.nodes[1]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['peers'] as { nodeName: string }[];
    assert.ok(!peers.some((p) => p.nodeName === 'node3'), 'node3 is no member');
  });
});
