// quorate-test: serial (network namespaces; see scripts/run-tests.mjs)
// security.tls "auto" off loopback: the automatic cluster CA with real node
// processes in network namespaces (addresses 10.231.9.0/24, not loopback, so
// "auto" means mutual TLS 1.3 with certificates from the cluster CA, not plain
// TCP). Three nodes start from their config and a shared cluster secret only
// (no certificate made by hand), a fourth enrolls with a join token, the roots
// rotate every 10 s (security.caRotationSeconds) while a writer runs, and an
// isolated node's connections are refused afterwards.
// Each agent is reached through a client helper inside its own namespace, on
// that namespace's loopback (./ns-client.ts); nothing is created in the host's
// namespace. Waits are on conditions with generous deadlines, never fixed sleeps.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_SECRET, MAIN, TOKEN } from './harness.js';
import { NsClient, netnsUnavailable } from './netns.js';

const skip = netnsUnavailable();
if (skip) console.log(`# cluster CA tests skipped: ${skip}`);

const PREFIX = 'qca';
const SUBNET = '10.231.9';
const SWITCH = `${PREFIX}-sw`;
const API = 'http://127.0.0.1:7101';
const ns = (i: number) => `${PREFIX}-n${i + 1}`;
const ipOf = (i: number) => `${SUBNET}.${11 + i}`;
const PERIOD_S = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function removeLeftovers(): void {
  const names = ip('netns', 'list').split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${PREFIX}-`));
  for (const n of names) {
    for (const pid of ip('netns', 'pids', n).split('\n').map(Number).filter((p) => p > 0)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    try { ip('netns', 'del', n); } catch { /* raced */ }
  }
}

function createNetwork(nodes: number): void {
  removeLeftovers();
  ip('netns', 'add', SWITCH);
  ip('-n', SWITCH, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', SWITCH, 'link', 'set', 'br0', 'up');
  for (let k = 0; k < nodes; k++) {
    ip('netns', 'add', ns(k));
    ip('-n', SWITCH, 'link', 'add', `p${k}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(k));
    ip('-n', SWITCH, 'link', 'set', `p${k}`, 'master', 'br0', 'up');
    ip('-n', ns(k), 'addr', 'add', `${ipOf(k)}/24`, 'dev', 'eth0');
    ip('-n', ns(k), 'link', 'set', 'eth0', 'up');
    ip('-n', ns(k), 'link', 'set', 'lo', 'up');
  }
}

async function until<V>(what: string, fn: () => Promise<V | undefined> | V | undefined, ms = 30_000): Promise<V> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

interface Node { name: string; dir: string; configPath: string; logPath: string; proc: ChildProcess | undefined; exited: boolean; client: NsClient }

describe('automatic cluster CA (security.tls "auto") across network namespaces', { skip }, () => {
  const root = skip ? '' : mkdtempSync(join(tmpdir(), `${PREFIX}-it-`));
  const nodes: Node[] = [];
  const report: Record<string, unknown> = {};

  function addNode(i: number, opts: { joiner: boolean }): Node {
    const name = `node${i + 1}`;
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    const config = {
      node: { nodeName: name, dataDir: dir, apiAddress: '0.0.0.0:7101', peerAddress: `${ipOf(i)}:5201`, advertiseApiUrl: `http://${ipOf(i)}:7101`, advertisePeerUrl: `https://${ipOf(i)}:5201` },
      cluster: { haId: 'ca-it', peerEndpoints: opts.joiner ? [] : [0, 1, 2].filter((j) => j !== i).map((j) => `https://${ipOf(j)}:5201`), electionTimeoutMs: 1000, heartbeatIntervalMs: 100 },
      // security.tls is left at its default, "auto".
      security: { caRotationSeconds: PERIOD_S },
    };
    const configPath = join(dir, 'quorate.json');
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: TOKEN, role: 'admin', name: 'admin' }]), { mode: 0o600 });
    if (!opts.joiner) writeFileSync(join(dir, 'cluster.secret'), `${CLUSTER_SECRET}\n`, { mode: 0o600 });
    const n: Node = { name, dir, configPath, logPath: join(dir, 'node.log'), proc: undefined, exited: true, client: new NsClient(ns(i)) };
    nodes[i] = n;
    return n;
  }

  function start(i: number, env: Record<string, string> = {}): void {
    const n = nodes[i]!;
    const fd = openSync(n.logPath, 'a');
    const proc = spawn('ip', ['netns', 'exec', ns(i), process.execPath, MAIN, 'agent', '--config', n.configPath], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    closeSync(fd);
    n.proc = proc;
    n.exited = false;
    proc.on('exit', () => { n.exited = true; });
  }

  const log = (i: number): string => { try { return readFileSync(nodes[i]!.logPath, 'utf8'); } catch { return ''; } };
  const api = (i: number, method: string, path: string, body?: unknown) => nodes[i]!.client.http(API, method, path, body);

  async function leaderIndex(among: number[]): Promise<number | undefined> {
    for (const i of among) if ((await api(i, 'GET', '/system/health/leader')).status === 200) return i;
    return undefined;
  }

  before(() => createNetwork(4));
  after(async () => {
    for (const n of nodes) {
      if (!n) continue;
      n.client.close();
      if (!n.exited) {
        n.proc?.kill('SIGTERM');
        const deadline = Date.now() + 10_000;
        while (!n.exited && Date.now() < deadline) await sleep(50);
        if (!n.exited) n.proc?.kill('SIGKILL');
      }
    }
    removeLeftovers();
    if (process.exitCode === undefined || process.exitCode === 0) rmSync(root, { recursive: true, force: true });
    else console.log(`# cluster CA test data kept in ${root}`);
    console.log(`# cluster CA report ${JSON.stringify(report)}`);
  });

  test('three nodes form over mutual TLS from the derived CA, a joiner enrolls and gets a certificate, roots rotate under writes, an isolated node is refused', async () => {
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) addNode(i, { joiner: false });
    for (let i = 0; i < 3; i++) start(i);
    let leader = await until('a leader among three nodes on TLS "auto"', () => leaderIndex([0, 1, 2]), 45_000);
    report['formedMs'] = Date.now() - t0;
    for (let i = 0; i < 3; i++) assert.match(log(i), /"event":"peer_listening"[^\n]*"tls":true/, `node${i + 1} listens with TLS`);

    // Each node made its own key (0600) and certificate, bound to its member id and address.
    const crt = join(nodes[0]!.dir, 'tls', 'node.crt');
    assert.equal(statSync(join(nodes[0]!.dir, 'tls', 'node.key')).mode & 0o777, 0o600);
    const text = execFileSync('openssl', ['x509', '-in', crt, '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /IP Address:10\.231\.9\.11/);
    assert.match(text, /URI:urn:quorate:ca-it:node:\d+/);
    assert.match(text, /ASN1 OID: prime256v1/);
    execFileSync('openssl', ['verify', '-CAfile', join(nodes[1]!.dir, 'tls', 'ca.crt'), crt]);
    const ha = JSON.parse(readFileSync(join(nodes[0]!.dir, 'ha-state.json'), 'utf8')) as { Roots?: string[]; Token?: string };
    assert.equal(ha.Roots?.length, 6, 'three periods of CA epoch 0 and of epoch 1 (trusted ahead for ca rotate)');
    assert.match(ha.Token ?? '', /^sha256:[0-9a-f]{32}$/);
    assert.ok(!readFileSync(join(nodes[0]!.dir, 'ha-state.json'), 'utf8').includes(CLUSTER_SECRET), 'ha-state.json never holds the secret');

    // A fourth node enrolls with a join token; it gets the secret in the join exchange and its own certificate.
    const tok = await api(leader, 'POST', '/v1/cluster/join-tokens', {});
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    addNode(3, { joiner: true });
    start(3, { QUORATE_JOIN_TOKEN: tok.body['token'] as string });
    await until('the joiner waits to be enrolled', async () => (await api(3, 'GET', '/v1/cluster/join-info')).status === 200);
    const en = await api(leader, 'POST', '/v1/cluster/enroll', { apiUrl: `http://${ipOf(3)}:7101`, peerUrl: `${ipOf(3)}:5201`, role: 'voter' });
    assert.equal(en.status, 200, JSON.stringify(en.body));
    await until('the joiner issued its certificate', () => /"event":"tls_certificate_issued"/.test(log(3)));
    await until('the joiner replicates', async () => {
      const w = await api(leader, 'PUT', '/v1/kv/ca/joined', { value: 'yes' });
      if (w.status !== 200) return false;
      return (await api(3, 'GET', '/v1/kv/ca/joined?consistency=stale')).body['value'] === 'yes';
    }, 45_000);
    assert.match(execFileSync('openssl', ['x509', '-in', join(nodes[3]!.dir, 'tls', 'node.crt'), '-noout', '-text'], { encoding: 'utf8' }), /IP Address:10\.231\.9\.14/);
    report['joinedMs'] = Date.now() - t0;

    // Rotation: write through the leader across at least two period boundaries. A write that fails is counted
    // (a 503 while no leader is known is retried, as the client library does); no peer connection may drop.
    const issuedBefore = (log(0).match(/"event":"tls_certificate_issued"/g) ?? []).length;
    const logStart = [0, 1, 2, 3].map((i) => log(i).length);
    let writes = 0, failed = 0, retried503 = 0;
    const rotateUntil = Date.now() + 2 * PERIOD_S * 1000 + 2000;
    while (Date.now() < rotateUntil) {
      const l = await leaderIndex([0, 1, 2, 3]);
      if (l === undefined) { await sleep(100); continue; }
      leader = l;
      const r = await api(l, 'PUT', `/v1/kv/ca/rot/${writes}`, { value: String(writes) });
      if (r.status === 200) writes++;
      else if (r.status === 503) { retried503++; await sleep(100); }
      else { failed++; console.log(`# failed write: ${r.status} ${JSON.stringify(r.body)}`); }
    }
    const issuedAfter = (log(0).match(/"event":"tls_certificate_issued"/g) ?? []).length;
    const during = [0, 1, 2, 3].map((i) => log(i).slice(logStart[i]));
    const dropped = during.map((t) => (t.match(/"event":"peer_disconnected"/g) ?? []).length).reduce((a, b) => a + b, 0);
    report['rotation'] = { writes, failed, retried503, reissuedOnNode1: issuedAfter - issuedBefore, peerDisconnects: dropped };
    assert.ok(issuedAfter - issuedBefore >= 2, `node1 re-issued its certificate at each period (${issuedAfter - issuedBefore})`);
    assert.equal(failed, 0, 'no write failed while the roots rotated');
    assert.ok(writes > 0);
    for (let i = 0; i < 4; i++) assert.doesNotMatch(during[i]!, /"event":"peer_tls_rejected"/, `node${i + 1} rejected no member's TLS handshake during rotation`);
    assert.equal(dropped, 0, 'no peer connection dropped while certificates were re-issued');

    // Isolate node3: removed, secret rotated, every member re-roots; node3's connections are refused afterwards.
    const before3 = log(0).length + log(1).length + log(3).length;
    const tokenBefore = (JSON.parse(readFileSync(join(nodes[0]!.dir, 'ha-state.json'), 'utf8')) as { Token: string }).Token;
    // node3 may lead: isolating the leader hands leadership over first. Ask a node that stays (it forwards to the leader).
    const leaderNow = await until('a leader', () => leaderIndex([0, 1, 2, 3]));
    const iso = await api(leaderNow === 2 ? 0 : leaderNow, 'POST', '/v1/cluster/isolate', { nodeName: 'node3' });
    assert.equal(iso.status, 200, JSON.stringify(iso.body));
    await until('node1 re-rooted after the secret rotation', () => /"event":"tls_certificate_issued"[^\n]*"reason":"cluster_secret_rotated"/.test(log(0)));
    await until('ha-state.json names the new secret', () => {
      const t = (JSON.parse(readFileSync(join(nodes[0]!.dir, 'ha-state.json'), 'utf8')) as { Token: string }).Token;
      return t !== tokenBefore;
    });
    // Force node3 to dial again (a restart): it holds only the old secret and a certificate of the old roots.
    nodes[2]!.proc?.kill('SIGTERM');
    await until('node3 stopped', () => nodes[2]!.exited);
    start(2);
    const refusedRe = new RegExp(`"event":"(peer_tls_rejected|peer_refused_inbound)"[^\\n]*"remote":"(::ffff:)?${ipOf(2).replace(/\./g, '\\.')}:`);
    await until('a member refuses node3 after its isolation', () => {
      const tail = [0, 1, 3].map((i) => log(i)).join('\n');
      return tail.length > before3 && refusedRe.test(tail);
    }, 30_000);
    // The cluster keeps writing without it, on the new roots.
    const after = await until('a write after the isolation', async () => {
      const l = await leaderIndex([0, 1, 3]);
      if (l === undefined) return undefined;
      return (await api(l, 'PUT', '/v1/kv/ca/after', { value: 'ok' })).status === 200 ? l : undefined;
    }, 30_000);
    assert.ok(after !== 2);
    execFileSync('openssl', ['verify', '-CAfile', join(nodes[1]!.dir, 'tls', 'ca.crt'), join(nodes[0]!.dir, 'tls', 'node.crt')]);
    assert.throws(() => execFileSync('openssl', ['verify', '-CAfile', join(nodes[0]!.dir, 'tls', 'ca.crt'), join(nodes[2]!.dir, 'tls', 'node.crt')], { stdio: 'pipe' }),
      'node3\'s certificate is not trusted by the new roots');
    report['totalMs'] = Date.now() - t0;
  });
});
