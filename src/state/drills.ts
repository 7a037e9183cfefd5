// The "drills" machine: the reports of `quorate drill` (src/drill/runner.ts),
// replicated and bounded (GET /v1/drills, `quorate drill --history`). Each
// command carries the bound (`max`), so every node trims alike (as the audit
// and history machines do). A report is kept as the JSON text the runner
// produced: this machine checks its size, not its fields (the runner's
// DrillReport type is the schema; readers parse it).
//
// Payload (msgpack, positional): [1, max, report (JSON text)]
// The record adds `seq`, the entry's log `index` and leader-stamped `at`.
//
// Snapshot section: [1, seq, [[seq, index, at, report]...]] oldest first, or no bytes for the empty state.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { WriteResult } from './results.js';
import { readSmallSection } from './small-section.js';

export const DRILLS_MACHINE_ID = 'drills';
const VERSION = 1;
/** Default bound on kept reports. */
export const DEFAULT_DRILLS_MAX = 100;
/** Largest bound a command may carry. */
export const DRILLS_MAX_LIMIT = 1000;
/** Longest report (JSON text, in UTF-16 code units). */
export const DRILL_REPORT_MAX = 64 * 1024;

export interface DrillsCommand {
  readonly max: number;
  readonly report: string;
}
export interface DrillRecord {
  readonly seq: number;
  readonly index: number;
  readonly at: number;
  readonly report: string;
}

const nat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const reportOk = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= DRILL_REPORT_MAX;

export function encodeDrillsPayload(c: DrillsCommand): Uint8Array {
  return packCanonical([VERSION, c.max, c.report]);
}

export function decodeDrillsPayload(payload: Uint8Array): DrillsCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('drills', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== VERSION || raw.length !== 3) throw new InvalidCommandError('drills', `expected [${VERSION}, max, report]`);
  const [, max, report] = raw as unknown[];
  if (!nat(max) || max < 1 || max > DRILLS_MAX_LIMIT) throw new InvalidCommandError('drills.max', `expected 1..${DRILLS_MAX_LIMIT}`);
  if (!reportOk(report)) throw new InvalidCommandError('drills.report', `expected a non-empty string of at most ${DRILL_REPORT_MAX} characters`);
  return { max, report };
}

export class DrillsMachine implements StateMachine<DrillsCommand> {
  readonly id = DRILLS_MACHINE_ID;
  #seq = 0;
  #records: DrillRecord[] = [];

  isEmpty(): boolean {
    return this.#seq === 0;
  }

  /** The newest `limit` records (all when undefined), oldest first. */
  records(limit?: number): readonly DrillRecord[] {
    return limit === undefined ? [...this.#records] : this.#records.slice(Math.max(0, this.#records.length - limit));
  }

  get seq(): number {
    return this.#seq;
  }

  decode(payload: Uint8Array): DrillsCommand {
    return decodeDrillsPayload(payload);
  }

  fingerprint(command: DrillsCommand): string {
    return createHash('sha256').update(DRILLS_MACHINE_ID).update(encodeDrillsPayload(command)).digest('hex').slice(0, 32);
  }

  apply(c: DrillsCommand, ctx: ApplyContext): WriteResult {
    this.#seq++;
    this.#records.push({ seq: this.#seq, index: ctx.index, at: ctx.at, report: c.report });
    if (this.#records.length > c.max) this.#records.splice(0, this.#records.length - c.max);
    return { revision: 0 };
  }

  #bytes(): Uint8Array {
    if (this.isEmpty()) return new Uint8Array(0);
    return packCanonical([VERSION, this.#seq, this.#records.map((r) => [r.seq, r.index, r.at, r.report])]);
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes();
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const s = await readDrills(chunks);
    return () => {
      this.#seq = s.seq;
      this.#records = s.records;
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readDrills(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

async function readDrills(chunks: AsyncIterable<Uint8Array>): Promise<{ seq: number; records: DrillRecord[] }> {
  const raw = await readSmallSection(chunks, DRILLS_MACHINE_ID, (DRILL_REPORT_MAX * 4 + 64) * DRILLS_MAX_LIMIT);
  if (raw === undefined) return { seq: 0, records: [] };
  const [v, seq, list] = raw;
  if (v !== VERSION) throw new SnapshotVersionError(Number(v), VERSION);
  if (raw.length !== 3 || !nat(seq) || !Array.isArray(list) || list.length > seq || list.length > DRILLS_MAX_LIMIT) {
    throw new SnapshotCorruptError(0, 'drills', 'expected [version, seq, records] with at most seq records');
  }
  const records: DrillRecord[] = [];
  let prev = seq - list.length;
  list.forEach((item: unknown, i) => {
    const f = `drills[${i}]`;
    if (!Array.isArray(item) || item.length !== 4) throw new SnapshotCorruptError(0, f, 'expected a 4-field record');
    const [s, index, at, report] = item as unknown[];
    if (s !== prev + 1) throw new SnapshotCorruptError(0, `${f}.seq`, `expected ${prev + 1}`);
    if (!nat(index) || !nat(at)) throw new SnapshotCorruptError(0, `${f}.index`, 'expected index and at as non-negative integers');
    if (!reportOk(report)) throw new SnapshotCorruptError(0, `${f}.report`, 'missing, mistyped or too long');
    prev = s;
    records.push({ seq: s, index, at, report });
  });
  return { seq, records };
}
