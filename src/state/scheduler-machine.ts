// The "scheduler" machine: which slots of the leader-only scheduler's jobs
// (src/node/scheduler.ts) were claimed, so a slot runs at most once across
// failovers. A leader claims a slot through the log before it runs it; the
// claim applies only if the slot is later than the job's last claimed (or
// armed) slot, identically on every node, so two leaders (an old one whose
// entry commits late, a new one catching up) can never both win one slot.
//
// Commands (payload, msgpack, positional):
//   [1, "arm", name, slotMs]                      a job seen for the first time: slots <= slotMs are not due
//   [1, "claim", name, slotMs, term, kind, node] run slot slotMs (kind "scheduled" | "catch-up" | "manual") on leader `node`
//   [1, "claim", name, slotMs, term, "skipped", node, reason]
//                                                 slot slotMs is decided without a run (reason "missed": catchUp skip;
//                                                 "running": the previous run was still going; "superseded": catchUp once
//                                                 runs only the latest missed slot, this one and the missed ones before it
//                                                 are not run); recorded as ended at once
//   [1, "finish", name, seq, ok, message]         the run `seq` ended (message <= 512 chars)
// Results: claim → {revision: seq} when claimed, {error: "revision_mismatch",
// currentRevision: lastSlotMs} when the slot is not later than the last
// claimed one; arm / finish → {revision: 0} (arm is a no-op for a known job).
// Bounds: at most MAX_JOBS job names (a claim or arm of a new name beyond
// that applies as invalid_command), RUNS_KEPT runs per job (oldest dropped).
// Proposed only in format-2 envelopes (cluster feature level >= 2).
//
// Snapshot section: [1, [[name, lastSlot, seq, [[seq, slot, term, kind, node, index,
// at, ok|nil, finishedAt|nil, message|nil], ...oldest first]], ...by name]],
// or no bytes for the empty state.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { ApplyResult } from './results.js';

export const SCHEDULER_MACHINE_ID = 'scheduler';
const VERSION = 1;
/** Distinct job names kept. */
export const SCHEDULER_MAX_JOBS = 256;
/** Runs kept per job (the newest). */
export const SCHEDULER_RUNS_KEPT = 50;
export const SCHEDULER_MAX_NAME = 100;
export const SCHEDULER_MAX_MESSAGE = 512;
export const RUN_KINDS = ['scheduled', 'catch-up', 'manual', 'skipped'] as const;
export type RunKind = (typeof RUN_KINDS)[number];
/** Why a slot was skipped (kind "skipped"). */
export const SKIP_REASONS = ['missed', 'running', 'superseded'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];
const SKIP_MESSAGES: Record<SkipReason, string> = {
  missed: 'missed (catchUp skip)',
  running: 'the previous run was still going',
  superseded: 'missed, with the missed slots before it (catchUp once runs only the latest missed slot)',
};

export type SchedulerCommand =
  | { readonly op: 'arm'; readonly name: string; readonly slotMs: number }
  | { readonly op: 'claim'; readonly name: string; readonly slotMs: number; readonly term: number; readonly kind: Exclude<RunKind, 'skipped'>; readonly node: string }
  | { readonly op: 'claim'; readonly name: string; readonly slotMs: number; readonly term: number; readonly kind: 'skipped'; readonly node: string; readonly reason: SkipReason }
  | { readonly op: 'finish'; readonly name: string; readonly seq: number; readonly ok: boolean; readonly message: string };

export interface JobRun {
  readonly seq: number;
  /** The slot (epoch ms) this run was claimed for. */
  readonly slotMs: number;
  /** The claiming leader's term (its fencing token). */
  readonly term: number;
  readonly kind: RunKind;
  /** The leader that claimed (and ran) it. */
  readonly node: string;
  /** Log index and leader time of the claim. */
  readonly index: number;
  readonly at: number;
  /** Undefined while running (or if the leader died before reporting). */
  readonly ok?: boolean;
  readonly finishedAt?: number;
  readonly message?: string;
}

export interface JobRecord {
  readonly name: string;
  /** Slots <= this are claimed (or were not due when the job was armed). */
  readonly lastSlotMs: number;
  /** Runs ever claimed. */
  readonly seq: number;
  /** The newest runs, oldest first. */
  readonly runs: readonly JobRun[];
}

const nat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const goodName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= SCHEDULER_MAX_NAME;

export function encodeSchedulerPayload(c: SchedulerCommand): Uint8Array {
  if (c.op === 'arm') return packCanonical([VERSION, 'arm', c.name, c.slotMs]);
  if (c.op === 'claim') return packCanonical(c.kind === 'skipped' ? [VERSION, 'claim', c.name, c.slotMs, c.term, c.kind, c.node, c.reason] : [VERSION, 'claim', c.name, c.slotMs, c.term, c.kind, c.node]);
  return packCanonical([VERSION, 'finish', c.name, c.seq, c.ok, c.message.slice(0, SCHEDULER_MAX_MESSAGE)]);
}

export function decodeSchedulerPayload(payload: Uint8Array): SchedulerCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('scheduler', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== VERSION) throw new InvalidCommandError('scheduler', `expected [${VERSION}, op, ...]`);
  const [, op, name, a, b, c, d, e] = raw as unknown[];
  if (!goodName(name)) throw new InvalidCommandError('scheduler.name', `must be a string of 1..${SCHEDULER_MAX_NAME} characters`);
  if (op === 'arm' && raw.length === 4 && nat(a)) return { op, name, slotMs: a };
  if (op === 'claim' && raw.length === 7 && nat(a) && nat(b) && c !== 'skipped' && (RUN_KINDS as readonly unknown[]).includes(c) && goodName(d)) return { op, name, slotMs: a, term: b, kind: c as Exclude<RunKind, 'skipped'>, node: d };
  if (op === 'claim' && raw.length === 8 && nat(a) && nat(b) && c === 'skipped' && goodName(d) && (SKIP_REASONS as readonly unknown[]).includes(e)) return { op, name, slotMs: a, term: b, kind: c, node: d, reason: e as SkipReason };
  if (op === 'finish' && raw.length === 6 && nat(a) && typeof b === 'boolean' && typeof c === 'string' && c.length <= SCHEDULER_MAX_MESSAGE) return { op, name, seq: a, ok: b, message: c };
  throw new InvalidCommandError('scheduler', `unknown operation or bad arguments: ${JSON.stringify(raw).slice(0, 120)}`);
}

export class SchedulerMachine implements StateMachine<SchedulerCommand> {
  readonly id = SCHEDULER_MACHINE_ID;
  /** Records are replaced, never mutated: a snapshot captures the map's entries. */
  #jobs = new Map<string, JobRecord>();

  job(name: string): JobRecord | undefined {
    return this.#jobs.get(name);
  }

  jobs(): JobRecord[] {
    return [...this.#jobs.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  }

  isEmpty(): boolean {
    return this.#jobs.size === 0;
  }

  decode(payload: Uint8Array): SchedulerCommand {
    return decodeSchedulerPayload(payload);
  }

  fingerprint(command: SchedulerCommand): string {
    return createHash('sha256').update(SCHEDULER_MACHINE_ID).update(encodeSchedulerPayload(command)).digest('hex').slice(0, 32);
  }

  apply(c: SchedulerCommand, ctx: ApplyContext): ApplyResult {
    const rec = this.#jobs.get(c.name);
    if (rec === undefined && c.op !== 'finish' && this.#jobs.size >= SCHEDULER_MAX_JOBS) {
      return { error: 'invalid_command', message: `the scheduler keeps at most ${SCHEDULER_MAX_JOBS} jobs; ${JSON.stringify(c.name)} was not recorded` };
    }
    if (c.op === 'arm') {
      if (rec === undefined) this.#jobs.set(c.name, { name: c.name, lastSlotMs: c.slotMs, seq: 0, runs: [] });
      return { revision: 0 };
    }
    if (c.op === 'claim') {
      if (rec !== undefined && c.slotMs <= rec.lastSlotMs) return { error: 'revision_mismatch', currentRevision: rec.lastSlotMs };
      const seq = (rec?.seq ?? 0) + 1;
      const run: JobRun = c.kind === 'skipped'
        ? { seq, slotMs: c.slotMs, term: c.term, kind: c.kind, node: c.node, index: ctx.index, at: ctx.at, ok: true, finishedAt: ctx.at, message: `skipped: ${SKIP_MESSAGES[c.reason]}` }
        : { seq, slotMs: c.slotMs, term: c.term, kind: c.kind, node: c.node, index: ctx.index, at: ctx.at };
      const runs = [...(rec?.runs ?? []), run];
      if (runs.length > SCHEDULER_RUNS_KEPT) runs.splice(0, runs.length - SCHEDULER_RUNS_KEPT);
      this.#jobs.set(c.name, { name: c.name, lastSlotMs: c.slotMs, seq, runs });
      return { revision: seq };
    }
    if (rec !== undefined) {
      const i = rec.runs.findIndex((r) => r.seq === c.seq);
      if (i >= 0 && rec.runs[i]!.ok === undefined) {
        const runs = [...rec.runs];
        runs[i] = { ...runs[i]!, ok: c.ok, finishedAt: ctx.at, ...(c.message !== '' ? { message: c.message } : {}) };
        this.#jobs.set(c.name, { ...rec, runs });
      }
    }
    return { revision: 0 };
  }

  #bytes(jobs: readonly JobRecord[]): Uint8Array {
    if (jobs.length === 0) return new Uint8Array(0);
    return packCanonical([VERSION, jobs.map((j) => [j.name, j.lastSlotMs, j.seq, j.runs.map((r) => [r.seq, r.slotMs, r.term, r.kind, r.node, r.index, r.at, r.ok ?? null, r.finishedAt ?? null, r.message ?? null])])]);
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes(this.jobs());
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const jobs = await readSection(chunks);
    return () => {
      this.#jobs = jobs;
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readSection(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes(this.jobs())).digest('hex');
  }
}

async function readSection(chunks: AsyncIterable<Uint8Array>): Promise<Map<string, JobRecord>> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
    if (total > 16 * 1024 * 1024) throw new SnapshotCorruptError(0, 'scheduler', 'section larger than 16 MiB');
  }
  const jobs = new Map<string, JobRecord>();
  if (total === 0) return jobs;
  let raw: unknown;
  try {
    raw = unpackCanonical(Buffer.concat(parts));
  } catch (e) {
    throw new SnapshotCorruptError(0, 'scheduler', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 2) throw new SnapshotCorruptError(0, 'scheduler', 'expected [version, jobs]');
  if (raw[0] !== VERSION) throw new SnapshotVersionError(Number(raw[0]), VERSION);
  if (!Array.isArray(raw[1]) || raw[1].length > SCHEDULER_MAX_JOBS) throw new SnapshotCorruptError(0, 'scheduler.jobs', `expected an array of at most ${SCHEDULER_MAX_JOBS} jobs`);
  let prev = '';
  for (const [i, j] of (raw[1] as unknown[]).entries()) {
    const f = `scheduler.jobs[${i}]`;
    if (!Array.isArray(j) || j.length !== 4 || !goodName(j[0]) || !nat(j[1]) || !nat(j[2]) || !Array.isArray(j[3]) || j[3].length > SCHEDULER_RUNS_KEPT) {
      throw new SnapshotCorruptError(0, f, 'expected [name, lastSlot, seq, runs]');
    }
    if (j[0] <= prev) throw new SnapshotCorruptError(0, f, 'names must be sorted and distinct');
    prev = j[0];
    const runs: JobRun[] = (j[3] as unknown[]).map((r, k) => {
      if (!Array.isArray(r) || r.length !== 10 || !nat(r[0]) || !nat(r[1]) || !nat(r[2]) || !(RUN_KINDS as readonly unknown[]).includes(r[3]) || !goodName(r[4]) || !nat(r[5]) || !nat(r[6])
        || (r[7] !== null && typeof r[7] !== 'boolean') || (r[8] !== null && !nat(r[8])) || (r[9] !== null && typeof r[9] !== 'string')) {
        throw new SnapshotCorruptError(0, `${f}.runs[${k}]`, 'expected [seq, slot, term, kind, node, index, at, ok|nil, finishedAt|nil, message|nil]');
      }
      return {
        seq: r[0], slotMs: r[1], term: r[2], kind: r[3] as RunKind, node: r[4] as string, index: r[5], at: r[6],
        ...(r[7] !== null ? { ok: r[7] as boolean } : {}), ...(r[8] !== null ? { finishedAt: r[8] as number } : {}), ...(r[9] !== null ? { message: r[9] as string } : {}),
      };
    });
    jobs.set(j[0], { name: j[0], lastSlotMs: j[1], seq: j[2], runs });
  }
  return jobs;
}
