// A private PostgreSQL for tests that kill or restart the database: initdb
// into a temp dir from the installed binaries, started with pg_ctl on a free
// port (socket in the same dir), trust auth on loopback; stopped and removed
// afterwards (the machine's own PostgreSQL on 5432 is never touched). As
// root (initdb refuses root) the server runs as the `postgres` user.
// `start({ netns, host })`: the server runs inside a network namespace and
// listens on `host` there (the nodes' connection string names it); the test
// process, outside that namespace, queries it through the Unix socket in the
// temp dir (a path, not an address: it crosses namespaces).
import { execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePorts, sleep } from '../integration/harness.js';

function binDir(): string {
  const env = process.env['QUORATE_TEST_PG_BIN'];
  if (env) return env;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a)) : [];
  if (versions.length === 0) throw new Error('no PostgreSQL binaries found under /usr/lib/postgresql/*/bin (set QUORATE_TEST_PG_BIN)');
  return join(root, versions[0]!, 'bin');
}

const asRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[], netns?: string): string {
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const [f, a] = netns === undefined ? [file, argv] : ['ip', ['netns', 'exec', netns, file, ...argv]];
  return execFileSync(f, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface TestPostgresOptions {
  /** The network namespace to run the server in (root only: `ip netns exec`). */
  readonly netns?: string;
  /** The address it listens on (default 127.0.0.1). */
  readonly host?: string;
  /** A network (CIDR) whose clients are trusted too (pg_hba.conf), for a server off loopback. */
  readonly trust?: string;
}

export class TestPostgres {
  readonly port: number;
  readonly dir: string;
  readonly #bin: string;
  readonly #o: TestPostgresOptions;

  private constructor(port: number, dir: string, bin: string, o: TestPostgresOptions) {
    this.port = port;
    this.dir = dir;
    this.#bin = bin;
    this.#o = o;
  }

  static async start(o: TestPostgresOptions = {}): Promise<TestPostgres> {
    const [port] = await freePorts(1);
    const dir = mkdtempSync(join(tmpdir(), 'quorate-pg-'));
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    const bin = binDir();
    run(join(bin, 'initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    if (o.trust !== undefined) appendFileSync(join(dir, 'data', 'pg_hba.conf'), `host all all ${o.trust} trust\n`);
    const p = new TestPostgres(port!, dir, bin, o);
    await p.restart();
    return p;
  }

  get host(): string { return this.#o.host ?? '127.0.0.1'; }

  /** What the nodes connect to. */
  get connectionString(): string { return `postgres://postgres@${this.host}:${this.port}/postgres`; }

  /** (Re)start on the same port and data dir. */
  async restart(): Promise<void> {
    run(join(this.#bin, 'pg_ctl'), ['-D', join(this.dir, 'data'), '-l', join(this.dir, 'server.log'), '-w', '-t', '30', '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=${this.host} -c fsync=off -c max_connections=60`, 'start'], this.#o.netns);
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await this.query('SELECT 1');
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`PostgreSQL on port ${this.port} did not start: ${(e as Error).message}\n${this.serverLog()}`);
        await sleep(50);
      }
    }
  }

  serverLog(): string {
    try { return readFileSync(join(this.dir, 'server.log'), 'utf8').slice(-3000); } catch { return ''; }
  }

  /** The postmaster's pid (from postmaster.pid). */
  pid(): number | undefined {
    try { return Number(readFileSync(join(this.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]); } catch { return undefined; }
  }

  /** kill -9 the postmaster and its backends; waits until the port refuses. */
  async kill(): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    try { execFileSync('pkill', ['-9', '-P', String(pid)]); } catch { /* no children */ }
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await sleep(20);
    }
    // Children die with their postmaster (they notice it is gone); wait until nothing answers.
    while (Date.now() < deadline) {
      try { await this.query('SELECT 1'); } catch { break; }
      await sleep(50);
    }
    rmSync(join(this.dir, 'data', 'postmaster.pid'), { force: true });
  }

  /** One query on a fresh connection. */
  async query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    const c = this.#o.netns === undefined
      ? new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: 2000 })
      : new pg.Client({ host: this.dir, port: this.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return (await c.query<T>(sql, params)).rows;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    try {
      run(join(this.#bin, 'pg_ctl'), ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', '-t', '20', 'stop']);
    } catch {
      await this.kill();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
