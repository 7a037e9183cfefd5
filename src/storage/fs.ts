// The file-system port of src/storage: exactly the operations the WAL, the
// segment, snapshot and hard-state code and fsutil.ts use. `nodeFs` is the real
// file system (the default everywhere); tests pass a simulated one
// (test/support/simfs.ts) that loses what was not made durable at a crash.
//
// The WAL's group-commit hot path (one write + one fdatasync per batch on the
// active segment) is writeLog(): the real implementation runs it on libuv's
// thread pool (callback API: no FileHandle promise machinery), so the event
// loop keeps parsing requests, sending appends and answering heartbeats while
// the disk works. A synced writeLog is one write on a second descriptor
// opened with O_DSYNC (write + fdatasync in one syscall, one thread-pool
// job), unless earlier writes on the file await an fdatasync: then it is a
// write and an fdatasync.
import { close as closeFd, constants, open as openCb, write } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** An open regular file. Positions are absolute byte offsets. */
export interface StorageFile {
  /**
   * The WAL's hot path: writes all of `buf` at `position` (retrying short
   * writes), then, when `sync`, fdatasyncs the file. Resolves when done (the
   * data durable when `sync`); off the event loop in the real implementation.
   * `buf` must not change until it settles.
   */
  writeLog(buf: Uint8Array, position: number, sync: boolean): Promise<void>;
  /** Positional write; resolves to bytes written (may be short). */
  write(buf: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Gathered positional write; resolves to bytes written (may be short). */
  writev(buffers: readonly Uint8Array[], position: number): Promise<number>;
  truncate(size: number): Promise<void>;
  /** fdatasync: the file's data (and size) are durable when it resolves. */
  datasync(): Promise<void>;
  /** fsync: as datasync, plus the inode's other metadata. */
  sync(): Promise<void>;
  /** Positional read into buf[offset..]; resolves to bytes read (0 at the end of the file, may be short). */
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  stat(): Promise<{ readonly size: number }>;
  close(): Promise<void>;
}

/**
 * The file-system operations of src/storage. Errors carry Node's `code`
 * ('ENOENT', 'EEXIST', ...) as fs errors do; callers test for 'ENOENT'.
 */
export interface StorageFs {
  /** 'r': read an existing file; 'r+': read/write an existing file; 'w': create or truncate, write. */
  open(path: string, flags: 'r' | 'r+' | 'w', mode?: number): Promise<StorageFile>;
  readFile(path: string): Promise<Buffer>;
  readdir(path: string): Promise<string[]>;
  /** Atomic replace of `to` (same directory in src/storage). Durable only after fsyncDir. */
  rename(from: string, to: string): Promise<void>;
  /** Durable only after fsyncDir of the parent. */
  unlink(path: string): Promise<void>;
  mkdir(path: string, options: { readonly recursive: true }): Promise<void>;
  /** fsync of a directory: creations, renames and unlinks in it become durable. */
  fsyncDir(path: string): Promise<void>;
}

class NodeFile implements StorageFile {
  readonly #fh: FileHandle;
  readonly #fd: number;
  readonly #path: string;
  readonly #writable: boolean;
  /**
   * A second descriptor of the same file opened with O_DSYNC (opened at the
   * first synced writeLog): each write on it returns only once its data (and
   * what is needed to read it back) is durable, like write + fdatasync, in
   * one thread-pool round trip instead of two with the event loop between.
   */
  #dsync: number | undefined;
  /** Writes or truncates on #fd not yet covered by an fdatasync: O_DSYNC covers only its own range, so those need a real fdatasync. */
  #unsynced = false;
  #closed = false;
  constructor(fh: FileHandle, path: string, writable: boolean) {
    this.#fh = fh;
    this.#fd = fh.fd;
    this.#path = path;
    this.#writable = writable;
  }
  async writeLog(buf: Uint8Array, position: number, sync: boolean): Promise<void> {
    if (sync && !this.#unsynced && buf.length > 0 && this.#writable && DSYNC !== undefined && !this.#closed) {
      if (this.#dsync === undefined) {
        const d = await openFd(this.#path, constants.O_RDWR | DSYNC);
        if (this.#closed || this.#dsync !== undefined) {
          closeFd(d, () => undefined);
          if (this.#closed) throw Object.assign(new Error(`EBADF: bad file descriptor, write '${this.#path}'`), { code: 'EBADF', syscall: 'write' });
        } else this.#dsync = d;
      }
      return writeAll(this.#dsync!, buf, position);
    }
    if (buf.length > 0) {
      this.#unsynced = true;
      await writeAll(this.#fd, buf, position);
    }
    if (sync) await this.datasync();
  }
  async write(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.#unsynced = true;
    return (await this.#fh.write(buf, offset, length, position)).bytesWritten;
  }
  async writev(buffers: readonly Uint8Array[], position: number): Promise<number> {
    this.#unsynced = true;
    return (await this.#fh.writev(buffers as Uint8Array[], position)).bytesWritten;
  }
  truncate(size: number): Promise<void> {
    this.#unsynced = true;
    return this.#fh.truncate(size);
  }
  async datasync(): Promise<void> {
    const was = this.#unsynced;
    this.#unsynced = false;
    try {
      await this.#fh.datasync();
    } catch (err) {
      this.#unsynced = was;
      throw err;
    }
  }
  async sync(): Promise<void> {
    const was = this.#unsynced;
    this.#unsynced = false;
    try {
      await this.#fh.sync();
    } catch (err) {
      this.#unsynced = was;
      throw err;
    }
  }
  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return (await this.#fh.read(buf, offset, length, position)).bytesRead;
  }
  stat(): Promise<{ readonly size: number }> {
    return this.#fh.stat();
  }
  async close(): Promise<void> {
    this.#closed = true;
    const d = this.#dsync;
    this.#dsync = undefined;
    if (d !== undefined) await new Promise<void>((resolve) => closeFd(d, () => resolve()));
    return this.#fh.close();
  }
}

/** O_DSYNC where the platform has it (Linux, macOS); elsewhere writeLog uses write + fdatasync. */
const DSYNC: number | undefined = constants.O_DSYNC;

function openFd(path: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => openCb(path, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** Writes all of `buf` at `position` on `fd` (again after a short write), callback API: one thread-pool job per write. */
function writeAll(fd: number, buf: Uint8Array, position: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const wrote = (off: number) => (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err) return reject(err);
      const next = off + n;
      if (next < buf.length) write(fd, buf, next, buf.length - next, position + next, wrote(next));
      else resolve();
    };
    write(fd, buf, 0, buf.length, position, wrote(0));
  });
}

/** The real file system (node:fs). */
export const nodeFs: StorageFs = {
  async open(path, flags, mode) {
    return new NodeFile(await open(path, flags, mode), path, flags !== 'r');
  },
  readFile(path) {
    return readFile(path);
  },
  readdir(path) {
    return readdir(path);
  },
  rename(from, to) {
    return rename(from, to);
  },
  unlink(path) {
    return unlink(path);
  },
  async mkdir(path, options) {
    await mkdir(path, options);
  },
  async fsyncDir(path) {
    const fh = await open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};
