// A rolling upgrade of the replicated data format. One node runs as the
// previous release (QUORATE_TEST_FEATURE_LEVEL=1: it announces feature level 1
// and stops on a format-2 entry, as an old binary would). While it is a
// member the leader writes format-1 KV commands and that node keeps applying
// them; once it restarts as this release (level 3) the cluster level becomes
// 3 (format-2 envelopes arrived with level 2), the leader writes format-2
// envelopes, every node applies them, and an idempotency key recorded before
// the switch still deduplicates after it. A member at level 2 (the release
// before pause/drain reasons and expiries) keeps the cluster at 2: the leader
// refuses a pause with a reason until that member is upgraded.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FEATURE_LEVEL } from '../../src/node/features.js';
import { TOKEN, TestCluster, http, waitFor } from './harness.js';

const OLD = 2;

async function statusOf(c: TestCluster, i: number): Promise<Record<string, unknown>> {
  return (await http(c.nodes[i]!.url, 'GET', '/v1/cluster/status', { token: TOKEN })).body;
}

/** Commands this node applied since it started, by entry format (from /metrics). */
async function appliedByFormat(c: TestCluster, i: number, format: 1 | 2): Promise<number> {
  const text = String((await http(c.nodes[i]!.url, 'GET', '/metrics', { token: TOKEN })).body['text'] ?? '');
  const m = new RegExp(`quorate_applied_commands_by_format\\{format="${format}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : -1;
}

async function dump(c: TestCluster, i: number): Promise<{ appliedIndex: number; revision: number; checksum: string }> {
  return (await http(c.nodes[i]!.url, 'GET', '/v1/cluster/dump?checksum=true', { token: TOKEN })).body as never;
}

async function staleGet(c: TestCluster, i: number, key: string): Promise<unknown> {
  const r = await http(c.nodes[i]!.url, 'GET', `/v1/kv/${key}?consistency=stale`, { token: TOKEN });
  return r.status === 200 ? r.body['value'] : undefined;
}

describe('rolling upgrade of the entry format', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('format 1 while a member is at level 1; format 2 once it is upgraded; sessions span the switch', async () => {
    c = await TestCluster.start({ nodes: 3, env: (i) => (i === OLD ? { QUORATE_TEST_FEATURE_LEVEL: '1' } : undefined) });
    const cl = c;
    await cl.waitLeader();
    await waitFor('the old node to say it runs as level 1', () => /"event":"test_feature_level"/.test(cl.log(OLD)));
    const client = cl.client();

    // Before the upgrade: every write is a format-1 KV command.
    const first = await client.kvPut('up/a', 'one', { idempotencyKey: 'upgrade-key-1' });
    for (let i = 0; i < 10; i++) await client.kvPut(`up/before/${i}`, `b${i}`);
    const leader = await cl.waitLeader();
    assert.equal((await statusOf(cl, leader))['featureLevel'], 1);
    await waitFor('the old node applies the writes', async () => (await staleGet(cl, OLD, 'up/before/9')) === 'b9');
    assert.equal(cl.nodes[OLD]!.exitCode, undefined, 'the old node is still running');
    for (let i = 0; i < 3; i++) {
      assert.equal(await appliedByFormat(cl, i, 2), 0, `node ${i} applied no format-2 entry before the upgrade`);
      assert.ok((await appliedByFormat(cl, i, 1)) >= 11, `node ${i} applied the format-1 writes`);
    }

    // The upgrade: the old node restarts as this release.
    cl.kill(OLD, 'SIGTERM');
    assert.equal(await cl.waitExit(OLD), 0);
    cl.startNode(OLD);
    await cl.waitReady(OLD);
    await waitFor(`the leader computes cluster feature level ${FEATURE_LEVEL} (every member runs this release)`, async () => (await statusOf(cl, await cl.waitLeader()))['featureLevel'] === FEATURE_LEVEL);

    // The retry of a write recorded before the switch is answered from its session record, not applied again.
    const revBefore = (await dump(cl, await cl.waitLeader())).revision;
    const again = await client.kvPut('up/a', 'one', { idempotencyKey: 'upgrade-key-1' });
    assert.equal(again.revision, first.revision);
    // A reused key for a different write is refused across the switch too.
    const reused = await http(cl.nodes[await cl.waitLeader()]!.url, 'PUT', '/v1/kv/up/a', { token: TOKEN, body: { value: 'two' }, headers: { 'idempotency-key': 'upgrade-key-1' } });
    assert.equal(reused.body['code'] ?? reused.body['error'], 'idempotency_key_reused');
    assert.equal((await dump(cl, await cl.waitLeader())).revision, revBefore, 'nothing was applied twice');

    for (let i = 0; i < 10; i++) await client.kvPut(`up/after/${i}`, `a${i}`, { idempotencyKey: `after-${i}` });
    const leaderNow = await cl.waitLeader();
    const target = await dump(cl, leaderNow);
    // Every node, the upgraded one included, applies the format-2 entries and reaches the same state.
    for (let i = 0; i < 3; i++) {
      await waitFor(`node ${i} reaches applied index ${target.appliedIndex}`, async () => (await dump(cl, i)).appliedIndex >= target.appliedIndex);
      assert.ok((await appliedByFormat(cl, i, 2)) >= 10, `node ${i} applied the format-2 writes`);
      assert.equal(await staleGet(cl, i, 'up/after/9'), 'a9');
      assert.equal(await staleGet(cl, i, 'up/before/9'), 'b9');
    }
    const sums = await Promise.all([0, 1, 2].map(async (i) => dump(cl, i)));
    if (sums.every((s) => s.appliedIndex === sums[0]!.appliedIndex)) assert.equal(new Set(sums.map((s) => s.checksum)).size, 1, 'same state on every node');
    for (let i = 0; i < 3; i++) assert.equal(cl.nodes[i]!.exitCode, undefined, `node ${i} is running`);
    assert.doesNotMatch(cl.log(OLD), /command_version_unsupported/);
  });
});

/** Snapshot installs this node logged (its log file spans restarts). */
function installs(c: TestCluster, i: number): number {
  return (c.log(i).match(/"event":"snapshot_installed"/g) ?? []).length;
}

/** Whether a snapshot file in node i's data dir holds `magic` ("QKVS": legacy, "QSMS": composite). */
function storedSnapshotHas(c: TestCluster, i: number, magic: string): boolean {
  const dir = join(c.nodes[i]!.dir, 'raft', 'snap');
  return readdirSync(dir).some((f) => !f.endsWith('.tmp') && readFileSync(join(dir, f)).includes(magic));
}

describe('rolling upgrade of the snapshot format', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('a level-1 node installs a snapshot taken while the cluster level is 1 (legacy QKVS); after the upgrade a composite snapshot (QSMS) is taken and installed', async () => {
    c = await TestCluster.start({
      nodes: 3,
      cluster: { snapshotEntries: 100, snapshotTrailingEntries: 0 },
      env: (i) => (i === OLD ? { QUORATE_TEST_FEATURE_LEVEL: '1' } : undefined),
    });
    const cl = c;
    await cl.waitLeader();
    const client = cl.client();
    const first = await client.kvPut('snap/first', 'x', { idempotencyKey: 'snap-key-1' });
    await waitFor('the old node applies the first write', async () => (await staleGet(cl, OLD, 'snap/first')) === 'x');

    // The old node misses enough writes for the leader to snapshot and compact past it (a node snapshots
    // after 0.75 to 1.25 times snapshotEntries: cluster.snapshotEntries in docs/configuration.md).
    cl.kill(OLD, 'SIGTERM');
    assert.equal(await cl.waitExit(OLD), 0);
    for (let i = 0; i < 160; i++) await client.kvPut(`snap/old/${i}`, `o${i}`);
    const leader = await cl.waitLeader();
    await waitFor('the leader takes a snapshot', () => /"event":"snapshot_taken"/.test(cl.log(leader)));
    assert.ok(storedSnapshotHas(cl, leader, 'QKVS'), 'at cluster level 1 the snapshot is in the legacy format');

    // Back as the previous release: it can only catch up through that snapshot.
    const before = installs(cl, OLD);
    cl.startNode(OLD, { QUORATE_TEST_FEATURE_LEVEL: '1' });
    await cl.waitReady(OLD);
    await waitFor('the old node installs the snapshot', () => installs(cl, OLD) > before, 30_000);
    await client.kvPut('snap/after-install', 'y');
    await waitFor('the old node applies later writes', async () => (await staleGet(cl, OLD, 'snap/after-install')) === 'y');
    assert.equal(await staleGet(cl, OLD, 'snap/old/159'), 'o159');
    assert.equal(cl.nodes[OLD]!.exitCode, undefined, 'the old node is still running');
    assert.doesNotMatch(cl.log(OLD), /snapshot_corrupt|snapshot_version_unsupported/);

    // The upgrade.
    cl.kill(OLD, 'SIGTERM');
    assert.equal(await cl.waitExit(OLD), 0);
    cl.startNode(OLD);
    await cl.waitReady(OLD);
    await waitFor(`the leader computes cluster feature level ${FEATURE_LEVEL} (every member runs this release)`, async () => (await statusOf(cl, await cl.waitLeader()))['featureLevel'] === FEATURE_LEVEL);

    // A follower falls behind while still connected (stopped, not disconnected: the level stays 3), the
    // leader snapshots in the composite format and compacts past it, then the follower restarts.
    const lead = await cl.waitLeader();
    const f = [0, 1, 2].find((i) => i !== lead)!;
    const fBefore = installs(cl, f);
    const toLeader = cl.client({ urls: [cl.nodes[lead]!.url] });
    cl.kill(f, 'SIGSTOP');
    const taken = (cl.log(lead).match(/"event":"snapshot_taken"/g) ?? []).length;
    for (let i = 0; i < 160; i++) await toLeader.kvPut(`snap/new/${i}`, `n${i}`);
    await waitFor('the leader takes another snapshot', () => (cl.log(lead).match(/"event":"snapshot_taken"/g) ?? []).length > taken);
    assert.ok(storedSnapshotHas(cl, lead, 'QSMS'), 'at cluster level 3 the snapshot is in the composite format');
    cl.kill(f, 'SIGKILL');
    await cl.waitExit(f);
    cl.startNode(f);
    await cl.waitReady(f);
    await waitFor('the restarted follower installs the composite snapshot', () => installs(cl, f) > fBefore, 30_000);
    assert.ok(storedSnapshotHas(cl, f, 'QSMS'));
    await client.kvPut('snap/last', 'z');
    for (let i = 0; i < 3; i++) await waitFor(`node ${i} applies the last write`, async () => (await staleGet(cl, i, 'snap/last')) === 'z');
    assert.equal(await staleGet(cl, f, 'snap/new/159'), 'n159');
    // The session recorded before both snapshots (carried by the legacy one, then the composite one) still answers a retry.
    const again = await client.kvPut('snap/first', 'x', { idempotencyKey: 'snap-key-1' });
    assert.equal(again.revision, first.revision);
    const sums = await Promise.all([0, 1, 2].map(async (i) => dump(cl, i)));
    if (sums.every((s) => s.appliedIndex === sums[0]!.appliedIndex)) assert.equal(new Set(sums.map((s) => s.checksum)).size, 1, 'same state on every node');
    for (let i = 0; i < 3; i++) assert.equal(cl.nodes[i]!.exitCode, undefined, `node ${i} is running`);
  });
});

describe('rolling upgrade from level 2: pause and drain reasons wait for every member', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('a level-2 member keeps the cluster at 2: a pause with a reason is refused naming level 3, a plain pause works; after its upgrade the reason is kept', async () => {
    c = await TestCluster.start({ nodes: 3, env: (i) => (i === OLD ? { QUORATE_TEST_FEATURE_LEVEL: '2' } : undefined) });
    const cl = c;
    const lead = await cl.waitLeader();
    await waitFor('the leader computes cluster feature level 2', async () => (await statusOf(cl, await cl.waitLeader()))['featureLevel'] === 2);
    const refused = await http(cl.nodes[lead]!.url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'kernel upgrade', expiresInMs: 60_000 } });
    assert.notEqual(refused.status, 200);
    assert.match(JSON.stringify(refused.body), /feature level 3 \(this cluster is at 2/);
    const plain = await http(cl.nodes[lead]!.url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: {} });
    assert.equal(plain.status, 200, JSON.stringify(plain.body));
    assert.equal(plain.body['paused'], true);
    assert.equal(plain.body['pause'], undefined);
    await waitFor('the level-2 node applies the pause', async () => (await http(cl.nodes[OLD]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body['paused'] === true);
    assert.equal(cl.nodes[OLD]!.exitCode, undefined, 'the level-2 node is running');
    const resumed = await http(cl.nodes[lead]!.url, 'POST', '/v1/cluster/resume', { token: TOKEN, body: {} });
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));

    cl.kill(OLD, 'SIGTERM');
    assert.equal(await cl.waitExit(OLD), 0);
    cl.startNode(OLD);
    await cl.waitReady(OLD);
    await waitFor(`the leader computes cluster feature level ${FEATURE_LEVEL}`, async () => (await statusOf(cl, await cl.waitLeader()))['featureLevel'] === FEATURE_LEVEL);
    const held = await http(cl.nodes[await cl.waitLeader()]!.url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'kernel upgrade' } });
    assert.equal(held.status, 200, JSON.stringify(held.body));
    for (let i = 0; i < 3; i++) {
      await waitFor(`node ${i} shows the reason`, async () => ((await http(cl.nodes[i]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body['pause'] as { reason?: string } | undefined)?.reason === 'kernel upgrade');
    }
  });
});
