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
// hosts the registry and keeps the registry's state in its snapshot body.
import { commandFingerprint, decodeKvPayload, packCanonical, unpackCanonical } from './commands.js';
import type { Command, Compare, ExpireKey, TxnOp } from './commands.js';
import { SnapshotCorruptError } from './errors.js';
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
import { frameSnapshot, sha256, SNAPSHOT_HEADER_BYTES, unframeSnapshot } from './snapshot.js';
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
  // Body: msgpack array
  //   [appliedIndex, revision, clockMs,
  //    [[key, value, createRevision, modRevision, version, leaseDeadlineMs|nil]...] sorted by key,
  //    [[idempotencyKey, atMs, resultTuple, fingerprint|nil]...] in insertion order]
  // Snapshot format 2 (written now) has the 4-element session tuples; format 1
  // (still read) had 3 elements, without the fingerprint: such records come
  // back with fingerprint undefined.

  #body(): Uint8Array {
    const keys: unknown[] = [];
    for (const key of this.#keys.from('')) {
      const r = this.#records.get(key)!;
      keys.push([r.key, r.value, r.createRevision, r.modRevision, r.version, r.leaseDeadlineMs ?? null]);
    }
    const sessions: unknown[] = [];
    for (const s of this.machines.sessionRecords()) sessions.push([s.key, s.atMs, resultToTuple(s.result), s.fingerprint ?? null]);
    // appliedIndex, clockMs and sessions are the registry's state, kept in this body.
    return packCanonical([this.machines.appliedIndex, this.#revision, this.machines.clockMs, keys, sessions]);
  }

  /** Deterministic: equal state gives equal bytes on every node. */
  snapshot(): Uint8Array {
    return frameSnapshot(this.#body());
  }

  /** Hex SHA-256 of the canonical state (applied index, revision, clock, keys, sessions): equal on nodes at the same applied index. */
  checksum(): string {
    return Buffer.from(sha256(this.#body())).toString('hex');
  }

  /**
   * Replaces the whole state with a snapshot's. Everything is checked before
   * anything changes; a bad snapshot throws SnapshotCorruptError (offset and
   * field) or SnapshotVersionError and leaves the state as it was. Open
   * watches are cancelled (their onCancel gets a CompactedError).
   */
  restore(bytes: Uint8Array): void {
    const { version, body } = unframeSnapshot(bytes);
    const sessionFields = version === 1 ? 3 : 4;
    const at = SNAPSHOT_HEADER_BYTES;
    const bad = (field: string, reason: string): never => {
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
    const nat = (field: string, v: unknown): number =>
      typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : bad(field, `expected a non-negative integer, got ${String(v)}`);
    nat('appliedIndex', appliedIndex);
    nat('revision', revision);
    nat('clockMs', clockMs);
    const rev = revision as number;
    if (!Array.isArray(keysRaw)) return bad('keys', 'expected an array');
    if (!Array.isArray(sessionsRaw)) return bad('sessions', 'expected an array');

    const records = new Map<string, KeyRecord>();
    const leases = new Map<string, number>();
    const sorted: string[] = [];
    let prevKey: string | undefined;
    (keysRaw as unknown[]).forEach((t, i) => {
      const f = `keys[${i}]`;
      if (!Array.isArray(t) || t.length !== 6) bad(f, 'expected [key, value, createRevision, modRevision, version, leaseDeadlineMs]');
      const [key, value, cr, mr, ver, lease] = t as unknown[];
      if (typeof key !== 'string' || key.length === 0) return bad(`${f}.key`, 'expected a non-empty string');
      if (prevKey !== undefined && !(prevKey < key)) bad(`${f}.key`, `keys out of order or duplicated: ${JSON.stringify(prevKey)} then ${JSON.stringify(key)}`);
      prevKey = key;
      if (typeof value !== 'string') return bad(`${f}.value`, 'expected a string');
      const createRevision = nat(`${f}.createRevision`, cr);
      const modRevision = nat(`${f}.modRevision`, mr);
      const version = nat(`${f}.version`, ver);
      if (createRevision < 1 || createRevision > modRevision || modRevision > rev) {
        bad(`${f}.modRevision`, `need 1 <= createRevision (${createRevision}) <= modRevision (${modRevision}) <= revision (${rev})`);
      }
      if (version < 1) bad(`${f}.version`, 'expected >= 1');
      const base = { key, value, createRevision, modRevision, version };
      let rec: KeyRecord = base;
      if (lease !== null) {
        const leaseDeadlineMs = nat(`${f}.leaseDeadlineMs`, lease);
        rec = { ...base, leaseDeadlineMs };
        leases.set(key, leaseDeadlineMs);
      }
      records.set(key, Object.freeze(rec));
      sorted.push(key);
    });

    const sessions: SessionRecord[] = [];
    const seen = new Set<string>();
    let prevAt = 0;
    (sessionsRaw as unknown[]).forEach((t, i) => {
      const f = `sessions[${i}]`;
      if (!Array.isArray(t) || t.length !== sessionFields) bad(f, sessionFields === 3 ? 'expected [idempotencyKey, atMs, result]' : 'expected [idempotencyKey, atMs, result, fingerprint]');
      const [key, atRaw, resultRaw, fpRaw] = t as unknown[];
      if (typeof key !== 'string' || key.length === 0) return bad(`${f}.idempotencyKey`, 'expected a non-empty string');
      if (seen.has(key)) bad(`${f}.idempotencyKey`, `duplicate ${JSON.stringify(key)}`);
      seen.add(key);
      const atMs = nat(`${f}.atMs`, atRaw);
      if (atMs < prevAt || atMs > (clockMs as number)) bad(`${f}.atMs`, `expected non-decreasing times <= clockMs (${String(clockMs)})`);
      prevAt = atMs;
      const result = resultFromTuple(resultRaw);
      if (result === undefined) return bad(`${f}.result`, 'malformed result tuple');
      let fingerprint: string | undefined;
      if (fpRaw !== undefined && fpRaw !== null) {
        if (typeof fpRaw !== 'string' || !/^[0-9a-f]{32}$/.test(fpRaw)) return bad(`${f}.fingerprint`, 'expected 32 lowercase hex digits or nil');
        fingerprint = fpRaw;
      }
      sessions.push({ key, atMs, fingerprint, result });
    });

    // All checked: swap in.
    this.#records = records;
    this.#keys = SortedKeys.fromSorted(sorted);
    this.#leases = leases;
    this.#revision = rev;
    this.machines.load({ appliedIndex: appliedIndex as number, clockMs: clockMs as number, sessions });
    this.#watch.reset(rev);
  }
}
