// The "history" machine: the cluster's leadership and membership events,
// replicated, bounded, kept in snapshots (GET /v1/cluster/history).
//
// Commands are proposed by the leader (src/node/history-recorder.ts), only
// once the cluster feature level is >= 2 (format-2 envelopes): below that no
// history is recorded. Each command carries the bound (`max`, the leader's
// `cluster.historyMax`), so that every node trims alike whatever its own
// config says: replicated behaviour comes only from the log.
//
// Payload (msgpack, positional, absent optionals nil):
//   [1, 'leader', max, term, leaderId, leaderName, previousLeaderId|nil, previousLeaderName|nil, reason]
//   [1, 'membership', max, term, op, nodeId, nodeName|nil, role|nil, confIndex]
//   [1, 'maintenance', max, term, op, nodeName|nil, reason|nil, by, expiresAt|nil]
//     (cluster feature level >= 3: a pause, resume, drain or undrain, by the
//     operator or by its expiry, with the operator's reason)
// A leader record for a term not above the newest recorded leader term is a
// no-op (a leader that re-records after losing and regaining its quorum, or a
// retry of a proposal that did commit).
//
// Snapshot section: records [1 (section version), seq, count], then count ×
// record tuple (oldest first):
//   [seq, index, at, 'leader', term, leaderId, leaderName, prevId|nil, prevName|nil, reason]
//   [seq, index, at, 'membership', term, op, nodeId, nodeName|nil, role|nil, confIndex]
//   [seq, index, at, 'maintenance', term, op, nodeName|nil, reason|nil, by, expiresAt|nil]
// `seq` numbers every record ever appended (1, 2, …), so a reader can tell
// records were dropped; `index` is the log index of the history entry, `at`
// its leader-stamped time.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotVersionError, UnsupportedCommandVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { ApplyResult } from './results.js';
import { ChunkBuilder, ChunkReader, RecordReader, nat } from './snapshot.js';
import type { Bad } from './snapshot.js';

export const HISTORY_MACHINE_ID = 'history';
/** Payload format version of history commands. */
export const HISTORY_COMMAND_VERSION = 1;
/** The section's version (its head record's first field). */
export const HISTORY_SECTION_VERSION = 1;
/** Default bound (config `cluster.historyMax`). */
export const DEFAULT_HISTORY_MAX = 1000;
/** Largest bound a command may carry. */
export const HISTORY_MAX_LIMIT = 100_000;
const NAME_MAX = 256;
/** Longest operator reason (as the settings machine's). */
const REASON_MAX = 500;

/**
 * Why a node became leader:
 * - `startup`: it had seen no leader since its process started (the cluster's first election, or a whole-cluster restart);
 * - `election`: an election after the leader's election timeout ran out;
 * - `leader-unreachable`: the connection to the leader was reset (its process died) and this node pre-voted at once;
 * - `switchover`: a planned transfer (the old leader sent TimeoutNow);
 * - `failover`, `promotion`: manual failover command, DR promotion (recorded by those features).
 */
export const LEADER_REASONS = ['startup', 'election', 'leader-unreachable', 'switchover', 'failover', 'promotion'] as const;
export type LeaderReason = (typeof LEADER_REASONS)[number];
export const MEMBERSHIP_OPS = ['add', 'remove', 'setRole', 'setMember'] as const;
export type MembershipOp = (typeof MEMBERSHIP_OPS)[number];

export interface LeaderHistoryCommand {
  readonly kind: 'leader';
  readonly max: number;
  readonly term: number;
  readonly leaderId: number;
  readonly leaderName: string;
  readonly previousLeaderId?: number | undefined;
  readonly previousLeaderName?: string | undefined;
  readonly reason: LeaderReason;
}
export interface MembershipHistoryCommand {
  readonly kind: 'membership';
  readonly max: number;
  readonly term: number;
  readonly op: MembershipOp;
  readonly nodeId: number;
  readonly nodeName?: string | undefined;
  readonly role?: string | undefined;
  /** Log index of the membership entry. */
  readonly confIndex: number;
}
export const MAINTENANCE_OPS = ['pause', 'resume', 'drain', 'undrain'] as const;
export type MaintenanceOp = (typeof MAINTENANCE_OPS)[number];
/** Who ended or started it: the operator's command, or the leader when its expiry passed. */
export const MAINTENANCE_BY = ['operator', 'expiry'] as const;
export type MaintenanceBy = (typeof MAINTENANCE_BY)[number];
/** A pause, resume, drain or undrain (cluster feature level >= 3). */
export interface MaintenanceHistoryCommand {
  readonly kind: 'maintenance';
  readonly max: number;
  readonly term: number;
  readonly op: MaintenanceOp;
  /** The drained node (drain, undrain). */
  readonly nodeName?: string | undefined;
  /** The operator's reason (for an expiry: the reason of the pause or drain that ended). */
  readonly reason?: string | undefined;
  readonly by: MaintenanceBy;
  /** When the pause or drain ends (ms since the epoch), if it was given an expiry. */
  readonly expiresAt?: number | undefined;
}
export type HistoryCommand = LeaderHistoryCommand | MembershipHistoryCommand | MaintenanceHistoryCommand;

/** A stored record: the command (without `max`), where and when it was applied. */
export type HistoryRecord = (Omit<LeaderHistoryCommand, 'max'> | Omit<MembershipHistoryCommand, 'max'> | Omit<MaintenanceHistoryCommand, 'max'>) & {
  /** Sequence number over every record ever appended (1, 2, …). */
  readonly seq: number;
  /** Log index of the history entry. */
  readonly index: number;
  /** Leader-stamped time of the entry (ms since the epoch). */
  readonly at: number;
};

const nil = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

export function encodeHistoryPayload(c: HistoryCommand): Uint8Array {
  validateHistoryCommand(c, (field, reason) => {
    throw new InvalidCommandError(field, reason);
  });
  return packCanonical(c.kind === 'leader'
    ? [HISTORY_COMMAND_VERSION, 'leader', c.max, c.term, c.leaderId, c.leaderName, nil(c.previousLeaderId), nil(c.previousLeaderName), c.reason]
    : c.kind === 'membership'
      ? [HISTORY_COMMAND_VERSION, 'membership', c.max, c.term, c.op, c.nodeId, nil(c.nodeName), nil(c.role), c.confIndex]
      : [HISTORY_COMMAND_VERSION, 'maintenance', c.max, c.term, c.op, nil(c.nodeName), nil(c.reason), c.by, nil(c.expiresAt)]);
}

export function decodeHistoryPayload(payload: Uint8Array): HistoryCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('payload', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length < 2) throw new InvalidCommandError('payload', 'expected [version, kind, ...]');
  const t = raw as unknown[];
  if (t[0] !== HISTORY_COMMAND_VERSION) {
    if (typeof t[0] === 'number' && Number.isSafeInteger(t[0]) && t[0] > HISTORY_COMMAND_VERSION) throw new UnsupportedCommandVersionError(t[0]);
    throw new InvalidCommandError('version', `unknown history command version ${String(t[0])}`);
  }
  const bad: Bad = (field, reason) => {
    throw new InvalidCommandError(field, reason);
  };
  const c = tupleToCommand(t.slice(1), bad);
  validateHistoryCommand(c, bad);
  return c;
}

/** [kind, max|-, ...fields] → command; used for payloads (with max) and section records (max 0). */
function tupleToCommand(t: unknown[], bad: Bad): HistoryCommand {
  const kind = t[0];
  if (kind === 'leader') {
    if (t.length !== 8) bad('payload', 'a leader record has 8 fields after the version');
    return {
      kind, max: t[1] as number, term: t[2] as number, leaderId: t[3] as number, leaderName: t[4] as string,
      previousLeaderId: opt(t[5] as number | null), previousLeaderName: opt(t[6] as string | null), reason: t[7] as LeaderReason,
    };
  }
  if (kind === 'membership') {
    if (t.length !== 8) bad('payload', 'a membership record has 8 fields after the version');
    return {
      kind, max: t[1] as number, term: t[2] as number, op: t[3] as MembershipOp, nodeId: t[4] as number,
      nodeName: opt(t[5] as string | null), role: opt(t[6] as string | null), confIndex: t[7] as number,
    };
  }
  if (kind === 'maintenance') {
    if (t.length !== 8) bad('payload', 'a maintenance record has 8 fields after the version');
    return {
      kind, max: t[1] as number, term: t[2] as number, op: t[3] as MaintenanceOp, nodeName: opt(t[4] as string | null),
      reason: opt(t[5] as string | null), by: t[6] as MaintenanceBy, expiresAt: opt(t[7] as number | null),
    };
  }
  return bad('kind', `expected "leader", "membership" or "maintenance", got ${JSON.stringify(kind)}`);
}

const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= NAME_MAX;

function validateHistoryCommand(c: HistoryCommand, bad: Bad, withMax = true): void {
  if (withMax && (!isNat(c.max) || c.max < 1 || c.max > HISTORY_MAX_LIMIT)) bad('max', `expected an integer 1..${HISTORY_MAX_LIMIT}`);
  if (!isNat(c.term)) bad('term', 'expected a non-negative integer');
  if (c.kind === 'leader') {
    if (!isNat(c.leaderId) || c.leaderId === 0) bad('leaderId', 'expected a positive integer');
    if (!isName(c.leaderName)) bad('leaderName', `expected a name of 1..${NAME_MAX} characters`);
    if (c.previousLeaderId !== undefined && (!isNat(c.previousLeaderId) || c.previousLeaderId === 0)) bad('previousLeaderId', 'expected a positive integer or nil');
    if (c.previousLeaderName !== undefined && !isName(c.previousLeaderName)) bad('previousLeaderName', 'expected a name or nil');
    if (!(LEADER_REASONS as readonly string[]).includes(c.reason)) bad('reason', `expected one of ${LEADER_REASONS.join(', ')}`);
  } else if (c.kind === 'maintenance') {
    if (!(MAINTENANCE_OPS as readonly string[]).includes(c.op)) bad('op', `expected one of ${MAINTENANCE_OPS.join(', ')}`);
    if ((c.op === 'drain' || c.op === 'undrain') !== (c.nodeName !== undefined)) bad('nodeName', 'expected a node name for drain and undrain, nil for pause and resume');
    if (c.nodeName !== undefined && !isName(c.nodeName)) bad('nodeName', 'expected a name or nil');
    if (c.reason !== undefined && !(typeof c.reason === 'string' && c.reason.length > 0 && c.reason.length <= REASON_MAX)) bad('reason', `expected 1..${REASON_MAX} characters or nil`);
    if (!(MAINTENANCE_BY as readonly string[]).includes(c.by)) bad('by', `expected one of ${MAINTENANCE_BY.join(', ')}`);
    if (c.expiresAt !== undefined && (!isNat(c.expiresAt) || c.expiresAt === 0)) bad('expiresAt', 'expected a positive integer or nil');
  } else {
    if (!(MEMBERSHIP_OPS as readonly string[]).includes(c.op)) bad('op', `expected one of ${MEMBERSHIP_OPS.join(', ')}`);
    if (!isNat(c.nodeId) || c.nodeId === 0) bad('nodeId', 'expected a positive integer');
    if (c.nodeName !== undefined && !isName(c.nodeName)) bad('nodeName', 'expected a name or nil');
    if (c.role !== undefined && !isName(c.role)) bad('role', 'expected a role or nil');
    if (!isNat(c.confIndex)) bad('confIndex', 'expected a non-negative integer');
  }
}

function recordTuple(r: HistoryRecord): unknown[] {
  return r.kind === 'leader'
    ? [r.seq, r.index, r.at, 'leader', r.term, r.leaderId, r.leaderName, nil(r.previousLeaderId), nil(r.previousLeaderName), r.reason]
    : r.kind === 'membership'
      ? [r.seq, r.index, r.at, 'membership', r.term, r.op, r.nodeId, nil(r.nodeName), nil(r.role), r.confIndex]
      : [r.seq, r.index, r.at, 'maintenance', r.term, r.op, nil(r.nodeName), nil(r.reason), r.by, nil(r.expiresAt)];
}

function recordOf(t: unknown, f: string, bad: Bad): HistoryRecord {
  if (!Array.isArray(t) || t.length !== 10) return bad(f, 'expected a record of 10 fields');
  const [seq, index, at, kind, ...rest] = t as unknown[];
  const sub: Bad = (field, reason) => bad(`${f}.${field}`, reason);
  const c = tupleToCommand([kind, 1, ...rest], sub);
  validateHistoryCommand(c, sub, false);
  const { max: _max, ...body } = c;
  return { ...body, seq: nat(sub, 'seq', seq), index: nat(sub, 'index', index), at: nat(sub, 'at', at) } as HistoryRecord;
}

interface Parsed {
  readonly seq: number;
  readonly records: HistoryRecord[];
}

export class HistoryStateMachine implements StateMachine<HistoryCommand> {
  readonly id = HISTORY_MACHINE_ID;
  /** Oldest first. Records are immutable, so a snapshot captures a copy of the array only. */
  #records: HistoryRecord[] = [];
  /** Records ever appended (the newest record's seq). */
  #seq = 0;

  /** The newest `limit` records (all by default), oldest first. */
  records(limit?: number): readonly HistoryRecord[] {
    return limit === undefined || limit >= this.#records.length ? [...this.#records] : this.#records.slice(this.#records.length - limit);
  }

  /** The newest leader record, if any. */
  lastLeader(): (HistoryRecord & { kind: 'leader' }) | undefined {
    for (let i = this.#records.length - 1; i >= 0; i--) {
      const r = this.#records[i]!;
      if (r.kind === 'leader') return r as HistoryRecord & { kind: 'leader' };
    }
    return undefined;
  }

  get size(): number {
    return this.#records.length;
  }

  /** No record was ever appended (what a legacy snapshot, which has no history section, can stand for). */
  isEmpty(): boolean {
    return this.#seq === 0;
  }

  decode(payload: Uint8Array): HistoryCommand {
    return decodeHistoryPayload(payload);
  }

  fingerprint(command: HistoryCommand): string {
    return createHash('sha256').update(HISTORY_MACHINE_ID).update(encodeHistoryPayload(command)).digest('hex').slice(0, 32);
  }

  apply(c: HistoryCommand, ctx: ApplyContext): ApplyResult {
    if (c.kind === 'leader') {
      const last = this.lastLeader();
      if (last !== undefined && c.term <= last.term) return { revision: this.#seq };
    }
    const { max, ...body } = c;
    this.#seq++;
    this.#records.push({ ...body, seq: this.#seq, index: ctx.index, at: ctx.at } as HistoryRecord);
    if (this.#records.length > max) this.#records.splice(0, this.#records.length - max);
    return { revision: this.#seq };
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const seq = this.#seq;
    const records = [...this.#records];
    async function* stream(): AsyncGenerator<Uint8Array> {
      yield* serialize(seq, records);
    }
    return stream();
  }

  checksum(): string {
    const b = new ChunkBuilder();
    for (const chunk of serialize(this.#seq, this.#records, b)) void chunk;
    return Buffer.from(b.finish()).toString('hex');
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readSection(chunks);
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const p = await readSection(chunks);
    return () => {
      this.#seq = p.seq;
      this.#records = p.records;
    };
  }
}

function* serialize(seq: number, records: readonly HistoryRecord[], b = new ChunkBuilder()): Generator<Uint8Array, void, undefined> {
  if (seq === 0) return; // the empty state: an empty section
  b.record(packCanonical([HISTORY_SECTION_VERSION, seq, records.length]));
  for (const r of records) {
    b.record(packCanonical(recordTuple(r)));
    while (b.full.length > 0) yield b.full.shift()!;
  }
  b.finish();
  while (b.full.length > 0) yield b.full.shift()!;
}

/** Reads and checks a whole history section. An empty stream is the empty history. */
async function readSection(chunks: AsyncIterable<Uint8Array>): Promise<Parsed> {
  const r = new ChunkReader(chunks);
  r.hashing = false;
  try {
    if (await r.atEnd()) return { seq: 0, records: [] };
    const rr = new RecordReader(r);
    const head = await rr.next('history.head');
    if (!Array.isArray(head) || head.length !== 3) return rr.bad('history.head', 'expected [sectionVersion, seq, count]');
    if (head[0] !== HISTORY_SECTION_VERSION) {
      if (typeof head[0] === 'number' && Number.isSafeInteger(head[0]) && head[0] > HISTORY_SECTION_VERSION) throw new SnapshotVersionError(head[0], HISTORY_SECTION_VERSION);
      return rr.bad('history.version', `unknown history section version ${String(head[0])}`);
    }
    const seq = nat(rr.bad, 'history.seq', head[1]);
    const count = nat(rr.bad, 'history.count', head[2]);
    if (seq === 0 || count > seq || count > HISTORY_MAX_LIMIT) rr.bad('history.count', `expected 0 < count <= seq and count <= ${HISTORY_MAX_LIMIT}, got seq ${seq}, count ${count}`);
    const records: HistoryRecord[] = [];
    for (let i = 0; i < count; i++) {
      const f = `history.records[${i}]`;
      const rec = recordOf(await rr.next(f), f, rr.bad);
      const expected = seq - count + i + 1;
      if (rec.seq !== expected) rr.bad(`${f}.seq`, `expected ${expected} (records are consecutive and end at seq ${seq})`);
      const prev = records[records.length - 1];
      if (prev !== undefined && rec.index <= prev.index) rr.bad(`${f}.index`, 'expected increasing log indexes');
      records.push(rec);
    }
    if (!(await r.atEnd())) {
      rr.at = r.offset;
      rr.bad('history.end', `bytes follow the ${count} records the head announced`);
    }
    return { seq, records };
  } finally {
    await r.close();
  }
}
