// Runs test/integration/lease-child.ts as a child process and follows its JSON lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './harness.js';

const CHILD = fileURLToPath(new URL('./lease-child.js', import.meta.url));

export interface LeaseEvent { readonly event: 'state' | 'write'; readonly leading?: boolean; readonly term: number; readonly at: number }

export class LeaseProc {
  readonly name: string;
  readonly events: LeaseEvent[] = [];
  stderr = '';
  readonly #proc: ChildProcess;

  constructor(name: string, o: { redis: string; ttlMs: number; renewMs: number; prefix?: string; env?: Record<string, string> }) {
    this.name = name;
    this.#proc = spawn(process.execPath, [CHILD], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LEASE_REDIS: o.redis, LEASE_NAME: name, LEASE_TTL_MS: String(o.ttlMs), LEASE_RENEW_MS: String(o.renewMs), LEASE_PREFIX: o.prefix ?? 'quorate:', ...(o.env ?? {}) },
    });
    let buf = '';
    this.#proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.events.push(JSON.parse(buf.slice(0, nl)) as LeaseEvent);
        buf = buf.slice(nl + 1);
      }
    });
    this.#proc.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
  }

  get leading(): boolean {
    const s = this.events.filter((e) => e.event === 'state').at(-1);
    return s?.leading === true;
  }

  get term(): number {
    return this.events.filter((e) => e.event === 'state').at(-1)?.term ?? 0;
  }

  /** Epoch ms of the first event matching `pred` at or after `since`. */
  firstAt(pred: (e: LeaseEvent) => boolean, since = 0): number | undefined {
    return this.events.find((e) => e.at >= since && pred(e))?.at;
  }

  /** The process has looked at the lease at least once (it reported the holder's token). */
  waitWatching(timeoutMs = 15_000): Promise<void> {
    return waitFor(`${this.name} watches the lease; stderr: ${this.stderr.slice(-2000)}`, () => this.events.some((e) => e.event === 'state'), timeoutMs);
  }

  waitLeading(timeoutMs = 15_000): Promise<void> {
    return waitFor(`${this.name} leads; stderr: ${this.stderr.slice(-2000)}`, () => this.leading, timeoutMs);
  }

  signal(s: NodeJS.Signals): void {
    this.#proc.kill(s);
  }

  async stop(): Promise<void> {
    if (this.#proc.exitCode !== null || this.#proc.signalCode !== null) return;
    const exited = new Promise((r) => this.#proc.once('exit', r));
    this.#proc.kill('SIGCONT');
    this.#proc.kill('SIGKILL');
    await exited;
  }
}
