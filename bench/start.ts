// `npm run bench:start`: how long a quorate process takes to start.
// - agent: a single-node cluster (tests' harness: loopback, fsync on, TLS off)
//   spawned BENCH_START_RUNS times (default 7) on fresh data dirs, then
//   restarted as many times on one data dir holding BENCH_START_KEYS writes
//   (default 1000); each time from spawn to the first 200 of
//   /system/health/ping (the API listens) and of /system/health/ready (it
//   leads with a quorum), and the CPU the process used until ready (user +
//   system from /proc/PID/stat, Linux only; it moves less with the load of the
//   machine than wall time does).
// - cli: `quorate --help`, `quorate kv --help`, `quorate kv get KEY` (against
//   the running node) and `quorate status`, BENCH_START_RUNS each: wall time
//   and CPU (the children's CPU from /proc/self/stat, Linux only).
// Medians, plus min and max; the load average before and after. Prints one
// JSON report. Not part of `npm test`.
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { TestCluster, TOKEN, MAIN, sleep } from '../test/integration/harness.js';
import { childrenCpuMs, cpuMsOf } from './proc.js';

const RUNS = Number(process.env['BENCH_START_RUNS'] ?? 7);
const KEYS = Number(process.env['BENCH_START_KEYS'] ?? 1000);
const NODE_ARGS = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((x) => x !== '');

interface Spread { median: number; min: number; max: number }

function spread(xs: readonly number[]): Spread | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median: Math.round(median), min: Math.round(s[0]!), max: Math.round(s[s.length - 1]!) };
}

/** GET on a new connection each time (no pooled socket to a process that is gone), answered within 500 ms or 0. */
function status(url: string, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(`${url}${path}`, { agent: false, timeout: 500 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

interface StartSample { listenMs: number; readyMs: number; cpuMs: number | undefined }

/** Starts node 0 of `c` and polls it every 5 ms until ready. */
async function timedStart(c: TestCluster): Promise<StartSample> {
  const t0 = performance.now();
  c.startNode(0);
  const url = c.nodes[0]!.url;
  let listenMs: number | undefined;
  for (;;) {
    if (c.nodes[0]!.exitCode !== undefined) throw new Error(`the node exited while starting:\n${c.logTails()}`);
    if (performance.now() - t0 > 60_000) throw new Error(`not ready within 60 s:\n${c.logTails()}`);
    if (listenMs === undefined && (await status(url, '/system/health/ping')) === 200) listenMs = performance.now() - t0;
    if (listenMs !== undefined && (await status(url, '/system/health/ready')) === 200) {
      const readyMs = performance.now() - t0;
      return { listenMs, readyMs, cpuMs: cpuMsOf(c.nodes[0]!.proc!.pid!) };
    }
    await sleep(5);
  }
}

async function stopNode(c: TestCluster): Promise<void> {
  c.kill(0, 'SIGTERM');
  await c.waitExit(0, 15_000);
}

function summary(samples: readonly StartSample[]): Record<string, Spread | null> {
  const cpu = samples.map((s) => s.cpuMs).filter((x): x is number => x !== undefined);
  return { spawnToListenMs: spread(samples.map((s) => s.listenMs)), spawnToReadyMs: spread(samples.map((s) => s.readyMs)), cpuToReadyMs: spread(cpu) };
}

function cli(args: readonly string[], env: Record<string, string> = {}): { wallMs: number; cpuMs: number | undefined; status: number | null } {
  const before = childrenCpuMs();
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const wallMs = performance.now() - t0;
  const after = childrenCpuMs();
  return { wallMs, cpuMs: before !== undefined && after !== undefined ? after - before : undefined, status: r.status };
}

function cliSpread(args: readonly string[], env: Record<string, string> = {}): Record<string, Spread | null | number | null> {
  const runs = Array.from({ length: RUNS }, () => cli(args, env));
  const bad = runs.find((r) => r.status !== 0);
  if (bad) throw new Error(`quorate ${args.join(' ')} exited ${bad.status}`);
  return { wallMs: spread(runs.map((r) => r.wallMs)), cpuMs: spread(runs.map((r) => r.cpuMs).filter((x): x is number => x !== undefined)) };
}

async function main(): Promise<void> {
  const loadBefore = loadavg().map((x) => Math.round(x * 100) / 100);
  const fresh: StartSample[] = [];
  for (let i = 0; i < RUNS; i++) {
    const c = await TestCluster.start({ nodes: 1, nodeArgs: NODE_ARGS });
    try {
      await stopNode(c); // start() spawned it already; time a spawn of our own on the fresh dir
      const keep = new Set(['quorate.json', 'admin.token', 'cluster.secret', 'tokens.json']);
      for (const f of readdirSync(c.nodes[0]!.dir)) if (!keep.has(f)) rmSync(join(c.nodes[0]!.dir, f), { recursive: true, force: true });
      fresh.push(await timedStart(c));
    } finally {
      await c.stop();
    }
  }
  const c = await TestCluster.start({ nodes: 1, nodeArgs: NODE_ARGS });
  const restarts: StartSample[] = [];
  let cliReport: Record<string, unknown>;
  try {
    await c.waitReady(0);
    const client = c.client();
    for (let k = 0; k < KEYS; k += 50) await Promise.all(Array.from({ length: Math.min(50, KEYS - k) }, (_, j) => client.kvPut(`bench/${k + j}`, 'v'.repeat(256))));
    for (let i = 0; i < RUNS; i++) {
      await stopNode(c);
      restarts.push(await timedStart(c));
    }
    const env = { QUORATE_URL: c.nodes[0]!.url, QUORATE_TOKEN: TOKEN };
    cliReport = {
      help: cliSpread(['--help']),
      kvHelp: cliSpread(['kv', 'get', '--help']),
      kvGet: cliSpread(['kv', 'get', 'bench/0'], env),
      status: cliSpread(['status'], env),
      nodeBaseline: (() => {
        const runs = Array.from({ length: RUNS }, () => {
          const before = childrenCpuMs();
          const t0 = performance.now();
          spawnSync(process.execPath, ['-e', '0']);
          const wallMs = performance.now() - t0;
          const after = childrenCpuMs();
          return { wallMs, cpuMs: before !== undefined && after !== undefined ? after - before : undefined };
        });
        return { wallMs: spread(runs.map((r) => r.wallMs)), cpuMs: spread(runs.map((r) => r.cpuMs).filter((x): x is number => x !== undefined)) };
      })(),
    };
  } finally {
    await c.stop();
  }
  const report = {
    bench: 'start',
    runs: RUNS,
    keysBeforeRestart: KEYS,
    node: process.version,
    loadAverage: { before: loadBefore, after: loadavg().map((x) => Math.round(x * 100) / 100) },
    agentFreshDataDir: summary(fresh),
    agentRestart: summary(restarts),
    cli: cliReport,
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}

await main();
