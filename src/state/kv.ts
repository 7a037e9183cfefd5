// The replicated key-value state machine. Deterministic: it reads no clock,
// no random source and no environment. Its only time is the `at` stamped into
// each command by the leader, folded into a monotonic clock (the largest `at`
// seen) so a leader with a slow clock cannot move time backwards.
//
// Revisions work like etcd's: one global counter, bumped once per command that
// changes something (a txn bumps once however many keys it writes); each key
// keeps createRevision, modRevision and version (writes since creation).
//
// It is the "kv" machine of a MachineRegistry (machines.ts), which owns the
// applied index, the leader clock and the client sessions; for now the KV also
// hosts the registry and keeps the registry's state in its snapshot.
import { commandFingerprint, decodeKvPayload, packCanonical, unpackCanonical } from './commands.js';
import type { Command, Compare, ExpireKey, TxnOp } from './commands.js';
import { createHash } from 'node:crypto';
import { SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import { KV_MACHINE_ID, MachineRegistry } from './machines.js';
import type { StateMachine } from './machines.js';
import {
  DEFAULT_WATCH_HISTORY_BYTES,
  DEFAULT_WATCH_HISTORY_EVENTS,
  MAX_EXPIRE_KEYS,
} from './limits.js';
import { resultFromTuple, resultToTuple } from './results.js';
import type { ApplyResult, TxnOpResponse } from './results.js';
import type { SessionRecord } from './sessions.js';
import {
  ChunkReader, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_BYTES, SNAPSHOT_LEGACY_FORMAT_VERSION, SNAPSHOT_MAGIC,
  SNAPSHOT_MAGIC_BYTES, SNAPSHOT_RECORD_BYTES_MAX, SNAPSHOT_STREAM_HEADER_BYTES, unframeSnapshot,
} from './snapshot.js';
import { SortedKeys } from './sorted-keys.js';
import { WatchHub } from './watch.js';
import type { Unsubscribe, WatchEvent, WatchListener, WatchOptions } from './watch.js';

export interface KeyRecord {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  /** Writes since creation (1 after the first put). */
  readonly version: number;
  /** Present when the key was written with ttlMs: `at + ttlMs` of that write. */
  readonly leaseDeadlineMs?: number;
}

export interface RangeResult {
  readonly records: readonly KeyRecord[];
  /** True if more keys match past the limit. */
  readonly more: boolean;
  /** Store revision the range was read at. */
  readonly revision: number;
}

export interface KvOptions {
  /** Client-session records kept (oldest evicted). Replicated behaviour: must be equal on every node. */
  readonly sessionMax?: number;
  /** Session record lifetime in command time. Replicated behaviour: must be equal on every node. */
  readonly sessionTtlMs?: number;
  /** Watch history bounds (node-local; any value is safe). */
  readonly watchHistoryEvents?: number;
  readonly watchHistoryBytes?: number;
  /** A watch listener threw; the default ignores it (apply is never affected). */
  readonly onListenerError?: (err: unknown, event: WatchEvent | undefined) => void;
  /** The newest entry format applied (default 2); 1 = behave as the previous release (see MachineRegistryOptions). */
  readonly maxFormatVersion?: number;
}

/**
 * What readers of the replicated KV (the HTTP API) may use: reads of the
 * applied state and watches. Writes go through the node (propose), never
 * here; a PostgreSQL-backed implementation can stand behind this interface.
 */
export interface KvReader {
  readonly appliedIndex: number;
  readonly revision: number;
  get(key: string): KeyRecord | undefined;
  range(prefix: string, limit: number, startAfter?: string): RangeResult;
  watch(prefix: string, fromRevision: number | undefined, listener: WatchListener, options?: WatchOptions): Unsubscribe;
  /** SHA-256 of the canonical state (equal on replicas at the same applied index). */
  checksum(): string;
}

export class KvStateMachine implements KvReader {
  #records = new Map<string, KeyRecord>();
  #keys = new SortedKeys();
  /** key -> lease deadline, for keys written with a TTL. */
  #leases = new Map<string, number>();
  #revision = 0;
  readonly #watch: WatchHub;
  /** The registry this KV is the "kv" machine of (and, for now, the snapshot host of). */
  readonly machines: MachineRegistry;
  /** The KV as a machine of the registry. */
  readonly machine: StateMachine<Command> = {
    id: KV_MACHINE_ID,
    decode: (payload) => decodeKvPayload(payload),
    fingerprint: (command) => commandFingerprint(command),
    apply: (command, ctx) => {
      const events: WatchEvent[] = [];
      const result = this.#execute(command, ctx.at, ctx.clockMs, events);
      this.#watch.publish(events);
      return result;
    },
  };
  /** Snapshot streams open now (see snapshot()). */
  readonly #captures = new Set<Capture>();

  constructor(options: KvOptions = {}) {
    this.machines = new MachineRegistry({
      ...(options.sessionMax !== undefined ? { sessionMax: options.sessionMax } : {}),
      ...(options.sessionTtlMs !== undefined ? { sessionTtlMs: options.sessionTtlMs } : {}),
      ...(options.maxFormatVersion !== undefined ? { maxFormatVersion: options.maxFormatVersion } : {}),
    });
    this.machines.register(this.machine);
    this.#watch = new WatchHub(
      options.watchHistoryEvents ?? DEFAULT_WATCH_HISTORY_EVENTS,
      options.watchHistoryBytes ?? DEFAULT_WATCH_HISTORY_BYTES,
      options.onListenerError ?? (() => {}),
    );
  }

  /** The registry's applied index (every entry, membership entries included). */
  get appliedIndex(): number {
    return this.machines.appliedIndex;
  }
  get revision(): number {
    return this.#revision;
  }
  /** The state machine's clock: the largest command `at` applied. */
  get clockMs(): number {
    return this.machines.clockMs;
  }
  get size(): number {
    return this.#records.size;
  }
  get sessionCount(): number {
    return this.machines.sessionCount;
  }
  /** Open watches (node-local). */
  get watcherCount(): number {
    return this.#watch.watcherCount;
  }
  /** Oldest revision a watch may start from. */
  get oldestWatchRevision(): number {
    return this.#watch.oldestRevision;
  }

  // ---- apply ----------------------------------------------------------------

  /**
   * Applies one committed normal entry through the registry (either entry
   * format; see MachineRegistry.apply). `index` must exceed appliedIndex.
   * Empty data is a no-op that still advances appliedIndex. Malformed data
   * yields an `invalid_command` result on every node; an unknown format version
   * throws UnsupportedCommandVersionError (the node must stop, not skip).
   */
  apply(index: number, data: Uint8Array): ApplyResult {
    return this.machines.apply(index, data) ?? { revision: this.#revision };
  }

  /** Entry `index` holds nothing for any machine (a membership entry): only the applied index moves. */
  markApplied(index: number): void {
    this.machines.markApplied(index);
  }

  #execute(c: Command, atMs: number, clockMs: number, events: WatchEvent[]): ApplyResult {
    switch (c.type) {
      case 'noop':
        return { revision: this.#revision };
      case 'put': {
        const cur = this.#records.get(c.key)?.modRevision ?? 0;
        if (c.ifRevision !== undefined && c.ifRevision !== cur) return { error: 'revision_mismatch', currentRevision: cur };
        this.#revision++;
        this.#put(c.key, c.value, c.ttlMs, atMs, events);
        return { revision: this.#revision };
      }
      case 'delete': {
        const cur = this.#records.get(c.key)?.modRevision ?? 0;
        if (c.ifRevision !== undefined && c.ifRevision !== cur) return { error: 'revision_mismatch', currentRevision: cur };
        if (cur === 0) return { revision: this.#revision, deleted: false };
        this.#revision++;
        this.#delete(c.key, events);
        return { revision: this.#revision, deleted: true };
      }
      case 'txn': {
        // Compares are pure and ops were fully validated at decode (keys, sizes,
        // no key twice in a branch), so nothing below can fail halfway.
        const succeeded = c.compare.every((cmp) => this.#compare(cmp));
        const ops: readonly TxnOp[] = succeeded ? c.success : c.failure;
        const rev = this.#revision + 1;
        const responses: TxnOpResponse[] = [];
        let changed = false;
        for (const op of ops) {
          if (op.type === 'put') {
            this.#revision = rev;
            this.#put(op.key, op.value, op.ttlMs, atMs, events);
            responses.push({ type: 'put', revision: rev });
            changed = true;
          } else {
            const existed = this.#records.has(op.key);
            if (existed) {
              this.#revision = rev;
              this.#delete(op.key, events);
              changed = true;
            }
            responses.push({ type: 'delete', deleted: existed });
          }
        }
        return { succeeded, revision: changed ? rev : this.#revision, responses };
      }
      case 'expire': {
        const rev = this.#revision + 1;
        let expired = 0;
        for (const k of c.keys) {
          const rec = this.#records.get(k.key);
          if (rec === undefined || rec.modRevision !== k.modRevision) continue;
          if (rec.leaseDeadlineMs === undefined || rec.leaseDeadlineMs > clockMs) continue;
          this.#revision = rev;
          this.#delete(k.key, events);
          expired++;
        }
        return { revision: this.#revision, expired };
      }
    }
  }

  /** Writes at the current revision (already bumped by the caller). */
  #put(key: string, value: string, ttlMs: number | undefined, atMs: number, events: WatchEvent[]): void {
    const prev = this.#records.get(key);
    if (this.#captures.size > 0) this.#preimage(key, prev);
    const rev = this.#revision;
    const base = {
      key,
      value,
      createRevision: prev?.createRevision ?? rev,
      modRevision: rev,
      version: (prev?.version ?? 0) + 1,
    };
    const rec: KeyRecord = Object.freeze(ttlMs === undefined ? base : { ...base, leaseDeadlineMs: atMs + ttlMs });
    this.#records.set(key, rec);
    if (prev === undefined) this.#keys.add(key);
    if (rec.leaseDeadlineMs === undefined) this.#leases.delete(key);
    else this.#leases.set(key, rec.leaseDeadlineMs);
    events.push({ type: 'put', key, value, revision: rev, createRevision: rec.createRevision, modRevision: rev });
  }

  #delete(key: string, events: WatchEvent[]): void {
    const prev = this.#records.get(key)!;
    if (this.#captures.size > 0) this.#preimage(key, prev);
    this.#records.delete(key);
    this.#keys.delete(key);
    this.#leases.delete(key);
    events.push({ type: 'delete', key, revision: this.#revision, createRevision: prev.createRevision, modRevision: prev.modRevision });
  }

  #compare(c: Compare): boolean {
    const rec = this.#records.get(c.key);
    let actual: number | string;
    switch (c.target) {
      case 'exists':
        return c.op === '=' ? (rec !== undefined) === c.value : (rec !== undefined) !== c.value;
      case 'value':
        if (rec === undefined) return false;
        actual = rec.value;
        break;
      case 'revision':
        actual = rec?.modRevision ?? 0;
        break;
      case 'createRevision':
        actual = rec?.createRevision ?? 0;
        break;
      case 'version':
        actual = rec?.version ?? 0;
        break;
    }
    const expected = c.value;
    switch (c.op) {
      case '=':
        return actual === expected;
      case '!=':
        return actual !== expected;
      case '<':
        return actual < expected;
      case '>':
        return actual > expected;
    }
  }

  // ---- reads ----------------------------------------------------------------

  get(key: string): KeyRecord | undefined {
    return this.#records.get(key);
  }

  /**
   * Keys starting with `prefix`, sorted (JavaScript string order), at most
   * `limit` (>= 1). `startAfter` resumes a paged read after that key.
   */
  range(prefix: string, limit: number, startAfter?: string): RangeResult {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`range limit must be a positive integer, got ${limit}`);
    // NUL is not allowed in keys, so key + "\0" is the least key after it.
    const start = startAfter !== undefined && startAfter >= prefix ? `${startAfter}\u0000` : prefix;
    const records: KeyRecord[] = [];
    let more = false;
    for (const key of this.#keys.from(start)) {
      if (!key.startsWith(prefix)) break;
      if (records.length === limit) {
        more = true;
        break;
      }
      records.push(this.#records.get(key)!);
    }
    return { records, more, revision: this.#revision };
  }

  /**
   * Keys whose lease deadline is <= nowMs, earliest deadline first (ties by
   * key), at most `max`: the leader proposes `expire` with them. Each carries
   * the modRevision seen, so a key rewritten meanwhile is not deleted.
   */
  expiredKeys(nowMs: number, max: number = MAX_EXPIRE_KEYS): ExpireKey[] {
    const due: [number, string][] = [];
    for (const [key, deadline] of this.#leases) if (deadline <= nowMs) due.push([deadline, key]);
    due.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    return due.slice(0, Math.min(max, MAX_EXPIRE_KEYS)).map(([, key]) => ({ key, modRevision: this.#records.get(key)!.modRevision }));
  }

  // ---- watch ----------------------------------------------------------------

  /**
   * Replays retained events under `prefix` with revision >= fromRevision
   * (synchronously, before returning), then streams live ones after each
   * apply. fromRevision undefined = live only. Throws CompactedError (code
   * 'compacted', with oldestRevision) if the history no longer reaches back.
   * Listener exceptions are caught and never affect apply.
   */
  watch(prefix: string, fromRevision: number | undefined, listener: WatchListener, options?: WatchOptions): Unsubscribe {
    return this.#watch.watch(prefix, fromRevision, this.#revision, listener, options);
  }

  // ---- snapshot -------------------------------------------------------------
  //
  // Format 3 (./snapshot.ts): header, then length-prefixed msgpack records
  //   [appliedIndex, revision, clockMs, keyCount, sessionCount]
  //   keyCount x [key, value, createRevision, modRevision, version, leaseDeadlineMs|nil], sorted by key
  //   sessionCount x [idempotencyKey, atMs, resultTuple, fingerprint|nil], in insertion order
  // then the SHA-256 of every byte before it. Formats 1 and 2 (one msgpack
  // array [appliedIndex, revision, clockMs, keys, sessions]; format 1 without
  // the session fingerprint) are still read.
  //
  // snapshot() captures the state without copying it: the key list (string
  // references) and the scalar and session state are taken at the call; while
  // the stream is open, the first change of a key records its previous record
  // in the capture's overlay (records are immutable objects, so that is a
  // reference too), and the stream serializes overlay-or-live.

  #capture(): Capture {
    const keys: string[] = [];
    for (const key of this.#keys.from('')) keys.push(key);
    const sessions: unknown[] = [];
    for (const s of this.machines.sessionRecords()) sessions.push([s.key, s.atMs, resultToTuple(s.result), s.fingerprint ?? null]);
    // appliedIndex, clockMs and sessions are the registry's state, kept in this snapshot.
    const cap: Capture = {
      records: this.#records,
      keys,
      overlay: new Map(),
      head: [this.machines.appliedIndex, this.#revision, this.machines.clockMs, keys.length, sessions.length],
      sessions,
    };
    this.#captures.add(cap);
    return cap;
  }

  /** Called before a key's record changes: open captures keep its record as of their capture. */
  #preimage(key: string, prev: KeyRecord | undefined): void {
    if (prev === undefined) return; // absent at capture (not in its key list), or already recorded when deleted
    for (const cap of this.#captures) if (!cap.overlay.has(key)) cap.overlay.set(key, prev);
  }

  /**
   * The state as of this call, as a stream of chunks (each at most 1 MiB),
   * produced lazily; apply() may go on meanwhile. Deterministic: equal state
   * gives equal bytes on every node. Iterate it once, to the end or until
   * `return()` (a `for await` that breaks does): until then, keys changed
   * since the call keep their old record in memory.
   */
  snapshot(): AsyncIterable<Uint8Array> {
    const cap = this.#capture();
    const captures = this.#captures;
    async function* stream(): AsyncGenerator<Uint8Array> {
      try {
        yield* serializeCapture(cap);
      } finally {
        captures.delete(cap);
      }
    }
    return stream();
  }

  /** Hex SHA-256 of the canonical state (the format-3 snapshot's trailer): equal on nodes at the same applied index. */
  checksum(): string {
    const cap = this.#capture();
    try {
      let last: Uint8Array = new Uint8Array(0);
      let tail: Uint8Array = new Uint8Array(0);
      for (const c of serializeCapture(cap)) {
        tail = last;
        last = c;
      }
      const bytes = last.length >= 32 ? last : Buffer.concat([tail, last]);
      return Buffer.from(bytes.subarray(bytes.length - 32)).toString('hex');
    } finally {
      this.#captures.delete(cap);
    }
  }

  /**
   * Checks a snapshot stream completely (framing, checksum, every record)
   * without keeping the state: the receive-side check and the storage's
   * validateSnapshot. Throws SnapshotCorruptError (offset, field) or
   * SnapshotVersionError.
   */
  static async validateSnapshot(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readSnapshot(chunks, false);
  }

  /**
   * Replaces the whole state with a snapshot's. The new state is built aside
   * and swapped in only when the whole stream has checked out; a bad stream
   * throws SnapshotCorruptError (offset and field) or SnapshotVersionError and
   * leaves the state as it was. Open watches are cancelled (their onCancel
   * gets a CompactedError).
   */
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const p = (await readSnapshot(chunks, true))!;
    // All checked: swap in. Open snapshot streams keep the old maps, which
    // nothing changes any more, so they need no overlay from now on.
    this.#captures.clear();
    this.#records = p.records;
    this.#keys = SortedKeys.fromSorted(p.sorted);
    this.#leases = p.leases;
    this.#revision = p.revision;
    this.machines.load({ appliedIndex: p.appliedIndex, clockMs: p.clockMs, sessions: p.sessions });
    this.#watch.reset(p.revision);
  }
}

interface Capture {
  readonly records: ReadonlyMap<string, KeyRecord>;
  readonly keys: readonly string[];
  readonly overlay: Map<string, KeyRecord>;
  readonly head: readonly [number, number, number, number, number];
  readonly sessions: readonly unknown[];
}

/**
 * Accumulates records into chunks of SNAPSHOT_CHUNK_BYTES, hashing them. The
 * first buffer starts small and doubles up to the chunk size, so that a small
 * state (checksum() runs after every apply in the simulator) costs no 1 MiB
 * allocation.
 */
class ChunkBuilder {
  #out = Buffer.allocUnsafe(4096);
  #n = 0;
  readonly full: Uint8Array[] = [];
  readonly #hash = createHash('sha256');
  readonly #len = Buffer.alloc(4);

  write(b: Uint8Array): void {
    let at = 0;
    while (at < b.length) {
      if (this.#n === this.#out.length) {
        const bigger = Buffer.allocUnsafe(Math.min(SNAPSHOT_CHUNK_BYTES, this.#out.length * 2));
        this.#out.copy(bigger, 0, 0, this.#n);
        this.#out = bigger;
      }
      const take = Math.min(b.length - at, this.#out.length - this.#n);
      this.#out.set(b.subarray(at, at + take), this.#n);
      this.#n += take;
      at += take;
      if (this.#n === SNAPSHOT_CHUNK_BYTES) this.#flush();
    }
  }

  record(tuple: unknown): void {
    const body = packCanonical(tuple);
    this.#len.writeUInt32BE(body.length, 0);
    this.write(this.#len);
    this.write(body);
  }

  #flush(): void {
    if (this.#n === 0) return;
    const c = this.#out.subarray(0, this.#n);
    this.#hash.update(c);
    this.full.push(c);
    this.#out = Buffer.allocUnsafe(SNAPSHOT_CHUNK_BYTES);
    this.#n = 0;
  }

  /** Flushes and appends the trailer (SHA-256 of everything before it). */
  finish(): void {
    this.#flush();
    this.full.push(this.#hash.digest());
  }
}

function* serializeCapture(cap: Capture): Generator<Uint8Array, void, undefined> {
  const b = new ChunkBuilder();
  const header = Buffer.alloc(SNAPSHOT_STREAM_HEADER_BYTES);
  header.set(SNAPSHOT_MAGIC_BYTES, 0);
  header.writeUInt32BE(SNAPSHOT_FORMAT_VERSION, 4);
  b.write(header);
  b.record(cap.head);
  for (const key of cap.keys) {
    const r = cap.overlay.get(key) ?? cap.records.get(key)!;
    b.record([r.key, r.value, r.createRevision, r.modRevision, r.version, r.leaseDeadlineMs ?? null]);
    while (b.full.length > 0) yield b.full.shift()!;
  }
  for (const s of cap.sessions) {
    b.record(s);
    while (b.full.length > 0) yield b.full.shift()!;
  }
  b.finish();
  while (b.full.length > 0) yield b.full.shift()!;
}

interface ParsedSnapshot {
  appliedIndex: number;
  revision: number;
  clockMs: number;
  records: Map<string, KeyRecord>;
  sorted: string[];
  leases: Map<string, number>;
  sessions: SessionRecord[];
}

/** Largest format-1/2 snapshot read (those are held in memory whole). */
const LEGACY_SNAPSHOT_BYTES_MAX = 2 ** 31 - 1;

type Bad = (field: string, reason: string) => never;

const nat = (bad: Bad, field: string, v: unknown): number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : bad(field, `expected a non-negative integer, got ${String(v)}`);

/** Per-record checks shared by every format; `prevKey` / `prevAt` / `seen` carry order between records. */
class RecordChecker {
  prevKey: string | undefined;
  prevAt = 0;
  readonly seen = new Set<string>();
  constructor(readonly revision: number, readonly clockMs: number, readonly sessionFields: 3 | 4) {}

  key(t: unknown, f: string, bad: Bad): KeyRecord {
    if (!Array.isArray(t) || t.length !== 6) bad(f, 'expected [key, value, createRevision, modRevision, version, leaseDeadlineMs]');
    const [key, value, cr, mr, ver, lease] = t as unknown[];
    if (typeof key !== 'string' || key.length === 0) return bad(`${f}.key`, 'expected a non-empty string');
    if (this.prevKey !== undefined && !(this.prevKey < key)) bad(`${f}.key`, `keys out of order or duplicated: ${JSON.stringify(this.prevKey)} then ${JSON.stringify(key)}`);
    this.prevKey = key;
    if (typeof value !== 'string') return bad(`${f}.value`, 'expected a string');
    const createRevision = nat(bad, `${f}.createRevision`, cr);
    const modRevision = nat(bad, `${f}.modRevision`, mr);
    const version = nat(bad, `${f}.version`, ver);
    if (createRevision < 1 || createRevision > modRevision || modRevision > this.revision) {
      bad(`${f}.modRevision`, `need 1 <= createRevision (${createRevision}) <= modRevision (${modRevision}) <= revision (${this.revision})`);
    }
    if (version < 1) bad(`${f}.version`, 'expected >= 1');
    const base = { key, value, createRevision, modRevision, version };
    if (lease === null) return Object.freeze(base);
    return Object.freeze({ ...base, leaseDeadlineMs: nat(bad, `${f}.leaseDeadlineMs`, lease) });
  }

  session(t: unknown, f: string, bad: Bad): SessionRecord {
    const n = this.sessionFields;
    if (!Array.isArray(t) || t.length !== n) bad(f, n === 3 ? 'expected [idempotencyKey, atMs, result]' : 'expected [idempotencyKey, atMs, result, fingerprint]');
    const [key, atRaw, resultRaw, fpRaw] = t as unknown[];
    if (typeof key !== 'string' || key.length === 0) return bad(`${f}.idempotencyKey`, 'expected a non-empty string');
    if (this.seen.has(key)) bad(`${f}.idempotencyKey`, `duplicate ${JSON.stringify(key)}`);
    this.seen.add(key);
    const atMs = nat(bad, `${f}.atMs`, atRaw);
    if (atMs < this.prevAt || atMs > this.clockMs) bad(`${f}.atMs`, `expected non-decreasing times <= clockMs (${this.clockMs})`);
    this.prevAt = atMs;
    const result = resultFromTuple(resultRaw);
    if (result === undefined) return bad(`${f}.result`, 'malformed result tuple');
    let fingerprint: string | undefined;
    if (fpRaw !== undefined && fpRaw !== null) {
      if (typeof fpRaw !== 'string' || !/^[0-9a-f]{32}$/.test(fpRaw)) return bad(`${f}.fingerprint`, 'expected 32 lowercase hex digits or nil');
      fingerprint = fpRaw;
    }
    return { key, atMs, fingerprint, result };
  }
}

function emptyParsed(appliedIndex: number, revision: number, clockMs: number): ParsedSnapshot {
  return { appliedIndex, revision, clockMs, records: new Map(), sorted: [], leases: new Map(), sessions: [] };
}

function addKey(p: ParsedSnapshot, rec: KeyRecord): void {
  p.records.set(rec.key, rec);
  p.sorted.push(rec.key);
  if (rec.leaseDeadlineMs !== undefined) p.leases.set(rec.key, rec.leaseDeadlineMs);
}

/** Reads and checks a whole snapshot stream; builds the state only when `build`. */
async function readSnapshot(chunks: AsyncIterable<Uint8Array>, build: boolean): Promise<ParsedSnapshot | undefined> {
  const r = new ChunkReader(chunks);
  try {
    const header = await r.read(SNAPSHOT_STREAM_HEADER_BYTES);
    if (header === undefined) throw new SnapshotCorruptError(r.offset, 'header', `truncated: ${r.offset} bytes, the header alone is ${SNAPSHOT_STREAM_HEADER_BYTES}`);
    for (let i = 0; i < SNAPSHOT_MAGIC_BYTES.length; i++) {
      if (header[i] !== SNAPSHOT_MAGIC_BYTES[i]) throw new SnapshotCorruptError(i, 'magic', `expected "${SNAPSHOT_MAGIC}"`);
    }
    const version = Buffer.from(header.buffer, header.byteOffset, header.byteLength).readUInt32BE(4);
    if (version > SNAPSHOT_FORMAT_VERSION) throw new SnapshotVersionError(version, SNAPSHOT_FORMAT_VERSION);
    if (version <= SNAPSHOT_LEGACY_FORMAT_VERSION) {
      const rest = await r.rest(LEGACY_SNAPSHOT_BYTES_MAX);
      return readLegacy(Buffer.concat([header, rest]), build);
    }
    return await readStream(r, build);
  } finally {
    await r.close();
  }
}

async function readStream(r: ChunkReader, build: boolean): Promise<ParsedSnapshot | undefined> {
  let at = r.offset;
  const bad: Bad = (field, reason) => {
    throw new SnapshotCorruptError(at, field, reason);
  };
  const next = async (field: string): Promise<unknown> => {
    at = r.offset;
    const len = await r.read(4);
    if (len === undefined) return bad(field, `truncated: the stream ends at byte ${r.offset}, inside the length of a record`);
    const n = ((len[0]! << 24) | (len[1]! << 16) | (len[2]! << 8) | len[3]!) >>> 0;
    if (n === 0 || n > SNAPSHOT_RECORD_BYTES_MAX) return bad(field, `record length ${n} is outside 1..${SNAPSHOT_RECORD_BYTES_MAX}`);
    const body = await r.read(n);
    if (body === undefined) return bad(field, `truncated: the stream ends at byte ${r.offset}, inside a record of ${n} bytes`);
    try {
      return unpackCanonical(body);
    } catch (err) {
      return bad(field, `not valid msgpack (${(err as Error).message})`);
    }
  };
  const head = await next('head');
  if (!Array.isArray(head) || head.length !== 5) return bad('head', 'expected [appliedIndex, revision, clockMs, keyCount, sessionCount]');
  const appliedIndex = nat(bad, 'appliedIndex', head[0]);
  const revision = nat(bad, 'revision', head[1]);
  const clockMs = nat(bad, 'clockMs', head[2]);
  const keyCount = nat(bad, 'keyCount', head[3]);
  const sessionCount = nat(bad, 'sessionCount', head[4]);
  const check = new RecordChecker(revision, clockMs, 4);
  const p = build ? emptyParsed(appliedIndex, revision, clockMs) : undefined;
  for (let i = 0; i < keyCount; i++) {
    const f = `keys[${i}]`;
    const rec = check.key(await next(f), f, bad);
    if (p) addKey(p, rec);
  }
  for (let i = 0; i < sessionCount; i++) {
    const f = `sessions[${i}]`;
    const s = check.session(await next(f), f, bad);
    p?.sessions.push(s);
  }
  at = r.offset;
  const digest = r.hash.digest();
  r.hashing = false;
  const stored = await r.read(32);
  if (stored === undefined) return bad('checksum', `truncated: the stream ends at byte ${r.offset}, before the 32-byte SHA-256 trailer`);
  if (!digest.equals(stored)) bad('checksum', `SHA-256 of bytes 0..${at} does not match the trailer`);
  if (!(await r.atEnd())) {
    at = r.offset;
    bad('trailer', 'bytes follow the SHA-256 trailer');
  }
  return p;
}

function readLegacy(bytes: Uint8Array, build: boolean): ParsedSnapshot | undefined {
  const { version, body } = unframeSnapshot(bytes);
  const at = SNAPSHOT_HEADER_BYTES;
  const bad: Bad = (field, reason) => {
    throw new SnapshotCorruptError(at, field, reason);
  };
  let raw: unknown;
  try {
    raw = unpackCanonical(body);
  } catch (err) {
    throw new SnapshotCorruptError(at, 'body', `not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(raw) || raw.length !== 5) return bad('body', 'expected an array of 5 fields');
  const [appliedIndex, revision, clockMs, keysRaw, sessionsRaw] = raw as unknown[];
  nat(bad, 'appliedIndex', appliedIndex);
  nat(bad, 'revision', revision);
  nat(bad, 'clockMs', clockMs);
  if (!Array.isArray(keysRaw)) return bad('keys', 'expected an array');
  if (!Array.isArray(sessionsRaw)) return bad('sessions', 'expected an array');
  const check = new RecordChecker(revision as number, clockMs as number, version === 1 ? 3 : 4);
  const p = emptyParsed(appliedIndex as number, revision as number, clockMs as number);
  (keysRaw as unknown[]).forEach((t, i) => addKey(p, check.key(t, `keys[${i}]`, bad)));
  (sessionsRaw as unknown[]).forEach((t, i) => p.sessions.push(check.session(t, `sessions[${i}]`, bad)));
  return build ? p : undefined;
}
