// The read pool of the "sql" machine: a few worker processes, each with a
// read-only connection, answering /v1/db/query off the event loop. A query
// that runs past the time limit is ended by killing its worker (SIGKILL:
// SQLite cannot be interrupted through better-sqlite3, and a worker thread
// running native code cannot be terminated); a new worker takes its place,
// and the queries that were sent to the killed worker behind the slow one are
// run again elsewhere. Up to PIPELINE queries are sent ahead to each worker.
// Queries beyond the queue bound are refused (overloaded) rather than queued
// without limit.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { SqlParam } from './command.js';
import { SqlError } from './errors.js';
import type { ReadAnswer, ReadRequest } from './read-worker.js';

export interface QueryAnswer {
  readonly columns: string[];
  readonly rows: unknown[][];
}

export interface ReadPoolOptions {
  readonly file: string;
  readonly size: number;
  readonly timeoutMs: number;
  readonly maxRows: number;
  readonly maxBytes: number;
  readonly logger: Logger;
  /** Queries waiting for a worker beyond which new ones are refused. */
  readonly maxQueued?: number;
}

interface Job {
  readonly sql: string;
  readonly params: readonly SqlParam[];
  readonly generation: number;
  resolve(a: QueryAnswer): void;
  reject(e: Error): void;
}

interface Sent extends Job {
  readonly id: number;
  /** Only the query the worker runs now (the head of `jobs`) is timed. */
  timer: NodeJS.Timeout | undefined;
}

interface Slot {
  worker: ChildProcess;
  /** The worker has loaded and can take a query (its start does not count against the time limit). */
  ready: boolean;
  /** Queries sent to the worker, answered in this order (it runs one at a time); at most PIPELINE. */
  jobs: Sent[];
}

/**
 * Queries sent ahead to a worker: it starts the next one as soon as it has
 * answered one, without waiting for a round trip through the pool (at 64
 * clients the round trips, not SQLite, were the limit).
 */
const PIPELINE = 8;

const WORKER_PATH = fileURLToPath(new URL('./read-worker.js', import.meta.url));

export class SqlReadPool {
  readonly #o: ReadPoolOptions;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closed = false;

  constructor(o: ReadPoolOptions) {
    this.#o = o;
  }

  /** Workers start on demand (a node that serves no SQL reads starts none), up to `size`. */
  #grow(): void {
    if (this.#slots.length >= this.#o.size || this.#slots.some((s) => s.jobs.length === 0)) return;
    const slot = { jobs: [] } as unknown as Slot;
    this.#spawn(slot);
    this.#slots.push(slot);
  }

  #spawn(slot: Slot): void {
    const w = fork(WORKER_PATH, [this.#o.file], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] });
    w.unref();
    w.channel?.unref();
    slot.ready = false;
    w.on('message', (a: ReadAnswer | { ready: true }) => {
      if ('ready' in a) {
        if (slot.worker === w) slot.ready = true;
        this.#pump();
      } else if (slot.worker === w) this.#answered(slot, a);
    });
    w.on('error', (e) => {
      if (slot.worker === w) this.#crashed(slot, e);
    });
    w.on('exit', (code, signal) => {
      if (slot.worker === w && !this.#closed) this.#crashed(slot, new Error(`the read worker exited (${signal ?? `code ${code}`})`));
    });
    slot.worker = w;
  }

  /** Runs one read; `generation` changes when the file was replaced (the worker reopens). */
  query(sql: string, params: readonly SqlParam[], generation: number): Promise<QueryAnswer> {
    if (this.#closed) return Promise.reject(new SqlError('sql_unavailable', 'the SQL read pool is closed (the node is stopping); retry on another node'));
    if (this.#queue.length >= (this.#o.maxQueued ?? 1000)) {
      return Promise.reject(new SqlError('overloaded', `${this.#queue.length} SQL queries are waiting for a read worker on this node; retry shortly`, { retryAfterMs: 200 }));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ sql, params, generation, resolve, reject });
      this.#grow();
      this.#pump();
    });
  }

  /** Idle workers do not keep the process alive; a query waiting or running does. */
  #keepAlive: NodeJS.Timeout | undefined;
  #updateRef(): void {
    const busy = this.#queue.length > 0 || this.#slots.some((s) => s.jobs.length > 0);
    if (busy && this.#keepAlive === undefined) this.#keepAlive = setInterval(() => undefined, 60_000);
    else if (!busy && this.#keepAlive !== undefined) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
    }
  }

  #pump(): void {
    this.#pumpSlots();
    this.#updateRef();
  }

  #pumpSlots(): void {
    // The least loaded ready worker first, so that one slow query holds up as few others as possible.
    while (this.#queue.length > 0) {
      let best: Slot | undefined;
      for (const slot of this.#slots) if (slot.ready && slot.jobs.length < PIPELINE && (best === undefined || slot.jobs.length < best.jobs.length)) best = slot;
      if (best === undefined) return;
      const job = this.#queue.shift()!;
      const sent: Sent = { ...job, id: this.#nextId++, timer: undefined };
      best.jobs.push(sent);
      if (best.jobs.length === 1) this.#time(best);
      const req: ReadRequest = { id: sent.id, generation: job.generation, sql: job.sql, params: job.params, maxRows: this.#o.maxRows, maxBytes: this.#o.maxBytes };
      best.worker.send(req);
    }
  }

  /** Starts the time limit of the query the worker runs now (the head). */
  #time(slot: Slot): void {
    const head = slot.jobs[0];
    if (head === undefined || head.timer !== undefined) return;
    const id = head.id;
    head.timer = setTimeout(() => this.#timedOut(slot, id), this.#o.timeoutMs);
  }

  #answered(slot: Slot, a: ReadAnswer): void {
    const job = slot.jobs[0];
    if (job === undefined || job.id !== a.id) return;
    clearTimeout(job.timer);
    slot.jobs.shift();
    this.#time(slot);
    if (a.ok) job.resolve({ columns: a.columns, rows: a.rows });
    else {
      const extra = { ...(a.sqliteCode !== null ? { sqliteCode: a.sqliteCode } : {}), ...(a.limit !== undefined ? { limit: a.limit } : {}) };
      job.reject(new SqlError(a.code, a.message, extra));
    }
    this.#pump();
  }

  /** Kills the worker and starts another; the queries sent after its head go back to the front of the queue (reads: safe to run again). */
  #replace(slot: Slot): Sent | undefined {
    const old = slot.worker;
    const [head, ...rest] = slot.jobs;
    if (head !== undefined) clearTimeout(head.timer);
    for (const j of rest) clearTimeout(j.timer);
    slot.jobs = [];
    slot.ready = false;
    old.kill('SIGKILL');
    this.#queue.unshift(...rest.map(({ sql, params, generation, resolve, reject }) => ({ sql, params, generation, resolve, reject })));
    if (!this.#closed) this.#spawn(slot);
    return head;
  }

  #timedOut(slot: Slot, id: number): void {
    const job = slot.jobs[0];
    if (job === undefined || job.id !== id) return;
    this.#o.logger.warn({ event: 'sql_query_timeout', limitMs: this.#o.timeoutMs, sql: job.sql.slice(0, 200) }, `an SQL query ran past ${this.#o.timeoutMs} ms; its read worker was terminated`);
    this.#replace(slot);
    job.reject(new SqlError('sql_query_timeout', `the query ran longer than ${this.#o.timeoutMs} ms (the limit of /v1/db/query) and was stopped; add a WHERE on an indexed column or a LIMIT`, { limit: `${this.#o.timeoutMs} ms` }));
    this.#pump();
  }

  #crashed(slot: Slot, e: Error): void {
    this.#o.logger.error({ event: 'sql_read_worker_failed', err: e.message }, `an SQL read worker failed: ${e.message}; starting another`);
    const job = this.#replace(slot);
    job?.reject(new SqlError('sql_error', `the query failed: ${e.message}`));
    this.#pump();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    for (const j of this.#queue.splice(0)) j.reject(new SqlError('sql_unavailable', 'the node is stopping; retry on another node'));
    await Promise.all(this.#slots.map(async (s) => {
      for (const j of s.jobs.splice(0)) {
        clearTimeout(j.timer);
        j.reject(new SqlError('sql_unavailable', 'the node is stopping; retry on another node'));
      }
      s.worker.kill('SIGKILL');
    }));
  }
}
