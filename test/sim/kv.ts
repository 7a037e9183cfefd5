// The simulator's replicated state machine: a key -> value map applied from
// committed entries, plus the membership as of the applied index (the
// snapshot meta needs it). Commands carry a unique id so the client that
// proposed one learns its outcome when it is applied.
import type { Entry, Membership } from '../../src/raft/types.js';
import { applyConfChange, decodeConfEntry } from '../../src/raft/index.js';

export type Command =
  | { readonly id: number; readonly kind: 'write'; readonly key: string; readonly value: string }
  | { readonly id: number; readonly kind: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string };

export type ApplyResult = { readonly id: number; readonly ok: boolean } | undefined;

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCommand(c: Command): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

export function decodeCommand(data: Uint8Array): Command {
  return JSON.parse(dec.decode(data)) as Command;
}

/** 32-bit FNV-1a over bytes, continuing from `h`. */
export function fnv(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h;
}

/** Mixes numbers into a 32-bit hash. */
export function mix(h: number, ...xs: number[]): number {
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ Math.floor(x / 4294967296), 0x01000193) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
  }
  return h;
}

export function entryHash(e: Entry): number {
  return mix(fnv(e.data), e.index, e.term, e.type === 'conf' ? 1 : 0);
}

export class KvMachine {
  kv = new Map<string, string>();
  applied = 0;
  membership: Membership;
  /** Set when a conf entry's carried membership disagrees with the one computed from its change. */
  confMismatch: string | undefined;

  constructor(membership: Membership) {
    this.membership = membership;
  }

  /** Applies one committed entry; returns the command's outcome for its client. */
  apply(e: Entry): ApplyResult {
    if (e.index !== this.applied + 1) throw new Error(`sim: apply out of order: entry ${e.index} after applied ${this.applied}`);
    this.applied = e.index;
    if (e.type === 'conf') {
      // The entry carries the resulting membership; recompute it from the
      // change as a cross-check of the core's membership bookkeeping.
      const ce = decodeConfEntry(e.data);
      let mine: Membership | undefined;
      try {
        mine = applyConfChange(this.membership, ce.change);
      } catch {
        mine = undefined;
      }
      if (mine === undefined || JSON.stringify(mine) !== JSON.stringify(ce.membership)) {
        this.confMismatch = `conf entry ${e.index} (${JSON.stringify(ce.change)}) carries membership ${JSON.stringify(ce.membership)} but applying the change to ${JSON.stringify(this.membership)} gives ${mine === undefined ? 'an invalid change' : JSON.stringify(mine)}`;
      }
      this.membership = ce.membership;
      return undefined;
    }
    if (e.data.length === 0) return undefined; // leader's no-op
    const c = decodeCommand(e.data);
    if (c.kind === 'write') {
      this.kv.set(c.key, c.value);
      return { id: c.id, ok: true };
    }
    const cur = this.kv.get(c.key) ?? null;
    if (cur !== c.expected) return { id: c.id, ok: false };
    this.kv.set(c.key, c.value);
    return { id: c.id, ok: true };
  }

  get(key: string): string | null {
    return this.kv.get(key) ?? null;
  }

  /** Order-independent digest of the KV contents. */
  digest(): number {
    const keys = [...this.kv.keys()].sort();
    let h = 0x811c9dc5;
    for (const k of keys) h = fnv(enc.encode(`${k}=${this.kv.get(k)!};`), h);
    return mix(h, this.applied);
  }

  snapshotBytes(): Uint8Array {
    const keys = [...this.kv.keys()].sort();
    return enc.encode(JSON.stringify({ applied: this.applied, kv: keys.map((k) => [k, this.kv.get(k)!]), membership: this.membership }));
  }

  static fromSnapshot(bytes: Uint8Array): KvMachine {
    const o = JSON.parse(dec.decode(bytes)) as { applied: number; kv: [string, string][]; membership: Membership };
    const m = new KvMachine(o.membership);
    m.applied = o.applied;
    for (const [k, v] of o.kv) m.kv.set(k, v);
    return m;
  }
}
