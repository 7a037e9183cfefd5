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
// applied index, the leader clock and the client sessions, and writes the
// snapshot (the KV's section of it is the KV's own state only: revision and
// keys). createKvState (kv-state.ts) builds a registry with the KV in it.
import { commandFingerprint, decodeKvPayload } from './commands.js';
import type { Command, Compare, ExpireKey, TxnOp } from './commands.js';
import { KV_MACHINE_ID } from './machines.js';
import type { ApplyContext, LegacyKvMachine, RestoreCommit, StateMachine } from './machines.js';
import {
  DEFAULT_WATCH_HISTORY_BYTES,
  DEFAULT_WATCH_HISTORY_EVENTS,
  MAX_EXPIRE_KEYS,
} from './limits.js';
import type { ApplyResult, TxnOpResponse } from './results.js';
import { ChunkBuilder, nat } from './snapshot.js';
import type { Bad } from './snapshot.js';
import { SortedKeys } from './sorted-keys.js';
import { WatchHub } from './watch.js';
import type { Unsubscribe, WatchEvent, WatchListener, WatchOptions } from './watch.js';
import { KeyChecker, PAUSE, addKey, emptyParsed, keyTuple, readSection, serializeCapture, type Capture, type ParsedKv } from './kv-section.js';

export { KV_SECTION_VERSION } from './kv-section.js';

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
  /** Watch history bounds (node-local; any value is safe). */
  readonly watchHistoryEvents?: number;
  readonly watchHistoryBytes?: number;
  /** A watch listener threw; the default ignores it (apply is never affected). */
  readonly onListenerError?: (err: unknown, event: WatchEvent | undefined) => void;
  /**
   * Awaited between slices of a snapshot's records (a few hundred keys each):
   * the agent passes a turn of its event loop, so a snapshot of a large KV
   * does not hold requests and heartbeats for the milliseconds a 1 MiB chunk
   * takes. Default: none (a simulator drives the loop itself).
   */
  readonly yieldToLoop?: () => Promise<void>;
}

/**
 * What readers of the replicated KV (the HTTP API) may use: reads of the
 * applied state and watches. Writes go through the node (propose), never
 * here; a PostgreSQL-backed implementation can stand behind this interface.
 * `appliedIndex` is the registry's (kvReaderOf in kv-state.ts joins the two).
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

/** The KV's reads: everything of KvReader but the applied index, which is the registry's. */
export type KvMachineReader = Omit<KvReader, 'appliedIndex'>;

export class KvStateMachine implements StateMachine<Command>, LegacyKvMachine, KvMachineReader {
  readonly id = KV_MACHINE_ID;
  #records = new Map<string, KeyRecord>();
  #keys = new SortedKeys();
  /** key -> lease deadline, for keys written with a TTL. */
  #leases = new Map<string, number>();
  #revision = 0;
  readonly #watch: WatchHub;
  /** Snapshot streams open now (see snapshot()). */
  readonly #captures = new Set<Capture>();
  readonly #yieldToLoop: (() => Promise<void>) | undefined;

  constructor(options: KvOptions = {}) {
    this.#yieldToLoop = options.yieldToLoop;
    this.#watch = new WatchHub(
      options.watchHistoryEvents ?? DEFAULT_WATCH_HISTORY_EVENTS,
      options.watchHistoryBytes ?? DEFAULT_WATCH_HISTORY_BYTES,
      options.onListenerError ?? (() => {}),
    );
  }

  get revision(): number {
    return this.#revision;
  }
  get size(): number {
    return this.#records.size;
  }
  /** Open watches (node-local). */
  get watcherCount(): number {
    return this.#watch.watcherCount;
  }
  /** Oldest revision a watch may start from. */
  get oldestWatchRevision(): number {
    return this.#watch.oldestRevision;
  }

  // ---- the machine: decode, fingerprint, apply --------------------------------

  decode(payload: Uint8Array): Command {
    return decodeKvPayload(payload);
  }

  fingerprint(command: Command): string {
    return commandFingerprint(command);
  }

  /** Applies a decoded command (the registry calls this; apply entries through MachineRegistry.apply). */
  apply(command: Command, ctx: ApplyContext): ApplyResult {
    const events: WatchEvent[] = [];
    const result = this.#execute(command, ctx.at, ctx.clockMs, events);
    this.#watch.publish(events);
    return result;
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
  // The KV's section of a composite snapshot (machines.ts frames it, checks
  // it and adds the registry's state): length-prefixed msgpack records
  //   [1 (section version), revision, keyCount]
  //   keyCount x [key, value, createRevision, modRevision, version, leaseDeadlineMs|nil], sorted by key
  // and nothing else. An empty stream is the empty KV (a snapshot without a
  // KV section). In a legacy (QKVS 1/2) snapshot the registry writes and
  // reads the KV's fields through legacyCapture / legacyRestore.
  //
  // snapshot() captures the state without copying it: the key list (string
  // references) and the revision are taken at the call; while the stream is
  // open, the first change of a key records its previous record in the
  // capture's overlay (records are immutable objects, so that is a reference
  // too), and the stream serializes overlay-or-live.

  #capture(): Capture {
    const cap: Capture = { records: this.#records, keys: this.#keys.toArray(), overlay: new Map(), revision: this.#revision };
    this.#captures.add(cap);
    return cap;
  }

  /** Called before a key's record changes: open captures keep its record as of their capture. */
  #preimage(key: string, prev: KeyRecord | undefined): void {
    if (prev === undefined) return; // absent at capture (not in its key list), or already recorded when deleted
    for (const cap of this.#captures) if (!cap.overlay.has(key)) cap.overlay.set(key, prev);
  }

  /**
   * The KV's section as of this call, as a stream of chunks (each at most
   * 1 MiB), produced lazily; apply() may go on meanwhile. Deterministic:
   * equal state gives equal bytes on every node. Iterate it to the end or
   * `return()` it (a `for await` that breaks does): until then, keys changed
   * since the call keep their old record in memory.
   */
  snapshot(): AsyncIterable<Uint8Array> {
    const cap = this.#capture();
    const captures = this.#captures;
    const gen = serializeCapture(cap, new ChunkBuilder());
    const release = (): void => {
      captures.delete(cap);
    };
    const it: AsyncIterator<Uint8Array> = {
      next: async () => {
        let r = gen.next();
        while (r.done !== true && r.value === PAUSE) {
          if (this.#yieldToLoop) await this.#yieldToLoop();
          r = gen.next();
        }
        if (r.done === true) release();
        return r.done === true ? { done: true, value: undefined } : r;
      },
      return: async () => {
        release();
        gen.return();
        return { done: true, value: undefined };
      },
    };
    return { [Symbol.asyncIterator]: () => it };
  }

  /** Hex SHA-256 of the KV's section (its revision and keys): equal on nodes at the same applied index. */
  checksum(): string {
    const cap = this.#capture();
    try {
      const b = new ChunkBuilder();
      for (const chunk of serializeCapture(cap, b)) void chunk; // the bytes go to b's hash (PAUSE adds none)
      return Buffer.from(b.finish()).toString('hex');
    } finally {
      this.#captures.delete(cap);
    }
  }

  /** Checks a KV section completely without keeping it. Throws SnapshotCorruptError (offset within the section, field) or SnapshotVersionError. */
  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readSection(chunks, false);
  }

  /**
   * Reads a KV section and builds the new state aside; the returned commit
   * swaps it in (and cancels open watches: their onCancel gets a
   * CompactedError). A bad stream throws SnapshotCorruptError or
   * SnapshotVersionError and changes nothing. While building, the old and
   * the new state are both in memory.
   */
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    return this.#commitOf((await readSection(chunks, true))!);
  }

  #commitOf(p: ParsedKv): RestoreCommit {
    return () => {
      // Open snapshot streams keep the old maps, which nothing changes any
      // more, so they need no overlay from now on.
      this.#captures.clear();
      this.#records = p.records;
      this.#keys = SortedKeys.fromSorted(p.sorted);
      this.#leases = p.leases;
      this.#revision = p.revision;
      this.#watch.reset(p.revision);
    };
  }

  /** The KV's fields of a legacy (QKVS 1/2) body, as of the call: [revision, key tuples sorted by key]. */
  legacyCapture(): { readonly revision: number; readonly keys: readonly unknown[] } {
    const keys: unknown[] = [];
    for (const key of this.#keys.from('')) keys.push(keyTuple(this.#records.get(key)!));
    return { revision: this.#revision, keys };
  }

  /** Checks the KV's fields of a legacy body (already unframed and digest-checked) and builds them aside; the commit swaps them in. */
  legacyRestore(revision: unknown, keys: unknown, bad: Bad): RestoreCommit {
    const rev = nat(bad, 'revision', revision);
    if (!Array.isArray(keys)) return bad('keys', 'expected an array');
    const check = new KeyChecker(rev);
    const p = emptyParsed(rev);
    (keys as unknown[]).forEach((t, i) => addKey(p, check.key(t, `keys[${i}]`, bad)));
    return this.#commitOf(p);
  }
}
