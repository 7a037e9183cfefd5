// `quorate agent` as a real child process: when its HTTP API cannot start it
// must not run on as a bare Raft node; it stops the node and exits 1, naming
// the config key in a structured log line (stdout) and on stderr.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reservePorts } from '../../test/support/ports.js';

const MAIN = fileURLToPath(new URL('../bundle/main.js', import.meta.url));

function listen(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => resolve(s));
  });
}
const portOf = (s: Server): number => (s.address() as { port: number }).port;
const close = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `quorate agent` with `config` until it exits (killed after 60 s: that is the failure). */
function runAgent(dir: string, config: unknown): Promise<Exit> {
  const configPath = join(dir, 'quorate.json');
  writeFileSync(configPath, JSON.stringify(config));
  // Every node needs the cluster secret (default <dataDir>/cluster.secret) before its API starts.
  const dataDir = (config as { node?: { dataDir?: string } }).node?.dataDir ?? join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, 'cluster.secret'), `${'5e'.repeat(32)}\n`, { mode: 0o600 });
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [MAIN, 'agent', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const kill = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.once('error', reject);
    p.once('close', (code, signal) => {
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function logLines(stdout: string): Record<string, unknown>[] {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('quorate agent when the HTTP API cannot start', { timeout: 120_000 }, () => {
  test('an API address in use: the node stops and the process exits 1 naming node.apiAddress', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-agent-start-'));
    const blocker = await listen();
    const [peerPort] = await reservePorts(1);
    try {
      const apiAddress = `127.0.0.1:${portOf(blocker)}`;
      const r = await runAgent(dir, {
        node: { nodeName: 'solo', dataDir: join(dir, 'data'), apiAddress, peerAddress: `127.0.0.1:${peerPort}` },
        security: { tls: 'off' },
      });
      assert.equal(r.signal, null, `exited by itself (stderr: ${r.stderr})`);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^Error: the HTTP API cannot start: node\\.apiAddress ${apiAddress.replace(/\./g, '\\.')} is already in use \\(EADDRINUSE\\)`, 'm'));
      const lines = logLines(r.stdout);
      const failed = lines.find((l) => l['event'] === 'api_start_failed');
      assert.ok(failed, r.stdout);
      assert.equal(failed['key'], 'node.apiAddress');
      assert.equal(failed['level'], 60);
      // Stopped cleanly after the failure, then exited.
      const events = lines.map((l) => l['event']);
      assert.ok(events.indexOf('agent_exit') > events.indexOf('api_start_failed'), JSON.stringify(events));
      assert.ok(!events.includes('api_listening'));
    } finally {
      await close(blocker);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a missing security.apiTls.certFile: exits 1 naming the key and the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'quorate-agent-start-'));
    const [apiPort, peerPort] = await reservePorts(2);
    try {
      const r = await runAgent(dir, {
        node: { nodeName: 'solo', dataDir: join(dir, 'data'), apiAddress: `127.0.0.1:${apiPort}`, peerAddress: `127.0.0.1:${peerPort}` },
        security: { tls: 'off', apiTls: { certFile: 'nope/api.crt', keyFile: 'nope/api.key' } },
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^Error: the HTTP API cannot start: security\.apiTls\.certFile: cannot read ".*nope\/api\.crt" \(no such file\)/m);
      assert.match(r.stderr, /Hint: fix security\.apiTls\.certFile in /);
      const failed = logLines(r.stdout).find((l) => l['event'] === 'api_start_failed');
      assert.equal(failed?.['key'], 'security.apiTls.certFile');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
