// The "secrets" machine: cluster-secret rotations (`quorate isolate`,
// src/node/isolate.ts). An isolated node knew the cluster secret, so the
// remaining members switch to a new one. The new secret travels in the log
// only sealed: AES-256-GCM under a key derived (HKDF-SHA256) from the secret
// it replaces, with a fresh salt; only a holder of the previous secret opens
// it, and the entry goes only to members (the isolated node was removed
// first and is refused at the handshake). Each member switches at apply.
//
// Command (payload, msgpack): [1, "rotate", isolatedName, isolatedId, oldFp,
// newFp, salt, iv, sealed], fingerprints = the first 16 bytes of
// SHA-256("quorate cluster secret" ‖ secret). The state keeps the newest
// ROTATIONS_KEPT rotations (a member restored from a snapshot walks the chain
// from the secret it holds) and the isolated nodes. Snapshot section:
// [1, rotations, isolated], no bytes for the empty state.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { WriteResult } from './results.js';

export const SECRETS_MACHINE_ID = 'secrets';
const VERSION = 1;
export const ROTATIONS_KEPT = 16;
const FP_BYTES = 16;

export interface SecretRotation {
  readonly isolatedName: string;
  readonly isolatedId: number;
  readonly oldFp: Uint8Array;
  readonly newFp: Uint8Array;
  readonly salt: Uint8Array;
  readonly iv: Uint8Array;
  readonly sealed: Uint8Array;
}

export function secretFingerprint(secret: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update('quorate cluster secret\0').update(secret).digest().subarray(0, FP_BYTES));
}

const HKDF_INFO = 'quorate secret rotation v1';

function aad(r: Pick<SecretRotation, 'isolatedName' | 'isolatedId' | 'oldFp' | 'newFp'>): Buffer {
  return Buffer.concat([Buffer.from(`${HKDF_INFO}\0${r.isolatedName}\0${r.isolatedId}\0`), r.oldFp, r.newFp]);
}

/** A new secret of the same length as `old`, sealed under `old`. */
export function sealRotation(old: Uint8Array, isolatedName: string, isolatedId: number): { rotation: SecretRotation; secret: Uint8Array } {
  const secret = new Uint8Array(randomBytes(old.length));
  const salt = new Uint8Array(randomBytes(16));
  const iv = new Uint8Array(randomBytes(12));
  const key = Buffer.from(hkdfSync('sha256', old, salt, HKDF_INFO, 32));
  const head = { isolatedName, isolatedId, oldFp: secretFingerprint(old), newFp: secretFingerprint(secret) };
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(head));
  const sealed = new Uint8Array(Buffer.concat([c.update(secret), c.final(), c.getAuthTag()]));
  return { rotation: { ...head, salt, iv, sealed }, secret };
}

/** The new secret of `r`, given the secret it replaced; throws when `old` is not that secret or anything was altered. */
export function openRotation(r: SecretRotation, old: Uint8Array): Uint8Array {
  const key = Buffer.from(hkdfSync('sha256', old, r.salt, HKDF_INFO, 32));
  const d = createDecipheriv('aes-256-gcm', key, r.iv);
  d.setAAD(aad(r));
  d.setAuthTag(r.sealed.subarray(r.sealed.length - 16));
  const secret = new Uint8Array(Buffer.concat([d.update(r.sealed.subarray(0, r.sealed.length - 16)), d.final()]));
  if (!Buffer.from(secretFingerprint(secret)).equals(Buffer.from(r.newFp))) throw new Error('the opened secret does not match its fingerprint');
  return secret;
}

/** Follows the chain of rotations from `current`: the newest secret reachable, or `current` when none applies. */
export function latestSecret(rotations: readonly SecretRotation[], current: Uint8Array): Uint8Array {
  let s = current;
  for (let moved = true; moved;) {
    moved = false;
    const fp = Buffer.from(secretFingerprint(s));
    const r = rotations.find((x) => fp.equals(Buffer.from(x.oldFp)));
    if (r !== undefined) {
      s = openRotation(r, s);
      moved = true;
    }
  }
  return s;
}

export function encodeSecretsPayload(r: SecretRotation): Uint8Array {
  return packCanonical([VERSION, 'rotate', r.isolatedName, r.isolatedId, r.oldFp, r.newFp, r.salt, r.iv, r.sealed]);
}

function bin(v: unknown, n: number | undefined, field: string, bad: (f: string, why: string) => never): Uint8Array {
  if (!(v instanceof Uint8Array) || (n !== undefined && v.length !== n) || v.length > 1024) bad(field, n !== undefined ? `expected ${n} bytes` : 'expected bytes');
  return v;
}

function rotationOf(t: readonly unknown[], bad: (f: string, why: string) => never): SecretRotation {
  const [name, id, oldFp, newFp, salt, iv, sealed] = t;
  if (typeof name !== 'string' || name === '' || name.length > 256) bad('isolatedName', 'expected a node name');
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) bad('isolatedId', 'expected a node id');
  return {
    isolatedName: name, isolatedId: id, oldFp: bin(oldFp, FP_BYTES, 'oldFp', bad), newFp: bin(newFp, FP_BYTES, 'newFp', bad),
    salt: bin(salt, 16, 'salt', bad), iv: bin(iv, 12, 'iv', bad), sealed: bin(sealed, undefined, 'sealed', bad),
  };
}

export function decodeSecretsPayload(payload: Uint8Array): SecretRotation {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('secrets', `not valid msgpack (${(e as Error).message})`);
  }
  const bad = (f: string, why: string): never => {
    throw new InvalidCommandError(`secrets.${f}`, why);
  };
  if (!Array.isArray(raw) || raw[0] !== VERSION || raw[1] !== 'rotate' || raw.length !== 9) bad('payload', `expected [${VERSION}, "rotate", …7 fields]`);
  return rotationOf((raw as unknown[]).slice(2), bad);
}

export class SecretsMachine implements StateMachine<SecretRotation> {
  readonly id = SECRETS_MACHINE_ID;
  #rotations: SecretRotation[] = [];
  /** Called at apply (in the loop) and after a restore: the node switches its secret (src/node/isolate.ts). */
  onChange: ((rotations: readonly SecretRotation[]) => void) | undefined;

  /** The empty state has no snapshot section (a legacy snapshot may leave it out). */
  isEmpty(): boolean {
    return this.#rotations.length === 0;
  }

  get rotations(): readonly SecretRotation[] {
    return this.#rotations;
  }

  /** Ids of every node isolated in the kept rotations. */
  isolatedIds(): number[] {
    return this.#rotations.map((r) => r.isolatedId);
  }

  decode(payload: Uint8Array): SecretRotation {
    return decodeSecretsPayload(payload);
  }

  fingerprint(c: SecretRotation): string {
    return createHash('sha256').update(SECRETS_MACHINE_ID).update(encodeSecretsPayload(c)).digest('hex').slice(0, 32);
  }

  apply(c: SecretRotation, _ctx: ApplyContext): WriteResult {
    this.#rotations = [...this.#rotations, c].slice(-ROTATIONS_KEPT);
    this.onChange?.(this.#rotations);
    return { revision: 0 };
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes();
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  #bytes(): Uint8Array {
    if (this.#rotations.length === 0) return new Uint8Array(0);
    return packCanonical([VERSION, this.#rotations.map((r) => [r.isolatedName, r.isolatedId, r.oldFp, r.newFp, r.salt, r.iv, r.sealed])]);
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const s = await readState(chunks);
    return () => {
      this.#rotations = s;
      this.onChange?.(this.#rotations);
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readState(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

async function readState(chunks: AsyncIterable<Uint8Array>): Promise<SecretRotation[]> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
    if (total > 1024 * 1024) throw new SnapshotCorruptError(0, 'secrets', 'section larger than 1 MiB');
  }
  if (total === 0) return [];
  const buf = Buffer.concat(parts);
  let raw: unknown;
  try {
    raw = unpackCanonical(buf);
  } catch (e) {
    throw new SnapshotCorruptError(0, 'secrets', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 2) throw new SnapshotCorruptError(0, 'secrets', 'expected [version, rotations]');
  if (raw[0] !== VERSION) throw new SnapshotVersionError(Number(raw[0]), VERSION);
  if (!Array.isArray(raw[1]) || raw[1].length > ROTATIONS_KEPT) throw new SnapshotCorruptError(0, 'secrets.rotations', `expected at most ${ROTATIONS_KEPT} rotations`);
  const bad = (f: string, why: string): never => {
    throw new SnapshotCorruptError(0, `secrets.rotations.${f}`, why);
  };
  return (raw[1] as unknown[]).map((t) => {
    if (!Array.isArray(t) || t.length !== 7) bad('', 'expected 7 fields');
    return rotationOf(t as unknown[], bad);
  });
}
