// FilesStateMachine, the "files" machine: replicated files kept on each
// node's disk under `<dataDir>/files/store/`:
//
//   objects/<revision>   the content of each committed file, named by the log
//                        index of its commit (immutable once there)
//   staging/<uploadId>   uploads in progress (chunks appended in log order)
//
// Which path maps to which object lives in memory (`#files`) and in the
// snapshot; the directory is rebuilt at every start (removed, then restored
// from the newest snapshot and the log replayed), as the SQL database is.
//
// Every disk operation runs on libuv's thread pool, never blocking the loop
// that carries heartbeats, in one queue in log order: apply() enqueues and
// answers with a Promise (so the machine keeps its own client sessions,
// `ownSessions`); snapshot(), checksum(), caughtUp() and reads are ordered
// behind what was enqueued before them. An I/O failure while applying is
// not deterministic: the apply promise rejects and the node stops.
//
// A commit is atomic: the staged file is fsynced, renamed into objects/,
// and the directory fsynced; only then does the path point at it. Content
// is checked against its SHA-256 at commit (the staged bytes), when read
// (GET verifies before answering) and when streamed into a snapshot: a
// file corrupted on disk is reported naming its path.
import { noteLargeBuffers } from '../lib/memory-governor.js';
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { packCanonical } from '../state/commands.js';
import { DEFAULT_SESSION_MAX, DEFAULT_SESSION_TTL_MS } from '../state/limits.js';
import type { ApplyContext, RestoreCommit, StateMachine } from '../state/machines.js';
import { resultToTuple, type ApplyResult } from '../state/results.js';
import { SessionTable } from '../state/sessions.js';
import { FILES_MACHINE_ID, FILE_CHUNK_BYTES, FILE_HARD_MAX_BYTES, UPLOAD_IDLE_MS, decodeFilesPayload, filesFingerprint, type FilesCommand } from './command.js';
import { FileCorruptError, HELD_SECTION_VERSION, HeldDirs, contentOf, fsyncDir } from './held.js';
import { FILES_SECTION_VERSION, fileTuple, readSection, record, type FileMeta, type UploadState } from './section.js';

export type { FileMeta } from './section.js';

export { FileCorruptError } from './held.js';

export interface FilesMachineOptions {
  /** `<dataDir>/files`. */
  readonly dir: string;
  readonly logger: Logger;
  readonly sessionMax?: number;
  readonly sessionTtlMs?: number;
}

/** An open, consistent view of one file for reading (close it). */
export interface OpenFile {
  readonly meta: FileMeta;
  readonly handle: FileHandle;
  readonly diskFile: string;
}

const fail = (code: string, message: string): ApplyResult => ({ data: { error: code, message } });

export class FilesStateMachine implements StateMachine<FilesCommand> {
  readonly id = FILES_MACHINE_ID;
  readonly ownSessions = true;
  readonly #o: FilesMachineOptions;
  readonly #store: string;
  #held!: HeldDirs;
  #files = new Map<string, FileMeta>();
  #uploads = new Map<string, UploadState>();
  readonly #sessions: SessionTable;
  #tail: Promise<unknown> = Promise.resolve();
  #fatal: Error | undefined;
  #nonEmpty = false;
  #tmp = 0;

  private constructor(o: FilesMachineOptions) {
    this.#o = o;
    this.#store = join(o.dir, 'store');
    this.#sessions = new SessionTable(o.sessionMax ?? DEFAULT_SESSION_MAX, o.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS);
  }

  /** Removes what a previous run left (the state is rebuilt from the snapshot and the log) and starts empty. */
  static async open(o: FilesMachineOptions): Promise<FilesStateMachine> {
    await mkdir(o.dir, { recursive: true });
    // held/: the content of this node's local snapshots (./held.ts), which the newest snapshot may need now.
    for (const f of await readdir(o.dir)) if (f !== 'held') await rm(join(o.dir, f), { recursive: true, force: true });
    const m = new FilesStateMachine(o);
    m.#held = await HeldDirs.open(join(o.dir, 'held'));
    await mkdir(join(m.#store, 'objects'), { recursive: true });
    await mkdir(join(m.#store, 'staging'), { recursive: true });
    return m;
  }

  #object(revision: number): string {
    return join(this.#store, 'objects', String(revision));
  }
  #staging(id: string): string {
    return join(this.#store, 'staging', id);
  }

  /** Runs `fn` after everything enqueued before; `fatal`: a failure stops the machine (an apply). */
  #run<T>(fn: () => Promise<T>, fatal: boolean): Promise<T> {
    const p = this.#tail.then(async () => {
      if (this.#fatal) throw this.#fatal;
      try {
        return await fn();
      } catch (e) {
        if (fatal) {
          const err = e as NodeJS.ErrnoException;
          this.#fatal = new Error(`writing replicated files failed on this node (${err.code ?? 'error'}: ${err.message}); the node stops rather than diverge from the others. Check the disk (space, I/O errors) and restart it: the files are rebuilt from the snapshot and the log`, { cause: e });
          this.#o.logger.fatal({ event: 'files_failed', err: err.message }, this.#fatal.message);
          throw this.#fatal;
        }
        throw e;
      }
    });
    this.#tail = p.catch(() => undefined);
    return p;
  }

  // ---- StateMachine -----------------------------------------------------------

  decode(payload: Uint8Array): FilesCommand {
    return decodeFilesPayload(payload);
  }

  fingerprint(c: FilesCommand): string {
    return filesFingerprint(c);
  }

  isEmpty(): boolean {
    return !this.#nonEmpty;
  }

  apply(cmd: FilesCommand, ctx: ApplyContext): Promise<ApplyResult> {
    this.#nonEmpty = true;
    return this.#run(async () => {
      this.#sessions.expire(ctx.clockMs);
      await this.#expireUploads(ctx.clockMs);
      const keyed = ctx.idempotencyKey !== undefined && (cmd.op === 'commit' || cmd.op === 'delete') ? ctx.idempotencyKey : undefined;
      const fp = keyed !== undefined ? filesFingerprint(cmd) : undefined;
      if (keyed !== undefined) {
        const rec = this.#sessions.lookup(keyed);
        if (rec !== undefined) {
          if (cmd.op === 'commit') await this.#dropUpload(cmd.uploadId); // a retried upload's bytes are not needed
          if (rec.fingerprint !== undefined && rec.fingerprint !== fp) {
            return { error: 'idempotency_key_reused', message: `Idempotency-Key ${JSON.stringify(keyed.slice(0, 64))} was already used for a different request (other method, path or content); nothing was changed. Send a new Idempotency-Key for a new request` };
          }
          return rec.result;
        }
      }
      const result = await this.#apply(cmd, ctx);
      if (keyed !== undefined) this.#sessions.record(keyed, ctx.clockMs, fp, result);
      return result;
    }, true);
  }

  async #expireUploads(clockMs: number): Promise<void> {
    for (const u of [...this.#uploads.values()]) if (u.lastAt + UPLOAD_IDLE_MS <= clockMs) await this.#dropUpload(u.id);
  }

  async #dropUpload(id: string): Promise<boolean> {
    if (!this.#uploads.delete(id)) return false;
    await rm(this.#staging(id), { force: true });
    return true;
  }

  async #apply(cmd: FilesCommand, ctx: ApplyContext): Promise<ApplyResult> {
    switch (cmd.op) {
      case 'chunk': {
        let u = this.#uploads.get(cmd.uploadId);
        if (u === undefined) {
          if (cmd.offset !== 0) return fail('upload_unknown', `upload ${cmd.uploadId} is not in progress (it was committed, aborted or dropped after ${UPLOAD_IDLE_MS / 60_000} idle minutes); start the upload again`);
          u = { id: cmd.uploadId, offset: 0, hash: createHash('sha256'), startedAt: ctx.at, lastAt: ctx.at };
          this.#uploads.set(u.id, u);
        }
        if (cmd.offset !== u.offset) {
          await this.#dropUpload(u.id);
          return fail('upload_out_of_order', `upload ${cmd.uploadId}: a chunk at byte ${cmd.offset} arrived, ${u.offset} bytes are staged; the upload was dropped, start it again`);
        }
        if (u.offset + cmd.bytes.length > FILE_HARD_MAX_BYTES) {
          await this.#dropUpload(u.id);
          return fail('file_too_large', `upload ${cmd.uploadId} passes ${FILE_HARD_MAX_BYTES} bytes, the largest file the cluster stores`);
        }
        const fh = await open(this.#staging(u.id), u.offset === 0 ? 'w' : 'r+');
        try {
          await fh.write(cmd.bytes, 0, cmd.bytes.length, u.offset);
        } finally {
          await fh.close();
        }
        u.offset += cmd.bytes.length;
        u.hash.update(cmd.bytes);
        noteLargeBuffers(cmd.bytes.length);
        u.lastAt = ctx.at;
        return { data: { uploadId: u.id, staged: u.offset } };
      }
      case 'commit': {
        let u = this.#uploads.get(cmd.uploadId);
        if (u === undefined && cmd.size === 0) {
          u = { id: cmd.uploadId, offset: 0, hash: createHash('sha256'), startedAt: ctx.at, lastAt: ctx.at };
          this.#uploads.set(u.id, u);
          await (await open(this.#staging(u.id), 'w')).close();
        }
        if (u === undefined) return fail('upload_unknown', `upload ${cmd.uploadId} is not in progress (aborted, or dropped after ${UPLOAD_IDLE_MS / 60_000} idle minutes); nothing was written to ${JSON.stringify(cmd.path)}: upload the file again`);
        const digest = u.hash.copy().digest('hex');
        if (u.offset !== cmd.size || digest !== cmd.sha256) {
          await this.#dropUpload(u.id);
          const why = u.offset !== cmd.size ? `${u.offset} bytes arrived, ${cmd.size} were announced` : `the content's SHA-256 is ${digest}, ${cmd.sha256} was announced`;
          return fail('file_checksum_mismatch', `${JSON.stringify(cmd.path)} was not written: ${why}; upload it again`);
        }
        const staged = this.#staging(u.id);
        const fh = await open(staged, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(staged, this.#object(ctx.index));
        await fsyncDir(join(this.#store, 'objects'));
        this.#uploads.delete(u.id);
        const old = this.#files.get(cmd.path);
        this.#files.set(cmd.path, { path: cmd.path, size: cmd.size, sha256: cmd.sha256, revision: ctx.index, at: ctx.at });
        if (old !== undefined) await rm(this.#object(old.revision), { force: true });
        return { revision: ctx.index };
      }
      case 'abort':
        return { data: { aborted: await this.#dropUpload(cmd.uploadId) } };
      case 'delete': {
        const old = this.#files.get(cmd.path);
        if (old === undefined) return { revision: ctx.index, deleted: false };
        this.#files.delete(cmd.path);
        await rm(this.#object(old.revision), { force: true });
        await fsyncDir(join(this.#store, 'objects'));
        return { revision: ctx.index, deleted: true };
      }
    }
  }

  /** Links the state's objects and staged uploads into `dir` (run it in the queue: the state at the registry's applied index when enqueued). */
  async #capture(dir: string, durable: boolean): Promise<{ files: FileMeta[]; uploads: { id: string; offset: number; startedAt: number; lastAt: number }[]; sessions: unknown[] }> {
    // Hard links keep the captured content while later commands replace or delete files.
    await mkdir(dir, { recursive: true });
    const files = [...this.#files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (const f of files) await link(this.#object(f.revision), join(dir, `f${f.revision}`));
    const uploads = [...this.#uploads.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((u) => ({ id: u.id, offset: u.offset, startedAt: u.startedAt, lastAt: u.lastAt }));
    for (const u of uploads) {
      const to = join(dir, `u${u.id}`);
      await link(this.#staging(u.id), to);
      if (durable) {
        // Staged chunks are not synced as they are written; a snapshot that refers to them must find them after a power loss.
        const fh = await open(to, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
    }
    if (durable) {
      await fsyncDir(dir);
      await fsyncDir(this.#held.root);
    }
    const sessions = [...this.#sessions.values()].map((s) => [s.key, s.atMs, resultToTuple(s.result), s.fingerprint ?? null]);
    return { files, uploads, sessions };
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const dir = join(this.#o.dir, `snapshot-${process.pid}-${++this.#tmp}.tmp`);
    // Ordered behind every command enqueued so far.
    const captured = this.#run(() => this.#capture(dir, false), false);
    captured.catch(() => undefined);
    async function* stream(): AsyncGenerator<Uint8Array> {
      try {
        const s = await captured;
        yield record([FILES_SECTION_VERSION, s.files.length, s.uploads.length, s.sessions.length]);
        for (const f of s.files) {
          yield record(fileTuple(f));
          yield* contentOf(join(dir, `f${f.revision}`), f.size, f);
        }
        for (const u of s.uploads) {
          yield record([u.id, u.offset, u.startedAt, u.lastAt]);
          yield* contentOf(join(dir, `u${u.id}`), u.offset, undefined);
        }
        for (const t of s.sessions) yield record(t);
      } finally {
        await captured.catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    }
    const gen = stream();
    // A consumer that returns before its first next() never enters the generator: release here too.
    const it: AsyncIterator<Uint8Array> = {
      next: () => gen.next(),
      return: async () => {
        await gen.return(undefined);
        await captured.catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
        return { done: true, value: undefined };
      },
    };
    return { [Symbol.asyncIterator]: () => it };
  }

  /**
   * A local snapshot (section version 2, ./held.ts) for this node's own
   * storage: the records only, the content hard-linked into a new held
   * directory that outlives the stream (and restarts). Cheap whatever the
   * size of the files; expandSection() turns it into snapshot()'s bytes.
   */
  snapshotLocal(): AsyncIterable<Uint8Array> {
    const held = this.#held;
    const captured = this.#run(async () => {
      const name = await held.create();
      return { name, s: await this.#capture(held.dirOf(name), true) };
    }, false).then(async (c) => {
      await this.#run(() => held.gc(), false).catch(() => undefined);
      return c;
    });
    captured.catch(() => undefined);
    async function* stream(): AsyncGenerator<Uint8Array> {
      const { name, s } = await captured;
      yield record([HELD_SECTION_VERSION, s.files.length, s.uploads.length, s.sessions.length, name]);
      for (const f of s.files) yield record(fileTuple(f));
      for (const u of s.uploads) yield record([u.id, u.offset, u.startedAt, u.lastAt]);
      for (const t of s.sessions) yield record(t);
    }
    return stream();
  }

  /** A section of snapshotLocal() rewritten with every byte inline (snapshot()'s format); other sections pass through. */
  expandSection(chunks: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
    return this.#held.expand(chunks);
  }

  /** Keeps the content of every local snapshot until the returned function is called. */
  holdReferences(): () => void {
    return this.#held.hold();
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readSection(chunks, undefined, this.#held.root);
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const aside = join(this.#o.dir, `restore-${randomBytes(6).toString('hex')}.tmp`);
    await mkdir(join(aside, 'objects'), { recursive: true });
    await mkdir(join(aside, 'staging'), { recursive: true });
    let s: Awaited<ReturnType<typeof readSection>>;
    try {
      s = await readSection(chunks, aside, this.#held.root);
      await fsyncDir(join(aside, 'objects'));
      await fsyncDir(join(aside, 'staging'));
    } catch (e) {
      await rm(aside, { recursive: true, force: true });
      throw e;
    }
    return () => {
      this.#nonEmpty = s.files.length + s.uploads.length + s.sessions.length > 0;
      // Ordered before any command applied after the restore; a failure to swap the directories is an I/O failure: fatal.
      this.#run(async () => {
        const old = join(this.#o.dir, `old-${randomBytes(6).toString('hex')}.tmp`);
        await rename(this.#store, old);
        await rename(aside, this.#store);
        await fsyncDir(this.#o.dir);
        this.#files = new Map(s.files.map((f) => [f.path, f]));
        this.#uploads = new Map(s.uploads.map((u) => [u.id, u]));
        this.#sessions.load(s.sessions);
        await rm(old, { recursive: true, force: true });
      }, true).catch(() => undefined);
    };
  }

  /** Hex SHA-256 of the files (path, size, SHA-256, revision, time), uploads in progress and sessions, at the registry's applied index at the call. */
  checksum(): Promise<string> {
    return this.#run(async () => {
      const files = [...this.#files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map(fileTuple);
      const uploads = [...this.#uploads.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((u) => [u.id, u.offset, u.hash.copy().digest('hex'), u.startedAt, u.lastAt]);
      const sessions = [...this.#sessions.values()].map((s) => [s.key, s.atMs, resultToTuple(s.result), s.fingerprint ?? null]);
      return createHash('sha256').update(packCanonical([FILES_SECTION_VERSION, files, uploads, sessions])).digest('hex');
    }, false);
  }

  // ---- reads --------------------------------------------------------------------

  /** Resolves once every command enqueued before the call has been applied. */
  caughtUp(): Promise<void> {
    return this.#run(async () => undefined, false);
  }

  /** Files whose path starts with `prefix`, sorted by path, after `startAfter`, at most `limit` (as of the last applied command). */
  list(prefix: string, limit: number, startAfter = '', hidden?: string): { files: FileMeta[]; more: boolean } {
    const all = [...this.#files.values()].filter((f) => f.path.startsWith(prefix) && f.path > startAfter && (hidden === undefined || !f.path.startsWith(hidden))).sort((a, b) => (a.path < b.path ? -1 : 1));
    return { files: all.slice(0, limit), more: all.length > limit };
  }

  /** Counts for metrics and status. */
  stats(): { files: number; bytes: number; uploads: number } {
    let bytes = 0;
    for (const f of this.#files.values()) bytes += f.size;
    return { files: this.#files.size, bytes, uploads: this.#uploads.size };
  }

  /**
   * Opens `path` for reading, ordered behind the commands enqueued so far (so
   * the object cannot be replaced between the lookup and the open); undefined
   * when there is no such file. Close the handle.
   */
  openFile(path: string): Promise<OpenFile | undefined> {
    return this.#run(async () => {
      const meta = this.#files.get(path);
      if (meta === undefined) return undefined;
      const diskFile = this.#object(meta.revision);
      let handle: FileHandle;
      try {
        handle = await open(diskFile, 'r');
      } catch (e) {
        throw new FileCorruptError(path, diskFile, `cannot open it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      return { meta, handle, diskFile };
    }, false);
  }

  /** Reads the whole open file and checks its size and SHA-256 (throws FileCorruptError naming the path). */
  static async verify(f: OpenFile): Promise<void> {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(FILE_CHUNK_BYTES, Math.max(1, f.meta.size)));
    let pos = 0;
    for (;;) {
      const { bytesRead } = await f.handle.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      if (pos > f.meta.size) break;
    }
    if (pos !== f.meta.size) throw new FileCorruptError(f.meta.path, f.diskFile, `${pos} bytes on disk, ${f.meta.size} expected`);
    if (h.digest('hex') !== f.meta.sha256) throw new FileCorruptError(f.meta.path, f.diskFile, 'its content does not match its SHA-256');
  }

  /** Waits for the queue (nothing is held open between commands). */
  async close(): Promise<void> {
    await this.#tail;
  }
}
