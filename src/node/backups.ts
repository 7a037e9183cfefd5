// Backups of the whole replicated state (SPEC §3 `database.backup`, §4
// `GET /v1/cluster/backup`): an archive (./backup-archive.ts) of every
// registered machine's state at one applied index, captured in the replica's
// loop (so the index, the term of its entry and the membership describe
// exactly the state streamed), then streamed with bounded memory.
//
// - `open()`: a backup of this node's applied state after a linearizable read
//   barrier (so it holds at least every write acknowledged before the call),
//   as a stream (GET /v1/cluster/backup; any node serves it).
// - `writeToDir()`: the leader writes one archive into `database.backup.dir`
//   (temp file, fsync, rename, fsync dir): on schedule (the leader-only
//   scheduler's job "backup", ./scheduler.ts, fenced by the claimed slot and
//   the term) or now (`quorate backup create`, POST /v1/cluster/backups).
//   A scheduled run that loses leadership before its rename leaves nothing.
// - `prune()`: after each scheduled run, archives whose manifest time is
//   older than `retentionDays` are deleted (never the newest one).
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BackupInfo } from '../api/ports.js';
import { fsyncDir } from '../storage/fsutil.js';
import { archiveChunks, readManifest, type BackupManifest, type ManifestBase } from './backup-archive.js';
import { NodeError } from './errors.js';
import type { JobContext, ScheduledJob } from './scheduler.js';

export const BACKUP_SUFFIX = '.qbak';
const DAY_MS = 24 * 60 * 60 * 1000;
const PROGRESS_MS = 1000;

/** The state at one applied index, captured in the replica's loop. */
export interface CapturedState {
  readonly index: number;
  readonly term: number;
  readonly membership: unknown;
  /** The composite snapshot stream of the registry (iterate to the end or return() it). */
  readonly chunks: AsyncIterable<Uint8Array>;
}

export interface BackupDeps {
  readonly log: Logger;
  readonly clusterId: string;
  readonly nodeName: string;
  readonly version: string;
  readonly dir: string;
  readonly retentionDays: number;
  capture(): Promise<CapturedState>;
  barrier(): Promise<void>;
  isLeader(): boolean;
  notLeader(): Error;
  /** Witness mode: the lease still holds now (Fencing.leaseOk): asked before writing and before the archive is kept. */
  mayAct?(): boolean;
  now?(): number;
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

/** The file name of an archive: cluster id, time, index. */
export function backupFileName(clusterId: string, takenAtMs: number, index: number): string {
  const id = clusterId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  return `quorate-${id}-${stamp(takenAtMs)}-i${index}${BACKUP_SUFFIX}`;
}

export function infoOf(file: string, path: string, bytes: number, m: BackupManifest): BackupInfo {
  return {
    file, path, bytes, takenAt: m.takenAt, index: m.index, term: m.term, kind: m.kind, takenBy: m.takenBy, clusterId: m.clusterId,
    ...(m.slot !== undefined ? { slot: m.slot } : {}),
  };
}

export class Backups {
  readonly #d: BackupDeps;
  #writing = false;

  constructor(d: BackupDeps) {
    this.#d = d;
  }

  get dir(): string {
    return this.#d.dir;
  }

  #now(): number {
    return this.#d.now?.() ?? Date.now();
  }

  #base(c: CapturedState, kind: string, extra: { slot?: string; fencingTerm?: number }): ManifestBase {
    return {
      clusterId: this.#d.clusterId, takenBy: this.#d.nodeName, index: c.index, term: c.term, takenAt: new Date(this.#now()).toISOString(),
      quorateVersion: this.#d.version, kind, ...extra, membership: c.membership,
    };
  }

  #progress(what: string, fields: Record<string, unknown>): (bytes: number) => void {
    let last = Date.now();
    return (bytes) => {
      const now = Date.now();
      if (now - last < PROGRESS_MS) return;
      last = now;
      this.#d.log.info({ event: 'backup_progress', ...fields, bytes }, `${what}: ${bytes} bytes so far`);
    };
  }

  /** A backup of this node's applied state (after a read barrier), as a stream; the manifest is its end. */
  async open(): Promise<{ filename: string; index: number; chunks: AsyncIterable<Uint8Array> }> {
    await this.#d.barrier();
    const c = await this.#d.capture();
    const base = this.#base(c, 'download', {});
    const progress = this.#progress(`backup at index ${c.index} streamed`, { index: c.index });
    const log = this.#d.log;
    log.info({ event: 'backup_stream_started', index: c.index, term: c.term }, `streaming a backup at index ${c.index}`);
    async function* counted(): AsyncGenerator<Uint8Array> {
      let n = 0;
      for await (const x of archiveChunks(c.chunks, base, (m) => log.info({ event: 'backup_streamed', index: m.index, bytes: m.state.bytes }, `streamed a backup at index ${m.index} (${m.state.bytes} bytes of state)`))) {
        n += x.length;
        progress(n);
        yield x;
      }
    }
    const gen = counted();
    let started = false;
    // A consumer that stops before its first read (a client gone at once) must still release the capture.
    const it: AsyncIterableIterator<Uint8Array> = {
      next: () => {
        started = true;
        return gen.next();
      },
      return: async () => {
        if (!started) await c.chunks[Symbol.asyncIterator]().return?.();
        return gen.return(undefined);
      },
      [Symbol.asyncIterator]: () => it,
    };
    return { filename: backupFileName(this.#d.clusterId, Date.parse(base.takenAt), c.index), index: c.index, chunks: it };
  }

  /**
   * Writes one archive into the backup dir. `signal` (a scheduled run's)
   * aborts it when leadership is lost: nothing is left behind then.
   */
  async writeToDir(kind: string, extra: { slot?: string; fencingTerm?: number; signal?: AbortSignal } = {}): Promise<BackupInfo> {
    if (!this.#d.isLeader() || (this.#d.mayAct && !this.#d.mayAct())) throw this.#d.notLeader();
    if (this.#writing) throw new NodeError('backup_in_progress', 'a backup is being written now; wait for it to end (see `quorate backup list`)');
    this.#writing = true;
    const dir = this.#d.dir;
    let tmp: string | undefined;
    try {
      await mkdir(dir, { recursive: true });
      // The file first, then the capture: once captured, the stream below is always read to its end or returned.
      tmp = join(dir, `.backup-${process.pid}-${Date.now()}.tmp`);
      const fh = await open(tmp, 'wx', 0o600);
      let file = '';
      let c: CapturedState | undefined;
      let manifest: BackupManifest | undefined;
      let bytes = 0;
      const started = Date.now();
      try {
        c = await this.#d.capture();
        const base = this.#base(c, kind, { ...(extra.slot !== undefined ? { slot: extra.slot } : {}), ...(extra.fencingTerm !== undefined ? { fencingTerm: extra.fencingTerm } : {}) });
        file = backupFileName(this.#d.clusterId, Date.parse(base.takenAt), c.index);
        this.#d.log.info({ event: 'backup_started', index: c.index, term: c.term, kind, file }, `writing backup ${file} (index ${c.index})`);
        const progress = this.#progress(`backup ${file}`, { index: c.index, file });
        for await (const chunk of archiveChunks(c.chunks, base, (m) => (manifest = m))) {
          if (extra.signal?.aborted === true) throw new Error(`leadership was lost while writing ${file}; nothing was kept`);
          let off = 0;
          while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
          bytes += chunk.length;
          progress(bytes);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (extra.signal?.aborted === true) throw new Error(`leadership was lost while writing ${file}; nothing was kept`);
      if (this.#d.mayAct && !this.#d.mayAct()) throw new Error(`the witness lease was not renewed in time while writing ${file} (this node is stepping down); nothing was kept`);
      const path = join(dir, file);
      await rename(tmp, path);
      tmp = undefined;
      await fsyncDir(dir);
      const info = infoOf(file, path, bytes, manifest!);
      this.#d.log.info({ event: 'backup_written', file, path, index: info.index, term: info.term, bytes, ms: Date.now() - started, kind },
        `backup ${file} written: index ${info.index}, ${bytes} bytes in ${Date.now() - started} ms`);
      return info;
    } catch (e) {
      if (tmp !== undefined) await unlink(tmp).catch(() => undefined);
      if (!(e instanceof NodeError)) this.#d.log.error({ event: 'backup_failed', dir, err: (e as Error).message }, `backup into ${dir} failed: ${(e as Error).message}`);
      throw e;
    } finally {
      this.#writing = false;
    }
  }

  /** The archives in the backup dir, newest first (unreadable ones with `error`). */
  async list(): Promise<BackupInfo[]> {
    return listBackups(this.#d.dir);
  }

  /** Deletes archives older than retentionDays by their manifest time (never the newest readable one); returns their names. */
  async prune(): Promise<string[]> {
    const all = (await this.list()).filter((b) => b.error === undefined);
    const cutoff = this.#now() - this.#d.retentionDays * DAY_MS;
    const deleted: string[] = [];
    for (const b of all.slice(1)) {
      if (Date.parse(b.takenAt) >= cutoff) continue;
      try {
        await unlink(b.path);
        deleted.push(b.file);
        this.#d.log.info({ event: 'backup_deleted', file: b.file, takenAt: b.takenAt, retentionDays: this.#d.retentionDays }, `backup ${b.file} deleted: older than ${this.#d.retentionDays} days (database.backup.retentionDays)`);
      } catch (e) {
        this.#d.log.warn({ event: 'backup_delete_failed', file: b.file, err: (e as Error).message }, `could not delete old backup ${b.file}: ${(e as Error).message}`);
      }
    }
    if (deleted.length > 0) await fsyncDir(this.#d.dir).catch(() => undefined);
    return deleted;
  }

  /** The scheduler job "backup": write one archive for the claimed slot, then apply retention. */
  job(schedule: string): ScheduledJob {
    return {
      name: 'backup',
      schedule,
      catchUp: 'once',
      run: async (ctx: JobContext) => {
        const info = await this.writeToDir(ctx.kind, { slot: new Date(ctx.slotMs).toISOString(), fencingTerm: ctx.term, signal: ctx.signal });
        const deleted = await this.prune();
        return `${info.file} (index ${info.index}, ${info.bytes} bytes)${deleted.length > 0 ? `; deleted ${deleted.length} older than ${this.#d.retentionDays} days` : ''}`;
      },
    };
  }
}

/** The archives in `dir`, newest first by manifest time; a file that does not read is listed with `error`. */
export async function listBackups(dir: string): Promise<BackupInfo[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: BackupInfo[] = [];
  for (const file of names.filter((n) => n.endsWith(BACKUP_SUFFIX) && !n.startsWith('.')).sort()) {
    const path = join(dir, file);
    try {
      const r = await readManifest(path);
      out.push(infoOf(file, path, r.fileBytes, r.manifest));
    } catch (e) {
      out.push({ file, path, bytes: 0, takenAt: '', index: 0, term: 0, kind: '', takenBy: '', clusterId: '', error: (e as Error).message });
    }
  }
  return out.sort((a, b) => (a.takenAt < b.takenAt ? 1 : a.takenAt > b.takenAt ? -1 : b.index - a.index));
}
