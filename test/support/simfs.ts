// SimFs: an in-memory StorageFs (src/storage/fs.ts) that models durability,
// for running the shipped WAL code through crashes. Synchronous and
// deterministic: every promise it returns is already settled, there are no
// timers, and every random choice comes from the SeededRandom given to crash().
//
// Durability model (see src/storage/README.md, "Simulated file system"):
//   - file data: each file has durable content and a list of unsynced
//     operations (writes, truncates) applied to its current content.
//     datasync/sync (either variant) make the whole current content durable.
//   - directory entries: each directory has durable entries and a list of
//     unsynced entry operations (create, mkdir, rename, unlink). Only an fsync
//     of that directory makes them durable. Like ext4 data=ordered, but
//     conservatively: nothing else (a file fsync, a later rename, an fsync of
//     another directory) makes a directory entry durable.
//   - crash: every file and directory keeps its durable state plus, with
//     probability `keepPrefix`, a random non-empty prefix of its unsynced
//     operations (a journal commits in order). With probability `tear` the last
//     kept write of a file is torn: a random prefix of it, cut at a sector
//     boundary (SECTOR_BYTES, absolute file offsets), reaches the disk; the rest
//     of its range keeps the previous content (zeros where the file had none,
//     e.g. a preallocated WAL tail). A crash closes every open handle.
//   - renames must stay within one directory (EXDEV otherwise): src/storage
//     only renames `x.tmp` / `x.install` to `x` in place.
import { posix } from 'node:path';
import type { SeededRandom } from '../../src/raft/prng.js';
import type { StorageFile, StorageFs } from '../../src/storage/fs.js';

export const SECTOR_BYTES = 512;

export interface CrashOptions {
  /** Probability that a file or directory keeps a random prefix of its unsynced operations; default 0.5. */
  readonly keepPrefix?: number;
  /** Probability that the last kept write of a file is torn at a sector boundary; default 0.5. */
  readonly tear?: number;
}

export interface CrashReport {
  /** Unsynced file operations dropped. */
  readonly lostFileOps: number;
  /** Unsynced directory entry operations dropped. */
  readonly lostDirOps: number;
  /** Writes torn (a prefix kept). */
  readonly tornWrites: number;
}

/** Thrown by every operation once a scheduled crash has fired, until reboot(). */
export class SimCrashError extends Error {
  readonly code = 'ESIMCRASH';
  constructor(what: string) {
    super(`simulated crash: ${what}`);
    this.name = 'SimCrashError';
  }
}

type FileOp = { readonly kind: 'write'; readonly pos: number; readonly bytes: Buffer } | { readonly kind: 'truncate'; readonly size: number };
type DirOp =
  | { readonly kind: 'link'; readonly name: string; readonly node: SimNode }
  | { readonly kind: 'unlink'; readonly name: string }
  | { readonly kind: 'rename'; readonly from: string; readonly to: string; readonly node: SimNode };

class FileNode {
  readonly kind = 'file';
  data: Buffer = Buffer.alloc(0);
  durable: Buffer = Buffer.alloc(0);
  unsynced: FileOp[] = [];
}

class DirNode {
  readonly kind = 'dir';
  entries = new Map<string, SimNode>();
  durable = new Map<string, SimNode>();
  unsynced: DirOp[] = [];
}

type SimNode = FileNode | DirNode;

function fsError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated ${syscall} '${path}'`), { code, syscall, path });
}

function applyFileOp(data: Buffer, op: FileOp): Buffer {
  if (op.kind === 'truncate') {
    if (op.size <= data.length) return data.subarray(0, op.size);
    const grown = Buffer.alloc(op.size);
    data.copy(grown);
    return grown;
  }
  const end = op.pos + op.bytes.length;
  let out = data;
  if (end > data.length) {
    out = Buffer.alloc(end);
    data.copy(out);
  }
  op.bytes.copy(out, op.pos);
  return out;
}

class SimFile implements StorageFile {
  readonly #fs: SimFs;
  readonly #node: FileNode;
  readonly #generation: number;
  readonly #path: string;
  #closed = false;

  constructor(fs: SimFs, node: FileNode, generation: number, path: string) {
    this.#fs = fs;
    this.#node = node;
    this.#generation = generation;
    this.#path = path;
  }

  #check(syscall: string): FileNode {
    this.#fs.enter(`${syscall} '${this.#path}'`);
    if (this.#closed || this.#generation !== this.#fs.generation) throw fsError('EBADF', syscall, this.#path);
    return this.#node;
  }

  writeSync(buf: Uint8Array, offset: number, length: number, position: number): number {
    const n = this.#check(`write ${position}+${length}`);
    const op: FileOp = { kind: 'write', pos: position, bytes: Buffer.from(buf.subarray(offset, offset + length)) };
    n.data = applyFileOp(n.data, op);
    n.unsynced.push(op);
    return length;
  }
  datasyncSync(): void {
    const n = this.#check('fdatasync');
    // Replay the unsynced operations onto the durable copy (in place where
    // they fit) rather than copying the whole file: a preallocated segment
    // would otherwise be copied at every sync.
    let d = n.durable;
    for (const op of n.unsynced) d = applyFileOp(d, op);
    n.durable = d;
    n.unsynced = [];
  }
  truncateSync(size: number): void {
    const n = this.#check('ftruncate');
    const op: FileOp = { kind: 'truncate', size };
    n.data = applyFileOp(n.data, op);
    n.unsynced.push(op);
  }
  writeLog(buf: Uint8Array, position: number, sync: boolean): Promise<void> {
    // Two operations, as on a real disk: a crash can fire between the write
    // and the fdatasync (every operation is a crash point).
    return settle(() => {
      if (buf.length > 0) this.writeSync(buf, 0, buf.length, position);
      if (sync) this.datasyncSync();
    });
  }
  write(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return settle(() => this.writeSync(buf, offset, length, position));
  }
  writev(buffers: readonly Uint8Array[], position: number): Promise<number> {
    return settle(() => {
      const all = Buffer.concat(buffers as Uint8Array[]);
      return this.writeSync(all, 0, all.length, position);
    });
  }
  truncate(size: number): Promise<void> {
    return settle(() => this.truncateSync(size));
  }
  datasync(): Promise<void> {
    return settle(() => this.datasyncSync());
  }
  sync(): Promise<void> {
    return settle(() => this.datasyncSync());
  }
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return settle(() => {
      const data = this.#check(`read ${position}+${length}`).data;
      const n = Math.max(0, Math.min(length, data.length - position));
      data.copy(buf, offset, position, position + n);
      return n;
    });
  }
  stat(): Promise<{ readonly size: number }> {
    return settle(() => ({ size: this.#check('fstat').data.length }));
  }
  close(): Promise<void> {
    return settle(() => {
      this.#check('close');
      this.#closed = true;
    });
  }
}

/** Runs `fn` now; its result or error as an already settled promise. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

export class SimFs implements StorageFs {
  #root = new DirNode();
  /** Bumped by every crash: handles from before it are dead. */
  generation = 0;
  /** Operations performed (every call counts; scheduleCrash counts in these). */
  ops = 0;
  crashes = 0;
  #down = false;
  #crashIn: number | undefined;
  #crashRng: SeededRandom | undefined;
  #crashOptions: CrashOptions = {};
  #lastReport: CrashReport | undefined;

  /** Observer of every operation (debugging a failing seed). */
  trace: ((what: string) => void) | undefined;

  /** Called at the start of every operation: fires a scheduled crash. */
  enter(what: string): void {
    if (this.#down) throw new SimCrashError(`file system is down (${what})`);
    this.ops++;
    this.trace?.(what);
    if (this.#crashIn === undefined) return;
    if (this.#crashIn > 0) {
      this.#crashIn--;
      return;
    }
    const rng = this.#crashRng!;
    this.#crashIn = undefined;
    this.#crashRng = undefined;
    this.crash(rng, this.#crashOptions);
    this.#down = true;
    throw new SimCrashError(`crashed before ${what}`);
  }

  /**
   * Crashes before the (n+1)-th operation from now (n = 0: the next one). From
   * then on every operation throws SimCrashError until reboot().
   */
  scheduleCrash(n: number, rng: SeededRandom, options: CrashOptions = {}): void {
    this.#crashIn = n;
    this.#crashRng = rng;
    this.#crashOptions = options;
  }

  /** Whether a scheduled crash has fired (and reboot() was not called yet). */
  get down(): boolean {
    return this.#down;
  }

  /** Cancels a scheduled crash that has not fired. */
  cancelCrash(): void {
    this.#crashIn = undefined;
    this.#crashRng = undefined;
  }

  /** After a scheduled crash: the machine is back (its file system is what the crash left). */
  reboot(): void {
    this.#down = false;
  }

  get lastCrash(): CrashReport | undefined {
    return this.#lastReport;
  }

  /** Crashes now: everything not durable is lost, except what `rng` lets through (see the header). */
  crash(rng: SeededRandom, options: CrashOptions = {}): CrashReport {
    const keep = options.keepPrefix ?? 0.5;
    const tear = options.tear ?? 0.5;
    let lostFileOps = 0;
    let lostDirOps = 0;
    let tornWrites = 0;
    const seen = new Set<SimNode>();
    const visit = (node: SimNode): void => {
      if (seen.has(node)) return;
      seen.add(node);
      if (node.kind === 'file') {
        const ops = node.unsynced;
        let data = node.durable;
        if (ops.length > 0) {
          const k = rng.chance(keep) ? 1 + rng.int(ops.length) : 0;
          lostFileOps += ops.length - k;
          this.trace?.(`file keeps ${k} of ${ops.length} unsynced ops: ${ops.map((x) => (x.kind === 'write' ? `w${x.pos}+${x.bytes.length}` : `t${x.size}`)).join(' ')}`);
          for (let i = 0; i < k; i++) {
            const op = ops[i]!;
            if (i === k - 1 && op.kind === 'write' && op.bytes.length > 0 && rng.chance(tear)) {
              // Cut points: the start of the write and every sector boundary inside it.
              const cuts = [op.pos];
              for (let b = (Math.floor(op.pos / SECTOR_BYTES) + 1) * SECTOR_BYTES; b < op.pos + op.bytes.length; b += SECTOR_BYTES) cuts.push(b);
              const cut = cuts[rng.int(cuts.length)]!;
              this.trace?.(`tear write ${op.pos}+${op.bytes.length} at ${cut} (op ${i + 1} of ${ops.length})`);
              const end = op.pos + op.bytes.length;
              if (end > data.length) data = applyFileOp(data, { kind: 'truncate', size: end });
              data = applyFileOp(data, { kind: 'write', pos: op.pos, bytes: op.bytes.subarray(0, cut - op.pos) });
              tornWrites++;
            } else data = applyFileOp(data, op);
          }
        }
        node.durable = Buffer.from(data);
        node.data = Buffer.from(data);
        node.unsynced = [];
        return;
      }
      const ops = node.unsynced;
      const entries = new Map(node.durable);
      if (ops.length > 0) {
        const k = rng.chance(keep) ? 1 + rng.int(ops.length) : 0;
        lostDirOps += ops.length - k;
        for (let i = 0; i < k; i++) {
          const op = ops[i]!;
          if (op.kind === 'link') entries.set(op.name, op.node);
          else if (op.kind === 'unlink') entries.delete(op.name);
          else {
            entries.delete(op.from);
            entries.set(op.to, op.node);
          }
        }
      }
      node.entries = entries;
      node.durable = new Map(entries);
      node.unsynced = [];
      for (const name of [...entries.keys()].sort()) visit(entries.get(name)!);
    };
    visit(this.#root);
    this.generation++;
    this.crashes++;
    this.#lastReport = { lostFileOps, lostDirOps, tornWrites };
    this.trace?.(`CRASH ${JSON.stringify(this.#lastReport)}`);
    return this.#lastReport;
  }

  // ---- StorageFs ----

  open(path: string, flags: 'r' | 'r+' | 'w', _mode?: number): Promise<StorageFile> {
    return settle(() => {
      this.enter(`open '${path}'`);
      const { dir, name } = this.#parent(path, 'open');
      let node = dir.entries.get(name);
      if (node?.kind === 'dir') throw fsError('EISDIR', 'open', path);
      if (node === undefined) {
        if (flags !== 'w') throw fsError('ENOENT', 'open', path);
        node = new FileNode();
        dir.entries.set(name, node);
        dir.unsynced.push({ kind: 'link', name, node });
      } else if (flags === 'w' && node.data.length > 0) {
        const op: FileOp = { kind: 'truncate', size: 0 };
        node.data = applyFileOp(node.data, op);
        node.unsynced.push(op);
      }
      return new SimFile(this, node, this.generation, path);
    });
  }

  readFile(path: string): Promise<Buffer> {
    return settle(() => {
      this.enter(`readFile '${path}'`);
      const node = this.#lookup(path, 'open');
      if (node.kind === 'dir') throw fsError('EISDIR', 'read', path);
      return Buffer.from(node.data);
    });
  }

  readdir(path: string): Promise<string[]> {
    return settle(() => {
      this.enter(`readdir '${path}'`);
      const node = this.#lookup(path, 'scandir');
      if (node.kind !== 'dir') throw fsError('ENOTDIR', 'scandir', path);
      return [...node.entries.keys()].sort();
    });
  }

  rename(from: string, to: string): Promise<void> {
    return settle(() => {
      this.enter(`rename '${from}' -> '${to}'`);
      const a = this.#parent(from, 'rename');
      const b = this.#parent(to, 'rename');
      if (a.dir !== b.dir) throw fsError('EXDEV', 'rename', from);
      const node = a.dir.entries.get(a.name);
      if (node === undefined) throw fsError('ENOENT', 'rename', from);
      if (b.dir.entries.get(b.name)?.kind === 'dir') throw fsError('EISDIR', 'rename', to);
      if (a.name === b.name) return;
      a.dir.entries.delete(a.name);
      a.dir.entries.set(b.name, node);
      a.dir.unsynced.push({ kind: 'rename', from: a.name, to: b.name, node });
    });
  }

  unlink(path: string): Promise<void> {
    return settle(() => {
      this.enter(`unlink '${path}'`);
      const { dir, name } = this.#parent(path, 'unlink');
      const node = dir.entries.get(name);
      if (node === undefined) throw fsError('ENOENT', 'unlink', path);
      if (node.kind === 'dir') throw fsError('EISDIR', 'unlink', path);
      dir.entries.delete(name);
      dir.unsynced.push({ kind: 'unlink', name });
    });
  }

  mkdir(path: string, _options: { readonly recursive: true }): Promise<void> {
    return settle(() => {
      this.enter(`mkdir '${path}'`);
      let dir = this.#root;
      for (const name of SimFs.#parts(path)) {
        let next = dir.entries.get(name);
        if (next === undefined) {
          next = new DirNode();
          dir.entries.set(name, next);
          dir.unsynced.push({ kind: 'link', name, node: next });
        }
        if (next.kind !== 'dir') throw fsError('ENOTDIR', 'mkdir', path);
        dir = next;
      }
    });
  }

  fsyncDir(path: string): Promise<void> {
    return settle(() => {
      this.enter(`fsync dir '${path}'`);
      const node = this.#lookup(path, 'open');
      if (node.kind !== 'dir') throw fsError('ENOTDIR', 'fsync', path);
      node.durable = new Map(node.entries);
      node.unsynced = [];
    });
  }

  // ---- inspection (tests) ----

  /** Current content of a file (undefined if absent), without counting as an operation. */
  peek(path: string): Buffer | undefined {
    try {
      const node = this.#lookup(path, 'peek');
      return node.kind === 'file' ? Buffer.from(node.data) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Whether a file's data and every directory entry on its path are durable. */
  isDurable(path: string): boolean {
    let dir = this.#root;
    const parts = SimFs.#parts(path);
    for (let i = 0; i < parts.length; i++) {
      const node = dir.entries.get(parts[i]!);
      if (node === undefined || dir.durable.get(parts[i]!) !== node) return false;
      if (i === parts.length - 1) return node.unsynced.length === 0;
      if (node.kind !== 'dir') return false;
      dir = node;
    }
    return true;
  }

  static #parts(path: string): string[] {
    const p = posix.normalize(path);
    if (!p.startsWith('/')) throw fsError('EINVAL', 'resolve', path);
    return p.split('/').filter((s) => s.length > 0);
  }

  #lookup(path: string, syscall: string): SimNode {
    let node: SimNode = this.#root;
    for (const name of SimFs.#parts(path)) {
      if (node.kind !== 'dir') throw fsError('ENOTDIR', syscall, path);
      const next: SimNode | undefined = node.entries.get(name);
      if (next === undefined) throw fsError('ENOENT', syscall, path);
      node = next;
    }
    return node;
  }

  #parent(path: string, syscall: string): { dir: DirNode; name: string } {
    const parts = SimFs.#parts(path);
    const name = parts.pop();
    if (name === undefined) throw fsError('EINVAL', syscall, path);
    const dir = this.#lookup(`/${parts.join('/')}`, syscall);
    if (dir.kind !== 'dir') throw fsError('ENOTDIR', syscall, path);
    return { dir, name };
  }
}

// ---- wrappers that plant storage faults (mutation tests) ----

export function bindFile(f: StorageFile): StorageFile {
  return {
    writeLog: (b, p, sync) => f.writeLog(b, p, sync),
    write: (b, o, l, p) => f.write(b, o, l, p),
    writev: (bs, p) => f.writev(bs, p),
    truncate: (n) => f.truncate(n),
    datasync: () => f.datasync(),
    sync: () => f.sync(),
    read: (b, o, l, p) => f.read(b, o, l, p),
    stat: () => f.stat(),
    close: () => f.close(),
  };
}

export function bindFs(fs: StorageFs): StorageFs {
  return {
    open: (p, fl, m) => fs.open(p, fl, m),
    readFile: (p) => fs.readFile(p),
    readdir: (p) => fs.readdir(p),
    rename: (a, b) => fs.rename(a, b),
    unlink: (p) => fs.unlink(p),
    mkdir: (p, o) => fs.mkdir(p, o),
    fsyncDir: (p) => fs.fsyncDir(p),
  };
}

export function wrapFiles(fs: StorageFs, wrap: (f: StorageFile) => StorageFile): StorageFs {
  return { ...bindFs(fs), open: async (p, fl, m) => wrap(await fs.open(p, fl, m)) };
}

/** A file system on which fdatasync of the hot path does nothing: sync() is acknowledged before the data is durable. */
export function skipHotPathDatasync(fs: StorageFs): StorageFs {
  return wrapFiles(fs, (f) => ({ ...bindFile(f), writeLog: (b, p) => f.writeLog(b, p, false) }));
}
