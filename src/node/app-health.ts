// Application health checks (config `health.checks`, SPEC §3): run on every
// node, each on its own interval, with a timeout. A check is unhealthy after
// `failuresBeforeUnhealthy` consecutive failures and healthy again after one
// success. Kinds: `command` (exit 0 = healthy; argv, or a string run by
// /bin/sh -c), `url` (a 2xx answer), built-ins `storage-writable` (a file
// written, fsynced and removed in the data dir), `disk-free` (free space of
// the data dir's file system at least `minFreePercent`), `database` (the
// node's SQLite database answers a trivial read through the SQL machine's read
// path) and `redis` (the node's Redis connection answers PING; accepted only
// with redis.enabled). Results feed
// /system/health/* (reasons, 503 on a failing critical check), the metrics,
// the leader's failover-on-failure and its choice of switchover targets.
import { spawn } from 'node:child_process';
import { open, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { QuorateConfig } from '../config/index.js';
import type { MetricsRegistry } from '../ops/metrics.js';
import type { AppHealthSummary, CheckStatusView } from '../api/ports-app.js';

export type CheckSpec = QuorateConfig['health']['checks'][number];

/** One check's state and the node's summary: the API's types (src/api/ports-app.ts), not a copy. */
export type CheckStatus = CheckStatusView;
export type AppHealthView = AppHealthSummary;

interface Running { spec: CheckSpec; status: CheckStatus; timer: NodeJS.Timeout | undefined; busy: boolean }

/** The `database` check's read: the schema, through the SQL machine's read path (a read worker on the file). */
export const DATABASE_CHECK_SQL = 'SELECT count(*) FROM sqlite_schema';

/** What the built-ins `database` and `redis` probe; each resolves when the dependency answered, rejects with why not. */
export interface BuiltinProbes {
  /** A trivial read of the node's SQL database through its read path. */
  database(): Promise<void>;
  /** PING on the node's Redis connection. */
  redis(): Promise<void>;
  /** What `database` probes, for messages (default: the SQL database through its read path). */
  readonly databaseLabel?: string;
}

export class AppHealth {
  readonly #checks: Running[];
  readonly #log: Logger;
  readonly #dataDir: string;
  readonly #probes: BuiltinProbes | undefined;
  readonly #listeners = new Set<(v: AppHealthView) => void>();
  readonly #gHealthy;
  readonly #cFailures;
  #stopped = false;

  constructor(o: { specs: readonly CheckSpec[]; dataDir: string; logger: Logger; metrics: MetricsRegistry; probes?: BuiltinProbes }) {
    this.#log = o.logger;
    this.#dataDir = o.dataDir;
    this.#probes = o.probes;
    this.#gHealthy = o.metrics.gauge('quorate_health_check_healthy', 'Application health check state: 1 healthy, 0 unhealthy', ['check', 'critical']);
    this.#cFailures = o.metrics.counter('quorate_health_check_failures_total', 'Failed runs of application health checks', ['check']);
    this.#checks = o.specs.map((spec) => ({
      spec, busy: false, timer: undefined,
      status: { name: spec.name, kind: spec.command !== undefined ? 'command' : spec.url !== undefined ? 'url' : 'builtin', critical: spec.critical, healthy: true, consecutiveFailures: 0, lastError: null, lastRunAt: null, lastDurationMs: null },
    }));
    for (const c of this.#checks) this.#gHealthy.set({ check: c.spec.name, critical: String(c.spec.critical) }, 1);
  }

  get configured(): boolean {
    return this.#checks.length > 0;
  }

  start(): void {
    for (const c of this.#checks) {
      const run = () => void this.#run(c);
      c.timer = setInterval(run, c.spec.intervalMs);
      c.timer.unref();
      run();
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const c of this.#checks) if (c.timer) clearInterval(c.timer);
  }

  /** Called whenever the overall verdict (healthy, failing critical checks) changes. */
  onChange(l: (v: AppHealthView) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  view(): AppHealthView {
    const checks = this.#checks.map((c) => c.status);
    const failing = checks.filter((c) => !c.healthy).map((c) => c.name);
    const failingCritical = checks.filter((c) => !c.healthy && c.critical).map((c) => c.name);
    return { healthy: failingCritical.length === 0, failing, failingCritical, checks };
  }

  async #run(c: Running): Promise<void> {
    if (c.busy || this.#stopped) return;
    c.busy = true;
    const started = performance.now();
    let error: string | null = null;
    try {
      error = await this.#probe(c.spec);
    } catch (e) {
      error = (e as Error).message;
    } finally {
      c.busy = false;
    }
    if (this.#stopped) return;
    const before = this.view();
    const prev = c.status;
    const failures = error === null ? 0 : prev.consecutiveFailures + 1;
    const healthy = error === null ? true : prev.healthy && failures < c.spec.failuresBeforeUnhealthy;
    c.status = { ...prev, healthy, consecutiveFailures: failures, lastError: error, lastRunAt: new Date().toISOString(), lastDurationMs: Math.round(performance.now() - started) };
    if (error !== null) this.#cFailures.inc({ check: c.spec.name });
    this.#gHealthy.set({ check: c.spec.name, critical: String(c.spec.critical) }, healthy ? 1 : 0);
    if (healthy !== prev.healthy) {
      const line = { event: healthy ? 'health_check_recovered' : 'health_check_failed', check: c.spec.name, critical: c.spec.critical, failures, err: error ?? undefined };
      if (healthy) this.#log.info(line, `health check ${c.spec.name} is healthy again`);
      else this.#log.warn(line, `health check ${c.spec.name} is unhealthy after ${failures} consecutive failures: ${error ?? ''}`);
      const after = this.view();
      if (after.healthy !== before.healthy || after.failingCritical.join() !== before.failingCritical.join()) for (const l of this.#listeners) l(after);
    }
  }

  /** null when healthy, else why not. */
  async #probe(s: CheckSpec): Promise<string | null> {
    if (s.command !== undefined) return runCheckCommand(s.command, s.timeoutMs);
    if (s.url !== undefined) {
      try {
        const r = await fetch(s.url, { signal: AbortSignal.timeout(s.timeoutMs) });
        await r.arrayBuffer().catch(() => undefined);
        return r.status >= 200 && r.status < 300 ? null : `${s.url} answered ${r.status}`;
      } catch (e) {
        const err = e as Error;
        return err.name === 'TimeoutError' ? `${s.url} did not answer within ${s.timeoutMs} ms` : `${s.url}: ${(err.cause as Error | undefined)?.message ?? err.message}`;
      }
    }
    if (s.builtin === 'disk-free') {
      const st = await statfs(this.#dataDir);
      const pct = st.blocks === 0 ? 100 : (Number(st.bavail) / Number(st.blocks)) * 100;
      return pct >= s.minFreePercent ? null : `${pct.toFixed(1)}% free on the file system of ${this.#dataDir}, below minFreePercent ${s.minFreePercent}`;
    }
    if (s.builtin === 'database' || s.builtin === 'redis') return this.#probeDependency(s.builtin, s.timeoutMs);
    return withTimeout(storageWritable(this.#dataDir), s.timeoutMs, `writing to ${this.#dataDir} took longer than ${s.timeoutMs} ms`);
  }

  async #probeDependency(which: 'database' | 'redis', timeoutMs: number): Promise<string | null> {
    const p = this.#probes;
    const what = which === 'database' ? (p?.databaseLabel ?? 'the SQL database (a read through its read path)') : 'Redis (PING)';
    if (p === undefined) return `${what} cannot be checked on this node`;
    const run = Promise.resolve().then(() => (which === 'database' ? p.database() : p.redis())).then(() => null, (e: Error) => `${what} failed: ${e.message}`);
    return withTimeout(run, timeoutMs, `${what} did not answer within ${timeoutMs} ms`);
  }
}

async function storageWritable(dir: string): Promise<string | null> {
  const file = join(dir, '.health-check');
  try {
    const fh = await open(file, 'w');
    try {
      await fh.writeFile(`${Date.now()}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rm(file, { force: true });
    return null;
  } catch (e) {
    return `cannot write to the data dir ${dir}: ${(e as Error).message}`;
  }
}

function withTimeout(p: Promise<string | null>, ms: number, why: string): Promise<string | null> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<string>((r) => { t = setTimeout(() => r(why), ms); })]).finally(() => clearTimeout(t));
}

/** argv, or a shell line for /bin/sh -c. */
export function argvOf(command: string | readonly string[], extra: readonly string[] = []): [string, string[]] {
  if (typeof command === 'string') return ['/bin/sh', ['-c', command, 'quorate', ...extra]];
  return [command[0]!, [...command.slice(1), ...extra]];
}

/**
 * Runs a command in its own process group, killed (SIGTERM, then SIGKILL after
 * 1 s) at the timeout. Resolves with its exit code (null when killed), the
 * signal, and the tail of its output.
 */
export function runCommand(command: string | readonly string[], o: { args?: readonly string[]; env?: Record<string, string>; timeoutMs: number }): Promise<{ code: number | null; signal: string | null; timedOut: boolean; output: string; error?: string }> {
  const [file, args] = argvOf(command, o.args ?? []);
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let child;
    try {
      child = spawn(file, args, { env: { ...process.env, ...(o.env ?? {}) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (e) {
      resolve({ code: null, signal: null, timedOut: false, output: '', error: (e as Error).message });
      return;
    }
    const keep = (b: Buffer) => { output = (output + b.toString('utf8')).slice(-2000); };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const kill = (sig: NodeJS.Signals) => { try { if (child.pid !== undefined) process.kill(-child.pid, sig); } catch { /* gone */ } };
    let hard: NodeJS.Timeout | undefined;
    const soft = setTimeout(() => { timedOut = true; kill('SIGTERM'); hard = setTimeout(() => kill('SIGKILL'), 1000); }, o.timeoutMs);
    child.on('error', (e) => { clearTimeout(soft); clearTimeout(hard); resolve({ code: null, signal: null, timedOut, output, error: e.message }); });
    child.on('close', (code, signal) => { clearTimeout(soft); clearTimeout(hard); resolve({ code, signal, timedOut, output }); });
  });
}

async function runCheckCommand(command: string | readonly string[], timeoutMs: number): Promise<string | null> {
  const r = await runCommand(command, { timeoutMs });
  if (r.error !== undefined) return `cannot run the check command: ${r.error}`;
  if (r.timedOut) return `the check command did not finish within ${timeoutMs} ms`;
  if (r.code === 0) return null;
  const tail = r.output.trim().split('\n').slice(-1)[0] ?? '';
  return `the check command exited with ${r.code ?? r.signal ?? 'unknown'}${tail !== '' ? `: ${tail.slice(0, 200)}` : ''}`;
}
