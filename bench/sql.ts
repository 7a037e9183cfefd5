// `npm run bench:sql`: replicated SQL insert throughput. Single-row inserts
// (one statement per POST /v1/db/execute, each its own entry) at
// concurrency 1/16/64 against the leader of a three-node quorate cluster on
// loopback (real processes, fsync on), side by side in the same run with raw
// better-sqlite3 on one node (one connection, one transaction per insert, WAL
// with synchronous FULL and NORMAL; one connection is synchronous, so
// concurrency does not apply to it); then point queries by primary key,
// linearizable and stale, at BENCH_QUERY_CONCURRENCY clients (default 64).
// Prints one JSON report. etcd's KV writes
// are in `npm run bench` (bench/cluster.ts); not part of `npm test`.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TestCluster, TOKEN } from '../test/integration/harness.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const CONCURRENCY = (process.env['BENCH_CONCURRENCY'] ?? '1,16,64').split(',').map(Number);
const QUERY_CONCURRENCY = (process.env['BENCH_QUERY_CONCURRENCY'] ?? '64').split(',').map(Number);
const VALUE = 'v'.repeat(100);

function post(agent: http.Agent, url: string, path: string, body: string): Promise<number> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const req = http.request(
      { agent, host: u.hostname, port: u.port, method: 'POST', path, timeout: 10_000, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
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

const pct = (sorted: number[], p: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d;

/** `concurrency` clients POST `body()` to `path` back to back for SECONDS: answers per second (200 only), failures, p50 and p99. */
async function closedLoop(url: string, path: string, concurrency: number, body: () => string): Promise<{ perSecond: number; ok: number; failed: number; p50Ms: number; p99Ms: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const lat: number[] = [];
  let ok = 0;
  let failed = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const status = await post(agent, url, path, body());
      if (status === 200) {
        ok++;
        lat.push(performance.now() - t0);
      } else failed++;
    }
  }));
  agent.destroy();
  lat.sort((a, b) => a - b);
  return { perSecond: round(ok / SECONDS, 1), ok, failed, p50Ms: round(pct(lat, 50)), p99Ms: round(pct(lat, 99)) };
}

async function clusterRun(url: string, concurrency: number): Promise<Record<string, number>> {
  let n = 0;
  const { perSecond, ...r } = await closedLoop(url, '/v1/db/execute', concurrency, () => JSON.stringify({ statements: [['INSERT INTO t (v) VALUES (?)', `${VALUE}${n++}`]] }));
  return { concurrency, insertsPerSecond: perSecond, ...r };
}

/** Point queries by primary key over the rows inserted, `consistency` linearizable (on the leader) or stale. */
async function queryRun(url: string, concurrency: number, rows: number, consistency: 'linearizable' | 'stale'): Promise<Record<string, unknown>> {
  let seq = 0;
  const { perSecond, ...r } = await closedLoop(url, '/v1/db/query', concurrency, () => JSON.stringify({ sql: 'SELECT v FROM t WHERE id = ?', params: [1 + ((seq++ * 7919) % rows)], consistency }));
  return { consistency, concurrency, queriesPerSecond: perSecond, ...r };
}

function rawRun(synchronous: 'FULL' | 'NORMAL'): Record<string, unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-bench-sql-'));
  try {
    const db = new Database(join(dir, 'raw.sqlite'));
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
    const lat: number[] = [];
    const end = performance.now() + SECONDS * 1000;
    let n = 0;
    while (performance.now() < end) {
      const t0 = performance.now();
      ins.run(`${VALUE}${n++}`);
      lat.push(performance.now() - t0);
    }
    db.close();
    lat.sort((a, b) => a - b);
    return { synchronous, insertsPerSecond: round(n / SECONDS, 1), p50Ms: round(pct(lat, 50), 3), p99Ms: round(pct(lat, 99), 3) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const c = await TestCluster.start({ nodes: 3 });
try {
  const leader = await c.waitLeader(60_000);
  const url = c.nodes[leader]!.url;
  const agent = new http.Agent({ keepAlive: true });
  if ((await post(agent, url, '/v1/db/execute', JSON.stringify({ statements: [['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)']] }))) !== 200) throw new Error('CREATE TABLE failed');
  agent.destroy();
  const cluster: Record<string, number>[] = [];
  for (const conc of CONCURRENCY) cluster.push(await clusterRun(url, conc));
  const rows = Math.max(1, cluster.reduce((a, r) => a + (r['ok'] ?? 0), 0));
  const queries: Record<string, unknown>[] = [];
  for (const conc of QUERY_CONCURRENCY) {
    queries.push(await queryRun(url, conc, rows, 'linearizable'));
    queries.push(await queryRun(url, conc, rows, 'stale'));
  }
  const raw = [rawRun('FULL'), rawRun('NORMAL')];
  console.log(JSON.stringify({
    bench: 'sql-insert',
    seconds: SECONDS,
    statement: 'INSERT INTO t (v) VALUES (?) (one row, one request, one log entry)',
    quorate3Nodes: cluster,
    query: 'SELECT v FROM t WHERE id = ? (a point query by primary key over the rows inserted, on the leader)',
    quorate3NodesQueries: queries,
    rawBetterSqlite3OneNode: raw,
    context: "rqlite's published figures are context only (not measured here); etcd's KV writes and quorate's KV writes: npm run bench (bench/cluster.ts).",
  }, null, 2));
} finally {
  await c.stop();
}
