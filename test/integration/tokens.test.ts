// Managed API tokens and the audit log with real processes: a token created
// through the CLI on one node works on every node, a revoked one stops on
// every node (the time is reported, not asserted tightly), the secret is
// shown once, and admin actions on any node land in the one replicated audit log.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAIN, TOKEN, TestCluster, http, waitFor } from './harness.js';

const run = promisify(execFile);
const cli = async (url: string, args: string[], token = TOKEN) => run(process.execPath, [MAIN, ...args, '--url', url, '--token', token, '--json']);

describe('managed tokens and audit across a cluster', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('create on a follower, use everywhere, revoke everywhere; every admin action audited once', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const leader = await c.waitLeader(60_000);
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    const urls = c.nodes.map((n) => n.url);

    const created = JSON.parse((await cli(urls[follower]!, ['token', 'create', '--name', 'grafana', '--role', 'reader', '--ttl', '30d'])).stdout) as Record<string, unknown>;
    const token = created['token'] as string;
    assert.match(token, /^qrt_/);
    assert.equal(created['role'], 'reader');
    assert.ok(typeof created['expiresAt'] === 'string');
    for (const url of urls) {
      await waitFor(`the token works on ${url}`, async () => (await http(url, 'GET', '/v1/cluster/status', { token })).status === 200, 10_000);
      assert.equal((await http(url, 'POST', '/v1/cluster/snapshot', { token, body: {} })).status, 403);
    }
    const ls = JSON.parse((await cli(urls[leader]!, ['token', 'ls'])).stdout) as { tokens: Record<string, unknown>[] };
    assert.deepEqual(ls.tokens.map((t) => t['name']), ['grafana']);
    assert.ok(!JSON.stringify(ls).includes(token.slice(4)), 'the secret is never listed');

    await cli(urls[follower]!, ['token', 'revoke', 'grafana']);
    const t0 = Date.now();
    const stoppedAfter: number[] = [];
    for (const url of urls) {
      await waitFor(`the token stops on ${url}`, async () => (await http(url, 'GET', '/v1/cluster/status', { token })).status === 401, 10_000);
      stoppedAfter.push(Date.now() - t0);
    }
    // From the revoke's answer (applied on the leader); reported, not asserted tightly: the heartbeat is 100 ms here.
    console.log(JSON.stringify({ revokedTokenStoppedOnEveryNodeMs: stoppedAfter }));

    await waitFor('both actions audited', async () => {
      const r = await http(urls[leader]!, 'GET', '/v1/audit', { token: TOKEN });
      const actions = (r.body['records'] as { action: string }[]).map((x) => x.action);
      return actions.includes('POST /v1/tokens') && actions.includes('DELETE /v1/tokens/{name}');
    }, 10_000);
    const audit = JSON.parse((await cli(urls[follower]!, ['audit'])).stdout) as { records: Record<string, unknown>[] };
    await waitFor('the follower has applied the audit records', async () => ((await http(urls[follower]!, 'GET', '/v1/audit', { token: TOKEN })).body['records'] as unknown[]).length >= 2, 10_000);
    const tokenActions = audit.records.filter((r) => String(r['action']).includes('/v1/tokens'));
    assert.equal(tokenActions.length, 2, JSON.stringify(audit.records));
    for (const r of tokenActions) {
      assert.equal(r['actor'], 'admin');
      assert.equal(r['result'], 'ok');
      assert.match(String(r['address']), /127\.0\.0\.1 via 127\.0\.0\.1/);
    }
    // Each admin action, made on a follower or the leader, is audited once with its result.
    const target = [0, 1, 2].find((i) => i !== leader && i !== follower)!;
    const actions: [number, string, string, unknown][] = [
      [follower, 'POST', '/v1/cluster/pause', {}],
      [follower, 'POST', '/v1/cluster/resume', {}],
      [leader, 'POST', '/v1/cluster/settings', { failover: 'manual' }],
      [leader, 'POST', '/v1/cluster/settings', { failover: 'automatic' }],
      [follower, 'POST', '/v1/cluster/drain', { nodeName: c.nodes[target]!.name }],
      [follower, 'POST', '/v1/cluster/drain', { nodeName: c.nodes[target]!.name, drained: false }],
      [follower, 'POST', '/v1/cluster/join-tokens', {}],
      [follower, 'POST', '/v1/cluster/snapshot', {}],
      [leader, 'POST', '/v1/cluster/switchover', { to: c.nodes[follower]!.name }],
    ];
    for (const [i, method, path, body] of actions) {
      const r = await http(urls[i]!, method, path, { token: TOKEN, body });
      assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    let records: { actor: string; action: string; result: string; node: string; target: string | null }[] = [];
    await waitFor('every admin action audited', async () => {
      const r = await http(urls[follower]!, 'GET', '/v1/audit', { token: TOKEN });
      // The admin token's calls (the reader token's refused calls above are audited too, as forbidden).
      records = r.status === 200 ? (r.body['records'] as typeof records).filter((x) => x.actor === 'admin') : [];
      return actions.every(([, m, p]) => records.filter((x) => x.action === `${m} ${p}`).length >= actions.filter(([, m2, p2]) => m2 === m && p2 === p).length);
    }, 20_000);
    for (const [, m, p] of actions) {
      const n = actions.filter(([, m2, p2]) => m2 === m && p2 === p).length;
      const got = records.filter((x) => x.action === `${m} ${p}`);
      assert.equal(got.length, n, `${m} ${p} audited once per call: ${JSON.stringify(got)}`);
      assert.ok(got.every((x) => x.result === 'ok'));
    }
    assert.equal(records.find((x) => x.action === 'POST /v1/cluster/snapshot')!.node, c.nodes[follower]!.name, 'a follower\'s own action is recorded via the leader');
    assert.equal(records.find((x) => x.action === 'POST /v1/cluster/switchover')!.target, c.nodes[follower]!.name);
    const human = await run(process.execPath, [MAIN, 'audit', '--url', urls[leader]!, '--token', TOKEN]);
    assert.match(human.stdout, /TIME +WHO +ACTION/);
    assert.match(human.stdout, /admin +POST \/v1\/tokens +grafana/);
  });
});
