// Built-in alerts and the diagnostic bundle on a real 3-node cluster, with a
// local HTTP receiver standing in for the webhook: signed fire and resolve
// notifications (retried after a 500), GET /v1/alerts and `quorate alerts`,
// `quorate diagnostics -o FILE` with no secret inside, and "no leader" sent by
// a node that says it is not the leader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { CLUSTER_SECRET, MAIN, OPERATOR_TOKEN, READER_TOKEN, TOKEN, TestCluster, http, waitFor } from './harness.js';

interface Received { headers: IncomingHttpHeaders; body: string; json: { status: string; alert: { id: string; name: string; node: string; subject?: string; scope?: string; severity?: string; summary: string }; sentBy: string; leader: string | null; leaderKnown: boolean; note?: string } }

const ALERT_SECRET = 'alert-hmac-secret-5f1c2e9a7b3d4c60';
const DB_PASSWORD = 'hunter2-db-password-77aa';
const URL_SECRET = 'query-token-0e0e0e0e0e';

function cli(args: string[], cwd: string): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, QUORATE_TOKEN: '' }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => { const p = join(dir, n); return statSync(p).isDirectory() ? walk(p) : [p]; });
}

test('alerts: signed fire/resolve webhooks with retries, GET /v1/alerts, quorate alerts, the diagnostic bundle without secrets, no-leader from a non-leader', async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'quorate-alerts-'));
  const flag = join(scratch, 'app-down');
  const secretFile = join(scratch, 'alerts.secret');
  writeFileSync(secretFile, `${ALERT_SECRET}\n`, { mode: 0o600 });
  const received: Received[] = [];
  let answered = 0;
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      answered++;
      // The first delivery attempt fails: the sender must retry.
      if (answered === 1) { res.writeHead(500).end('not yet'); return; }
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ headers: req.headers, body, json: JSON.parse(body) as Received['json'] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook?token=${URL_SECRET}`;
  const c = await TestCluster.start({
    nodes: 3,
    extraConfig: (i) => ({
      alerts: { webhookUrl: hookUrl, secretFile, forSeconds: 0, evaluateIntervalMs: 200, retryBackoffMs: 50, replicationLagMsMax: 1000 },
      drills: { maxIntervalHours: 24 },
      ...(i === 0 ? { health: { checks: [{ name: 'app', command: `DB_PASSWORD=${DB_PASSWORD} test ! -e ${flag}`, intervalMs: 200, failuresBeforeUnhealthy: 1 }] } } : {}),
    }),
  });
  const has = (status: string, name: string, pred: (r: Received) => boolean = () => true) => received.some((r) => r.json.status === status && r.json.alert.name === name && pred(r));
  try {
    const leader = await c.waitLeader();
    // A drill period and no drill: drill_overdue from the leader (cluster scope); a passing report resolves it.
    await waitFor('drill_overdue firing', () => has('firing', 'drill_overdue'), 20_000);
    const overdue = received.find((r) => r.json.status === 'firing' && r.json.alert.name === 'drill_overdue')!;
    assert.equal(overdue.json.sentBy, c.nodes[leader]!.name);
    assert.equal(overdue.json.alert.scope, 'cluster');
    assert.match(overdue.json.alert.summary, /no passing failover drill is kept, more than drills\.maxIntervalHours 24 h: run one/);
    const passing = { id: 'd-alerts', runner: 'cli', startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), kill: 'leader', fault: 'crash', durationMs: 0, intervalMs: 0, rtoTargetMs: 15000, forced: false, rounds: [], summary: { roundsRun: 1, rtoMsMax: 300, rtoMsAvg: 300, lostTotal: 0, unknownTotal: 0, passed: true, failures: [] } };
    assert.equal((await http(c.nodes[leader]!.url, 'POST', '/v1/drills/reports', { token: TOKEN, body: { report: passing } })).status, 200);
    await waitFor('drill_overdue resolved', () => has('resolved', 'drill_overdue'), 20_000);
    // A failed drill after it: drill_failed at once (critical: it lost writes), resolved by the next passing one.
    const failing = { ...passing, id: 'd-alerts-2', summary: { ...passing.summary, lostTotal: 1, passed: false, failures: ['round 1: 1 acknowledged write(s) lost (RPO must be 0)'] } };
    assert.equal((await http(c.nodes[leader]!.url, 'POST', '/v1/drills/reports', { token: TOKEN, body: { report: failing } })).status, 200);
    await waitFor('drill_failed firing', () => has('firing', 'drill_failed', (r) => r.json.alert.severity === 'critical'), 20_000);
    assert.equal((await http(c.nodes[leader]!.url, 'POST', '/v1/drills/reports', { token: TOKEN, body: { report: { ...passing, id: 'd-alerts-3' } } })).status, 200);
    await waitFor('drill_failed resolved', () => has('resolved', 'drill_failed'), 20_000);
    assert.equal(received.filter((r) => r.json.status === 'firing' && r.json.alert.name === 'drill_overdue').length, 1, 'fired once');
    // A failing health check on node1: fired by node1 (node scope), signed with the alerts secret.
    writeFileSync(flag, 'x');
    await waitFor('health_check_failing firing', () => has('firing', 'health_check_failing'), 20_000);
    const fired = received.find((r) => r.json.alert.name === 'health_check_failing')!;
    assert.equal(fired.json.alert.node, 'node1');
    assert.equal(fired.json.sentBy, 'node1');
    assert.equal(fired.json.alert.subject, 'app');
    const ts = String(fired.headers['x-quorate-timestamp']);
    assert.equal(fired.headers['x-quorate-signature'], `sha256=${createHmac('sha256', ALERT_SECRET).update(`${ts}.${fired.body}`).digest('hex')}`, 'HMAC-SHA256 of timestamp.body with alerts.secretFile');
    assert.notEqual(fired.headers['x-quorate-signature'], `sha256=${createHmac('sha256', CLUSTER_SECRET).update(`${ts}.${fired.body}`).digest('hex')}`);
    assert.ok(answered >= 2, 'the first attempt got 500 and was retried');
    // GET /v1/alerts (reader) lists it as active on node1.
    const view = await http(c.nodes[0]!.url, 'GET', '/v1/alerts', { token: READER_TOKEN });
    assert.equal(view.status, 200);
    assert.ok((view.body['active'] as { name: string }[]).some((a) => a.name === 'health_check_failing'), JSON.stringify(view.body));
    assert.equal((view.body['webhook'] as { signed: boolean }).signed, true);
    // quorate alerts asks every member and merges.
    const listed = cli(['alerts', '--json', '--url', c.nodes[leader]!.url, '--token', READER_TOKEN], scratch);
    assert.equal(listed.code, 0, listed.err);
    const merged = JSON.parse(listed.out) as { active: { name: string; node: string }[]; nodes: unknown[] };
    assert.equal(merged.nodes.length, 3);
    assert.ok(merged.active.some((a) => a.name === 'health_check_failing' && a.node === 'node1'));
    const human = cli(['alerts', '--url', c.nodes[leader]!.url, '--token', READER_TOKEN], scratch);
    assert.match(human.out, /health_check_failing/);
    unlinkSync(flag);
    await waitFor('health_check_failing resolved', () => has('resolved', 'health_check_failing'), 20_000);
    // Each notification once: no duplicate firing for the same condition.
    assert.equal(received.filter((r) => r.json.status === 'firing' && r.json.alert.name === 'health_check_failing').length, 1);

    // The diagnostic bundle: every member, no secret anywhere (reader: 403).
    assert.equal((await http(c.nodes[0]!.url, 'GET', '/v1/diagnostics', { token: READER_TOKEN })).status, 403);
    assert.equal((await http(c.nodes[0]!.url, 'GET', '/v1/diagnostics', { token: OPERATOR_TOKEN })).status, 403);
    const file = join(scratch, 'diag.tar.gz');
    const d = cli(['diagnostics', '-o', file, '--url', c.nodes[1]!.url, '--token', TOKEN], scratch);
    assert.equal(d.code, 0, d.err);
    const raw = gunzipSync(readFileSync(file)).toString('latin1');
    const out = join(scratch, 'x');
    mkdirSync(out);
    const x = spawnSync('tar', ['xzf', file, '-C', out], { encoding: 'utf8' });
    assert.equal(x.status, 0, x.stderr);
    const files = walk(out).map((p) => p.slice(out.length + 1));
    const root = files[0]!.split('/')[0]!;
    for (const n of ['node1', 'node2', 'node3']) {
      for (const f of ['status.json', 'config.json', 'metrics.txt', 'alerts.json', 'logs.jsonl', 'health.json']) assert.ok(files.includes(`${root}/nodes/${n}/${f}`), `${n}/${f} in ${files.join(', ')}`);
    }
    assert.ok(files.includes(`${root}/history.json`) && files.includes(`${root}/manifest.json`));
    const manifest = JSON.parse(readFileSync(join(out, root, 'manifest.json'), 'utf8')) as { nodes: { ok: boolean }[]; collectedBy: string };
    assert.equal(manifest.collectedBy, 'node2');
    assert.deepEqual(manifest.nodes.map((n) => n.ok), [true, true, true]);
    assert.match(readFileSync(join(out, root, 'nodes', 'node1', 'metrics.txt'), 'utf8'), /quorate_has_leader 1/);
    assert.match(readFileSync(join(out, root, 'nodes', 'node1', 'logs.jsonl'), 'utf8'), /node_started/, 'recent log lines are kept');
    const cfg = readFileSync(join(out, root, 'nodes', 'node1', 'config.json'), 'utf8');
    assert.match(cfg, /DB_PASSWORD=<redacted>/);
    for (const secret of [TOKEN, READER_TOKEN, OPERATOR_TOKEN, CLUSTER_SECRET, ALERT_SECRET, DB_PASSWORD, URL_SECRET]) {
      assert.ok(!raw.includes(secret), `the bundle holds a secret (${secret.slice(0, 12)}...)`);
      assert.ok(!raw.includes(Buffer.from(secret).toString('base64')), 'nor its base64');
    }

    // A lagging follower (stopped, while writes go on): replication_lag from the leader.
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    c.kill(follower, 'SIGSTOP');
    const client = c.client({ urls: [c.nodes[leader]!.url] });
    await waitFor('replication_lag firing', async () => {
      await client.kvPut('k', String(Date.now())).catch(() => undefined);
      return has('firing', 'replication_lag', (r) => r.json.alert.subject === c.nodes[follower]!.name && r.json.sentBy === c.nodes[leader]!.name);
    }, 20_000);
    c.kill(follower, 'SIGCONT');
    await waitFor('replication_lag resolved', () => has('resolved', 'replication_lag'), 20_000);

    // Both followers die: the leader loses its quorum, steps down, and the survivor says no leader is known.
    for (const i of [0, 1, 2]) if (i !== leader) c.kill(i);
    await waitFor('quorum_lost firing', () => has('firing', 'quorum_lost'), 20_000);
    // (The follower stopped above may have said so too, for a moment after SIGCONT.)
    const survivor = c.nodes[leader]!.name;
    await waitFor('no_leader firing from the survivor', () => has('firing', 'no_leader', (r) => r.json.sentBy === survivor), 20_000);
    const nl = received.find((r) => r.json.alert.name === 'no_leader' && r.json.sentBy === survivor)!;
    assert.equal(nl.json.leaderKnown, false);
    assert.equal(nl.json.leader, null);
    assert.equal(nl.json.alert.node, survivor);
    assert.match(nl.json.note ?? '', /not the leader/);
  } finally {
    await c.stop();
    await new Promise((r) => receiver.close(r));
    if (existsSync(scratch)) rmSync(scratch, { recursive: true, force: true });
  }
});
