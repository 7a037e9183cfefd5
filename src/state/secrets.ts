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
// [1, rotations], no bytes for the empty state.
//
// Feature level 4 (`quorate ca rotate`, src/node/ca-rotate.ts) adds the
// cluster CA's epoch: [2, "reroot", epoch] moves it from epoch-1 to epoch and
// opens a grace in which epoch-1 stays trusted; [2, "reroot-done", epoch]
// ends that grace (proposed by the leader once every member showed a
// certificate of `epoch`). A reroot while a grace is open, or not to the next
// epoch, and a reroot-done for another epoch, apply as no-ops (two leaders'
// proposals race harmlessly). Snapshot section with an epoch:
// [2, rotations, epoch, graceEpoch | nil]; without one it stays [1, rotations]
// (what a level-3 member reads).
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

/** The feature level whose members apply the CA epoch commands (./secrets.ts header). */
export const CA_EPOCH_FEATURE_LEVEL = 4;
const CA_VERSION = 2;
const MAX_EPOCH = 2 ** 31;

/** `quorate ca rotate`'s commands: move to CA epoch `epoch` (grace opens), or end the grace of `epoch`. */
export interface CaEpochCommand {
  readonly kind: 'reroot' | 'reroot-done';
  readonly epoch: number;
}
export type SecretsCommand = SecretRotation | CaEpochCommand;

const isCaCommand = (c: SecretsCommand): c is CaEpochCommand => 'kind' in c;

export function encodeCaEpochPayload(c: CaEpochCommand): Uint8Array {
  return packCanonical([CA_VERSION, c.kind, c.epoch]);
}

/** Decodes any secrets command: a rotation (version 1) or a CA epoch command (version 2, feature level 4). */
export function decodeSecretsCommand(payload: Uint8Array): SecretsCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('secrets', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== CA_VERSION) return decodeSecretsPayload(payload);
  if (raw.length !== 3 || (raw[1] !== 'reroot' && raw[1] !== 'reroot-done')) {
    throw new InvalidCommandError('secrets.payload', `expected [${CA_VERSION}, "reroot" | "reroot-done", epoch]`);
  }
  const epoch: unknown = raw[2];
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1 || epoch > MAX_EPOCH) {
    throw new InvalidCommandError('secrets.epoch', `expected an integer from 1 to ${MAX_EPOCH}, got ${JSON.stringify(epoch)}`);
  }
  return { kind: raw[1], epoch };
}

/** The cluster CA's epoch and the one still trusted while a `ca rotate` is in grace. */
export interface CaEpochState {
  readonly epoch: number;
  readonly graceEpoch: number | undefined;
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

export class SecretsMachine implements StateMachine<SecretsCommand> {
  readonly id = SECRETS_MACHINE_ID;
  #rotations: SecretRotation[] = [];
  #ca: CaEpochState = { epoch: 0, graceEpoch: undefined };
  /** Called at apply (in the loop) and after a restore: the node switches its secret (src/node/isolate.ts). */
  onChange: ((rotations: readonly SecretRotation[]) => void) | undefined;
  /** Called when the CA epoch or its grace changed (apply, restore): the node re-issues (src/node/ca-rotate.ts). */
  onCaChange: ((ca: CaEpochState) => void) | undefined;

  /** The empty state has no snapshot section (a legacy snapshot may leave it out). */
  isEmpty(): boolean {
    return this.#rotations.length === 0 && this.#ca.epoch === 0;
  }

  get ca(): CaEpochState {
    return this.#ca;
  }

  get rotations(): readonly SecretRotation[] {
    return this.#rotations;
  }

  /** Ids of every node isolated in the kept rotations. */
  isolatedIds(): number[] {
    return this.#rotations.map((r) => r.isolatedId);
  }

  decode(payload: Uint8Array): SecretsCommand {
    return decodeSecretsCommand(payload);
  }

  fingerprint(c: SecretsCommand): string {
    return createHash('sha256').update(SECRETS_MACHINE_ID).update(isCaCommand(c) ? encodeCaEpochPayload(c) : encodeSecretsPayload(c)).digest('hex').slice(0, 32);
  }

  apply(c: SecretsCommand, _ctx: ApplyContext): WriteResult {
    if (isCaCommand(c)) {
      const ca = this.#ca;
      if (c.kind === 'reroot' && c.epoch === ca.epoch + 1 && ca.graceEpoch === undefined) this.#ca = { epoch: c.epoch, graceEpoch: ca.epoch };
      else if (c.kind === 'reroot-done' && c.epoch === ca.epoch && ca.graceEpoch !== undefined) this.#ca = { epoch: ca.epoch, graceEpoch: undefined };
      else return { revision: 0 };
      this.onCaChange?.(this.#ca);
      return { revision: 0 };
    }
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
    if (this.isEmpty()) return new Uint8Array(0);
    const rotations = this.#rotations.map((r) => [r.isolatedName, r.isolatedId, r.oldFp, r.newFp, r.salt, r.iv, r.sealed]);
    if (this.#ca.epoch === 0) return packCanonical([VERSION, rotations]);
    return packCanonical([CA_VERSION, rotations, this.#ca.epoch, this.#ca.graceEpoch ?? null]);
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const s = await readState(chunks);
    return () => {
      this.#rotations = s.rotations;
      const caChanged = s.ca.epoch !== this.#ca.epoch || s.ca.graceEpoch !== this.#ca.graceEpoch;
      this.#ca = s.ca;
      this.onChange?.(this.#rotations);
      if (caChanged) this.onCaChange?.(this.#ca);
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readState(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

async function readState(chunks: AsyncIterable<Uint8Array>): Promise<{ rotations: SecretRotation[]; ca: CaEpochState }> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
    if (total > 1024 * 1024) throw new SnapshotCorruptError(0, 'secrets', 'section larger than 1 MiB');
  }
  if (total === 0) return { rotations: [], ca: { epoch: 0, graceEpoch: undefined } };
  const buf = Buffer.concat(parts);
  let raw: unknown;
  try {
    raw = unpackCanonical(buf);
  } catch (e) {
    throw new SnapshotCorruptError(0, 'secrets', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length < 2) throw new SnapshotCorruptError(0, 'secrets', 'expected [version, rotations, …]');
  if (raw[0] !== VERSION && raw[0] !== CA_VERSION) throw new SnapshotVersionError(Number(raw[0]), CA_VERSION);
  if (raw.length !== (raw[0] === VERSION ? 2 : 4)) throw new SnapshotCorruptError(0, 'secrets', raw[0] === VERSION ? 'expected [1, rotations]' : 'expected [2, rotations, epoch, graceEpoch]');
  let ca: CaEpochState = { epoch: 0, graceEpoch: undefined };
  if (raw[0] === CA_VERSION) {
    const [, , epoch, grace] = raw as unknown[];
    if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1 || epoch > MAX_EPOCH) throw new SnapshotCorruptError(0, 'secrets.epoch', 'expected a positive integer');
    if (grace !== null && grace !== epoch - 1) throw new SnapshotCorruptError(0, 'secrets.graceEpoch', `expected nil or ${epoch - 1}`);
    ca = { epoch, graceEpoch: grace === null ? undefined : epoch - 1 };
  }
  if (!Array.isArray(raw[1]) || raw[1].length > ROTATIONS_KEPT) throw new SnapshotCorruptError(0, 'secrets.rotations', `expected at most ${ROTATIONS_KEPT} rotations`);
  const bad = (f: string, why: string): never => {
    throw new SnapshotCorruptError(0, `secrets.rotations.${f}`, why);
  };
  const rotations = (raw[1] as unknown[]).map((t) => {
    if (!Array.isArray(t) || t.length !== 7) bad('', 'expected 7 fields');
    return rotationOf(t as unknown[], bad);
  });
  return { rotations, ca };
}
