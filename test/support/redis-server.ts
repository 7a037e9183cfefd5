// A private redis-server for tests that kill, pause or restart Redis: started
// from the installed binary on a free port with no persistence, stopped
// afterwards (the machine's shared Redis on 6379 is never touched).
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { freePorts, sleep } from '../integration/harness.js';

export const REDIS_SERVER = process.env['QUORATE_TEST_REDIS_SERVER'] ?? '/usr/bin/redis-server';

export class TestRedis {
  readonly port: number;
  readonly password: string | undefined;
  #proc: ChildProcess | undefined;
  #log = '';
  /** With a data dir: appendonly yes, appendfsync always there (the witness's requirement). */
  persistDir: string | undefined;
  /** Without persistence: where Redis would write if a test turns appendonly on (default: the cwd). */
  workDir: string | undefined;

  private constructor(port: number, password: string | undefined) {
    this.port = port;
    this.password = password;
  }

  static async start(opts: { password?: string; persistDir?: string; workDir?: string } = {}): Promise<TestRedis> {
    const [port] = await freePorts(1);
    const r = new TestRedis(port!, opts.password);
    r.persistDir = opts.persistDir;
    r.workDir = opts.workDir;
    await r.restart();
    return r;
  }

  get address(): string { return `127.0.0.1:${this.port}`; }
  get running(): boolean { return this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null; }

  /** (Re)start on the same port, empty (no persistence: a restart loses the data, as a Redis without AOF would). */
  async restart(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--protected-mode', 'no'];
    if (this.persistDir !== undefined) args.push('--appendonly', 'yes', '--appendfsync', 'always', '--dir', this.persistDir);
    else args.push('--appendonly', 'no', ...(this.workDir !== undefined ? ['--dir', this.workDir] : []));
    if (this.password !== undefined) args.push('--requirepass', this.password);
    // Its own process group, so that kill() also ends the children it forks (an AOF rewrite after CONFIG SET
    // appendonly yes), which would otherwise go on writing into a directory the test is removing.
    const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    proc.stdout!.on('data', (d: Buffer) => { this.#log = (this.#log + d.toString()).slice(-4000); });
    proc.stderr!.on('data', (d: Buffer) => { this.#log = (this.#log + d.toString()).slice(-4000); });
    this.#proc = proc;
    const deadline = Date.now() + 10_000;
    while (!(await this.#accepts())) {
      if (!this.running || Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not start: ${this.#log}`);
      await sleep(20);
    }
  }

  #accepts(): Promise<boolean> {
    return new Promise((res) => {
      const s = createConnection({ host: '127.0.0.1', port: this.port });
      s.once('connect', () => { s.destroy(); res(true); });
      s.once('error', () => res(false));
    });
  }

  /** kill -9 of the server and any child it forked, and wait until all have exited. */
  async kill(): Promise<void> {
    const p = this.#proc;
    if (!p || !this.running) return;
    const exited = new Promise((r) => p.once('exit', r));
    const group = -(p.pid ?? 0);
    try {
      process.kill(group, 'SIGKILL');
    } catch {
      p.kill('SIGKILL');
    }
    await exited;
    for (let i = 0; i < 250; i++) {
      try {
        process.kill(group, 0);
      } catch {
        return; // no process left in the group
      }
      await sleep(20);
    }
  }

  pause(): void { this.#proc?.kill('SIGSTOP'); }
  resume(): void { this.#proc?.kill('SIGCONT'); }

  async stop(): Promise<void> {
    this.resume();
    await this.kill();
  }
}
