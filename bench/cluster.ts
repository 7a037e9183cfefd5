// `npm run bench`: a three-node quorate cluster on loopback (real processes,
// fsync on) under write and read load, failover after kill -9 of the leader,
// RSS per node; and, when etcd is installed (Debian: apt-get install
// etcd-server), the same workloads against a three-node etcd in the same run.
// Replicated SQL in the same run: single-row inserts (one POST /v1/db/execute,
// one log entry each) and linearizable point queries (POST /v1/db/query) at
// BENCH_SQL_CONCURRENCY clients (default 64) against the quorate leader of a
// cluster of its own (each node's RSS after it in the report), reported next
// to etcd's put and range at the same concurrency; and one
// replicated file of each size in BENCH_FILE_MB (MiB, default 64,1024) streamed to the
// leader of a fresh cluster of its own (bench/files-upload.ts): time, MiB/s and
// each node's RSS growth.
// Two data nodes and a Redis witness (src/coord/WITNESS.md; needs
// redis-server, BENCH_WITNESS=0 skips it): kill -9 of the leader under
// inSyncDegrade, the time until the standby leads and until writes resume
// (./witness-run.ts, BENCH_FAILOVER_ROUNDS rounds, lease TTL 2 s), next to
// the three-node failover.
// Catch-up: a follower is killed, BENCH_CATCHUP_WRITES writes (default 10000,
// 64 clients) go to the leader, the follower is restarted; reported are
// restart → ready (process start to serving) and restart → the last of those
// writes readable from the follower's own copy (stale/serializable read).
// BENCH_ONLY=sql,files,writes,reads,catchup,failover,witness runs only those parts.
// Before the write workloads each system serves BENCH_WARMUP_SECONDS (default 2)
// of writes at 16 clients, not reported (0 skips it).
// BENCH_NODE_ARGS (space-separated) are passed to node for each quorate agent
// (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
// Prints one JSON report. Not part of `npm test`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCluster, TOKEN, freePorts, sleep } from '../test/integration/harness.js';
import { REDIS_SERVER } from '../test/support/redis-server.js';
import { witnessFailover } from './witness-run.js';
import { uploadRun } from './files-upload.js';
import { cpuMsOf, rssMb } from './proc.js';
import { LoadClient } from './http-load.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const WARMUP_SECONDS = Number(process.env['BENCH_WARMUP_SECONDS'] ?? 2);
const CONCURRENCY = (process.env['BENCH_CONCURRENCY'] ?? '1,16,64,256').split(',').map(Number);
const FAILOVER_ROUNDS = Number(process.env['BENCH_FAILOVER_ROUNDS'] ?? 5);
const VALUE = 'v'.repeat(256);
const KEYSPACE = 10_000;
const SQL_CONCURRENCY = Number(process.env['BENCH_SQL_CONCURRENCY'] ?? 64);
const FILE_MB = (process.env['BENCH_FILE_MB'] ?? '64,1024').split(',').map(Number);
const CATCHUP_WRITES = Number(process.env['BENCH_CATCHUP_WRITES'] ?? 10_000);
const PARTS = new Set((process.env['BENCH_ONLY'] ?? 'sql,files,writes,reads,catchup,failover,witness').split(',').map((x) => x.trim()));
const NODE_ARGS = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((x) => x !== '');

interface Target {
  readonly name: string;
  urls(): string[];
  put(agent: Client, url: string, key: string): Promise<boolean>;
  get(agent: Client, url: string, key: string): Promise<boolean>;
  /** Whether `key` is in this node's own copy (no leader involved). */
  hasLocal(agent: http.Agent, url: string, key: string): Promise<boolean>;
  leader(): Promise<number>;
  kill(i: number): void;
  restart(i: number): Promise<void>;
  pids(): number[];
  stop(): Promise<void>;
}

let requestTimeoutMs = 5000;

/** The load workloads send through a LoadClient (./http-load.ts); failover, catch-up and setup through Node's http client. */
type Client = http.Agent | LoadClient;

function request(agent: Client, url: string, method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<number> {
  if (agent instanceof LoadClient) return agent.request(url, method, path, body, headers);
  return new Promise((resolve) => {
    const u = new URL(url);
    const req = http.request(
      { agent, host: u.hostname, port: u.port, method, path, headers: { ...headers, ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) }, timeout: requestTimeoutMs },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      },
    );
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end(body);
  });
}

function requestBody(agent: http.Agent, url: string, method: string, path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const req = http.request({ agent, host: u.hostname, port: u.port, method, path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 1000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.on('timeout', () => req.destroy());
    req.end(body);
  });
}

function quorateTarget(c: TestCluster): Target {
  const auth = { authorization: `Bearer ${TOKEN}` };
  return {
    name: 'quorate',
    urls: () => c.nodes.map((n) => n.url),
    put: async (agent, url, key) => (await request(agent, url, 'PUT', `/v1/kv/${key}`, JSON.stringify({ value: VALUE }), auth)) === 200,
    get: async (agent, url, key) => [200, 404].includes(await request(agent, url, 'GET', `/v1/kv/${key}`, undefined, auth)),
    hasLocal: async (agent, url, key) => (await request(agent, url, 'GET', `/v1/kv/${key}?consistency=stale`, undefined, auth)) === 200,
    leader: () => c.waitLeader(20_000),
    kill: (i) => c.kill(i, 'SIGKILL'),
    restart: async (i) => {
      await c.waitExit(i);
      c.startNode(i);
      await c.waitReady(i);
    },
    pids: () => c.nodes.map((n) => n.proc?.pid ?? 0),
    stop: () => c.stop(),
  };
}

async function etcdTarget(bin: string): Promise<Target> {
  const root = mkdtempSync(join(tmpdir(), 'quorate-bench-etcd-'));
  const ports = await freePorts(6);
  const names = ['e1', 'e2', 'e3'];
  const initial = names.map((n, i) => `${n}=http://127.0.0.1:${ports[3 + i]}`).join(',');
  const procs: Array<ChildProcess | undefined> = [];
  const start = (i: number) => {
    const p = spawn(bin, [
      '--name', names[i]!, '--data-dir', join(root, names[i]!),
      '--listen-client-urls', `http://127.0.0.1:${ports[i]}`, '--advertise-client-urls', `http://127.0.0.1:${ports[i]}`,
      '--listen-peer-urls', `http://127.0.0.1:${ports[3 + i]}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${ports[3 + i]}`,
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', 'bench',
      '--log-level', 'error',
    ], { stdio: 'ignore' });
    procs[i] = p;
  };
  for (let i = 0; i < 3; i++) start(i);
  const urls = () => ports.slice(0, 3).map((p) => `http://127.0.0.1:${p}`);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const agent = new http.Agent({ keepAlive: true });
  const statusOf = async (url: string): Promise<{ leader: boolean } | undefined> => {
    return new Promise((resolve) => {
      const u = new URL(url);
      const req = http.request({ agent, host: u.hostname, port: u.port, method: 'POST', path: '/v3/maintenance/status', headers: { 'content-type': 'application/json' }, timeout: 1000 }, (res) => {
        let s = '';
        res.on('data', (d: Buffer) => (s += d.toString()));
        res.on('end', () => {
          try {
            const j = JSON.parse(s) as { leader?: string; header?: { member_id?: string } };
            resolve({ leader: j.leader !== undefined && j.leader === j.header?.member_id });
          } catch {
            resolve(undefined);
          }
        });
      });
      req.on('error', () => resolve(undefined));
      req.on('timeout', () => req.destroy());
      req.end('{}');
    });
  };
  const t: Target = {
    name: 'etcd',
    urls,
    put: async (a, url, key) => (await request(a, url, 'POST', '/v3/kv/put', JSON.stringify({ key: b64(key), value: b64(VALUE) }), {})) === 200,
    get: async (a, url, key) => (await request(a, url, 'POST', '/v3/kv/range', JSON.stringify({ key: b64(key) }), {})) === 200,
    hasLocal: async (a, url, key) => {
      const r = await requestBody(a, url, 'POST', '/v3/kv/range', JSON.stringify({ key: b64(key), serializable: true }));
      return r.status === 200 && (JSON.parse(r.body || '{}') as { kvs?: unknown[] }).kvs?.length === 1;
    },
    leader: async () => {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const us = urls();
        for (let i = 0; i < 3; i++) {
          if (!procs[i] || procs[i]!.exitCode !== null || procs[i]!.signalCode !== null) continue;
          if ((await statusOf(us[i]!))?.leader) return i;
        }
        await sleep(25);
      }
      throw new Error('etcd: no leader');
    },
    kill: (i) => procs[i]?.kill('SIGKILL'),
    restart: async (i) => {
      await new Promise((r) => (procs[i]!.exitCode !== null || procs[i]!.signalCode !== null ? r(null) : procs[i]!.once('exit', r)));
      start(i);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && !(await statusOf(urls()[i]!))) await sleep(50);
    },
    pids: () => procs.map((p) => p?.pid ?? 0),
    stop: async () => {
      for (const p of procs) p?.kill('SIGTERM');
      await sleep(500);
      for (const p of procs) if (p && p.exitCode === null) p.kill('SIGKILL');
      agent.destroy();
      rmSync(root, { recursive: true, force: true });
    },
  };
  await t.leader();
  return t;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function load(t: Target, url: string, concurrency: number, kind: 'write' | 'read', seconds: number) {
  return loadOp(concurrency, seconds, (agent, seq) => {
    const key = `bench-${seq % KEYSPACE}`;
    return kind === 'write' ? t.put(agent, url, key) : t.get(agent, url, key);
  }, t.pids());
}

/**
 * Kill -9 the leader under an open-loop writer: a new write starts every 5 ms on
 * a surviving node (round robin), each with its own 2 s timeout, so a request
 * stuck on the dead leader never hides a recovery. Measures kill → first
 * acknowledged write that started after the kill.
 */
async function failover(t: Target, rounds: number) {
  const results: Array<{ round: number; killToFirstWriteMs: number; newLeader: number }> = [];
  for (let r = 0; r < rounds; r++) {
    const leader = await t.leader();
    const urls = t.urls().filter((_, i) => i !== leader);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    let firstAck = 0;
    let n = 0;
    const inflight = new Set<Promise<void>>();
    const killAt = performance.now() + 300;
    let killed = false;
    const deadline = killAt + 15_000;
    requestTimeoutMs = 2000;
    while (firstAck === 0 && performance.now() < deadline) {
      if (!killed && performance.now() >= killAt) {
        t.kill(leader);
        killed = true;
      }
      if (inflight.size < 200) {
        const started = performance.now();
        const url = urls[n % urls.length]!;
        const p = t.put(agent, url, `failover-${r}-${n++}`).then((good) => {
          if (good && killed && started >= killAt && firstAck === 0) firstAck = performance.now();
          inflight.delete(p);
        });
        inflight.add(p);
      }
      await sleep(5);
    }
    await Promise.all(inflight);
    requestTimeoutMs = 5000;
    agent.destroy();
    results.push({ round: r + 1, killToFirstWriteMs: firstAck ? round(firstAck - killAt) : -1, newLeader: await t.leader() });
    await t.restart(leader);
    await sleep(1000);
  }
  const times = results.map((x) => x.killToFirstWriteMs).filter((x) => x >= 0).sort((a, b) => a - b);
  return { rounds: results, medianMs: percentile(times, 50), maxMs: times[times.length - 1] ?? -1 };
}

/**
 * A follower restarted after missing `n` writes: kill -9 it, write `n` keys to
 * the leader (64 clients) and one last key, restart it, and time restart →
 * ready and restart → the last key in its own copy. Log order means every
 * earlier write is then applied too.
 */
async function catchUp(t: Target, n: number) {
  const leader = await t.leader();
  const f = (leader + 1) % 3;
  const urls = t.urls();
  t.kill(f);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const tag = `catchup-${Date.now()}`;
  let next = 0;
  let failed = 0;
  const w0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < n) {
      const k = next++;
      if (!(await t.put(agent, urls[leader]!, `${tag}-${k % KEYSPACE}`))) failed++;
    }
  }));
  const writeSeconds = (performance.now() - w0) / 1000;
  const last = `${tag}-last`;
  if (!(await t.put(agent, urls[leader]!, last))) throw new Error('catch-up: the last write failed');
  const t0 = performance.now();
  await t.restart(f);
  const ready = performance.now() - t0;
  const deadline = t0 + 60_000;
  let caught = -1;
  while (performance.now() < deadline) {
    if (await t.hasLocal(agent, urls[f]!, last)) {
      caught = performance.now() - t0;
      break;
    }
    await sleep(5);
  }
  agent.destroy();
  return { writesWhileDown: n, failedWrites: failed, writeSeconds: round(writeSeconds), restartToReadyMs: round(ready), restartToCaughtUpMs: round(caught) };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

async function runAll(t: Target) {
  const leader = await t.leader();
  const url = t.urls()[leader]!;
  const writes = [];
  // Both systems first serve WARMUP_SECONDS of writes (16 clients), not measured: a
  // long-running cluster's figures, not those of its first seconds (JIT, caches).
  if (WARMUP_SECONDS > 0 && (PARTS.has('writes') || PARTS.has('reads'))) await load(t, url, 16, 'write', WARMUP_SECONDS);
  if (PARTS.has('writes')) for (const c of CONCURRENCY) writes.push(await load(t, url, c, 'write', SECONDS));
  const reads = PARTS.has('reads') ? await load(t, url, 64, 'read', SECONDS) : undefined;
  const rss = t.pids().map(rssMb);
  const catchup = PARTS.has('catchup') ? await catchUp(t, CATCHUP_WRITES) : undefined;
  const fo = PARTS.has('failover') ? await failover(t, FAILOVER_ROUNDS) : undefined;
  return { writes, linearizableReads64: reads, rssMbPerNode: rss, catchUp: catchup, failover: fo };
}

/**
 * `concurrency` clients each running `op` back to back for `seconds`: throughput
 * and latency of the ones that succeeded, and the CPU per operation of the
 * processes `pids` and of this load generator.
 */
async function loadOp(concurrency: number, seconds: number, op: (agent: Client, seq: number) => Promise<boolean>, pids: readonly number[]) {
  const agent = new LoadClient(requestTimeoutMs);
  const lat: number[] = [];
  let ok = 0;
  let failed = 0;
  let seq = 0;
  const cpu0 = pids.map((p) => cpuMsOf(p) ?? 0);
  const client0 = cpuMsOf('self') ?? 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      if (await op(agent, seq++)) {
        ok++;
        lat.push(performance.now() - t0);
      } else failed++;
    }
  }));
  agent.destroy();
  lat.sort((a, b) => a - b);
  // CPU per acknowledged operation (µs; /proc, 10 ms ticks): each node's, and this load generator's (it shares the machine).
  const perOp = (ms: number) => (ok > 0 ? Math.round((ms * 1000) / ok) : 0);
  const cpuUsPerOp = { nodes: pids.map((p, i) => perOp((cpuMsOf(p) ?? 0) - cpu0[i]!)), client: perOp((cpuMsOf('self') ?? 0) - client0) };
  return { concurrency, ops: ok, failed, opsPerSecond: Math.round(ok / seconds), p50Ms: round(percentile(lat, 50)), p99Ms: round(percentile(lat, 99)), cpuUsPerOp };
}

/** Replicated SQL against the leader: single-row inserts, then linearizable point queries by primary key over the rows inserted. */
async function sqlRun(c: TestCluster) {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const url = c.nodes[await c.waitLeader(20_000)]!.url;
  const setup = new http.Agent({ keepAlive: true });
  const created = await request(setup, url, 'POST', '/v1/db/execute', JSON.stringify({ statements: [['CREATE TABLE bench (id INTEGER PRIMARY KEY, v TEXT NOT NULL)']] }), auth);
  setup.destroy();
  if (created !== 200) throw new Error(`CREATE TABLE failed (HTTP ${created})`);
  const pids = c.nodes.map((n) => n.proc?.pid ?? 0);
  const inserts = await loadOp(SQL_CONCURRENCY, SECONDS, async (agent) =>
    (await request(agent, url, 'POST', '/v1/db/execute', JSON.stringify({ statements: [['INSERT INTO bench (v) VALUES (?)', VALUE]] }), auth)) === 200, pids);
  const rows = Math.max(1, inserts.ops);
  const queries = await loadOp(SQL_CONCURRENCY, SECONDS, async (agent, seq) =>
    (await request(agent, url, 'POST', '/v1/db/query', JSON.stringify({ sql: 'SELECT v FROM bench WHERE id = ?', params: [1 + (seq * 7919) % rows], consistency: 'linearizable' }), auth)) === 200, pids);
  return {
    insert: { statement: 'INSERT INTO bench (v) VALUES (?) (one row, one request, one log entry; 256-byte value)', ...inserts },
    query: { statement: 'SELECT v FROM bench WHERE id = ? (linearizable, on the leader)', rows, ...queries },
    // Each node then runs SQLite's apply thread, and the leader its read threads (about 10 MB each).
    rssMbPerNode: c.nodes.map((n) => rssMb(n.proc?.pid ?? 0)),
  };
}

function findEtcd(): string | undefined {
  for (const p of ['/usr/bin/etcd', '/usr/local/bin/etcd']) if (existsSync(p)) return p;
  return undefined;
}

const report: Record<string, unknown> = { benchmark: 'cluster', nodes: 3, valueBytes: 256, secondsPerWorkload: SECONDS, warmupSeconds: WARMUP_SECONDS, nodeVersion: process.version };
if (PARTS.has('files')) {
  report['quorateFileUploads'] = [];
  for (const mib of FILE_MB) {
    // Each size on a fresh cluster of its own: the RSS growth is measured from a start, and the parts below do not
    // measure a cluster whose every snapshot sent to a restarted follower carries a GiB of files (their catch-up
    // and failover rounds then timed out).
    const fc = await TestCluster.start({ nodes: 3, nodeArgs: NODE_ARGS });
    try {
      (report['quorateFileUploads'] as unknown[]).push(await uploadRun(fc, mib));
    } finally {
      await fc.stop();
    }
  }
}
if (PARTS.has('sql')) {
  // SQL on a cluster of its own, as the files: the KV figures below, compared with
  // etcd's KV, are those of nodes that serve the KV alone (a node starts SQLite's
  // threads at its first SQL statement; their memory is in this part's report).
  const sc = await TestCluster.start({ nodes: 3, nodeArgs: NODE_ARGS });
  try {
    report['quorateSql'] = await sqlRun(sc);
  } finally {
    await sc.stop();
  }
}
const q = await TestCluster.start({ nodes: 3, nodeArgs: NODE_ARGS });
try {
  report['quorate'] = await runAll(quorateTarget(q));
} finally {
  await q.stop();
}
if (process.env['BENCH_WITNESS'] === '0' || !PARTS.has('witness')) report['quorateTwoNodeWitness'] = 'skipped (BENCH_WITNESS=0 or not in BENCH_ONLY)';
else if (!existsSync(REDIS_SERVER)) report['quorateTwoNodeWitness'] = `${REDIS_SERVER} not installed (apt-get install redis-server to measure the two-node failover)`;
else report['quorateTwoNodeWitness'] = await witnessFailover({ ttlSeconds: 2, renewSeconds: 1, rounds: FAILOVER_ROUNDS, degrade: true });
const etcdBin = process.env['BENCH_ETCD'] === '0' ? undefined : findEtcd();
if (etcdBin) {
  const e = await etcdTarget(etcdBin);
  try {
    report['etcd'] = await runAll(e);
  } finally {
    await e.stop();
  }
  const qr = report['quorate'] as Awaited<ReturnType<typeof runAll>>;
  const er = report['etcd'] as Awaited<ReturnType<typeof runAll>>;
  const ratio = (a: number | undefined, b: number | undefined, min = 1): number | null => (a === undefined || b === undefined ? null : round(a / Math.max(min, b)));
  const c64 = CONCURRENCY.indexOf(64);
  const s = report['quorateSql'] as Awaited<ReturnType<typeof sqlRun>> | undefined;
  const sqlI = CONCURRENCY.indexOf(SQL_CONCURRENCY);
  report['ratios'] = {
    writeThroughput: Object.fromEntries(qr.writes.map((w, i) => [`c${w.concurrency}`, round(w.opsPerSecond / Math.max(1, er.writes[i]!.opsPerSecond))])),
    writeP99LatencyC64: c64 < 0 ? null : ratio(qr.writes[c64]?.p99Ms, er.writes[c64]?.p99Ms, 0.001),
    readThroughputC64: ratio(qr.linearizableReads64?.opsPerSecond, er.linearizableReads64?.opsPerSecond),
    failoverMedian: ratio(qr.failover?.medianMs, er.failover?.medianMs),
    // Restarted follower: restart → the last write in its own copy (below 1 = quorate faster).
    catchUpTime: ratio(qr.catchUp?.restartToCaughtUpMs, er.catchUp?.restartToCaughtUpMs),
    rssPerNodeMedian: ratio(median(qr.rssMbPerNode), median(er.rssMbPerNode)),
    // Replicated SQL next to etcd's KV at the same concurrency (null when BENCH_CONCURRENCY lacks it).
    [`sqlInsertVsEtcdPutC${SQL_CONCURRENCY}`]: sqlI < 0 ? null : ratio(s?.insert.opsPerSecond, er.writes[sqlI]?.opsPerSecond),
    sqlQueryVsEtcdRangeC64: SQL_CONCURRENCY === 64 ? ratio(s?.query.opsPerSecond, er.linearizableReads64?.opsPerSecond) : null,
  };
} else {
  report['etcd'] = 'not installed (apt-get install etcd-server to compare)';
}
console.log(JSON.stringify(report, null, 2));
