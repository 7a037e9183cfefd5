// Spawns the compiled CLI against a fake node:http server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, statSync, existsSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, parseConfig } from '../config/index.js';
import { loadClusterSecret } from '../transport/index.js';
import { COMMANDS, VERB_MODULES, main } from './main.js';
import { reserveDemoPorts } from '../../test/support/ports.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const TOKEN = 'quorate-admin-test';

interface Run { code: number | null; stdout: string; stderr: string }
function cli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '', ...options.env };
    const child = spawn(process.execPath, [MAIN, ...args], { env, cwd: options.cwd ?? tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// ---- fake node ------------------------------------------------------------
let server: Server;
let url = '';
let healthy = true;
/** The node's status carries the Raft-led external-shared fields (raftTerm, fencingToken). */
let raftLed = false;
const kv = new Map<string, { value: string; revision: number }>();
let revision = 0;
const seenAuth: string[] = [];

const clusterBody = () => ({
  clusterHealthy: healthy, leaderNode: healthy ? 'node1' : null, term: 7,
  nodes: [
    { nodeName: 'node1', role: 'primary', status: 'healthy', lastHeartbeat: '2026-04-06T10:30:00Z', databaseMode: 'local-sync', matchIndex: 1042, replicationLagEntries: 0, replicationLagMs: 0 },
    { nodeName: 'node2', role: 'standby', status: healthy ? 'healthy' : 'unreachable', lastHeartbeat: '2026-04-06T10:29:59Z', databaseMode: 'local-sync', matchIndex: 1040, replicationLagEntries: 2, replicationLagMs: 3 },
  ],
  redisConnected: true, writeQuorum: 2, quorumMet: healthy, failoverSafe: healthy, failureTolerance: healthy ? 1 : 0,
});

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const send = (status: number, obj: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
      const auth = req.headers['authorization'] ?? '';
      if (!u.pathname.startsWith('/system/health/') || u.pathname === '/system/health/cluster') {
        seenAuth.push(auth);
        if (auth !== `Bearer ${TOKEN}`) { send(401, { error: 'unauthorized', message: 'missing or unknown bearer token' }); return; }
      }
      if (u.pathname === '/system/health/cluster') { send(200, clusterBody()); return; }
      if (u.pathname === '/v1/cluster/status') {
        send(200, { id: 'node1', nodeName: 'node1', role: 'primary', term: 7, leader: 'node1', commitIndex: 1042, appliedIndex: 1042,
          peers: [{ nodeName: 'node2', role: 'standby', matchIndex: 1040, lastContact: '2026-04-06T10:29:59Z' }], ...(raftLed ? { raftTerm: 3, fencingToken: 7 } : {}) });
        return;
      }
      if (u.pathname === '/v1/cluster/dump') { send(200, { appliedIndex: 1042, revision: 99, ...(u.searchParams.get('checksum') === '1' ? { checksum: 'crc32c:abcd' } : {}) }); return; }
      if (u.pathname === '/v1/cluster/failover-safe') { send(200, { failoverSafe: healthy }); return; }
      if (u.pathname === '/v1/kv' && req.method === 'GET') {
        const prefix = u.searchParams.get('prefix') ?? '';
        send(200, { items: [...kv.entries()].filter(([k]) => k.startsWith(prefix)).sort().map(([key, e]) => ({ key, ...e })), revision });
        return;
      }
      if (u.pathname.startsWith('/v1/kv/')) {
        const key = decodeURIComponent(u.pathname.slice('/v1/kv/'.length));
        const cur = kv.get(key);
        if (req.method === 'GET') { if (cur) send(200, { key, ...cur, createRevision: cur.revision }); else send(404, { error: 'not_found', message: `key ${key} not found` }); return; }
        if (req.method === 'PUT') {
          const b = JSON.parse(body) as { value: string; ifRevision?: number };
          if (b.ifRevision !== undefined && b.ifRevision !== (cur?.revision ?? 0)) { send(409, { error: 'revision_mismatch', message: `revision is ${cur?.revision ?? 0}`, currentRevision: cur?.revision ?? 0 }); return; }
          kv.set(key, { value: b.value, revision: ++revision });
          send(200, { revision });
          return;
        }
        if (req.method === 'DELETE') { const had = kv.delete(key); send(200, { revision: had ? ++revision : revision, deleted: had }); return; }
      }
      send(404, { error: 'not_found', message: 'no such endpoint' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.closeAllConnections(); server.close(); });

const remote = () => ['--url', url, '--token', TOKEN];

// ---- tests ------------------------------------------------------------------

/** The CLI in this process (the same main() the binary runs): fast enough for every verb. */
async function cliHere(args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { out: (t) => { stdout += `${t}\n`; }, err: (t) => { stderr += `${t}\n`; }, env: { PATH: process.env['PATH'] ?? '' }, cwd: tmpdir() });
  return { code, stdout, stderr };
}

test('--help for every verb exits 0 with usage and examples', async () => {
  for (const c of COMMANDS) {
    const r = await cliHere([...c.name.split(' '), '--help']);
    assert.equal(r.code, 0, `${c.name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: quorate ${c.name}`), c.name);
    assert.match(r.stdout, /Examples:\n {2}quorate /, c.name);
    assert.ok(r.stdout.includes(`\n\n${c.summary[0]!.toUpperCase()}${c.summary.slice(1)}.`), `${c.name} --help shows its summary`);
  }
  // The binary itself (spawned) prints the same top-level help.
  const top = await cli(['--help']);
  assert.equal(top.code, 0);
  for (const c of COMMANDS) assert.ok(top.stdout.includes(c.name), c.name);
  assert.equal((await cliHere(['kv', '--help'])).code, 0);
});

test('every verb in COMMANDS is found in its module, and every verb of the modules is in COMMANDS', async () => {
  const listed = new Set(COMMANDS.map((c) => c.name));
  assert.equal(listed.size, COMMANDS.length, 'a verb is listed twice');
  for (const c of COMMANDS) {
    const v = await c.load();
    assert.equal(v.name, c.name);
    assert.equal(v.summary, c.summary);
  }
  for (const [module, load] of Object.entries(VERB_MODULES)) {
    for (const v of ([] as { name: string }[]).concat(await load())) assert.ok(listed.has(v.name), `"${v.name}" of ${module} is missing from COMMANDS (src/cli/main.ts)`);
  }
});

test('bad usage exits 2 naming the problem', async () => {
  const flag = await cli(['status', '--bogus']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Error: unknown flag --bogus for "quorate status"/);
  const verb = await cli(['frobnicate']);
  assert.equal(verb.code, 2);
  assert.match(verb.stderr, /unknown verb "frobnicate"/);
  assert.equal((await cli([])).code, 2);
  const missing = await cli(['kv', 'put', 'onlykey', ...remote()]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /takes KEY and VALUE/);
  const value = await cli(['failover-safe', '--wait', 'soon']);
  assert.equal(value.code, 2);
  assert.match(value.stderr, /--wait needs a duration/);
  const noValue = await cli(['status', '--url']);
  assert.equal(noValue.code, 2);
  assert.match(noValue.stderr, /--url needs a value/);
});

test('status: table, --json, exit 3 when unhealthy', async () => {
  healthy = true;
  const human = await cli(['status', ...remote()]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /cluster: +healthy/);
  assert.match(human.stdout, /NODE +ROLE +STATUS/);
  assert.match(human.stdout, /node1 \* +primary +healthy/);
  assert.doesNotMatch(human.stdout, /raft term|fencing token/, 'no Raft-led fields when the status has none');
  const json = await cli(['status', '--json', ...remote()]);
  assert.equal(json.code, 0);
  assert.deepEqual(JSON.parse(json.stdout), clusterBody());
  healthy = false;
  const bad = await cli(['status', '--json', ...remote()]);
  assert.equal(bad.code, 3);
  assert.equal((JSON.parse(bad.stdout) as { clusterHealthy: boolean }).clusterHealthy, false);
  assert.equal((await cli(['status', ...remote()])).code, 3);
  healthy = true;
});

test('status of a Raft-led external-shared cluster: the raft term and fencing token in the table, --json unchanged', async () => {
  healthy = true;
  raftLed = true;
  try {
    const human = await cli(['status', ...remote()]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /\nterm: +7\n/);
    assert.match(human.stdout, /\nraft term: +3 \(as node1 sees it\)\n/);
    assert.match(human.stdout, /\nfencing token: +7 \(as node1 sees it\)\n/);
    const json = await cli(['status', '--json', ...remote()]);
    assert.equal(json.code, 0);
    assert.deepEqual(JSON.parse(json.stdout), clusterBody());
    const watch = await cli(['status', '--watch', '--count', '1', ...remote()]);
    assert.equal(watch.code, 0, watch.stderr);
    assert.match(watch.stdout, /raft term: +3 /);
    const watchJson = await cli(['status', '--watch', '--count', '1', '--json', ...remote()]);
    const { at, ...rest } = JSON.parse(watchJson.stdout) as Record<string, unknown>;
    assert.equal(typeof at, 'string');
    assert.deepEqual(rest, clusterBody());
  } finally {
    raftLed = false;
  }
});

test('token from QUORATE_TOKEN, --token-file and --data-dir; 401 gets a hint', async () => {
  assert.equal((await cli(['status', '--url', url], { env: { QUORATE_TOKEN: TOKEN } })).code, 0);
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-tok-'));
  writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`);
  assert.equal((await cli(['status', '--url', url, '--token-file', join(dir, 'admin.token')])).code, 0);
  assert.equal((await cli(['status', '--url', url, '--data-dir', dir])).code, 0);
  assert.equal((await cli(['leader'], { env: { QUORATE_URL: url }, cwd: dir })).code, 1); // no token found → 401
  const denied = await cli(['status', '--url', url, '--token', 'wrong']);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /Error: missing or unknown bearer token \(HTTP 401/);
  assert.match(denied.stderr, /Hint: pass --token/);
});

test('kv put/get/ls/del round trip; CAS conflict shows the current revision', async () => {
  const put = await cli(['kv', 'put', 'config/mode', 'active', ...remote()]);
  assert.equal(put.code, 0, put.stderr);
  assert.match(put.stdout, /^OK revision \d+/);
  const get = await cli(['kv', 'get', 'config/mode', ...remote()]);
  assert.equal(get.code, 0);
  assert.equal(get.stdout, 'active\n');
  const getJson = await cli(['kv', 'get', 'config/mode', '--json', ...remote()]);
  assert.equal((JSON.parse(getJson.stdout) as { value: string }).value, 'active');
  const cas = await cli(['kv', 'put', 'config/mode', 'standby', '--if-revision', '0', ...remote()]);
  assert.equal(cas.code, 1);
  assert.match(cas.stderr, /revision_mismatch/);
  assert.match(cas.stderr, /retry with --if-revision \d+/);
  await cli(['kv', 'put', 'config/x', 'y', '--ttl', '30s', ...remote()]);
  const ls = await cli(['kv', 'ls', '--prefix', 'config/', ...remote()]);
  assert.equal(ls.code, 0);
  assert.match(ls.stdout, /KEY +REVISION +VALUE\nconfig\/mode +\d+ +active\nconfig\/x/);
  assert.equal((await cli(['kv', 'del', 'config/mode', ...remote()])).code, 0);
  const gone = await cli(['kv', 'get', 'config/mode', ...remote()]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /key "config\/mode" not found/);
});

test('leader, id, peers, state, dump --checksum, failover-safe', async () => {
  assert.equal((await cli(['leader', ...remote()])).stdout, 'node1\n');
  assert.equal((await cli(['id', ...remote()])).stdout, 'node1\n');
  assert.match((await cli(['peers', ...remote()])).stdout, /NODE NAME +ROLE +MATCH INDEX +LAST CONTACT\nnode2 +standby +1040/);
  assert.match((await cli(['state', ...remote()])).stdout, /term: +7/);
  const dump = await cli(['dump', '--checksum', '--json', ...remote()]);
  assert.equal((JSON.parse(dump.stdout) as { dump: { checksum: string } }).dump.checksum, 'crc32c:abcd');
  healthy = true;
  assert.equal((await cli(['failover-safe', '--wait', '1s', ...remote()])).code, 0);
  healthy = false;
  assert.equal((await cli(['failover-safe', ...remote()])).code, 1);
  healthy = true;
});

test('unreachable node: exit 1 with a hint', async () => {
  const r = await cli(['status', '--url', 'http://127.0.0.1:1', '--token', 'x']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Error: cannot reach http:\/\/127\.0\.0\.1:1/);
  assert.match(r.stderr, /is the node running\?.*pass --url/);
});

test('init writes a valid config, a 0600 token and a 0600 cluster secret; refuses to overwrite without --force', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-init-'));
  const r = await cli(['init', '--dir', dir, '--node-name', 'n1', '--peers', 'http://127.0.0.1:5202,http://127.0.0.1:5203']);
  assert.equal(r.code, 0, r.stderr);
  const file = JSON.parse(readFileSync(join(dir, 'quorate.json'), 'utf8')) as unknown;
  const cfg = parseConfig(file, {}, { baseDir: dir });
  assert.equal(cfg.node.nodeName, 'n1');
  assert.equal(cfg.database.writeQuorum, 2);
  assert.equal(cfg.node.dataDir, join(dir, 'data'));
  assert.equal(cfg.node.peerAddress, '127.0.0.1:5201');
  assert.equal(cfg.node.advertisePeerUrl, 'https://127.0.0.1:5201');
  const tokenPath = join(dir, 'data', 'admin.token');
  assert.equal(statSync(tokenPath).mode & 0o777, 0o600);
  const token = readFileSync(tokenPath, 'utf8').trim();
  assert.match(token, /^quorate-admin-[0-9a-f]{32}$/);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'data', 'tokens.json'), 'utf8')), [{ token, role: 'admin', name: 'admin' }]);
  const secretPath = join(dir, 'data', 'cluster.secret');
  assert.equal(cfg.security.clusterSecretFile, secretPath);
  assert.equal(statSync(secretPath).mode & 0o777, 0o600);
  assert.match(readFileSync(secretPath, 'utf8'), /^[0-9a-f]{64}\n$/);
  const secret = loadClusterSecret(secretPath);
  assert.match(r.stdout, /cluster secret: +\S*cluster\.secret \(mode 0600\)/);
  const again = await cli(['init', '--dir', dir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists[\s\S]*--force/);
  assert.equal((await cli(['init', '--dir', dir, '--node-name', 'n1', '--force'])).code, 0);
  assert.notEqual(readFileSync(tokenPath, 'utf8').trim(), token);
  assert.notDeepEqual(loadClusterSecret(secretPath), secret, '--force makes a new secret');
  const bad = await cli(['init', '--dir', join(dir, 'x'), '--peers', 'http://127.0.0.1:5202,http://127.0.0.1:5202']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /cluster\.peerEndpoints\[1\]: duplicates/);
  assert.ok(!existsSync(join(dir, 'x', 'quorate.json')));
});

test('init refuses to overwrite only the cluster secret too, and --secret-file copies another member\'s', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-init-secret-'));
  assert.equal((await cli(['init', '--dir', join(dir, 'a'), '--node-name', 'a'])).code, 0);
  const first = join(dir, 'a', 'data', 'cluster.secret');
  const b = await cli(['init', '--dir', join(dir, 'b'), '--node-name', 'b', '--secret-file', first]);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual(loadClusterSecret(join(dir, 'b', 'data', 'cluster.secret')), loadClusterSecret(first));
  // Only the secret is in the way: still refused.
  mkdirSync(join(dir, 'c', 'data'), { recursive: true });
  writeFileSync(join(dir, 'c', 'data', 'cluster.secret'), 'x', { mode: 0o600 });
  const c = await cli(['init', '--dir', join(dir, 'c'), '--node-name', 'c']);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /cluster\.secret already exists[\s\S]*--force/);
  assert.ok(!existsSync(join(dir, 'c', 'quorate.json')));
  const missing = await cli(['init', '--dir', join(dir, 'd'), '--secret-file', join(dir, 'nope')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /does not exist: run `quorate init` to create it, or copy the file from another member/);
});

test('init: the default file loads and listens for peers on loopback; network peers get tls "auto" (the cluster CA) or TLS files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-init-tls-'));
  assert.equal((await cli(['init', '--dir', dir, '--node-name', 'n1'])).code, 0);
  const cfg = loadConfig(join(dir, 'quorate.json'), {});
  assert.equal(cfg.security.tls, 'auto');
  assert.equal(cfg.node.peerAddress, '127.0.0.1:5201');
  assert.doesNotMatch(JSON.stringify(cfg), /192\.0\.2\./);
  const net = await cli(['init', '--dir', join(dir, 'net'), '--peers', 'https://10.0.1.11:5201', '--advertise-host', '10.0.1.10']);
  assert.equal(net.code, 0, net.stderr);
  const n = loadConfig(join(dir, 'net', 'quorate.json'), {});
  assert.equal(n.security.tls, 'auto');
  assert.equal(n.node.peerAddress, '0.0.0.0:5201');
  assert.equal(n.node.advertisePeerUrl, 'https://10.0.1.10:5201');
  const off = await cli(['init', '--dir', join(dir, 'off'), '--tls', 'off', '--peers', 'https://10.0.1.11:5201']);
  assert.equal(off.code, 2);
  assert.match(off.stderr, /cluster\.peerEndpoints\[0\]: security\.tls "off" is accepted only when every peer address is loopback/);
  const wild = await cli(['init', '--dir', join(dir, 'wild'), '--bind', '0.0.0.0', '--tls', 'off']);
  assert.equal(wild.code, 2);
  assert.match(wild.stderr, /node\.peerAddress: .*bind it to 127\.0\.0\.1/);
  const wildAuto = await cli(['init', '--dir', join(dir, 'wild-auto'), '--bind', '0.0.0.0']);
  assert.equal(wildAuto.code, 0, wildAuto.stderr);
  const half = await cli(['init', '--dir', join(dir, 'half'), '--tls-cert', 'c.pem']);
  assert.equal(half.code, 2);
  assert.match(half.stderr, /--tls-cert, --tls-key and --tls-ca go together/);
  const tls = await cli(['init', '--dir', join(dir, 'tls'), '--node-name', 'n1', '--peers', 'https://10.0.1.11:5201,https://10.0.1.12:5201',
    '--advertise-host', '10.0.1.10', '--tls-cert', 'n1.crt', '--tls-key', 'n1.key', '--tls-ca', 'ca.crt'], { cwd: dir });
  assert.equal(tls.code, 0, tls.stderr);
  const t = loadConfig(join(dir, 'tls', 'quorate.json'), {});
  assert.deepEqual(t.security.tls, { certFile: join(dir, 'n1.crt'), keyFile: join(dir, 'n1.key'), caFile: join(dir, 'ca.crt') });
  assert.equal(t.node.peerAddress, '0.0.0.0:5201');
  assert.equal(t.node.advertisePeerUrl, 'https://10.0.1.10:5201');
});

test('demo writes one cluster secret (0600) into every node\'s data dir', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-demo-secret-'));
  const base = await reserveDemoPorts(2);
  const child = spawn(process.execPath, [MAIN, 'demo', '--nodes', '2', '--base-port', String(base), '--dir', join(dir, 'd')], {
    env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    const paths = [1, 2].map((k) => join(dir, 'd', `node${k}`, 'cluster.secret'));
    const deadline = Date.now() + 10_000;
    while (!paths.every((p) => existsSync(p)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 100));
    for (const p of paths) assert.equal(statSync(p).mode & 0o777, 0o600, p);
    assert.deepEqual(loadClusterSecret(paths[0]!), loadClusterSecret(paths[1]!));
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  // Stopped while its nodes were still starting: it stops them too (none is left running).
  const left = spawnSync('pgrep', ['-f', join(dir, 'd')], { encoding: 'utf8' });
  assert.equal(left.stdout.trim(), '', `demo left node processes running: ${left.stdout}`);
});

test('demo --nodes 3 --observers 1: prints names, roles and URLs; status shows 3 voters and 1 observer', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-demo-roles-'));
  const base = await reserveDemoPorts(4);
  const child = spawn(process.execPath, [MAIN, 'demo', '--nodes', '3', '--observers', '1', '--base-port', String(base), '--dir', join(dir, 'd')], {
    env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    const deadline = Date.now() + 60_000;
    while (!out.includes('Press Ctrl-C') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /4-node cluster ready \(3 voters, 1 observer\)/, `demo stdout:\n${out}\nstderr:\n${err}`);
    assert.match(out, new RegExp(`node4 +observer +http://127\\.0\\.0\\.1:${base + 3}`));
    assert.match(out, new RegExp(`node1 +voter +http://127\\.0\\.0\\.1:${base}`));
    const cfg = JSON.parse(readFileSync(join(dir, 'd', 'node4', 'quorate.json'), 'utf8')) as { node: { role: string } };
    assert.equal(cfg.node.role, 'observer');
    const token = readFileSync(join(dir, 'd', 'node1', 'admin.token'), 'utf8').trim();
    const urls = [0, 1, 2, 3].map((k) => `http://127.0.0.1:${base + k}`).join(',');
    let roles: string[] = [];
    while (Date.now() < deadline) {
      const r = await cli(['status', '--url', urls, '--token', token, '--json']);
      if (r.stdout.startsWith('{')) roles = ((JSON.parse(r.stdout) as { nodes: { role: string }[] }).nodes).map((n) => n.role).sort();
      if (roles.join() === 'observer,primary,standby,standby') break;
      await new Promise((res) => setTimeout(res, 300));
    }
    assert.deepEqual(roles, ['observer', 'primary', 'standby', 'standby']);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});

test('agent: a config error prints the key path and exits 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-agent-'));
  const cfg = join(dir, 'quorate.json');
  writeFileSync(cfg, JSON.stringify({ cluster: { electionTimeoutMs: 300 } }));
  const r = await cli(['agent', '--config', cfg]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cluster\.electionTimeoutMs: must be at least 5 × heartbeatIntervalMs \(500\), got 300/);
  writeFileSync(cfg, '{}');
  const env = await cli(['agent', '--config', cfg], { env: { QUORATE_CLUSTER_NOPE: '1' } });
  assert.equal(env.code, 2);
  assert.match(env.stderr, /QUORATE_CLUSTER_NOPE: unknown key/);
  const missing = await cli(['agent', '--config', join(dir, 'none.json')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /file not found/);
});

test('demo refuses a busy port, naming it and suggesting --base-port', async () => {
  const busy = (server.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-demo-'));
  const r = await cli(['demo', '--nodes', '1', '--base-port', String(busy), '--dir', join(dir, 'd')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`port ${busy} is busy`));
  assert.match(r.stderr, /--base-port/);
});
