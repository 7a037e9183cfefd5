// Pause and drain with a reason and an expiry (cluster feature level 3,
// src/node/maintenance-expiry.ts), with real processes: the reason and expiry
// show in the API answers, the health endpoints and `quorate status`; the
// leader resumes / undrains when the expiry passes; the history records both
// ends with the reason and who ended them.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { MAIN, TOKEN, TestCluster, http, waitFor } from './harness.js';

type Rec = { kind: string; op?: string; by?: string; reason?: string | null; nodeName?: string | null; expiresAt?: string | null };

async function maintenanceRecords(c: TestCluster, i: number): Promise<Rec[]> {
  const h = await http(c.nodes[i]!.url, 'GET', '/v1/cluster/history', { token: TOKEN });
  return (h.body['records'] as Rec[]).filter((r) => r.kind === 'maintenance');
}

// Long enough that the checks made while paused (several HTTP calls and a CLI process) finish before
// it expires on two busy cores; the expiry itself is then awaited.
const PAUSE_MS = 12_000;

describe('pause and drain with a reason and an expiry', () => {
  let c: TestCluster;
  after(async () => {
    await c?.stop();
  });

  test('pause --reason --for: shown everywhere, ended by the leader at the expiry, both ends in the history', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const lead = await c.waitLeader();
    const follower = [0, 1, 2].find((i) => i !== lead)!;
    const bad = await http(c.nodes[follower]!.url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'x', expiresInMs: 5 } });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /expiresInMs/);
    let t0 = 0;
    let p: Awaited<ReturnType<typeof http>> | undefined;
    // Right after the election a follower may not know the leader's API URL yet (503 no_leader, nothing applied): retry that.
    await waitFor('the follower forwards the pause', async () => {
      t0 = Date.now();
      p = await http(c.nodes[follower]!.url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'kernel upgrade', expiresInMs: PAUSE_MS } });
      return p.status !== 503;
    }, 20_000);
    p = p!;
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal(p.body['paused'], true);
    const pause = p.body['pause'] as { reason: string; expiresAt: string; expiresInMs: number };
    assert.equal(pause.reason, 'kernel upgrade');
    assert.ok(Date.parse(pause.expiresAt) >= t0 + PAUSE_MS - 1000 && Date.parse(pause.expiresAt) <= Date.now() + PAUSE_MS, pause.expiresAt);
    // Health endpoints and status name the reason.
    const h = await http(c.nodes[follower]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal((h.body['pause'] as { reason: string }).reason, 'kernel upgrade');
    const ping = await http(c.nodes[follower]!.url, 'GET', '/system/health/ping');
    assert.match(String(ping.body['notice']), /paused \(maintenance\) \(reason: kernel upgrade\), until /);
    const metrics = await (await fetch(`${c.nodes[follower]!.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(metrics, /^quorate_paused 1$/m);
    assert.ok(metrics.includes(`quorate_maintenance_expiry_timestamp_seconds{kind="pause",node=""} ${Date.parse(pause.expiresAt) / 1000}\n`), metrics);
    const st = spawnSync(process.execPath, [MAIN, 'status', '--url', c.nodes[follower]!.url, '--token', TOKEN], { encoding: 'utf8', timeout: 30_000 });
    assert.match(st.stdout, /paused:\s+reason: kernel upgrade, until \S+ \(\d+ (s|min) left\)/, st.stdout + st.stderr);
    // The leader ends it (generous bound: a loaded machine).
    await waitFor('the pause to expire', async () => (await http(c.nodes[follower]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body['paused'] === false, PAUSE_MS + 30_000);
    assert.ok(Date.now() >= Date.parse(pause.expiresAt), 'not before its expiry');
    await waitFor('both ends in the history', async () => (await maintenanceRecords(c, follower)).length >= 2, 10_000);
    const [start, end] = await maintenanceRecords(c, follower);
    assert.deepEqual({ op: start!.op, by: start!.by, reason: start!.reason, expiresAt: start!.expiresAt }, { op: 'pause', by: 'operator', reason: 'kernel upgrade', expiresAt: pause.expiresAt });
    assert.deepEqual({ op: end!.op, by: end!.by, reason: end!.reason }, { op: 'resume', by: 'expiry', reason: 'kernel upgrade' });
    assert.match(c.log(lead), /"event":"maintenance_expired"/);
  });

  test('drain NAME --reason --for via the CLI: per-node reason in cluster health, undrained at the expiry; an undrain takes no reason', async () => {
    const lead = await c.waitLeader();
    const target = [0, 1, 2].find((i) => i !== lead)!;
    const name = c.nodes[target]!.name;
    const no = await http(c.nodes[lead]!.url, 'POST', '/v1/cluster/drain', { token: TOKEN, body: { nodeName: name, drained: false, reason: 'x' } });
    assert.equal(no.status, 400);
    assert.match(JSON.stringify(no.body), /reason/);
    const d = spawnSync(process.execPath, [MAIN, 'drain', name, '--reason', 'disk swap', '--for', '3s', '--json', '--url', c.nodes[lead]!.url, '--token', TOKEN], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(d.status, 0, d.stdout + d.stderr);
    const body = JSON.parse(d.stdout) as { drained: string[]; drains: Record<string, { reason: string; expiresAt: string }> };
    assert.deepEqual(body.drained, [name]);
    assert.equal(body.drains[name]!.reason, 'disk swap');
    const h = await http(c.nodes[lead]!.url, 'GET', '/system/health/cluster', { token: TOKEN });
    const node = (h.body['nodes'] as { nodeName: string; drained: boolean; drain?: { reason: string } }[]).find((n) => n.nodeName === name)!;
    assert.equal(node.drained, true);
    assert.equal(node.drain?.reason, 'disk swap');
    await waitFor('the drain to expire', async () => ((await http(c.nodes[lead]!.url, 'GET', '/system/health/cluster', { token: TOKEN })).body['drained'] as string[]).length === 0, 30_000);
    await waitFor('the undrain in the history', async () => (await maintenanceRecords(c, lead)).some((r) => r.op === 'undrain' && r.by === 'expiry' && r.nodeName === name && r.reason === 'disk swap'), 10_000);
    const usage = spawnSync(process.execPath, [MAIN, 'pause', '--for', 'soon', '--url', c.nodes[lead]!.url, '--token', TOKEN], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--for must be a duration/);
  });

  test('GET /v1/events: a pause re-applied with a new reason, then a new expiry, is a health event each time (paused stays true)', async () => {
    const lead = await c.waitLeader();
    const url = c.nodes[lead]!.url;
    const first = await http(url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'patching', expiresInMs: 600_000 } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const ac = new AbortController();
    const res = await fetch(`${url}/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal });
    assert.equal(res.status, 200);
    const health: Record<string, unknown>[] = [];
    const reading = (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body!) {
          buf += dec.decode(chunk as Uint8Array, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (/^event: health$/m.test(block)) health.push(JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown>);
          }
        }
      } catch { /* aborted */ }
    })();
    try {
      const pauseOf = (e: Record<string, unknown>) => e['pause'] as { reason: string; expiresAt: string } | null;
      await http(url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'patching, second wave', expiresInMs: 600_000 } });
      await waitFor('a health event with the new reason', () => health.some((e) => e['paused'] === true && pauseOf(e)?.reason === 'patching, second wave'), 10_000);
      const before = health.length;
      const again = await http(url, 'POST', '/v1/cluster/pause', { token: TOKEN, body: { reason: 'patching, second wave', expiresInMs: 1_200_000 } });
      const expiresAt = (again.body['pause'] as { expiresAt: string }).expiresAt;
      await waitFor('a health event with the new expiry', () => health.slice(before).some((e) => pauseOf(e)?.expiresAt === expiresAt), 10_000);
      // `quorate doctor` names the pause with its reason and expiry.
      const doc = spawnSync(process.execPath, [MAIN, 'doctor', '--json', '--url', url, '--token', TOKEN], { encoding: 'utf8', timeout: 30_000 });
      const checks = (JSON.parse(doc.stdout) as { checks: { check: string; result: string; detail: string }[] }).checks;
      const m = checks.find((x) => x.check === 'maintenance');
      assert.equal(m?.result, 'warn', doc.stdout);
      assert.match(m!.detail, new RegExp(`the cluster is paused \\(reason: patching, second wave\\), until ${expiresAt.replace(/[.]/g, '\\.')}`));
      assert.equal(checks.find((x) => x.check === 'maintenance past its expiry'), undefined);
    } finally {
      ac.abort();
      await reading;
      await http(url, 'POST', '/v1/cluster/resume', { token: TOKEN });
    }
  });
});
