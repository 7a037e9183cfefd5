// `quorate drill --rounds 1` for each fault kind (crash, pause, isolate,
// switchover) against a real 3-node `quorate demo` (child processes on
// loopback; the demo restarts a node its crash fault killed): every report
// has RPO 0 (no acknowledged write missing when read back), an RTO, a
// rejoined target, and is kept in the cluster (`quorate drill --history`).
// Then the refusals: without --confirm, and with a voter frozen (failure
// tolerance 0: not failover-safe) unless --force.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, OPERATOR_TOKEN, READER_TOKEN, TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';
import type { DrillReport } from '../../src/drill/report.js';
import { reserveDemoPorts } from '../support/ports.js';

interface Run { code: number | null; stdout: string; stderr: string }

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env['PATH'] ?? '' }, cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function pidOf(pattern: string): number | undefined {
  const r = spawnSync('pgrep', ['-f', pattern], { encoding: 'utf8' });
  const pid = Number(r.stdout.trim().split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

test('quorate drill: one round of each fault against a 3-node demo, RPO 0, reports kept; refusals', { timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-drill-'));
  const base = await reserveDemoPorts(3);
  const demo = spawn(process.execPath, [MAIN, 'demo', '--nodes', '3', '--base-port', String(base), '--dir', join(dir, 'd')], {
    env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  demo.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  demo.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<void>((r) => demo.once('exit', () => r()));
  let frozen: number | undefined;
  t.after(async () => {
    if (frozen !== undefined) try { process.kill(frozen, 'SIGCONT'); } catch { /* gone */ }
    demo.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor('the demo cluster is ready', () => out.includes('Press Ctrl-C'), 60_000);
  const token = readFileSync(join(dir, 'd', 'node1', 'admin.token'), 'utf8').trim();
  const urls = [0, 1, 2].map((k) => `http://127.0.0.1:${base + k}`).join(',');
  const common = ['--url', urls, '--token', token, '--json'];

  // Refused without --confirm: nothing happens.
  const unconfirmed = await cli(['drill', ...common]);
  assert.equal(unconfirmed.code, 1);
  assert.match(unconfirmed.stderr, /nothing was done[\s\S]*--confirm/);

  const rtos: Record<string, number> = {};
  for (const fault of ['crash', 'pause', 'isolate', 'switchover'] as const) {
    const r = await cli(['drill', ...common, '--kill', 'leader', '--fault', fault, '--rounds', '1', '--duration', '5s', '--confirm']);
    assert.equal(r.code, 0, `${fault}: ${r.stderr}\n${r.stdout}`);
    const { report, recorded } = JSON.parse(r.stdout) as { report: DrillReport; recorded: boolean };
    const round = report.rounds[0]!;
    assert.equal(recorded, true, fault);
    assert.equal(report.fault, fault);
    assert.equal(report.summary.passed, true, JSON.stringify(report));
    assert.equal(round.lost, 0, `${fault}: acknowledged writes lost`);
    assert.ok(round.writesAcked > 0, fault);
    assert.ok(round.targetWasLeader, fault);
    assert.notEqual(round.leaderAfter, round.leaderBefore, `${fault}: leadership moved`);
    assert.ok(round.newLeaderMs !== null && round.rtoMs !== null && round.rejoinMs !== null, JSON.stringify(round));
    rtos[fault] = round.rtoMs;
    if (fault === 'crash') assert.match(err, /exited \(signal SIGKILL\); restarting it/);
  }
  t.diagnostic(`RTO ms by fault (one round each): ${JSON.stringify(rtos)}`);

  const hist = await cli(['drill', ...common, '--history']);
  assert.equal(hist.code, 0, hist.stderr);
  const kept = (JSON.parse(hist.stdout) as { reports: { report: DrillReport }[] }).reports.map((x) => x.report.fault);
  assert.deepEqual(kept, ['switchover', 'isolate', 'pause', 'crash']);
  const first = (JSON.parse(hist.stdout) as { reports: { markdown: string }[] }).reports[0]!;
  assert.match(first.markdown, /^### Drill .*: switchover of leader, 1 round\(s\), PASSED/);

  // POST /v1/drills on the leader: it runs the drill itself and never faults itself (it hands leadership away first),
  // which needs another healthy caught-up voter: wait for failover safety, not only for every node to answer.
  await waitFor('every node is back and the cluster is failover-safe', async () => {
    const r = await cli(['status', ...common]);
    if (r.code !== 0) return false;
    const h = JSON.parse(r.stdout) as { failoverSafe?: boolean; failureTolerance?: number };
    return h.failoverSafe === true && (h.failureTolerance ?? 0) >= 1;
  }, 30_000);
  const lead = JSON.parse((await cli(['status', ...common])).stdout) as { leaderNode: string; nodes: { nodeName: string }[] };
  const leaderUrl = `http://127.0.0.1:${base + Number(lead.leaderNode.replace('node', '')) - 1}`;
  const viaNode = await http(leaderUrl, 'POST', '/v1/drills', { token, body: { kill: 'leader', fault: 'switchover', confirm: true } });
  assert.equal(viaNode.status, 200, JSON.stringify(viaNode.body));
  const nodeReport = viaNode.body['report'] as DrillReport;
  assert.equal(nodeReport.runner, `node:${lead.leaderNode}`);
  assert.notEqual(nodeReport.rounds[0]!.target, lead.leaderNode);
  assert.match(nodeReport.rounds[0]!.notes.join(' '), /running the drill\) led at the start of the round and handed leadership away first/);
  assert.equal(nodeReport.summary.lostTotal, 0);
  assert.equal(viaNode.body['recorded'], true);
  // The schedule, the drill metrics and doctor's "last drill" row see it (the demo sets no period: never overdue).
  await waitFor('the schedule names the newest drill', async () => ((await http(leaderUrl, 'GET', '/v1/drills?limit=1', { token })).body['schedule'] as { last: { id: string } | null }).last?.id === nodeReport.id, 10_000);
  const schedule = (await http(leaderUrl, 'GET', '/v1/drills?limit=1', { token })).body['schedule'] as { maxIntervalHours: number; last: { passed: boolean; lost: number }; lastPassedAt: string; overdue: boolean };
  assert.deepEqual([schedule.maxIntervalHours, schedule.last.passed, schedule.last.lost, schedule.overdue], [0, true, 0, false]);
  const metricsText = await (await fetch(`${leaderUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  assert.ok(metricsText.includes(`\nquorate_drill_last_success_timestamp_seconds ${Date.parse(schedule.lastPassedAt) / 1000}\n`), metricsText.split('\n').filter((l) => l.startsWith('quorate_drill')).join('\n'));
  assert.match(metricsText, /^quorate_drill_last_passed 1$/m);
  const doctor = await cli(['doctor', ...common]);
  const lastDrill = (JSON.parse(doctor.stdout) as { checks: { check: string; result: string; detail: string }[] }).checks.find((x) => x.check === 'last drill');
  assert.equal(lastDrill?.result, 'pass', doctor.stdout);
  assert.match(lastDrill!.detail, new RegExp(`^${nodeReport.id} \\d+ min ago passed, worst RTO \\d+ ms \\(target 15000 ms\\); no period set`));

  // A voter frozen: failure tolerance 0, so the drill is refused (a failure would take the cluster down) unless --force.
  await waitFor('every node is back', async () => (await cli(['status', ...common])).code === 0, 30_000);
  const status = JSON.parse((await cli(['status', ...common])).stdout) as { nodes: { nodeName: string; role: string }[] };
  const standby = status.nodes.find((n) => n.role === 'standby')!.nodeName;
  frozen = pidOf(join(dir, 'd', standby, 'quorate.json'));
  assert.ok(frozen !== undefined, `pid of ${standby}`);
  process.kill(frozen, 'SIGSTOP');
  await sleep(1500);
  const refused = await cli(['drill', ...common, '--fault', 'switchover', '--wait', '3s', '--confirm']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /not failover-safe with a failure tolerance >= 1|did not answer|not every member is healthy/);
  assert.match(refused.stderr, /--force/);
  process.kill(frozen, 'SIGCONT');
  frozen = undefined;
});

test('drills are off by default: the fault endpoint and POST /v1/drills refuse naming drills.enabled; roles; the CLI says what to do', { timeout: 120_000 }, async (t) => {
  const c = await TestCluster.start({ nodes: 1 });
  t.after(() => c.stop());
  await c.waitLeader(60_000);
  const url = c.nodes[0]!.url;
  const off = await http(url, 'POST', '/v1/cluster/drill/fault', { token: TOKEN, body: { fault: 'crash' } });
  assert.equal(off.status, 409);
  assert.equal(off.body['error'], 'drills_disabled');
  assert.match(String(off.body['message']), /drills\.enabled is false in node1's config/);
  const dry = await http(url, 'POST', '/v1/cluster/drill/fault', { token: TOKEN, body: { fault: 'pause', dryRun: true } });
  assert.equal(dry.body['error'], 'drills_disabled');
  assert.equal((await http(url, 'POST', '/v1/cluster/drill/fault', { token: OPERATOR_TOKEN, body: { fault: 'crash' } })).status, 403);
  const bad = await http(url, 'POST', '/v1/cluster/drill/fault', { token: TOKEN, body: { fault: 'melt' } });
  assert.equal(bad.status, 400);
  assert.match(String(bad.body['message']), /fault.*crash, pause, isolate, switchover/);
  const unconfirmed = await http(url, 'POST', '/v1/drills', { token: TOKEN, body: {} });
  assert.equal(unconfirmed.body['error'], 'confirm_required');
  assert.equal((await http(url, 'POST', '/v1/drills', { token: TOKEN, body: { confirm: true } })).body['error'], 'drills_disabled');
  const list = await http(url, 'GET', '/v1/drills', { token: READER_TOKEN });
  assert.equal(list.status, 200);
  assert.deepEqual(list.body['reports'], []);
  assert.equal((await http(url, 'POST', '/v1/drills/reports', { token: OPERATOR_TOKEN, body: { report: {} } })).status, 403);
  // The node is still up: nothing happened.
  assert.equal((await http(url, 'GET', '/system/health/leader')).status, 200);
  // One voter: failure tolerance 0, refused; forced, the target refuses (drills.enabled).
  const refused = await cli(['drill', '--url', url, '--token', TOKEN, '--wait', '1s', '--confirm']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /not failover-safe with a failure tolerance >= 1 \(failoverSafe false, failureTolerance 0 on the leader node1\).*--force/);
  const forced = await cli(['drill', '--url', url, '--token', TOKEN, '--force', '--confirm']);
  assert.equal(forced.code, 1);
  assert.match(forced.stderr, /drills\.enabled is false in node1's config.*HTTP 409 drills_disabled/);
});
