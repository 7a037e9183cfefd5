// The "settings" machine: cluster-wide settings kept in the replicated state
// (SPEC §5 `quorate config set`, pause/resume, drain). Every node applies the
// same values at the same index, so one node whose config file says otherwise
// cannot defeat them.
//
//   failover: "automatic" | "manual" | "approval" — unset until first set (the node then
//             uses its file's cluster.failover: the file seeds it)
//   paused:   maintenance mode: no node campaigns by itself
//   drained:  node names that never campaign by themselves and are never a
//             switchover target
//
// Commands (payload, msgpack): [1, "failover", mode] · [1, "paused", bool] ·
// [1, "drained", nodeName, bool]. Proposed only in format-2 envelopes (cluster
// feature level >= 2). The snapshot section is [1, failover|nil, paused,
// drained (sorted)], or no bytes at all for the default state (so a legacy
// snapshot, written while the cluster level is below 2, can leave it out).
//
// Version 2 (cluster feature level >= 3, src/node/features.ts): a pause or a
// drain with the operator's reason and an expiry (absolute ms, stamped by the
// leader): [2, "paused", bool, reason|nil, expiresAt|nil] ·
// [2, "drained", nodeName, bool, reason|nil, expiresAt|nil]. A command without
// reason and expiry is still written as version 1. While any pause or drain
// carries a reason or expiry, the snapshot section is [2, failover|nil, paused,
// drained (sorted), pause|nil, drains] with pause = [reason|nil, expiresAt|nil,
// since] and drains = [[nodeName, reason|nil, expiresAt|nil, since] …] (sorted);
// otherwise it stays version 1. A resume or undrain clears the reason and expiry.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { WriteResult } from './results.js';

export const SETTINGS_MACHINE_ID = 'settings';
const VERSION = 1;
/** Commands and snapshot sections with reasons and expiries (cluster feature level 3). */
const VERSION_HOLDS = 2;
/** Longest operator reason kept. */
export const MAX_REASON = 500;
export const FAILOVER_MODES = ['automatic', 'manual', 'approval'] as const;
export type FailoverMode = (typeof FAILOVER_MODES)[number];
const MAX_NAME = 256;

/** The operator's reason and the expiry (ms since the epoch) of a pause or drain (feature level 3). */
export interface HoldOptions {
  readonly reason?: string;
  readonly expiresAt?: number;
}

export type SettingsCommand =
  | { readonly key: 'failover'; readonly value: FailoverMode }
  | ({ readonly key: 'paused'; readonly value: boolean } & HoldOptions)
  | ({ readonly key: 'drained'; readonly nodeName: string; readonly value: boolean } & HoldOptions);

/** A pause or drain's reason, expiry and start (the applied entry's leader-stamped time). */
export interface Hold extends HoldOptions {
  readonly since: number;
}

export interface SettingsView {
  /** Undefined until first set: the node's config file decides. */
  readonly failover: FailoverMode | undefined;
  readonly paused: boolean;
  readonly drained: readonly string[];
  /** The pause's reason and expiry, when it was given either (absent otherwise). */
  readonly pause?: Hold;
  /** Drained nodes with a reason or expiry (absent when none has). */
  readonly drains?: Readonly<Record<string, Hold>>;
}

/** Whether the command needs version 2 (a reason or expiry): cluster feature level 3. */
export function settingsCommandHasHold(c: SettingsCommand): boolean {
  return c.key !== 'failover' && (c.reason !== undefined || c.expiresAt !== undefined);
}

export function encodeSettingsPayload(c: SettingsCommand): Uint8Array {
  if (c.key !== 'failover' && settingsCommandHasHold(c)) {
    const tail = [c.reason ?? null, c.expiresAt ?? null];
    return packCanonical(c.key === 'drained' ? [VERSION_HOLDS, c.key, c.nodeName, c.value, ...tail] : [VERSION_HOLDS, c.key, c.value, ...tail]);
  }
  return packCanonical(c.key === 'drained' ? [VERSION, c.key, c.nodeName, c.value] : [VERSION, c.key, c.value]);
}

function holdOf(reason: unknown, expiresAt: unknown): HoldOptions | undefined {
  if (reason !== null && !(typeof reason === 'string' && reason.length > 0 && reason.length <= MAX_REASON)) return undefined;
  if (expiresAt !== null && !(typeof expiresAt === 'number' && Number.isSafeInteger(expiresAt) && expiresAt > 0)) return undefined;
  return { ...(reason !== null ? { reason: reason as string } : {}), ...(expiresAt !== null ? { expiresAt: expiresAt as number } : {}) };
}

export function decodeSettingsPayload(payload: Uint8Array): SettingsCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('settings', `not valid msgpack (${(e as Error).message})`);
  }
  if (Array.isArray(raw) && raw[0] === VERSION_HOLDS) {
    const [, key, a, b, c, d] = raw as unknown[];
    if (key === 'paused' && raw.length === 5 && typeof a === 'boolean') {
      const h = holdOf(b, c);
      if (h !== undefined) return { key, value: a, ...h };
    }
    if (key === 'drained' && raw.length === 6 && typeof a === 'string' && a.length > 0 && a.length <= MAX_NAME && typeof b === 'boolean') {
      const h = holdOf(c, d);
      if (h !== undefined) return { key, nodeName: a, value: b, ...h };
    }
    throw new InvalidCommandError('settings', `unknown setting or bad value: ${JSON.stringify(raw).slice(0, 120)}`);
  }
  if (!Array.isArray(raw) || raw[0] !== VERSION) throw new InvalidCommandError('settings', `expected [${VERSION}, key, ...] or [${VERSION_HOLDS}, key, ...]`);
  const [, key, a, b] = raw as unknown[];
  if (key === 'failover' && raw.length === 3 && (FAILOVER_MODES as readonly unknown[]).includes(a)) return { key, value: a as FailoverMode };
  if (key === 'paused' && raw.length === 3 && typeof a === 'boolean') return { key, value: a };
  if (key === 'drained' && raw.length === 4 && typeof a === 'string' && a.length > 0 && a.length <= MAX_NAME && typeof b === 'boolean') return { key, nodeName: a, value: b };
  throw new InvalidCommandError('settings', `unknown setting or bad value: ${JSON.stringify(raw).slice(0, 120)}`);
}

export interface SettingsState {
  readonly failover: FailoverMode | undefined;
  readonly paused: boolean;
  readonly drained: ReadonlySet<string>;
  /** The pause's reason/expiry (only while paused with either). */
  readonly pause?: Hold;
  /** Reasons/expiries of drained nodes (only those given either). */
  readonly drains?: ReadonlyMap<string, Hold>;
}
type State = SettingsState;

const DEFAULT: State = { failover: undefined, paused: false, drained: new Set() };

/** The view of a state: holds only when there are any. */
export function settingsViewOf(s: State): SettingsView {
  const drains = s.drains !== undefined && s.drains.size > 0 ? Object.fromEntries([...s.drains].sort(([a], [b]) => (a < b ? -1 : 1))) : undefined;
  return { failover: s.failover, paused: s.paused, drained: [...s.drained].sort(), ...(s.pause !== undefined ? { pause: s.pause } : {}), ...(drains !== undefined ? { drains } : {}) };
}

export class SettingsMachine implements StateMachine<SettingsCommand> {
  readonly id = SETTINGS_MACHINE_ID;
  #s: State = DEFAULT;

  get view(): SettingsView {
    return settingsViewOf(this.#s);
  }

  /** The default state (nothing ever set): its snapshot section is empty. */
  isEmpty(): boolean {
    return this.#s.failover === undefined && !this.#s.paused && this.#s.drained.size === 0;
  }

  decode(payload: Uint8Array): SettingsCommand {
    return decodeSettingsPayload(payload);
  }

  fingerprint(command: SettingsCommand): string {
    return createHash('sha256').update(SETTINGS_MACHINE_ID).update(encodeSettingsPayload(command)).digest('hex').slice(0, 32);
  }

  apply(c: SettingsCommand, ctx: ApplyContext): WriteResult {
    this.#s = applySetting(this.#s, c, ctx.at);
    // "Applied". Settings have no revision of their own (the revision counts
    // KV changes); a WriteResult is a result client sessions can record.
    return { revision: 0 };
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes();
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  #bytes(): Uint8Array {
    if (this.isEmpty()) return new Uint8Array(0);
    const s = this.#s;
    const hold = (h: Hold) => [h.reason ?? null, h.expiresAt ?? null, h.since];
    if (s.pause !== undefined || (s.drains?.size ?? 0) > 0) {
      const drains = [...(s.drains ?? new Map<string, Hold>())].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, h]) => [n, ...hold(h)]);
      return packCanonical([VERSION_HOLDS, s.failover ?? null, s.paused, [...s.drained].sort(), s.pause !== undefined ? hold(s.pause) : null, drains]);
    }
    return packCanonical([VERSION, this.#s.failover ?? null, this.#s.paused, [...this.#s.drained].sort()]);
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const s = await readState(chunks);
    return () => {
      this.#s = s;
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readState(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

function holdFrom(c: HoldOptions, at: number): Hold | undefined {
  if (c.reason === undefined && c.expiresAt === undefined) return undefined;
  return { ...(c.reason !== undefined ? { reason: c.reason } : {}), ...(c.expiresAt !== undefined ? { expiresAt: c.expiresAt } : {}), since: at };
}

/** The state after one command applied at leader time `at` (also used by the node for appended, not yet applied entries). */
export function applySetting(s: State, c: SettingsCommand, at: number): State {
  if (c.key === 'failover') return { ...s, failover: c.value };
  if (c.key === 'paused') {
    const { pause: _old, ...rest } = s;
    const hold = c.value ? holdFrom(c, at) : undefined;
    return { ...rest, paused: c.value, ...(hold !== undefined ? { pause: hold } : {}) };
  }
  const drained = new Set(s.drained);
  const drains = new Map(s.drains ?? []);
  drains.delete(c.nodeName);
  if (c.value) {
    drained.add(c.nodeName);
    const hold = holdFrom(c, at);
    if (hold !== undefined) drains.set(c.nodeName, hold);
  } else drained.delete(c.nodeName);
  return { ...s, drained, drains };
}

function readHold(raw: unknown, field: string): Hold {
  if (!Array.isArray(raw) || raw.length !== 3) throw new SnapshotCorruptError(0, field, 'expected [reason, expiresAt, since]');
  const [reason, expiresAt, since] = raw as unknown[];
  const h = holdOf(reason, expiresAt);
  if (h === undefined || typeof since !== 'number' || !Number.isSafeInteger(since)) throw new SnapshotCorruptError(0, field, 'bad reason, expiry or start time');
  return { ...h, since };
}

async function readState(chunks: AsyncIterable<Uint8Array>): Promise<State> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
    if (total > 1024 * 1024) throw new SnapshotCorruptError(0, 'settings', 'section larger than 1 MiB');
  }
  if (total === 0) return DEFAULT;
  const buf = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    buf.set(p, off);
    off += p.length;
  }
  let raw: unknown;
  try {
    raw = unpackCanonical(buf);
  } catch (e) {
    throw new SnapshotCorruptError(0, 'settings', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length < 4) throw new SnapshotCorruptError(0, 'settings', 'expected [version, failover, paused, drained, ...]');
  const [v, failover, paused, drained, pauseRaw, drainsRaw] = raw as unknown[];
  if (v !== VERSION && v !== VERSION_HOLDS) throw new SnapshotVersionError(Number(v), VERSION_HOLDS);
  if (raw.length !== (v === VERSION ? 4 : 6)) throw new SnapshotCorruptError(0, 'settings', `expected ${v === VERSION ? 4 : 6} fields in a version ${String(v)} section`);
  if (failover !== null && !(FAILOVER_MODES as readonly unknown[]).includes(failover)) throw new SnapshotCorruptError(0, 'settings.failover', `unknown mode ${JSON.stringify(failover)}`);
  if (typeof paused !== 'boolean') throw new SnapshotCorruptError(0, 'settings.paused', 'expected a boolean');
  if (!Array.isArray(drained) || !drained.every((d) => typeof d === 'string')) throw new SnapshotCorruptError(0, 'settings.drained', 'expected an array of node names');
  const base: State = { failover: (failover ?? undefined) as FailoverMode | undefined, paused, drained: new Set(drained as string[]) };
  if (v === VERSION) return base;
  const pause = pauseRaw === null ? undefined : readHold(pauseRaw, 'settings.pause');
  if (!Array.isArray(drainsRaw)) throw new SnapshotCorruptError(0, 'settings.drains', 'expected an array');
  const drains = new Map<string, Hold>();
  for (const d of drainsRaw as unknown[]) {
    if (!Array.isArray(d) || d.length !== 4 || typeof d[0] !== 'string') throw new SnapshotCorruptError(0, 'settings.drains', 'expected [nodeName, reason, expiresAt, since]');
    drains.set(d[0], readHold(d.slice(1), 'settings.drains'));
  }
  return { ...base, ...(pause !== undefined ? { pause } : {}), drains };
}
