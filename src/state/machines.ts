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
// same applied index. Its state lives in the KV snapshot for now (kv.ts:
// appliedIndex, clockMs and sessions are fields of that body).
import { InvalidCommandError, ApplyOrderError, UnsupportedMachineError } from './errors.js';
import { decodeEntry, ENVELOPE_FORMAT_VERSION } from './envelope.js';
import { DEFAULT_SESSION_MAX, DEFAULT_SESSION_TTL_MS } from './limits.js';
import type { ApplyResult } from './results.js';
import { SessionTable } from './sessions.js';
import type { SessionRecord } from './sessions.js';

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
  /** Applies a decoded command. Must not throw for a command `decode` returned. */
  apply(command: C, ctx: ApplyContext): ApplyResult;
}

export interface MachineRegistryOptions {
  /** Client-session records kept (oldest evicted). Replicated behaviour: equal on every node. */
  readonly sessionMax?: number;
  /** Session record lifetime in command time. Replicated behaviour: equal on every node. */
  readonly sessionTtlMs?: number;
  /**
   * The newest entry format this node applies: 2 (default). 1 makes it behave
   * as the previous release: a format-2 entry stops it (tests of rolling
   * upgrades, QUORATE_TEST_FEATURE_LEVEL).
   */
  readonly maxFormatVersion?: number;
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
  #appliedIndex = 0;
  #clockMs = 0;
  /** Commands applied per entry format since start (node-local, for metrics). */
  readonly #appliedByFormat = new Map<number, number>();

  constructor(o: MachineRegistryOptions = {}) {
    this.#sessions = new SessionTable(o.sessionMax ?? DEFAULT_SESSION_MAX, o.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS);
    this.#maxFormat = o.maxFormatVersion ?? ENVELOPE_FORMAT_VERSION;
  }

  register<C>(m: StateMachine<C>): void {
    if (this.#machines.has(m.id)) throw new Error(`state machine ${JSON.stringify(m.id)} is already registered`);
    this.#machines.set(m.id, m as StateMachine);
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
  apply(index: number, data: Uint8Array): ApplyResult | undefined {
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
        command = machine.decode(e.envelope.payload);
      }
    } catch (err) {
      if (!(err instanceof InvalidCommandError)) throw err;
      this.#appliedIndex = index;
      return { error: 'invalid_command', message: err.message };
    }
    this.#appliedByFormat.set(version, (this.#appliedByFormat.get(version) ?? 0) + 1);
    if (at > this.#clockMs) this.#clockMs = at;
    this.#sessions.expire(this.#clockMs);
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
    if (ik !== undefined) this.#sessions.record(ik, this.#clockMs, fingerprint, result);
    return result;
  }

  #machine(id: string): StateMachine {
    const m = this.#machines.get(id);
    if (m === undefined) throw new UnsupportedMachineError(id);
    return m;
  }

  // ---- state for the snapshot host (kv.ts) ------------------------------------

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
