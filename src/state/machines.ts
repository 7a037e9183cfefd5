// State machines and the registry that applies the log to them.
//
// A StateMachine applies its own commands deterministically. The
// MachineRegistry sits between the log and the machines: it decodes each
// entry's envelope (format 1: the KV's own layout; format 2: envelope.ts),
// keeps what every machine shares, and routes the payload to its machine:
//
// - the applied index: every entry, membership entries included, is recorded
//   here (markApplied for the ones no machine sees), never sent to a machine
//   as a fake command;
// - the leader clock: the largest `at` applied (monotonic), the only time any
//   machine sees;
// - client sessions (sessions.ts): a command carrying an idempotency key has
//   its result recorded, so a retry gets the first result back, whichever
//   machine it is for and whichever envelope format carried it.
//
// Everything here is replicated state: it must be equal on every node at the
// same applied index. The registry is the Replica's state machine port
// (src/node/ports.ts): it applies entries, and writes and restores the whole
// snapshot: its own state (applied index, clock, sessions), then one section
// per machine, each machine's own stream (snapshot.ts has the layout).
//
// Snapshot format by cluster feature level: below 2 the previous release's
// (legacy QKVS version 2: the KV and the registry's state in one msgpack
// body, built whole in memory), at 2 and above the composite streaming
// format. Both are read; a registry run as the previous release
// (maxFormatVersion 1) reads only the legacy one, as an old binary does.
import { createHash } from 'node:crypto';
import { packCanonical } from './commands.js';
import { InvalidCommandError, ApplyOrderError, UnsupportedMachineError } from './errors.js';
import { decodeEntry, ENVELOPE_FORMAT_VERSION, validateMachineId } from './envelope.js';
import { DEFAULT_SESSION_MAX, DEFAULT_SESSION_TTL_MS } from './limits.js';
import { resultToTuple } from './results.js';
import type { ApplyResult } from './results.js';
import { SessionTable } from './sessions.js';
import type { SessionRecord } from './sessions.js';
import type { Bad } from './snapshot.js';
import { RegistrySnapshots } from './registry-snapshot.js';

/** The machine format-1 entries belong to. */
export const KV_MACHINE_ID = 'kv';

/** What a machine learns about the entry it applies, besides its own command. */
export interface ApplyContext {
  /** The entry's log index. */
  readonly index: number;
  /** Leader-stamped time of this entry (ms). */
  readonly at: number;
  /** The registry's clock after this entry: the largest `at` applied so far (monotonic). Use it, not `at`, to decide what has expired. */
  readonly clockMs: number;
  /** The entry's client-session key, if any (the registry has already deduplicated it). */
  readonly idempotencyKey: string | undefined;
}

/**
 * One replicated state machine. Deterministic: reads no clock, random source
 * or environment; equal commands in equal order give equal state and results
 * on every node.
 */
export interface StateMachine<C = unknown> {
  /** Its id in format-2 envelopes: /^[a-z][a-z0-9_-]*$/, at most 64 characters. */
  readonly id: string;
  /**
   * Decodes and validates a payload. Throws InvalidCommandError for malformed
   * data (the entry then applies as `invalid_command` on every node and changes
   * nothing, not even the clock), UnsupportedCommandVersionError for a payload
   * format this build does not know (the node stops).
   */
  decode(payload: Uint8Array): C;
  /**
   * What a command does, for client sessions (32 lowercase hex digits): a key
   * reused for a command with another fingerprint is refused. A machine other
   * than the KV must mix its id in, so that keys do not match across machines.
   */
  fingerprint(command: C): string;
  /**
   * Applies a decoded command. Must not throw for a command `decode` returned.
   * A machine that applies off the event loop (the "sql" machine: SQLite on a
   * worker thread) returns a Promise instead: it must hand the command over
   * in this call, in log order, so that its state follows the log exactly
   * (its snapshot() and checksum() are ordered behind what was handed over),
   * and it must keep its own client sessions (`ownSessions`). The promise
   * settles with the deterministic result; it rejects only for a failure that
   * is not a function of the log (I/O error, disk full), and then the node
   * stops (the replica's fatal path).
   */
  apply(command: C, ctx: ApplyContext): ApplyResult | Promise<ApplyResult>;
  /**
   * Optional: the machine keeps client sessions itself, inside its own state
   * (so that a snapshot holds exactly the sessions of the state it holds): the
   * registry neither looks up nor records idempotency keys of its commands and
   * hands `ctx.idempotencyKey` to apply(). Required of a machine whose apply()
   * returns a Promise (the registry could not record a result it does not have).
   */
  readonly ownSessions?: boolean;
  /**
   * The machine's state as of the call (captured synchronously), yielded
   * lazily; apply() may go on meanwhile. Its bytes are the machine's own
   * business (the registry frames them into the machine's section) but must
   * be deterministic: equal state, equal bytes on every node. The consumer
   * iterates it to the end or calls `return()`; either releases the capture.
   */
  snapshot(): AsyncIterable<Uint8Array>;
  /**
   * Optional: a snapshot for this node's own storage only, cheap to take
   * whatever the size of the state, because it refers to content kept on
   * this node's disk instead of carrying it (src/files/held.ts). restore()
   * and validate() read it on this node; expandSection() rewrites it into
   * snapshot()'s bytes for any other use.
   */
  snapshotLocal?(): AsyncIterable<Uint8Array>;
  /** Rewrites a section snapshotLocal() wrote into snapshot()'s bytes; any other section passes through unchanged. */
  expandSection?(chunks: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array>;
  /** Keeps what local snapshots refer to until the returned function is called (while one is expanded). */
  holdReferences?(): () => void;
  /**
   * Reads a stream snapshot() produced, checks all of it, and builds the new
   * state aside; nothing changes until the returned commit runs (the
   * registry runs every machine's commit only once the whole snapshot,
   * trailer included, checked out, so a bad snapshot changes no machine).
   * The commit must not fail (a machine whose state lives in files prepares
   * them aside and renames at commit). An empty stream (no bytes) is the
   * machine's empty state: a snapshot without its section. Bad input throws
   * SnapshotCorruptError (offset within the machine's stream, field) or
   * SnapshotVersionError. Read the stream to its end.
   */
  restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit>;
  /** The checks of restore() without keeping anything (the receive-side and storage checks). */
  validate(chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * Hex SHA-256 of the machine's canonical state: equal on nodes at the same
   * applied index. A machine that applies off the loop answers with a Promise
   * (of its state at the registry's applied index at the call).
   */
  checksum(): string | Promise<string>;
  /**
   * Optional: the machine holds nothing yet. A machine other than the KV
   * that says so lets the registry still write a legacy (QKVS) snapshot,
   * which has no section for it, while the cluster feature level is below 2;
   * one that holds state (or does not say) makes it write the composite
   * format (its state came from format-2 entries, so every member reads it).
   */
  isEmpty?(): boolean;
}

/** Swaps a restored state in: synchronous, must not fail. */
export type RestoreCommit = () => void;

/**
 * The KV's part of a legacy (QKVS 1/2) snapshot, whose single body mixes the
 * KV's fields (revision, keys) with the registry's: the registry writes and
 * reads those through the "kv" machine.
 */
export interface LegacyKvMachine {
  /** [revision, key tuples sorted by key] as of the call. */
  legacyCapture(): { readonly revision: number; readonly keys: readonly unknown[] };
  /** Checks the KV's fields of a legacy body and builds them aside; throws through `bad` (SnapshotCorruptError). */
  legacyRestore(revision: unknown, keys: unknown, bad: Bad): RestoreCommit;
}

/** How a snapshot is written: 'composite' (QSMS 1, streaming) or 'legacy' (QKVS 2, whole in memory, readable by the previous release). */
export type SnapshotWriteFormat = 'composite' | 'legacy';

export interface MachineRegistryOptions {
  /** Client-session records kept (oldest evicted). Replicated behaviour: equal on every node. */
  readonly sessionMax?: number;
  /** Session record lifetime in command time. Replicated behaviour: equal on every node. */
  readonly sessionTtlMs?: number;
  /**
   * The newest entry format this node applies: 2 (default). 1 makes it behave
   * as the previous release: a format-2 entry stops it (tests of rolling
   * upgrades, QUORATE_TEST_FEATURE_LEVEL). It also makes it write and read
   * only legacy (QKVS 1/2) snapshots, as the previous release did.
   */
  readonly maxFormatVersion?: number;
  /**
   * The cluster feature level as this node computes it (src/node/features.ts),
   * asked at each snapshot(): below 2 snapshots are written in the legacy
   * format, which the previous release reads. Default: always 2 (composite).
   * The node sets it after it is built (useClusterFeatureLevel).
   */
  readonly clusterFeatureLevel?: () => number;
}

/** The registry's replicated state, as the snapshot keeps it. */
export interface RegistryState {
  readonly appliedIndex: number;
  readonly clockMs: number;
  /** In insertion order. */
  readonly sessions: readonly SessionRecord[];
}

export class MachineRegistry {
  readonly #machines = new Map<string, StateMachine>();
  readonly #sessions: SessionTable;
  readonly #maxFormat: number;
  /** Writing and reading whole snapshots (./registry-snapshot.ts). */
  readonly #snaps: RegistrySnapshots;
  #clusterLevel: () => number;
  #appliedIndex = 0;
  #clockMs = 0;
  /** Commands applied per entry format since start (node-local, for metrics). */
  readonly #appliedByFormat = new Map<number, number>();

  constructor(o: MachineRegistryOptions = {}) {
    this.#sessions = new SessionTable(o.sessionMax ?? DEFAULT_SESSION_MAX, o.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS);
    this.#maxFormat = o.maxFormatVersion ?? ENVELOPE_FORMAT_VERSION;
    this.#snaps = new RegistrySnapshots({
      machines: this.#machines,
      ordered: () => this.#ordered(),
      sessionTuples: () => this.#sessionTuples(),
      appliedIndex: () => this.#appliedIndex,
      clockMs: () => this.#clockMs,
      maxFormat: this.#maxFormat,
      load: (s) => this.load(s),
    });
    this.#clusterLevel = o.clusterFeatureLevel ?? (() => ENVELOPE_FORMAT_VERSION);
  }

  register<C>(m: StateMachine<C>): void {
    validateMachineId(m.id);
    if (this.#machines.has(m.id)) throw new Error(`state machine ${JSON.stringify(m.id)} is already registered`);
    this.#machines.set(m.id, m as StateMachine);
  }

  /** The registered machine `id`, if any. */
  machine(id: string): StateMachine | undefined {
    return this.#machines.get(id);
  }

  /** Where the cluster feature level comes from (the node, once it is built); see MachineRegistryOptions.clusterFeatureLevel. */
  useClusterFeatureLevel(level: () => number): void {
    this.#clusterLevel = level;
  }

  /** The format snapshot() writes now: legacy while this node runs as the previous release or the cluster feature level is below 2. */
  get snapshotFormat(): SnapshotWriteFormat {
    if (this.#maxFormat < 2) return 'legacy';
    if (this.#clusterLevel() >= 2) return 'composite';
    // Below level 2, but a machine only format-2 entries feed holds state: the
    // cluster was at level 2 when it was written (members are never
    // downgraded), so every member reads composite snapshots; a legacy one
    // could not hold that state. (A node that just started counts members it
    // has not heard from yet as level 1.)
    for (const m of this.#machines.values()) if (m.id !== KV_MACHINE_ID && m.isEmpty?.() !== true) return 'composite';
    return 'legacy';
  }

  get appliedIndex(): number {
    return this.#appliedIndex;
  }
  /** The largest command `at` applied. */
  get clockMs(): number {
    return this.#clockMs;
  }
  get sessionCount(): number {
    return this.#sessions.size;
  }
  /** The newest entry format this node applies. */
  get maxFormatVersion(): number {
    return this.#maxFormat;
  }
  /** Commands applied since start, by entry format (1, 2). */
  appliedByFormat(version: number): number {
    return this.#appliedByFormat.get(version) ?? 0;
  }

  #checkOrder(index: number): void {
    if (!Number.isSafeInteger(index) || index <= this.#appliedIndex) throw new ApplyOrderError(index, this.#appliedIndex);
  }

  /** Entry `index` was applied but holds nothing for any machine (a membership entry). */
  markApplied(index: number): void {
    this.#checkOrder(index);
    this.#appliedIndex = index;
  }

  /**
   * Applies one committed normal entry. Returns undefined for an empty entry
   * (a new leader's no-op: only the index advances). Malformed data gives an
   * `invalid_command` result on every node; a newer format or an unknown
   * machine throws (UnsupportedCommandVersionError, UnsupportedMachineError):
   * the node must stop, not skip it.
   */
  apply(index: number, data: Uint8Array): ApplyResult | Promise<ApplyResult> | undefined {
    this.#checkOrder(index);
    if (data.length === 0) {
      this.#appliedIndex = index;
      return undefined;
    }
    let machine: StateMachine;
    let command: unknown;
    let at: number;
    let ik: string | undefined;
    let version: number;
    try {
      const e = decodeEntry(data, this.#maxFormat);
      version = e.version;
      if (e.version === 1) {
        machine = this.#machine(KV_MACHINE_ID);
        ({ at, idempotencyKey: ik, command } = e.kv);
      } else {
        machine = this.#machine(e.envelope.machine);
        ({ at, idempotencyKey: ik } = e.envelope);
        command = e.kvCommand ?? machine.decode(e.envelope.payload);
      }
    } catch (err) {
      if (!(err instanceof InvalidCommandError)) throw err;
      this.#appliedIndex = index;
      return { error: 'invalid_command', message: err.message };
    }
    this.#appliedByFormat.set(version, (this.#appliedByFormat.get(version) ?? 0) + 1);
    if (at > this.#clockMs) this.#clockMs = at;
    this.#sessions.expire(this.#clockMs);
    if (machine.ownSessions === true) {
      this.#appliedIndex = index;
      return machine.apply(command, { index, at, clockMs: this.#clockMs, idempotencyKey: ik });
    }
    const fingerprint = ik !== undefined ? machine.fingerprint(command) : undefined;
    if (ik !== undefined) {
      const recorded = this.#sessions.lookup(ik);
      if (recorded !== undefined) {
        this.#appliedIndex = index;
        if (recorded.fingerprint !== undefined && recorded.fingerprint !== fingerprint) {
          // Same key, different request: refuse (deterministically, on every
          // node) rather than answer with another request's result.
          return {
            error: 'idempotency_key_reused',
            message: `Idempotency-Key ${JSON.stringify(ik.slice(0, 64))} was already used for a different request (other method, key or body); nothing was changed. Send a new Idempotency-Key for a new request`,
          };
        }
        return recorded.result;
      }
    }
    this.#appliedIndex = index;
    const result = machine.apply(command, { index, at, clockMs: this.#clockMs, idempotencyKey: ik });
    if (result instanceof Promise) throw new Error(`state machine ${JSON.stringify(machine.id)} answered apply() with a Promise but does not keep its own sessions (ownSessions)`);
    if (ik !== undefined) this.#sessions.record(ik, this.#clockMs, fingerprint, result);
    return result;
  }

  #machine(id: string): StateMachine {
    const m = this.#machines.get(id);
    if (m === undefined) throw new UnsupportedMachineError(id);
    return m;
  }

  // ---- snapshot --------------------------------------------------------------

  #sessionTuples(): unknown[] {
    const out: unknown[] = [];
    for (const s of this.#sessions.values()) out.push([s.key, s.atMs, resultToTuple(s.result), s.fingerprint ?? null]);
    return out;
  }

  /** Registered machines in id order (the order of sections). */
  #ordered(): StateMachine[] {
    return [...this.#machines.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * The whole replicated state as of this call (captured synchronously: the
   * registry's state and every machine's snapshot()), yielded lazily in
   * chunks of at most 1 MiB; apply() may go on meanwhile. `format` defaults
   * to `snapshotFormat` (by the cluster feature level). Deterministic: equal
   * state, equal bytes on every node. Iterate it to the end or `return()` it.
   */
  snapshot(format: SnapshotWriteFormat = this.snapshotFormat): AsyncIterable<Uint8Array> {
    return format === 'legacy' ? this.#snaps.legacySnapshot() : this.#snaps.compositeSnapshot();
  }

  /**
   * A snapshot for this node's storage (Snapshots.take): as snapshot(), but
   * machines with snapshotLocal() refer to their content on this node's disk
   * instead of copying it. Read it back here (restore, validate); anything
   * sent elsewhere goes through expandSnapshot().
   */
  localSnapshot(): AsyncIterable<Uint8Array> {
    return this.snapshotFormat === 'legacy' ? this.#snaps.legacySnapshot() : this.#snaps.compositeSnapshot(true);
  }

  /**
   * A stored snapshot (`read()` streams it, as many times as asked) as
   * snapshot() would have written it: local sections expanded, the trailer
   * recomputed after the stored one was checked. Its size is counted by a
   * first pass (the transport announces it before the bytes); what local
   * snapshots refer to is held until `release()`.
   */
  async expandSnapshot(read: () => AsyncIterable<Uint8Array>): Promise<{ bytes: number; chunks: AsyncIterable<Uint8Array>; release: () => void }> {
    const holds = [...this.#machines.values()].map((m) => m.holdReferences?.()).filter((h) => h !== undefined);
    const release = (): void => {
      for (const h of holds) h();
    };
    try {
      let bytes = 0;
      for await (const c of this.#snaps.expand(read())) bytes += c.length;
      return { bytes, chunks: this.#snaps.expand(read()), release };
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * Hex SHA-256 of the canonical replicated state: the registry record
   * (appliedIndex, clockMs, sessions), then each machine's id and checksum()
   * in id order. Equal on nodes at the same applied index, whatever format
   * their snapshots are written in. (Not the composite trailer: it is
   * computed without framing the machines' streams.)
   */
  checksum(): string {
    const h = createHash('sha256');
    h.update(packCanonical([this.#appliedIndex, this.#clockMs, this.#sessionTuples()]));
    for (const m of this.#ordered()) {
      const c = m.checksum();
      if (typeof c !== 'string') throw new Error(`state machine ${JSON.stringify(m.id)} computes its checksum off the loop: use checksumAsync()`);
      h.update(packCanonical([m.id, c]));
    }
    return h.digest('hex');
  }

  /**
   * checksum() for registries with machines that apply off the loop: the
   * registry record and every machine's checksum are asked at the call (so
   * they describe the state at one applied index), then awaited.
   */
  async checksumAsync(): Promise<{ appliedIndex: number; checksum: string }> {
    const appliedIndex = this.#appliedIndex;
    const head = packCanonical([appliedIndex, this.#clockMs, this.#sessionTuples()]);
    const parts = this.#ordered().map((m) => ({ id: m.id, c: m.checksum() }));
    const h = createHash('sha256');
    h.update(head);
    for (const p of parts) h.update(packCanonical([p.id, await p.c]));
    return { appliedIndex, checksum: h.digest('hex') };
  }

  /**
   * Replaces the whole replicated state with a snapshot's (composite or
   * legacy). Every machine builds its new state aside; all swap in at the
   * end, only when the whole stream checked out. A bad stream throws
   * SnapshotCorruptError (offset, field), SnapshotVersionError or
   * SnapshotMachineError (a machine this build does not run) and changes
   * nothing. A registered machine without a section restores to empty.
   */
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    (await this.prepareRestore(chunks))();
  }

  /** restore() in two steps: the checks build the state aside, calling the result swaps it in (uncalled, nothing changes; temp files go at the machines' next open). */
  async prepareRestore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    return (await this.#snaps.read(chunks, true))!;
  }

  /**
   * Replaces the state of the machines in `only` with their sections of a composite snapshot (machines of `only`
   * without a section restore to empty); every other section is checked but not kept, and the registry's record
   * (applied index, clock, sessions) stays. All or nothing, as restore(). (A backup restored into a running cluster.)
   */
  async restoreMachines(chunks: AsyncIterable<Uint8Array>, only: ReadonlySet<string>): Promise<void> {
    (await this.#snaps.read(chunks, true, only))!();
  }

  #hold: Promise<void> | undefined;

  /**
   * Called by a machine while it applies an entry: the replica applies no further entry until `p` settles (a rejection
   * stops the node). For work that must finish, in log order, before anything after the entry applies on any machine
   * (src/node/cluster-restore.ts).
   */
  holdUntil(p: Promise<void>): void {
    this.#hold = p;
  }

  /** The hold set by the entry just applied, if any (the replica awaits it). */
  takeHold(): Promise<void> | undefined {
    const h = this.#hold;
    this.#hold = undefined;
    return h;
  }

  /** The checks of restore() without keeping anything: the receive-side check and the storage's validateSnapshot. */
  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await this.#snaps.read(chunks, false);
  }

  // ---- the registry's own state ----------------------------------------------

  /** Session records in insertion order (the order snapshots keep). */
  sessionRecords(): IterableIterator<SessionRecord> {
    return this.#sessions.values();
  }

  /** Replaces the registry's replicated state (from a snapshot already checked by the caller). */
  load(s: RegistryState): void {
    this.#appliedIndex = s.appliedIndex;
    this.#clockMs = s.clockMs;
    this.#sessions.load(s.sessions);
  }
}
