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
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { WriteResult } from './results.js';

export const SETTINGS_MACHINE_ID = 'settings';
const VERSION = 1;
export const FAILOVER_MODES = ['automatic', 'manual', 'approval'] as const;
export type FailoverMode = (typeof FAILOVER_MODES)[number];
const MAX_NAME = 256;

export type SettingsCommand =
  | { readonly key: 'failover'; readonly value: FailoverMode }
  | { readonly key: 'paused'; readonly value: boolean }
  | { readonly key: 'drained'; readonly nodeName: string; readonly value: boolean };

export interface SettingsView {
  /** Undefined until first set: the node's config file decides. */
  readonly failover: FailoverMode | undefined;
  readonly paused: boolean;
  readonly drained: readonly string[];
}

export function encodeSettingsPayload(c: SettingsCommand): Uint8Array {
  return packCanonical(c.key === 'drained' ? [VERSION, c.key, c.nodeName, c.value] : [VERSION, c.key, c.value]);
}

export function decodeSettingsPayload(payload: Uint8Array): SettingsCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('settings', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== VERSION) throw new InvalidCommandError('settings', `expected [${VERSION}, key, ...]`);
  const [, key, a, b] = raw as unknown[];
  if (key === 'failover' && raw.length === 3 && (FAILOVER_MODES as readonly unknown[]).includes(a)) return { key, value: a as FailoverMode };
  if (key === 'paused' && raw.length === 3 && typeof a === 'boolean') return { key, value: a };
  if (key === 'drained' && raw.length === 4 && typeof a === 'string' && a.length > 0 && a.length <= MAX_NAME && typeof b === 'boolean') return { key, nodeName: a, value: b };
  throw new InvalidCommandError('settings', `unknown setting or bad value: ${JSON.stringify(raw).slice(0, 120)}`);
}

interface State {
  readonly failover: FailoverMode | undefined;
  readonly paused: boolean;
  readonly drained: ReadonlySet<string>;
}

const DEFAULT: State = { failover: undefined, paused: false, drained: new Set() };

export class SettingsMachine implements StateMachine<SettingsCommand> {
  readonly id = SETTINGS_MACHINE_ID;
  #s: State = DEFAULT;

  get view(): SettingsView {
    return { failover: this.#s.failover, paused: this.#s.paused, drained: [...this.#s.drained].sort() };
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

  apply(c: SettingsCommand, _ctx: ApplyContext): WriteResult {
    this.#s = applySetting(this.#s, c);
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

/** The state after one command (also used by the node for appended, not yet applied entries). */
export function applySetting<S extends { readonly failover: FailoverMode | undefined; readonly paused: boolean; readonly drained: ReadonlySet<string> }>(s: S, c: SettingsCommand): State {
  if (c.key === 'failover') return { ...s, failover: c.value };
  if (c.key === 'paused') return { ...s, paused: c.value };
  const drained = new Set(s.drained);
  if (c.value) drained.add(c.nodeName);
  else drained.delete(c.nodeName);
  return { ...s, drained };
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
  if (!Array.isArray(raw) || raw.length !== 4) throw new SnapshotCorruptError(0, 'settings', 'expected [version, failover, paused, drained]');
  const [v, failover, paused, drained] = raw as unknown[];
  if (v !== VERSION) throw new SnapshotVersionError(Number(v), VERSION);
  if (failover !== null && !(FAILOVER_MODES as readonly unknown[]).includes(failover)) throw new SnapshotCorruptError(0, 'settings.failover', `unknown mode ${JSON.stringify(failover)}`);
  if (typeof paused !== 'boolean') throw new SnapshotCorruptError(0, 'settings.paused', 'expected a boolean');
  if (!Array.isArray(drained) || !drained.every((d) => typeof d === 'string')) throw new SnapshotCorruptError(0, 'settings.drained', 'expected an array of node names');
  return { failover: (failover ?? undefined) as FailoverMode | undefined, paused, drained: new Set(drained as string[]) };
}
