// Spawns the compiled CLI against a fake node:http server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, statSync, existsSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../config/index.js';
import { COMMANDS } from './main.js';

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
          peers: [{ nodeName: 'node2', role: 'standby', matchIndex: 1040, lastContact: '2026-04-06T10:29:59Z' }] });
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

test('--help for every verb exits 0 with usage and examples', async () => {
  for (const c of COMMANDS) {
    const r = await cli([...c.name.split(' '), '--help']);
    assert.equal(r.code, 0, `${c.name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: quorate ${c.name}`), c.name);
    assert.match(r.stdout, /Examples:\n {2}quorate /, c.name);
  }
  const top = await cli(['--help']);
  assert.equal(top.code, 0);
  for (const c of COMMANDS) assert.ok(top.stdout.includes(c.name), c.name);
  assert.equal((await cli(['kv', '--help'])).code, 0);
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

test('init writes a valid config and a 0600 token; refuses to overwrite without --force', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-cli-init-'));
  const r = await cli(['init', '--dir', dir, '--node-name', 'n1', '--peers', 'https://10.0.1.11:5201,https://10.0.1.12:5201']);
  assert.equal(r.code, 0, r.stderr);
  const file = JSON.parse(readFileSync(join(dir, 'quorate.json'), 'utf8')) as unknown;
  const cfg = parseConfig(file, {}, { baseDir: dir });
  assert.equal(cfg.node.nodeName, 'n1');
  assert.equal(cfg.database.writeQuorum, 2);
  assert.equal(cfg.node.dataDir, join(dir, 'data'));
  const tokenPath = join(dir, 'data', 'admin.token');
  assert.equal(statSync(tokenPath).mode & 0o777, 0o600);
  const token = readFileSync(tokenPath, 'utf8').trim();
  assert.match(token, /^quorate-admin-[0-9a-f]{32}$/);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'data', 'tokens.json'), 'utf8')), [{ token, role: 'admin', name: 'admin' }]);
  const again = await cli(['init', '--dir', dir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists[\s\S]*--force/);
  assert.equal((await cli(['init', '--dir', dir, '--node-name', 'n1', '--force'])).code, 0);
  assert.notEqual(readFileSync(tokenPath, 'utf8').trim(), token);
  const bad = await cli(['init', '--dir', join(dir, 'x'), '--peers', 'https://10.0.1.11:5201,https://10.0.1.11:5201']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /cluster\.peerEndpoints\[1\]: duplicates/);
  assert.ok(!existsSync(join(dir, 'x', 'quorate.json')));
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
