// quorate-test: serial (real HAProxy and nginx, and network namespaces; see scripts/run-tests.mjs)
// `quorate lb-config` tested with the real HAProxy and nginx (Debian's
// haproxy and nginx-light): each load balancer runs on a free loopback port in
// front of a 3-node cluster, with the configuration the CLI printed; a client
// writes through it while the leader is killed.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, TOKEN, TestCluster, freePorts, sleep, status, waitFor } from './harness.js';
import { NsClient } from './netns.js';

const HAPROXY = '/usr/sbin/haproxy';
const NGINX = '/usr/sbin/nginx';

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    return { code: err.status, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Writes through the LB, kills the leader, and checks that writes resume and nothing acknowledged is lost. */
async function killLeaderBehind(c: TestCluster, lbUrl: string, report: Record<string, unknown>): Promise<void> {
  const client = new NsClient(null);
  try {
    await waitFor('the load balancer serves', async () => (await client.http(lbUrl, 'GET', '/v1/cluster/status')).status === 200, 20_000);
    await client.call({ op: 'write-start', url: lbUrl, prefix: 'lb', token: TOKEN });
    await sleep(1000);
    const leader = await c.waitLeader();
    const killedAt = Date.now();
    c.kill(leader);
    await c.waitExit(leader);
    let resumedAt = 0;
    await waitFor('writes through the load balancer resume', async () => {
      const r = await client.call({ op: 'write-status' });
      resumedAt = r['lastAckAt'] as number;
      return resumedAt > killedAt + 50;
    }, 30_000);
    report['writesResumeMs'] = resumedAt - killedAt;
    await sleep(500);
    const w = await client.call({ op: 'write-stop' }) as { acked: string[]; unknown: string[]; failures: number };
    report['acked'] = w.acked.length;
    report['unknown'] = w.unknown.length;
    report['failures'] = w.failures;
    assert.ok(w.acked.length > 0, 'writes were acknowledged through the load balancer');
    assert.ok((report['writesResumeMs'] as number) < 30_000);
    for (const key of w.acked) {
      let r = await client.http(lbUrl, 'GET', `/v1/kv/${key}`);
      // A read that fails on the way (status 0: a closed connection or the 3 s timeout; 503: no leader behind the
      // load balancer for a moment) is asked again, as a client of a load balancer would: under a loaded machine
      // HAProxy may mark the leader down for a missed check and close its sessions (on-marked-down shutdown-sessions).
      // An answer from the cluster (404, another value) is never retried: that is the lost write this test looks for.
      for (const until = Date.now() + 10_000; (r.status === 0 || r.status === 503) && Date.now() < until;) {
        await sleep(200);
        r = await client.http(lbUrl, 'GET', `/v1/kv/${key}`);
      }
      // On a failure, say what the client saw (a status 0 is a closed connection or the 3 s timeout) and what the nodes logged.
      if (r.status !== 200) assert.fail(`${key} was acknowledged through the load balancer, then read ${r.status} ${JSON.stringify(r.body)}; the nodes' last log lines:\n${c.logTails(12)}`);
      assert.equal(r.body['value'], key.split('/')[1]);
    }
  } finally {
    client.close();
  }
}

function stopProc(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((res) => {
    p.once('exit', () => res());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 5000).unref();
  });
}

describe('lb-config with real HAProxy and nginx', { skip: !existsSync(HAPROXY) || !existsSync(NGINX) ? 'haproxy or nginx is not installed (apt-get install haproxy nginx-light)' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-lb-'));
  let c: TestCluster | undefined;
  // Every load balancer started, stopped at the end too: a test that fails midway
  // (before stopping its own) must not leave it running, holding its port.
  const lbs: ChildProcess[] = [];
  const report: Record<string, unknown> = {};
  after(async () => {
    for (const p of lbs) await stopProc(p);
    await c?.stop();
    rmSync(dir, { recursive: true, force: true });
    console.log(`# lb report ${JSON.stringify(report)}`);
  });

  test('lb-config checks its arguments', () => {
    const r = cli(['lb-config', 'envoy', '--url', 'http://127.0.0.1:1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /lb-config needs exactly one of haproxy or nginx, got "envoy"/);
    const m = cli(['lb-config', 'haproxy', '--mode', 'hot', '--url', 'http://127.0.0.1:1']);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /--mode must be active-standby or active-active/);
  });

  test('HAProxy (active-standby, checks /system/health/leader): writes through it resume after the leader is killed, none acknowledged is lost', async () => {
    c = await TestCluster.start({ nodes: 3 });
    await c.waitLeader();
    const [port] = await freePorts(1);
    const r = cli(['lb-config', 'haproxy', '--listen', `127.0.0.1:${port}`, '--url', c.nodes.map((n) => n.url).join(','), '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /option httpchk GET \/system\/health\/leader/);
    for (const n of c.nodes) assert.ok(r.stdout.includes(`server ${n.name} ${n.url.replace('http://', '')} check`), `${n.name} is a server`);
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(cfg, r.stdout);
    execFileSync(HAPROXY, ['-c', '-f', cfg], { stdio: 'pipe' });
    const lb = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: 'ignore' });
    lbs.push(lb);
    const h: Record<string, unknown> = {};
    await killLeaderBehind(c, `http://127.0.0.1:${port}`, h);
    report['haproxy'] = h;
    await stopProc(lb);
    // The next test uses the same cluster: the killed node back as a standby.
    const dead = c.nodes.findIndex((n) => n.exitCode !== undefined);
    c.startNode(dead);
    const cc = c;
    await waitFor(`${c.nodes[dead]!.name} back as a standby`, async () => (await status(cc.nodes[dead]!.url, '/system/health/standby')) === 200, 30_000);
  });

  test('nginx (active-standby: leader primary, standbys backup, passive checks): writes through it resume after the leader is killed, none acknowledged is lost', async () => {
    c ??= await TestCluster.start({ nodes: 3 });
    // Every node running (the HAProxy test restarts the node it killed; not if it failed first).
    for (let i = 0; i < c.nodes.length; i++) {
      if (c.nodes[i]!.exitCode === undefined) continue;
      c.startNode(i);
      const cc = c;
      await waitFor(`${c.nodes[i]!.name} back as a standby`, async () => (await status(cc.nodes[i]!.url, '/system/health/standby')) === 200, 30_000);
    }
    const leader = await c.waitLeader();
    const [port] = await freePorts(1);
    const r = cli(['lb-config', 'nginx', '--listen', `127.0.0.1:${port}`, '--url', c.nodes.map((n) => n.url).join(','), '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(`server ${c.nodes[leader]!.url.replace('http://', '')} weight=5`), 'the leader is the primary');
    assert.equal((r.stdout.match(/ backup /g) ?? []).length, 2, 'the standbys are backups');
    assert.match(r.stdout, /health_check is NGINX Plus only/);
    const prefix = join(dir, 'nginx');
    execFileSync('mkdir', ['-p', join(prefix, 'logs'), join(prefix, 'tmp')]);
    writeFileSync(join(prefix, 'quorate.conf'), r.stdout);
    const main = join(prefix, 'nginx.conf');
    writeFileSync(main, [
      'worker_processes 1;', 'pid nginx.pid;', 'error_log logs/error.log warn;', 'events { worker_connections 256; }',
      'http {', '  access_log off;', `  client_body_temp_path ${prefix}/tmp/body;`, `  proxy_temp_path ${prefix}/tmp/proxy;`,
      `  fastcgi_temp_path ${prefix}/tmp/fcgi;`, `  uwsgi_temp_path ${prefix}/tmp/uwsgi;`, `  scgi_temp_path ${prefix}/tmp/scgi;`,
      `  include ${join(prefix, 'quorate.conf')};`, '}', '',
    ].join('\n'));
    execFileSync(NGINX, ['-t', '-p', prefix, '-c', main, '-g', 'daemon off; user root;'], { stdio: 'pipe' });
    lbs.push(spawn(NGINX, ['-p', prefix, '-c', main, '-g', 'daemon off; user root;'], { stdio: 'ignore' }));
    const h: Record<string, unknown> = {};
    await killLeaderBehind(c, `http://127.0.0.1:${port}`, h);
    report['nginx'] = h;
    assert.equal(await status(`http://127.0.0.1:${port}`, '/system/health/ping'), 200, 'nginx still serves');
  });
});
