// Switchover through real processes: scheduled with `at` (it happens; a
// cancelled one does not), and a lagging target (SIGSTOPped, then written
// past) refused with how far behind it is.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

describe('switchover: scheduled, cancelled, lagging target refused', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('schedule 1 s ahead: it happens and is logged; a cancelled one does not', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const leader = await c.waitLeader();
    const target = [0, 1, 2].find((i) => i !== leader)!;
    const targetName = c.nodes[target]!.name;
    await c.client().kvPut('warm', 'up');
    // The follower forwards once it knows the leader's API URL (recorded in the membership after the election).
    await waitFor('the follower knows the leader\'s API URL', async () => (await http(c!.nodes[target]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body['leaderApiUrl'] !== null, 10_000);
    // Sent to a follower: forwarded to the leader, which keeps the schedule.
    const s = await http(c.nodes[target]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { to: targetName, at: '+1s' } });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.equal((s.body['scheduled'] as Record<string, unknown>)['to'], targetName);
    const shown = await http(c.nodes[target]!.url, 'GET', '/v1/cluster/switchover', { token: TOKEN });
    assert.equal((shown.body['scheduled'] as Record<string, unknown>)['to'], targetName, JSON.stringify(shown.body));
    await waitFor(`${targetName} leads after the scheduled switchover`, async () => (await c!.waitLeader()) === target, 10_000);
    await waitFor('the old leader logs the outcome', () => c!.log(leader).includes('scheduled_switchover_done'), 5000);

    // Scheduled, then cancelled: leadership stays.
    const l2 = await c.waitLeader();
    const t2 = [0, 1, 2].find((i) => i !== l2)!;
    const s2 = await http(c.nodes[l2]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { at: new Date(Date.now() + 1500).toISOString() } });
    assert.equal(s2.status, 200, JSON.stringify(s2.body));
    const again = await http(c.nodes[l2]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { at: '+1m' } });
    assert.equal(again.status, 409);
    assert.equal(again.body['error'], 'switchover_scheduled');
    const del = await http(c.nodes[t2]!.url, 'DELETE', '/v1/cluster/switchover', { token: TOKEN });
    assert.equal(del.status, 200, JSON.stringify(del.body));
    const del2 = await http(c.nodes[l2]!.url, 'DELETE', '/v1/cluster/switchover', { token: TOKEN });
    assert.equal(del2.status, 404);
    await sleep(2000);
    assert.equal(await c.waitLeader(), l2);
    const none = await http(c.nodes[l2]!.url, 'GET', '/v1/cluster/switchover', { token: TOKEN });
    assert.equal(none.body['scheduled'], null);
    assert.equal((none.body['lastRun'] as Record<string, unknown> | null), null);
  });

  test('a lagging target is refused with the entries and ms it is behind', async () => {
    assert.ok(c);
    const leader = await c.waitLeader();
    const lag = [0, 1, 2].find((i) => i !== leader)!;
    c.kill(lag, 'SIGSTOP');
    try {
      const client = c.client({ urls: [c.nodes[leader]!.url] });
      for (let n = 0; n < 25; n++) await client.kvPut(`lag/${n}`, 'x');
      await sleep(1300); // more than the election timeout (1 s)
      const r = await http(c.nodes[leader]!.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { to: c.nodes[lag]!.name } });
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.equal(r.body['error'], 'target_not_caught_up');
      assert.equal(r.body['target'], c.nodes[lag]!.name);
      assert.ok((r.body['behindEntries'] as number) >= 25, JSON.stringify(r.body));
      assert.ok((r.body['behindMs'] as number) >= 1000, JSON.stringify(r.body));
      assert.match(String(r.body['message']), new RegExp(`${c.nodes[lag]!.name} is not caught up: \\d+ entries and \\d+ ms behind the leader`));
      assert.equal(await c.waitLeader(), leader);
    } finally {
      c.kill(lag, 'SIGCONT');
    }
  });
});
