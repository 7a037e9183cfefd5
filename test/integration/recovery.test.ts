// Durability and bad input on disk and in config, with real processes:
// catch-up by snapshot after compaction, a corrupt log record detected on
// restart, a bad config naming the key, a clean exit on SIGTERM.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAIN, TOKEN, TestCluster, http, sleep, snapshotNow } from './harness.js';

describe('recovery', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('a follower restarted after the log was compacted past it catches up by snapshot', async () => {
    c = await TestCluster.start({ nodes: 3, cluster: { snapshotEntries: 200, snapshotTrailingEntries: 20 } });
    const leader = await c.waitLeader();
    const lagger = (leader + 1) % 3;
    c.kill(lagger);
    await c.waitExit(lagger);
    const client = c.client({ urls: c.nodes.map((n) => n.url).filter((_, i) => i !== lagger) });
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 60; i++) await client.kvPut(`snap/${w}/${i}`, `v${i}`);
      }),
    );
    const snap = await snapshotNow(c.nodes[leader]!.url, TOKEN);
    assert.equal(snap.status, 200, JSON.stringify(snap.body));
    c.startNode(lagger);
    await c.waitReady(lagger);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await http(c.nodes[lagger]!.url, 'GET', '/v1/kv/snap/7/59?consistency=stale', { token: TOKEN });
      if (r.status === 200 && r.body['value'] === 'v59') break;
      assert.ok(Date.now() < deadline, `lagging node caught up (last status ${r.status})`);
      await sleep(50);
    }
    assert.match(c.log(lagger), /installed snapshot/);
  });

  test('a corrupt log record is detected on restart: the node refuses to start, naming the file and byte offset', async () => {
    assert.ok(c);
    const victim = (await c.waitLeader() + 2) % 3;
    c.kill(victim, 'SIGTERM');
    assert.equal(await c.waitExit(victim), 0, 'clean exit on SIGTERM');
    const walDir = join(c.nodes[victim]!.dir, 'raft', 'wal');
    const seg = readdirSync(walDir).filter((f) => f.endsWith('.seg')).sort()[0]!;
    const path = join(walDir, seg);
    const buf = readFileSync(path);
    // Segments are preallocated (a zero tail follows the records): flip a byte
    // inside the records, well before their end (not a torn final record).
    let end = buf.length;
    while (end > 0 && buf[end - 1] === 0) end--;
    assert.ok(end > 4096, 'segment has records');
    const off = Math.floor(end / 3);
    buf[off] = buf[off]! ^ 0xff;
    writeFileSync(path, buf);
    c.startNode(victim);
    const code = await c.waitExit(victim, 20_000);
    assert.notEqual(code, 0);
    const log = c.log(victim);
    assert.match(log, /corrupt/i);
    assert.ok(log.includes(seg), 'the message names the segment file');
    assert.match(log, /offset \d+/);
  });
});

describe('a failed automatic snapshot', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('stops the node through its fatal path with a log line naming the snapshot (no unhandled rejection)', async () => {
    c = await TestCluster.start({ nodes: 1, cluster: { snapshotEntries: 100, snapshotTrailingEntries: 10 } });
    await c.waitLeader();
    // The snapshot directory becomes unusable (as on a full or failing disk).
    const snapDir = join(c.nodes[0]!.dir, 'raft', 'snap');
    rmSync(snapDir, { recursive: true, force: true });
    writeFileSync(snapDir, 'not a directory');
    const client = c.client({ timeoutMs: 3000 });
    // A node snapshots after 0.75 to 1.25 times snapshotEntries.
    for (let i = 0; i < 200 && c.nodes[0]!.exitCode === undefined; i++) await client.kvPut(`fill/${i}`, 'x').catch(() => undefined);
    const code = await c.waitExit(0, 20_000);
    assert.equal(code, 1);
    const log = c.log(0);
    assert.match(log, /"event":"node_failed".*writing the snapshot at index \d+ failed/);
    assert.match(log, /"event":"agent_exit"/);
    assert.doesNotMatch(log, /UnhandledPromiseRejection|triggerUncaughtException/);
  });
});

describe('configuration errors', () => {
  test('a bad config stops the agent with exit 2 and names the key path', () => {
    const dir = process.env['TMPDIR'] ?? '/tmp';
    const run = (obj: unknown) => {
      const path = join(dir, `quorate-bad-${process.pid}.json`);
      writeFileSync(path, JSON.stringify(obj));
      const r = spawnSync(process.execPath, [MAIN, 'agent', '--config', path], { encoding: 'utf8', timeout: 20_000 });
      return { status: r.status, out: r.stdout + r.stderr };
    };
    const unknown = run({ cluster: { bogus: 1 } });
    assert.equal(unknown.status, 2);
    assert.match(unknown.out, /cluster\.bogus: unknown key/);
    const impossible = run({ cluster: { electionTimeoutMs: 300, heartbeatIntervalMs: 100 } });
    assert.equal(impossible.status, 2);
    assert.match(impossible.out, /cluster\.electionTimeoutMs: must be at least 5 × heartbeatIntervalMs/);
  });
});
