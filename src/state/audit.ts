// The "audit" machine: who did which operator/admin action, when, from where,
// with what result (SPEC §4 `GET /v1/audit`). Replicated and bounded: each
// command carries the bound (`max`), so every node trims alike (as the
// history machine does).
//
// Payload (msgpack, positional, absent optionals nil):
//   [1, max, actor, action, target|nil, address, node, status, result, detail|nil]
// `actor` is the token's name, `action` what was done (e.g. `token.create`,
// `POST /v1/cluster/switchover`), `target` what it was done to, `address` the
// client's address as the serving node saw it, `node` the node that served
// it, `status` the HTTP status answered (0 for actions not made over HTTP),
// `result` `ok` or the error code. The record adds `seq`, the entry's log
// `index` and leader-stamped `at`.
//
// Snapshot section: [1, seq, [[seq, index, at, actor, action, target|nil, address, node, status, result, detail|nil]...]]
// oldest first, or no bytes for the empty state.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { WriteResult } from './results.js';
import { readSmallSection } from './small-section.js';

export const AUDIT_MACHINE_ID = 'audit';
const VERSION = 1;
/** Default bound on kept records. */
export const DEFAULT_AUDIT_MAX = 2000;
/** Largest bound a command may carry. */
export const AUDIT_MAX_LIMIT = 20_000;
/** Longest text field (longer input is cut by the recorder, refused here). */
export const AUDIT_FIELD_MAX = 512;

export interface AuditEntry {
  readonly actor: string;
  readonly action: string;
  readonly target: string | undefined;
  readonly address: string;
  readonly node: string;
  readonly status: number;
  readonly result: string;
  readonly detail: string | undefined;
}
export interface AuditCommand extends AuditEntry {
  readonly max: number;
}
export interface AuditRecord extends AuditEntry {
  readonly seq: number;
  readonly index: number;
  readonly at: number;
}

const str = (v: unknown): v is string => typeof v === 'string' && v.length <= AUDIT_FIELD_MAX;
const optStr = (v: unknown): boolean => v === null || str(v);
const nat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function encodeAuditPayload(c: AuditCommand): Uint8Array {
  return packCanonical([VERSION, c.max, c.actor, c.action, c.target ?? null, c.address, c.node, c.status, c.result, c.detail ?? null]);
}

/** Checks an entry's fields; the name of the first bad one, or undefined. */
function badEntryField(f: readonly unknown[]): string | undefined {
  const [actor, action, target, address, node, status, result, detail] = f;
  if (!str(actor)) return 'actor';
  if (!str(action) || action === '') return 'action';
  if (!optStr(target)) return 'target';
  if (!str(address)) return 'address';
  if (!str(node)) return 'node';
  if (!nat(status) || status > 999) return 'status';
  if (!str(result) || result === '') return 'result';
  if (!optStr(detail)) return 'detail';
  return undefined;
}

export function decodeAuditPayload(payload: Uint8Array): AuditCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('audit', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== VERSION || raw.length !== 10) throw new InvalidCommandError('audit', `expected [${VERSION}, max, actor, action, target, address, node, status, result, detail]`);
  const max = raw[1] as unknown;
  if (!nat(max) || max < 1 || max > AUDIT_MAX_LIMIT) throw new InvalidCommandError('audit.max', `expected 1..${AUDIT_MAX_LIMIT}`);
  const bad = badEntryField(raw.slice(2));
  if (bad !== undefined) throw new InvalidCommandError(`audit.${bad}`, 'missing, mistyped or too long');
  return { max, ...entryOf(raw.slice(2)) };
}

function entryOf(f: readonly unknown[]): AuditEntry {
  const [actor, action, target, address, node, status, result, detail] = f as [string, string, string | null, string, string, number, string, string | null];
  return { actor, action, target: target ?? undefined, address, node, status, result, detail: detail ?? undefined };
}

const tuple = (r: AuditRecord): unknown[] => [r.seq, r.index, r.at, r.actor, r.action, r.target ?? null, r.address, r.node, r.status, r.result, r.detail ?? null];

export class AuditMachine implements StateMachine<AuditCommand> {
  readonly id = AUDIT_MACHINE_ID;
  #seq = 0;
  #records: AuditRecord[] = [];

  isEmpty(): boolean {
    return this.#seq === 0;
  }

  /** The newest `limit` records (all when undefined), oldest first. */
  records(limit?: number): readonly AuditRecord[] {
    return limit === undefined ? [...this.#records] : this.#records.slice(Math.max(0, this.#records.length - limit));
  }

  get seq(): number {
    return this.#seq;
  }

  decode(payload: Uint8Array): AuditCommand {
    return decodeAuditPayload(payload);
  }

  fingerprint(command: AuditCommand): string {
    return createHash('sha256').update(AUDIT_MACHINE_ID).update(encodeAuditPayload(command)).digest('hex').slice(0, 32);
  }

  apply(c: AuditCommand, ctx: ApplyContext): WriteResult {
    this.#seq++;
    const { max, ...entry } = c;
    this.#records.push({ ...entry, seq: this.#seq, index: ctx.index, at: ctx.at });
    if (this.#records.length > max) this.#records.splice(0, this.#records.length - max);
    return { revision: 0 };
  }

  #bytes(): Uint8Array {
    if (this.isEmpty()) return new Uint8Array(0);
    return packCanonical([VERSION, this.#seq, this.#records.map(tuple)]);
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes();
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const s = await readAudit(chunks);
    return () => {
      this.#seq = s.seq;
      this.#records = s.records;
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readAudit(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

async function readAudit(chunks: AsyncIterable<Uint8Array>): Promise<{ seq: number; records: AuditRecord[] }> {
  const raw = await readSmallSection(chunks, AUDIT_MACHINE_ID, 32 * 1024 * 1024);
  if (raw === undefined) return { seq: 0, records: [] };
  const [v, seq, list] = raw;
  if (v !== VERSION) throw new SnapshotVersionError(Number(v), VERSION);
  if (raw.length !== 3 || !nat(seq) || !Array.isArray(list) || list.length > seq || list.length > AUDIT_MAX_LIMIT) {
    throw new SnapshotCorruptError(0, 'audit', 'expected [version, seq, records] with at most seq records');
  }
  const records: AuditRecord[] = [];
  let prev = seq - list.length;
  list.forEach((item: unknown, i) => {
    const f = `audit[${i}]`;
    if (!Array.isArray(item) || item.length !== 11) throw new SnapshotCorruptError(0, f, 'expected an 11-field record');
    const [s, index, at] = item as unknown[];
    if (s !== prev + 1) throw new SnapshotCorruptError(0, `${f}.seq`, `expected ${prev + 1}`);
    if (!nat(index) || !nat(at)) throw new SnapshotCorruptError(0, `${f}.index`, 'expected index and at as non-negative integers');
    const bad = badEntryField(item.slice(3));
    if (bad !== undefined) throw new SnapshotCorruptError(0, `${f}.${bad}`, 'missing, mistyped or too long');
    prev = s;
    records.push({ seq: s, index, at, ...entryOf(item.slice(3)) });
  });
  return { seq, records };
}
