// The "sql" state machine: replicated SQL on SQLite (better-sqlite3). Its
// state is one SQLite file in the node's data dir, owned by an apply worker
// thread (./apply-worker.ts); reads run on a pool of read workers
// (./read-pool.ts). Nothing here runs SQLite on the event loop.
//
// How it fits the StateMachine contract (src/state/machines.ts):
// - apply() posts the command to the apply worker, in log order, and returns
//   a Promise of the result (the worker's answer). The registry and the
//   replica have already moved on; a proposal's client gets the result when
//   it settles. A non-deterministic failure (I/O error, disk full) rejects it
//   and calls onFatal: the node stops rather than diverge.
// - It keeps its own client sessions (ownSessions), in a table of the
//   database written in the entry's own transaction.
// - snapshot() posts a backup request behind every command posted so far:
//   the worker copies the database with SQLite's backup API, at exactly the
//   registry's applied index at the call, into a temp file that is streamed
//   and removed. checksum() is ordered the same way.
// - restore() streams the snapshot's section into a temp file (checking it
//   is an SQLite image); the commit posts "replace the file" to the worker,
//   ordered before any later command.
// - The file is rebuilt at every start (removed, then restored from the
//   newest snapshot and the log replayed), so it is never ahead of the state.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open as openFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { SnapshotCorruptError } from '../state/errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from '../state/machines.js';
import type { ApplyResult } from '../state/results.js';
import { DEFAULT_SESSION_MAX, DEFAULT_SESSION_TTL_MS } from '../state/limits.js';
import { SQL_LIMITS, SQL_MACHINE_ID, decodeSqlPayload, sqlFingerprint, type FromApplyWorker, type SqlCommand, type SqlLimits, type SqlParam, type ToApplyWorker } from './command.js';
import { SqlReadPool, type QueryAnswer } from './read-pool.js';

export interface SqlMachineOptions {
  /** Directory of the SQLite file (`<dataDir>/sql`). */
  readonly dir: string;
  readonly logger: Logger;
  /** A non-deterministic failure of the apply worker: stop the node. */
  onFatal(e: Error): void;
  readonly limits?: Partial<SqlLimits>;
  /** Read workers (default 2). */
  readonly readers?: number;
  readonly sessionMax?: number;
  readonly sessionTtlMs?: number;
}

type Done = Extract<FromApplyWorker, { t: 'done' }>;
type Msg = ToApplyWorker extends infer T ? (T extends { seq: number } ? Omit<T, 'seq'> : never) : never;

const APPLY_WORKER_URL = new URL('./apply-worker.js', import.meta.url);
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** Streaming check of an SQLite file image: header magic, page size, whole pages, the header's page count. */
class ImageCheck {
  #head = Buffer.alloc(0);
  #bytes = 0;

  add(chunk: Uint8Array): void {
    if (this.#head.length < 100) this.#head = Buffer.concat([this.#head, Buffer.from(chunk.subarray(0, 100 - this.#head.length))]);
    this.#bytes += chunk.length;
  }

  /** Throws SnapshotCorruptError (offsets within the machine's stream); true when the stream held an image, false when empty. */
  end(): boolean {
    if (this.#bytes === 0) return false;
    const h = this.#head;
    if (h.length < 100) throw new SnapshotCorruptError(this.#bytes, 'sql.header', `truncated: ${this.#bytes} bytes, an SQLite header is 100`);
    if (!h.subarray(0, 16).equals(SQLITE_MAGIC)) throw new SnapshotCorruptError(0, 'sql.magic', 'not an SQLite database image (expected "SQLite format 3")');
    const raw = h.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw new SnapshotCorruptError(16, 'sql.pageSize', `bad page size ${raw}`);
    if (this.#bytes % pageSize !== 0) throw new SnapshotCorruptError(this.#bytes, 'sql.length', `${this.#bytes} bytes is not a whole number of ${pageSize}-byte pages`);
    if (h.readUInt32BE(92) === h.readUInt32BE(24)) {
      const pages = h.readUInt32BE(28);
      if (pages * pageSize !== this.#bytes) throw new SnapshotCorruptError(28, 'sql.pageCount', `the header says ${pages} pages, the image holds ${this.#bytes / pageSize}`);
    }
    return true;
  }
}

export class SqlStateMachine implements StateMachine<SqlCommand> {
  readonly id = SQL_MACHINE_ID;
  readonly ownSessions = true;
  readonly limits: SqlLimits;
  readonly #o: SqlMachineOptions;
  readonly #file: string;
  /** Started at the first command, query or snapshot (#ensureWorker): a node that never uses SQL runs no SQLite thread. */
  #worker: Worker | undefined;
  readonly #pool: SqlReadPool;
  #seq = 0;
  #doneSeq = 0;
  readonly #pending = new Map<number, { resolve(d: Done): void; reject(e: Error): void }>();
  readonly #barriers: { seq: number; resolve(): void; reject(e: Error): void }[] = [];
  #fatal: Error | undefined;
  #nonEmpty = false;
  /** Bumped each time the file is replaced (readers reopen). */
  #generation = 0;
  #tmp = 0;

  private constructor(o: SqlMachineOptions) {
    this.#o = o;
    this.#file = join(o.dir, 'db.sqlite');
    this.limits = { ...SQL_LIMITS, ...o.limits };
    this.#pool = new SqlReadPool({ file: this.#file, size: o.readers ?? 2, timeoutMs: this.limits.queryTimeoutMs, maxRows: this.limits.queryRows, maxBytes: this.limits.queryBytes, logger: o.logger });
  }

  /** Prepares the directory and the read pool; the apply worker (which removes any previous file and opens an empty database) starts at first use, the read workers too. */
  static async open(o: SqlMachineOptions): Promise<SqlStateMachine> {
    await mkdir(o.dir, { recursive: true });
    // Leftover temp files of a previous run.
    for (const f of await readdir(o.dir)) if (f.endsWith('.tmp')) await rm(join(o.dir, f), { force: true });
    return new SqlStateMachine(o);
  }

  /**
   * The apply worker, started at the first command, snapshot, checksum or query.
   * A thread with SQLite loaded holds about 10 MB; most clusters use the KV alone.
   * Commands posted before it has loaded wait in its queue (not waited for here); a
   * failure to open comes as 'fatal'. Referenced until it has opened the database
   * (its 'ready'), and afterwards while it owes an answer: the node's servers and
   * timers keep the process alive, the idle worker alone must not.
   */
  #ensureWorker(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const w = new Worker(APPLY_WORKER_URL, { workerData: { file: this.#file, limits: this.limits } });
    this.#worker = w;
    w.on('message', (x: FromApplyWorker) => this.#onMessage(x));
    w.on('error', (e) => this.#die(new Error(`the SQL apply worker failed: ${e.message}`, { cause: e })));
    w.on('exit', (code) => {
      if (!this.#closing) this.#die(new Error(`the SQL apply worker exited (code ${code})`));
    });
    return w;
  }

  #closing = false;
  /** The apply worker has opened the database (and created quorate_outbox): reads may start. */
  #ready = false;
  #onReady: () => void = () => undefined;
  readonly #readyP = new Promise<void>((resolve) => { this.#onReady = resolve; });

  #onMessage(m: FromApplyWorker): void {
    if (m.t === 'ready') {
      this.#ready = true;
      if (this.#pending.size === 0) this.#worker?.unref();
      this.#onReady();
      return;
    }
    if (m.t === 'fatal') {
      const e = new Error(`SQLite failed on this node (${m.code ?? 'error'}: ${m.message}); the node stops rather than diverge from the others. Check the disk (space, I/O errors) and restart it: the database is rebuilt from the snapshot and the log`);
      this.#die(e);
      return;
    }
    const p = this.#pending.get(m.seq);
    this.#pending.delete(m.seq);
    if (this.#pending.size === 0 && this.#ready) this.#worker?.unref();
    this.#doneSeq = m.seq;
    p?.resolve(m);
    while (this.#barriers.length > 0 && this.#barriers[0]!.seq <= this.#doneSeq) this.#barriers.shift()!.resolve();
  }

  #die(e: Error): void {
    if (this.#fatal) return;
    this.#fatal = e;
    this.#onReady(); // readers waiting for the open wake up and see the failure
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    for (const b of this.#barriers.splice(0)) b.reject(e);
    this.#o.onFatal(e);
  }

  #call(m: Msg): Promise<Done> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    const w = this.#ensureWorker();
    const seq = ++this.#seq;
    return new Promise<Done>((resolve, reject) => {
      // Referenced while it owes an answer (so a process waiting only for it stays up).
      if (this.#pending.size === 0) w.ref();
      this.#pending.set(seq, { resolve, reject });
      w.postMessage({ ...m, seq });
    });
  }

  // ---- StateMachine -----------------------------------------------------------

  decode(payload: Uint8Array): SqlCommand {
    return decodeSqlPayload(payload);
  }

  fingerprint(c: SqlCommand): string {
    return sqlFingerprint(c);
  }

  apply(cmd: SqlCommand, ctx: ApplyContext): Promise<ApplyResult> {
    this.#nonEmpty = true;
    const ik = ctx.idempotencyKey ?? null;
    return this.#call({
      t: 'apply', index: ctx.index, at: ctx.at, clockMs: ctx.clockMs, ik, fp: ik === null ? null : sqlFingerprint(cmd), cmd,
      sessionMax: this.#o.sessionMax ?? DEFAULT_SESSION_MAX, sessionTtlMs: this.#o.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS,
    }).then((d) => d.result!);
  }

  isEmpty(): boolean {
    return !this.#nonEmpty;
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const path = join(this.#o.dir, `snapshot-${process.pid}-${++this.#tmp}.tmp`);
    // Ordered behind every command posted so far: the state at the registry's applied index now.
    const done = this.#call({ t: 'backup', path });
    done.catch(() => undefined);
    async function* stream(): AsyncGenerator<Uint8Array> {
      await done;
      for await (const c of createReadStream(path, { highWaterMark: 1024 * 1024 })) yield c as Buffer;
    }
    const gen = stream();
    const release = async (): Promise<void> => {
      await done.catch(() => undefined);
      await rm(path, { force: true });
    };
    const it: AsyncIterator<Uint8Array> = {
      next: async () => {
        try {
          const r = await gen.next();
          if (r.done === true) await release();
          return r;
        } catch (e) {
          await release();
          throw e;
        }
      },
      return: async () => {
        await gen.return(undefined);
        await release();
        return { done: true, value: undefined };
      },
    };
    return { [Symbol.asyncIterator]: () => it };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const check = new ImageCheck();
    for await (const c of chunks) check.add(c);
    check.end();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const path = join(this.#o.dir, `restore-${randomBytes(6).toString('hex')}.tmp`);
    const check = new ImageCheck();
    const fh = await openFile(path, 'w');
    let image: boolean;
    try {
      for await (const c of chunks) {
        check.add(c);
        await fh.write(c);
      }
      image = check.end();
    } catch (e) {
      await fh.close();
      await rm(path, { force: true });
      throw e;
    }
    await fh.close();
    if (!image) await rm(path, { force: true });
    return () => {
      this.#nonEmpty = image;
      // Empty into a worker never started: it opens an empty database when it starts.
      if (!image && this.#worker === undefined) return;
      this.#call({ t: 'restore', path: image ? path : null }).then(
        () => {
          this.#generation++;
        },
        () => undefined, // the fatal path already ran
      );
    };
  }

  /** Hex SHA-256 of the database content at the registry's applied index at the call (ordered behind the commands posted so far). */
  checksum(): Promise<string> {
    return this.#call({ t: 'checksum' }).then((d) => d.checksum!);
  }

  // ---- reads ------------------------------------------------------------------

  /** Resolves once the worker has applied every command posted before the call (all entries up to the registry's applied index). */
  caughtUp(): Promise<void> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    if (this.#doneSeq >= this.#seq) return Promise.resolve();
    return new Promise((resolve, reject) => this.#barriers.push({ seq: this.#seq, resolve, reject }));
  }

  /** Runs a read on the pool, against the state as of now (call caughtUp() first for what was applied before). */
  async query(sql: string, params: readonly SqlParam[]): Promise<QueryAnswer> {
    // Not before the apply worker has opened the database: a read process would find no schema yet.
    if (!this.#ready) {
      if (this.#fatal) throw this.#fatal;
      this.#ensureWorker();
      await this.#readyP;
    }
    if (this.#fatal) throw this.#fatal;
    return this.#pool.query(sql, params, this.#generation);
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#pool.close();
    if (this.#worker === undefined) return;
    // Referenced while it terminates, so that a process waiting only for this close stays up.
    this.#worker.ref();
    await this.#worker.terminate();
  }
}
