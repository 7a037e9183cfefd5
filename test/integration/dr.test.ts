// DR promotion with cluster generations, failback, and forced recovery, with
// real node processes (docs/operations.md "DR promotion and failback",
// "Forced recovery"): the promoted node serves, old-generation nodes are
// refused and never truncate it, and they come back only by enrollment.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAIN, TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

type Rec = Record<string, unknown>;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [MAIN, ...args], { timeout: 90_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

async function st(url: string): Promise<Rec> {
  return (await http(url, 'GET', '/v1/cluster/status', { token: TOKEN })).body;
}

async function get(url: string, key: string): Promise<{ status: number; value: unknown }> {
  const r = await http(url, 'GET', `/v1/kv/${encodeURIComponent(key)}`, { token: TOKEN });
  return { status: r.status, value: r.body['value'] };
}

/** Restart old node i with a join token from the leader at `leaderUrl`, enroll it with --force, wait until it is a voter. */
async function failBack(c: TestCluster, i: number, leaderUrl: string): Promise<Rec> {
  const tok = await http(leaderUrl, 'POST', '/v1/cluster/join-tokens', { token: TOKEN, body: {} });
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  c.startNode(i, { QUORATE_JOIN_TOKEN: tok.body['token'] as string });
  const nd = c.nodes[i]!;
  await waitFor(`${nd.name} waits to be enrolled`, async () => (await http(nd.url, 'GET', '/v1/cluster/join-info').catch(() => ({ status: 0 }))).status === 200, 15_000);
  const info = await http(nd.url, 'GET', '/v1/cluster/join-info');
  // Its data is of the old generation: refused without force.
  const refused = await http(leaderUrl, 'POST', '/v1/cluster/enroll', { token: TOKEN, body: { apiUrl: nd.url, peerUrl: info.body['peerUrl'], role: 'voter' }, timeoutMs: 60_000 });
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  const r = await http(leaderUrl, 'POST', '/v1/cluster/enroll', { token: TOKEN, body: { apiUrl: nd.url, peerUrl: info.body['peerUrl'], role: 'voter', force: true }, timeoutMs: 60_000 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.match(String(r.body['backupDir']), /\.backup-/);
  await waitFor(`${nd.name} is a voter again`, async () => ((await st(leaderUrl))['peers'] as Rec[]).some((p) => p['nodeName'] === nd.name && p['role'] === 'standby'), 30_000);
  return r.body;
}

describe('DR promotion with cluster generations', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('3 voters + 1 DR: voters lost, promote-dr needs --confirm, the DR node serves with the lag reported; old-generation nodes are refused and never truncate it; failback by enroll and switchover', async () => {
    const t0 = Date.now();
    c = await TestCluster.start({ nodes: 4, roles: ['voter', 'voter', 'voter', 'dr'] });
    const dr = c.nodes[3]!;
    const leader = c.nodes[await c.waitLeader(40_000)]!.url;
    const voters = c.nodes.slice(0, 3).map((n) => n.url);
    for (let n = 0; n < 40; n++) await c.client({ urls: voters }).kvPut(`before/${n}`, `v${n}`);
    const commit = Number((await st(leader))['commitIndex']);
    await waitFor('the DR node has applied the writes', async () => Number((await st(dr.url))['appliedIndex']) >= commit, 20_000);

    // The primary site is lost.
    for (const i of [0, 1, 2]) c.kill(i);
    for (const i of [0, 1, 2]) await c.waitExit(i);

    const noConfirm = await cli(['promote-dr', '--url', dr.url, '--token', TOKEN, '--node', dr.name]);
    assert.equal(noConfirm.code, 1, noConfirm.stdout + noConfirm.stderr);
    assert.match(noConfirm.stderr, /confirm/);
    assert.equal((await st(dr.url))['role'], 'dr', 'nothing was changed');

    const promoted = await cli(['promote-dr', '--url', dr.url, '--token', TOKEN, '--node', dr.name, '--confirm', '--json']);
    assert.equal(promoted.code, 0, promoted.stdout + promoted.stderr);
    const p = JSON.parse(promoted.stdout) as Rec;
    const lag = p['lag'] as Rec;
    assert.equal(p['generation'], 1);
    assert.equal(lag['entries'], 0, 'it had applied every commit it heard of');
    assert.equal(typeof lag['ms'], 'number');
    assert.ok(Number(lag['lastCommitHeard']) >= commit, JSON.stringify(lag));
    assert.deepEqual((p['dropped'] as string[]).sort(), ['node1', 'node2', 'node3']);
    process.stdout.write(`# quorate promote-dr --json:\n${promoted.stdout.replace(/^/gm, '# ')}\n`);

    // The DR node serves reads and writes alone.
    await waitFor('the DR node leads', async () => (await http(dr.url, 'GET', '/system/health/leader')).status === 200, 20_000);
    for (let n = 0; n < 10; n++) await c.client({ urls: [dr.url] }).kvPut(`after/${n}`, `a${n}`);
    assert.equal((await get(dr.url, 'before/39')).value, 'v39');
    await waitFor('the history records the promotion', async () => ((await http(dr.url, 'GET', '/v1/cluster/history', { token: TOKEN })).body['records'] as Rec[])
      .some((r) => r['kind'] === 'leader' && r['reason'] === 'promotion' && r['leaderName'] === dr.name), 10_000);
    const drLast = Number((await st(dr.url))['lastIndex']);

    // Two old voters come back with their old data: a quorum of the old configuration, with a term at least as high.
    c.startNode(0);
    c.startNode(1);
    await waitFor('the DR node refuses the old generation', () => /peer_refused_generation/.test(c!.log(3)), 30_000);
    await waitFor('an old node learns it was superseded and stops serving', async () => (await st(c!.nodes[0]!.url).catch((): Rec => ({})))['role'] === 'removed' || (await st(c!.nodes[1]!.url).catch((): Rec => ({})))['role'] === 'removed', 30_000);
    await sleep(2000); // two election timeouts: whatever the old nodes do, they never reach the DR node
    for (let n = 0; n < 10; n++) assert.equal((await get(dr.url, `after/${n}`)).value, `a${n}`, 'the promoted node kept its writes');
    assert.ok(Number((await st(dr.url))['lastIndex']) >= drLast, 'its log never went back');
    assert.match(c.log(3), /cluster generation 0, this cluster is at generation 1/);
    c.kill(0, 'SIGTERM');
    c.kill(1, 'SIGTERM');
    await c.waitExit(0);
    await c.waitExit(1);

    // Failback: the old nodes are enrolled into the promoted cluster (their data moved aside), then leadership moves back.
    await failBack(c, 0, dr.url);
    await failBack(c, 1, dr.url);
    const sw = await http(dr.url, 'POST', '/v1/cluster/switchover', { token: TOKEN, body: { to: 'node1' } });
    assert.equal(sw.status, 200, JSON.stringify(sw.body));
    await waitFor('node1 leads again', async () => (await http(c!.nodes[0]!.url, 'GET', '/system/health/leader')).status === 200, 20_000);
    assert.equal((await get(c.nodes[0]!.url, 'after/9')).value, 'a9');
    assert.equal((await get(c.nodes[1]!.url, 'before/0')).value, 'v0');
    await c.client({ urls: [c.nodes[0]!.url] }).kvPut('failback', 'done');
    process.stdout.write(`# promote-dr scenario took ${Date.now() - t0} ms\n`);
  });
});

describe('forced recovery', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('a lone survivor of 3 becomes a one-voter cluster with recover --force-new-cluster --yes; an old node restarted with its data is refused and serves nothing', async () => {
    c = await TestCluster.start({ nodes: 3 });
    await c.waitLeader(40_000);
    for (let n = 0; n < 20; n++) await c.client().kvPut(`k/${n}`, `v${n}`);
    const survivor = c.nodes[0]!;
    await waitFor('node1 applied every write', async () => (await get(survivor.url, 'k/19')).value === 'v19', 20_000);
    c.kill(1);
    c.kill(2);
    c.kill(0, 'SIGTERM');
    for (const i of [0, 1, 2]) await c.waitExit(i);

    const dry = await cli(['recover', '--force-new-cluster', '--data-dir', survivor.dir]);
    assert.equal(dry.code, 1, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /not known committed/);
    assert.match(dry.stdout, /Nothing was changed\. Repeat with --yes/);
    const done = await cli(['recover', '--force-new-cluster', '--data-dir', survivor.dir, '--yes']);
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.match(done.stdout, /generation:\s+0 -> 1/);
    process.stdout.write(`# quorate recover --force-new-cluster --yes:\n${done.stdout.replace(/^/gm, '# ')}\n`);

    c.startNode(0);
    await waitFor('the survivor leads alone', async () => (await http(survivor.url, 'GET', '/system/health/leader').catch(() => ({ status: 0 }))).status === 200, 20_000);
    assert.equal((await get(survivor.url, 'k/19')).value, 'v19');
    await c.client({ urls: [survivor.url] }).kvPut('recovered', 'yes');

    // node2 restarts with its old data: refused, it never rejoins by itself.
    c.startNode(1);
    await waitFor('the survivor refuses the old generation', () => /peer_refused_generation/.test(c!.log(0)), 30_000);
    await waitFor('node2 hears it was superseded and serves no data', async () => (await st(c!.nodes[1]!.url).catch((): Rec => ({})))['role'] === 'removed', 20_000);
    assert.equal((await get(survivor.url, 'recovered')).value, 'yes', 'the survivor kept its writes');
    // (Coming back by enrollment is the failback path of the DR test above.)
  });
});
