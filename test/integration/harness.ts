// Real node processes on loopback for integration tests: free ports, real
// data dirs under the OS temp dir, kill -9 / SIGSTOP / restart, and a client.
import { AGENT_NODE_FLAGS, agentEnv } from '../../src/node/runtime-env.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QuorateClient } from '../../src/api/client.js';
import { reservePorts } from '../support/ports.js';

export const MAIN = fileURLToPath(new URL('../../src/bundle/main.js', import.meta.url));

/** What a node's log line for a failed API request contains (logTails can leave them out: a client's retries crowd the tail). */
export const FAILED_REQUEST = '"msg":"request failed"';

/** Ports free now and reserved for this test process (see test/support/ports.ts). */
export async function freePorts(n: number): Promise<number[]> {
  return reservePorts(n);
}

export interface NodeProc {
  readonly name: string;
  readonly dir: string;
  readonly configPath: string;
  readonly url: string;
  readonly logPath: string;
  proc: ChildProcess | undefined;
  exitCode: number | null | undefined;
}

export interface ClusterOptions {
  readonly nodes?: number;
  readonly electionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly writeQuorum?: number;
  readonly cluster?: Record<string, unknown>;
  /** Extra Node.js flags for the node processes (e.g. --cpu-prof when profiling a benchmark). */
  readonly nodeArgs?: readonly string[];
  /** node.role per node (default voter). */
  readonly roles?: readonly ('voter' | 'observer' | 'dr')[];
  /** security.tls per node (default "off"). */
  readonly tls?: (i: number) => unknown;
  /** The `jobs` section (leader-only scheduled jobs). */
  readonly jobs?: readonly Record<string, unknown>[];
  /** Extra keys of the `database` section (e.g. backup). */
  readonly database?: Record<string, unknown>;
  /** Extra environment variables per node (e.g. QUORATE_TEST_FEATURE_LEVEL). */
  readonly env?: (i: number) => Record<string, string> | undefined;
  /** More config sections for node i (health, hooks, outbox, ...); `database` keys merge into the database section. */
  readonly extraConfig?: (i: number) => Record<string, unknown>;
  /** The `redis` config section of every node. */
  readonly redis?: Record<string, unknown>;
}

/** The cluster secret every test node shares (written to <dataDir>/cluster.secret). */
export const CLUSTER_SECRET = 'c0ffee01'.repeat(8);
export const TOKEN = 'quorate-admin-0123456789abcdef0123456789abcdef';
export const READER_TOKEN = 'quorate-reader-0123456789abcdef0123456789abcdef';
export const OPERATOR_TOKEN = 'quorate-operator-0123456789abcdef0123456789abcd';

export class TestCluster {
  readonly root: string;
  readonly nodes: NodeProc[] = [];
  readonly #nodeArgs: readonly string[];

  private constructor(root: string, nodeArgs: readonly string[]) {
    this.root = root;
    this.#nodeArgs = nodeArgs;
  }

  static async start(opts: ClusterOptions = {}): Promise<TestCluster> {
    const n = opts.nodes ?? 3;
    const c = new TestCluster(mkdtempSync(join(tmpdir(), 'quorate-it-')), opts.nodeArgs ?? []);
    const ports = await freePorts(2 * n);
    const peerUrls = Array.from({ length: n }, (_, i) => `http://127.0.0.1:${ports[n + i]}`);
    for (let i = 0; i < n; i++) {
      const name = `node${i + 1}`;
      const dir = join(c.root, name);
      mkdirSync(dir, { recursive: true });
      const config = {
        node: {
          nodeName: name,
          dataDir: dir,
          apiAddress: `127.0.0.1:${ports[i]}`,
          peerAddress: `127.0.0.1:${ports[n + i]}`,
          role: opts.roles?.[i] ?? 'voter',
        },
        cluster: {
          haId: 'it',
          peerEndpoints: peerUrls.filter((_, j) => j !== i),
          electionTimeoutMs: opts.electionTimeoutMs ?? 1000,
          heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 100,
          ...(opts.cluster ?? {}),
        },
        database: { mode: 'local-sync', ...(opts.writeQuorum ? { writeQuorum: opts.writeQuorum } : {}), ...(opts.database ?? {}) },
        security: { tls: opts.tls ? opts.tls(i) : 'off' },
        ...(opts.redis ? { redis: opts.redis } : {}),
        ...(opts.jobs ? { jobs: opts.jobs } : {}),
      };
      const extra = opts.extraConfig?.(i) ?? {};
      Object.assign(config, { ...extra, database: { ...config.database, ...(extra['database'] as Record<string, unknown> | undefined) } });
      const configPath = join(dir, 'quorate.json');
      writeFileSync(configPath, JSON.stringify(config, null, 2));
      writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
      writeFileSync(join(dir, 'cluster.secret'), `${CLUSTER_SECRET}\n`, { mode: 0o600 });
      writeFileSync(
        join(dir, 'tokens.json'),
        JSON.stringify([
          { token: TOKEN, role: 'admin', name: 'admin' },
          { token: OPERATOR_TOKEN, role: 'operator', name: 'op' },
          { token: READER_TOKEN, role: 'reader', name: 'ro' },
        ]),
        { mode: 0o600 },
      );
      c.nodes.push({ name, dir, configPath, url: `http://127.0.0.1:${ports[i]}`, logPath: join(dir, 'node.log'), proc: undefined, exitCode: undefined });
    }
    for (let i = 0; i < n; i++) c.startNode(i, opts.env?.(i));
    return c;
  }

  /** Start (or restart) node i; `env` adds to this process's environment. */
  /**
   * Starts a new node (not a member) that waits to be enrolled: its own
   * config with no peers (an observer or dr node names the first node's peer
   * address, as config validation asks), the test tokens, and `env` (e.g.
   * QUORATE_JOIN_TOKEN). Resolves with its index once it answers join-info.
   */
  async addJoiner(name: string, env: Record<string, string>, role: 'voter' | 'observer' | 'dr' = 'voter'): Promise<number> {
    const [api, peer] = await freePorts(2);
    const dir = join(this.root, name);
    mkdirSync(dir, { recursive: true });
    const first = JSON.parse(readFileSync(this.nodes[0]!.configPath, 'utf8')) as { node: { peerAddress: string } };
    const config = {
      node: { nodeName: name, dataDir: dir, apiAddress: `127.0.0.1:${api}`, peerAddress: `127.0.0.1:${peer}`, role },
      cluster: { haId: 'it', peerEndpoints: role === 'voter' ? [] : [`http://${first.node.peerAddress}`], electionTimeoutMs: 1000, heartbeatIntervalMs: 100 },
      database: { mode: 'local-sync' },
      security: { tls: 'off' },
    };
    const configPath = join(dir, 'quorate.json');
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'tokens.json'), JSON.stringify([{ token: TOKEN, role: 'admin', name: 'admin' }]), { mode: 0o600 });
    this.nodes.push({ name, dir, configPath, url: `http://127.0.0.1:${api}`, logPath: join(dir, 'node.log'), proc: undefined, exitCode: undefined });
    const i = this.nodes.length - 1;
    this.startNode(i, env);
    try {
      await waitFor(`${name} waits to be enrolled`, async () => (await http(this.nodes[i]!.url, 'GET', '/v1/cluster/join-info').catch(() => ({ status: 0 }))).status === 200, 15_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}; the nodes' last log lines (but failed requests):\n${this.logTails(12, FAILED_REQUEST)}`);
    }
    return i;
  }

  startNode(i: number, env?: Record<string, string>): void {
    const nd = this.nodes[i]!;
    const fd = openSync(nd.logPath, 'a');
    // Started as the product starts it (src/node/runtime-env.ts); nodeArgs come after, so a benchmark can override a flag.
    const proc = spawn(process.execPath, [...AGENT_NODE_FLAGS, ...this.#nodeArgs, MAIN, 'agent', '--config', nd.configPath], {
      stdio: ['ignore', fd, fd],
      env: agentEnv({ ...process.env, ...(env ?? {}) }),
    });
    closeSync(fd);
    nd.proc = proc;
    nd.exitCode = undefined;
    proc.on('exit', (code, signal) => {
      nd.exitCode = code ?? (signal ? -1 : null);
    });
  }

  /** Wait for the process to exit; resolves with its exit code. */
  async waitExit(i: number, timeoutMs = 15_000): Promise<number | null> {
    const nd = this.nodes[i]!;
    const deadline = Date.now() + timeoutMs;
    while (nd.exitCode === undefined) {
      if (Date.now() > deadline) throw new Error(`${nd.name} did not exit within ${timeoutMs} ms`);
      await sleep(20);
    }
    return nd.exitCode;
  }

  kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.nodes[i]!.proc?.kill(signal);
  }

  client(opts: { urls?: string[]; token?: string; timeoutMs?: number } = {}): QuorateClient {
    return new QuorateClient({ urls: opts.urls ?? this.nodes.map((n) => n.url), token: opts.token ?? TOKEN, timeoutMs: opts.timeoutMs ?? 5000 });
  }

  /** The index of the node that reports itself leader with a quorum; waits up to timeoutMs. */
  async waitLeader(timeoutMs = 20_000, exclude: number[] = []): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (let i = 0; i < this.nodes.length; i++) {
        if (exclude.includes(i) || this.nodes[i]!.exitCode !== undefined || !this.nodes[i]!.proc) continue;
        if ((await status(this.nodes[i]!.url, '/system/health/leader')) === 200) return i;
      }
      await sleep(25);
    }
    throw new Error(`no leader within ${timeoutMs} ms; the nodes' last log lines (their data dirs are removed at stop):\n${this.logTails()}`);
  }

  /** The last lines of every node's log, for failure messages (the logs go with the data dirs at stop). */
  logTails(lines = 6, omit?: string): string {
    return this.nodes.map((n) => {
      let tail = '';
      try {
        const all = readFileSync(n.logPath, 'utf8').trimEnd().split('\n');
        tail = (omit === undefined ? all : all.filter((l) => !l.includes(omit))).slice(-lines).join('\n');
      } catch (e) { tail = String(e); }
      return `--- ${n.name} (${n.exitCode === undefined ? 'running' : `exited ${n.exitCode}`}):\n${tail}`;
    }).join('\n');
  }

  async waitReady(i: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await status(this.nodes[i]!.url, '/system/health/ready')) === 200) return;
      await sleep(25);
    }
    throw new Error(`${this.nodes[i]!.name} not ready within ${timeoutMs} ms; the last log lines:\n${this.logTails()}`);
  }

  log(i: number): string {
    return readFileSync(this.nodes[i]!.logPath, 'utf8');
  }

  async stop(): Promise<void> {
    for (const nd of this.nodes) {
      if (nd.proc && nd.exitCode === undefined) {
        nd.proc.kill('SIGCONT');
        nd.proc.kill('SIGTERM');
      }
    }
    for (let i = 0; i < this.nodes.length; i++) {
      const nd = this.nodes[i]!;
      if (!nd.proc || nd.exitCode !== undefined) continue;
      try {
        await this.waitExit(i, 10_000);
      } catch {
        nd.proc.kill('SIGKILL');
        await this.waitExit(i, 5000).catch(() => undefined);
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Polls `fn` every 50 ms until it holds; fails naming `what` after timeoutMs. */
export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function status(url: string, path: string, token?: string): Promise<number> {
  try {
    const r = await fetch(`${url}${path}`, {
      signal: AbortSignal.timeout(1000),
      ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
    });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

export async function http(
  url: string,
  method: string,
  path: string,
  opts: { token?: string | undefined; body?: unknown; rawBody?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.rawBody !== undefined) body = opts.rawBody;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${url}${path}`, { method, headers, signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000), ...(body !== undefined ? { body } : {}) });
  const text = await r.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { text };
  }
  return { status: r.status, body: parsed, headers: r.headers };
}

/**
 * POST /v1/cluster/snapshot on `url`, again while it answers 409
 * snapshot_in_progress (an automatic snapshot under way: the answer says to
 * try again shortly), for up to 10 s; the last answer.
 */
export async function snapshotNow(url: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  let snap = await http(url, 'POST', '/v1/cluster/snapshot', { token, body: {} });
  for (let i = 0; i < 50 && snap.status === 409 && snap.body['error'] === 'snapshot_in_progress'; i++) {
    await sleep(200);
    snap = await http(url, 'POST', '/v1/cluster/snapshot', { token, body: {} });
  }
  return snap;
}
