// A drill round's own clients: writers that put unique keys as fast as they
// are acknowledged, readers that read the newest acknowledged key back
// (linearizable), all through the client library. Each records what it saw,
// with the runner's clock, so the runner can compute RTO and RPO. A writer
// whose call failed moves on to the next node's URL (a client that keeps
// calling a frozen node would measure its own timeout, not the cluster).
import { CommitUnknownError, QuorateClient } from '../api/client.js';

export interface AckedWrite { readonly key: string; readonly value: string; readonly sentAt: number; readonly ackAt: number }

export interface WorkloadOptions {
  readonly urls: readonly string[];
  readonly token: string | undefined;
  /** Keys are `${prefix}/w${writer}/${n}`. */
  readonly prefix: string;
  readonly writers: number;
  readonly readers: number;
  /** Deadline of one call (with the client's own retries). */
  readonly callTimeoutMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Workload {
  readonly acked: AckedWrite[] = [];
  readonly unknown: { key: string; value: string; sentAt: number }[] = [];
  failed = 0;
  readonly reads: { sentAt: number; okAt: number }[] = [];
  readsFailed = 0;
  readonly #o: WorkloadOptions;
  #stopped = false;
  readonly #loops: Promise<void>[] = [];

  constructor(o: WorkloadOptions) {
    this.#o = o;
  }

  start(): void {
    for (let i = 0; i < this.#o.writers; i++) this.#loops.push(this.#writer(i));
    for (let i = 0; i < this.#o.readers; i++) this.#loops.push(this.#reader(i));
  }

  /** Stops the loops and waits for the calls in flight to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }

  #client(start: number): QuorateClient {
    const urls = this.#o.urls.map((_, i) => this.#o.urls[(start + i) % this.#o.urls.length]!);
    return new QuorateClient({ urls, ...(this.#o.token !== undefined ? { token: this.#o.token } : {}), timeoutMs: this.#o.callTimeoutMs, backoffMs: 20 });
  }

  async #writer(w: number): Promise<void> {
    let start = w % this.#o.urls.length;
    let client = this.#client(start);
    for (let n = 0; !this.#stopped; n++) {
      const key = `${this.#o.prefix}/w${w}/${String(n).padStart(6, '0')}`;
      const value = `${w}:${n}:${Date.now()}`;
      const sentAt = Date.now();
      try {
        await client.kvPut(key, value);
        this.acked.push({ key, value, sentAt, ackAt: Date.now() });
      } catch (e) {
        if (e instanceof CommitUnknownError || isDeadline(e)) this.unknown.push({ key, value, sentAt });
        else this.failed++;
        start = (start + 1) % this.#o.urls.length;
        client = this.#client(start);
        await sleep(20);
      }
    }
  }

  async #reader(r: number): Promise<void> {
    let start = (r + 1) % this.#o.urls.length;
    let client = this.#client(start);
    while (!this.#stopped) {
      const last = this.acked[this.acked.length - 1];
      if (last === undefined) {
        await sleep(20);
        continue;
      }
      const sentAt = Date.now();
      try {
        await client.kvGet(last.key);
        this.reads.push({ sentAt, okAt: Date.now() });
        await sleep(10);
      } catch {
        this.readsFailed++;
        start = (start + 1) % this.#o.urls.length;
        client = this.#client(start);
        await sleep(20);
      }
    }
  }
}

/** A write cut off by the client's deadline after it may have been sent: its outcome is unknown. */
function isDeadline(e: unknown): boolean {
  const name = (e as { name?: unknown; cause?: { name?: unknown } })?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}
