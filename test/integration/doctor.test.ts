// `quorate doctor` and `quorate status --watch` against real node processes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MAIN, READER_TOKEN, TestCluster, waitFor } from './harness.js';

const run = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
  try {
    const r = await promisify(execFile)(process.execPath, [MAIN, ...args], { timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

type Check = { check: string; result: string; detail: string };

describe('quorate doctor and status --watch', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('doctor passes on a healthy cluster and fails, naming the node, when a voter is down', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const leader = await c.waitLeader();
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    const url = c.nodes[leader]!.url;
    let healthy: { ok: boolean; checks: Check[] } | undefined;
    // Right after the election a follower may still be settling: wait for a clean bill.
    await waitFor('doctor passes', async () => {
      const r = await run(['doctor', '--url', url, '--token', READER_TOKEN, '--json']);
      healthy = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] };
      return r.code === 0 && healthy.checks.every((x) => x.result === 'pass');
    }, 15_000);
    const names = healthy!.checks.map((x) => x.check);
    for (const n of ['every node online', 'leader and quorum', 'replication', 'load-balancer endpoints', 'clocks', 'storage', 'versions']) assert.ok(names.includes(n), `check ${n} ran: ${names.join(', ')}`);

    c.kill(follower);
    const r = await run(['doctor', '--url', url, '--token', READER_TOKEN]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`every node online\\s+FAIL\\s+${c.nodes[follower]!.name}: unreachable`));
    assert.match(r.stdout, /Some checks FAILED/);
    process.stdout.write(`# quorate doctor with a voter down:\n${r.stdout.replace(/^/gm, '# ')}\n`);
  });

  test('status --watch --count 2 --json prints one line per refresh', async () => {
    const leader = await c!.waitLeader();
    const r = await run(['status', '--watch', '--interval', '300ms', '--count', '2', '--json', '--url', c!.nodes[leader]!.url, '--token', READER_TOKEN]);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2, r.stdout);
    for (const l of lines) assert.ok('leaderNode' in (JSON.parse(l) as Record<string, unknown>));
    assert.equal((await run(['status', '--watch', '--interval', '10ms', '--url', c!.nodes[leader]!.url])).code, 2);
  });
});
