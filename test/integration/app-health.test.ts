// Application health checks and role-change hooks through real processes:
// a failing critical check on the leader with failoverOnFailure moves
// leadership to the one healthy voter (never to the unhealthy follower), the
// load-balancer endpoints switch, and every node's hooks ran in order with
// increasing terms.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOKEN, TestCluster, http, status, waitFor } from './harness.js';

function hookLines(f: string): string[][] {
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => l.split(' ')) : [];
}

describe('application health checks and role-change hooks', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('a failing critical check on the leader hands leadership to a healthy voter; hooks observe it in order', async () => {
    const base = join(tmpdir(), `quorate-health-${process.pid}-${Date.now()}`);
    const flag = (i: number) => `${base}-fail-${i}`;
    const hooks = (i: number) => `${base}-hooks-${i}.log`;
    c = await TestCluster.start({
      nodes: 3,
      extraConfig: (i) => ({
        health: {
          checks: [
            { name: 'app', command: `test ! -e ${flag(i)}`, intervalMs: 400, timeoutMs: 2000, failuresBeforeUnhealthy: 2, critical: true },
            { name: 'disk', builtin: 'storage-writable', intervalMs: 1000 },
          ],
          failoverOnFailure: true,
        },
        // argv: hook role term fencingToken nodeName leaderName; the environment carries the same.
        hooks: {
          onStart: `echo "$@" >> ${hooks(i)}`,
          onRoleChange: `sleep 0.05; echo "$@" "$QUORATE_FENCING_TOKEN" >> ${hooks(i)}`,
          onStop: `echo "$@" >> ${hooks(i)}`,
          timeoutMs: 5000,
        },
      }),
    });
    try {
      const leader = await c.waitLeader(60_000);
      const [sick, healthy] = [0, 1, 2].filter((i) => i !== leader) as [number, number];
      const cluster = async () => (await http(c!.nodes[leader]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body;
      // Every node reports its checks; the leader knows them all.
      await waitFor('the leader sees every node\'s checks healthy', async () => {
        const nodes = (await cluster())['nodes'] as { nodeName: string; appHealthy?: boolean }[];
        return nodes.length === 3 && nodes.every((n) => n.appHealthy === true);
      }, 30_000);

      // A follower's critical check fails: its probes answer 503 naming the check, and the leader sees it.
      writeFileSync(flag(sick), '');
      await waitFor('the sick follower answers 503 on ready', async () => (await status(c!.nodes[sick]!.url, '/system/health/ready')) === 503, 30_000);
      const ping = await http(c.nodes[sick]!.url, 'GET', '/system/health/ping');
      assert.equal(ping.status, 503);
      assert.match(String(ping.body['reasons']), /critical health check app failing/);
      await waitFor('the leader sees the sick follower unhealthy', async () => {
        const nodes = (await cluster())['nodes'] as { nodeName: string; appHealthy?: boolean; failingChecks?: string[] }[];
        return nodes.some((n) => n.nodeName === c!.nodes[sick]!.name && n.appHealthy === false && n.failingChecks?.includes('app') === true);
      }, 30_000);
      assert.equal((await cluster())['clusterHealthy'], false);
      assert.equal(await c.waitLeader(), leader, 'a failing follower does not move leadership');

      // Now the leader's critical check fails: leadership moves, and only to the healthy voter.
      const t0 = Date.now();
      writeFileSync(flag(leader), '');
      const next = await c.waitLeader(60_000, [leader]);
      const movedMs = Date.now() - t0;
      assert.equal(next, healthy, `leadership went to ${c.nodes[next]!.name}, not the healthy ${c.nodes[healthy]!.name}`);
      console.log(`# health failover: leadership moved ${c.nodes[leader]!.name} -> ${c.nodes[next]!.name} in ${movedMs} ms after the check started failing (2 failures at 400 ms + switchover)`);
      await waitFor('the old leader answers 503 on leader and ready', async () => (await status(c!.nodes[leader]!.url, '/system/health/leader')) === 503
        && (await status(c!.nodes[leader]!.url, '/system/health/ready')) === 503, 30_000);
      assert.equal(await status(c.nodes[next]!.url, '/system/health/leader'), 200);
      await waitFor('the old leader logs why it handed over', () => /health_failover_(done|failed)/.test(c!.log(leader)), 30_000);
      const lines = c.log(leader).split('\n').filter((l) => l.includes('health_failover'));
      assert.ok(lines.some((l) => l.includes('health_failover_started')), lines.join('\n'));
      const checks = await http(c.nodes[leader]!.url, 'GET', '/v1/checks', { token: TOKEN });
      assert.equal(checks.status, 200);
      assert.deepEqual(checks.body['failingCritical'], ['app']);

      // Hooks: the old leader was told primary, then standby, with increasing terms; the new one primary in the newer term.
      await waitFor('the role-change hooks ran', () => hookLines(hooks(leader)).some((l) => l[0] === 'onRoleChange' && l[1] === 'standby')
        && hookLines(hooks(next)).some((l) => l[0] === 'onRoleChange' && l[1] === 'primary'), 30_000);
      const old = hookLines(hooks(leader));
      assert.equal(old[0]![0], 'onStart');
      const changes = old.filter((l) => l[0] === 'onRoleChange');
      const firstPrimary = changes.findIndex((l) => l[1] === 'primary');
      assert.ok(firstPrimary >= 0, JSON.stringify(old));
      const lostAfter = changes.slice(firstPrimary).find((l) => l[1] === 'standby');
      assert.ok(lostAfter, `a standby call follows the primary one: ${JSON.stringify(old)}`);
      const terms = changes.map((l) => Number(l[2]));
      assert.deepEqual(terms, [...terms].sort((a, b) => a - b), `terms in order: ${JSON.stringify(changes)}`);
      const p = changes[firstPrimary]!;
      assert.equal(p[3], p[2], 'fencing token = term');
      assert.equal(p[4], c.nodes[leader]!.name);
      assert.equal(p[5], c.nodes[leader]!.name, 'leader name');
      assert.equal(p[6], p[2], 'QUORATE_FENCING_TOKEN in the environment');
      const np = hookLines(hooks(next)).find((l) => l[0] === 'onRoleChange' && l[1] === 'primary')!;
      assert.ok(Number(np[2]) > Number(p[2]), `new primary term ${np[2]} > old ${p[2]}`);
      assert.match(c.log(next), /"event":"hook_finished","hook":"onRoleChange","role":"primary"[^\n]*"exitCode":0/);

      // onStop on a clean stop.
      c.kill(sick, 'SIGTERM');
      await c.waitExit(sick);
      assert.equal(hookLines(hooks(sick)).at(-1)?.[0], 'onStop');
    } finally {
      for (let i = 0; i < 3; i++) {
        rmSync(flag(i), { force: true });
        rmSync(hooks(i), { force: true });
      }
    }
  });
});
