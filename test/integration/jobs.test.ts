// Leader-only scheduled jobs with real processes: a job every second records
// its slot, fencing token and pid; the leader is killed with -9 twice.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('leader-only jobs (real processes)', () => {
  let c: TestCluster | undefined;
  const scratch = mkdtempSync(join(tmpdir(), 'quorate-jobs-'));
  after(async () => {
    await c?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('across kill -9 of the leader: no slot started twice, tokens never decrease, no job outlives its agent, every run recorded', async () => {
    const out = join(scratch, 'runs.log');
    // Each run records its slot, fencing token and shell pid, then sleeps past the next slots.
    const command = `echo "$QUORATE_JOB_SLOT $QUORATE_FENCING_TOKEN $$" >> ${out}; sleep 2`;
    c = await TestCluster.start({ nodes: 3, jobs: [{ name: 'tick', schedule: '* * * * * *', command, timeoutSeconds: 30 }] });
    const lines = (): { slot: string; token: number; pid: number }[] => (existsSync(out) ? readFileSync(out, 'utf8') : '').split('\n').filter((l) => l !== '').map((l) => {
      const [slot, token, pid] = l.split(' ');
      return { slot: slot!, token: Number(token), pid: Number(pid) };
    });
    const killed: { term: number; at: number }[] = [];
    let leader = await c.waitLeader();
    for (let round = 0; round < 2; round++) {
      const before = lines().length;
      await waitFor('the leader runs the job', () => lines().length >= before + 2, 30_000);
      const term = lines().at(-1)!.token;
      c.kill(leader);
      await c.waitExit(leader);
      killed.push({ term, at: Date.now() });
      const next = await c.waitLeader(30_000, [leader]);
      c.startNode(leader); // back as a follower, so the next kill leaves a quorum
      leader = next;
    }
    const before = lines().length;
    await waitFor('the last leader runs the job', () => lines().length >= before + 2, 30_000);
    await sleep(1500);

    const got = lines();
    const slots = got.map((l) => l.slot);
    assert.equal(new Set(slots).size, slots.length, `no slot started twice: ${slots.join(', ')}`);
    for (let i = 1; i < got.length; i++) assert.ok(got[i]!.token >= got[i - 1]!.token, `tokens never decrease: ${got.map((l) => l.token).join(' ')}`);
    for (const k of killed) {
      for (const l of got.filter((x) => x.token === k.term)) assert.equal(alive(l.pid), false, `job pid ${l.pid} of the killed leader (term ${k.term}) is gone`);
    }
    // The replicated history has every started run; runs of the killed leaders that did not end are interrupted.
    const r = await http(c.nodes[leader]!.url, 'GET', '/v1/jobs/tick/runs', { token: TOKEN });
    assert.equal(r.status, 200);
    const runs = r.body['runs'] as { slot: string; term: number; outcome: string; node: string }[];
    const bySlot = new Map(runs.map((x) => [x.slot, x]));
    for (const l of got) {
      const run = bySlot.get(l.slot);
      assert.ok(run !== undefined, `slot ${l.slot} is in the history`);
      assert.equal(run.term, l.token);
    }
    for (const run of runs) {
      if (killed.some((k) => k.term === run.term)) assert.ok(['ran', 'interrupted', 'skipped'].includes(run.outcome), `run of a killed leader: ${run.outcome}`);
      else assert.ok(['ran', 'skipped', 'running'].includes(run.outcome), `run of the live leader: ${run.outcome}`);
    }
    assert.ok(runs.some((x) => x.outcome === 'interrupted'), 'a run cut short by a kill is recorded as interrupted');
    const ls = await http(c.nodes[leader]!.url, 'GET', '/v1/jobs', { token: TOKEN });
    assert.equal((ls.body['jobs'] as { name: string }[])[0]!.name, 'tick');
  });
});
