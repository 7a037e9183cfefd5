// The "tokens" machine: API bearer tokens with roles, replicated (SPEC §4
// `POST/GET /v1/tokens`, `DELETE /v1/tokens/{name}`). Only the SHA-256 of a
// token is stored; the token itself is shown once, by the node that created it.
// Every node verifies against its applied copy, so a token works on every node
// once its entry applies there, and a revoked one stops at the same moment.
//
// Commands (payload, msgpack, positional, absent optionals nil):
//   [1, 'create', name, role, sha256 (32 bytes, bin), expiresAt (ms)|nil, createdBy]
//   [1, 'revoke', name]
// `createdAt` is the entry's leader-stamped `at`. A create whose name exists
// already is a no-op (the leader checks first; a race leaves the first one).
// Before a create, tokens expired by the state clock are dropped; past
// TOKENS_MAX live tokens a create is a no-op (the leader refuses it first).
//
// Snapshot section: [1, [[name, role, sha256, createdAt, expiresAt|nil, createdBy]...] sorted by name],
// or no bytes for the empty state.
import { createHash } from 'node:crypto';
import { packCanonical, unpackCanonical } from './commands.js';
import { InvalidCommandError, SnapshotCorruptError, SnapshotVersionError } from './errors.js';
import type { ApplyContext, RestoreCommit, StateMachine } from './machines.js';
import type { WriteResult } from './results.js';
import { readSmallSection } from './small-section.js';

export const TOKENS_MACHINE_ID = 'tokens';
const VERSION = 1;
export const TOKEN_ROLES = ['reader', 'operator', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];
/** Live tokens kept at most. */
export const TOKENS_MAX = 1000;
/** Token names: what `quorate token revoke NAME` and the audit log show. */
export const TOKEN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export type TokensCommand =
  | { readonly op: 'create'; readonly name: string; readonly role: TokenRole; readonly sha256: Uint8Array; readonly expiresAt: number | undefined; readonly createdBy: string }
  | { readonly op: 'revoke'; readonly name: string };

export interface StoredToken {
  readonly name: string;
  readonly role: TokenRole;
  readonly sha256: Uint8Array;
  readonly createdAt: number;
  readonly expiresAt: number | undefined;
  readonly createdBy: string;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const isName = (v: unknown): v is string => typeof v === 'string' && TOKEN_NAME_RE.test(v);
const isRole = (v: unknown): v is TokenRole => (TOKEN_ROLES as readonly unknown[]).includes(v);
const isHash = (v: unknown): v is Uint8Array => v instanceof Uint8Array && v.length === 32;
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isActor = (v: unknown): v is string => typeof v === 'string' && v.length <= 256;

export function encodeTokensPayload(c: TokensCommand): Uint8Array {
  return packCanonical(c.op === 'create' ? [VERSION, 'create', c.name, c.role, c.sha256, c.expiresAt ?? null, c.createdBy] : [VERSION, 'revoke', c.name]);
}

export function decodeTokensPayload(payload: Uint8Array): TokensCommand {
  let raw: unknown;
  try {
    raw = unpackCanonical(payload);
  } catch (e) {
    throw new InvalidCommandError('tokens', `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw[0] !== VERSION) throw new InvalidCommandError('tokens', `expected [${VERSION}, op, ...]`);
  const [, op, name, role, sha256, expiresAt, createdBy] = raw as unknown[];
  if (!isName(name)) throw new InvalidCommandError('tokens.name', 'expected a token name');
  if (op === 'revoke' && raw.length === 3) return { op, name };
  if (op === 'create' && raw.length === 7) {
    if (!isRole(role)) throw new InvalidCommandError('tokens.role', 'expected reader, operator or admin');
    if (!isHash(sha256)) throw new InvalidCommandError('tokens.sha256', 'expected 32 bytes');
    if (expiresAt !== null && !isTime(expiresAt)) throw new InvalidCommandError('tokens.expiresAt', 'expected a time in ms or nil');
    if (!isActor(createdBy)) throw new InvalidCommandError('tokens.createdBy', 'expected a string');
    return { op, name, role, sha256, expiresAt: (expiresAt ?? undefined) as number | undefined, createdBy };
  }
  throw new InvalidCommandError('tokens', `unknown op or wrong arity: ${JSON.stringify(op)}`);
}

export class TokensMachine implements StateMachine<TokensCommand> {
  readonly id = TOKENS_MACHINE_ID;
  /** By name. */
  #byName = new Map<string, StoredToken>();
  /** By hex SHA-256. */
  #byHash = new Map<string, StoredToken>();

  isEmpty(): boolean {
    return this.#byName.size === 0;
  }

  /** Every stored token (expired ones too, until a create drops them), by name. */
  list(): readonly StoredToken[] {
    return [...this.#byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): StoredToken | undefined {
    return this.#byName.get(name);
  }

  /** The token whose SHA-256 this is, if any (expiry is the caller's to check against its clock). */
  byHash(sha256: Uint8Array): StoredToken | undefined {
    return this.#byHash.get(hex(sha256));
  }

  decode(payload: Uint8Array): TokensCommand {
    return decodeTokensPayload(payload);
  }

  fingerprint(command: TokensCommand): string {
    return createHash('sha256').update(TOKENS_MACHINE_ID).update(encodeTokensPayload(command)).digest('hex').slice(0, 32);
  }

  apply(c: TokensCommand, ctx: ApplyContext): WriteResult {
    if (c.op === 'revoke') {
      const t = this.#byName.get(c.name);
      if (t !== undefined) {
        this.#byName.delete(c.name);
        this.#byHash.delete(hex(t.sha256));
      }
      return { revision: 0 };
    }
    for (const t of [...this.#byName.values()]) {
      if (t.expiresAt !== undefined && t.expiresAt <= ctx.clockMs) {
        this.#byName.delete(t.name);
        this.#byHash.delete(hex(t.sha256));
      }
    }
    if (this.#byName.has(c.name) || this.#byHash.has(hex(c.sha256)) || this.#byName.size >= TOKENS_MAX) return { revision: 0 };
    const t: StoredToken = { name: c.name, role: c.role, sha256: c.sha256, createdAt: ctx.at, expiresAt: c.expiresAt, createdBy: c.createdBy };
    this.#byName.set(t.name, t);
    this.#byHash.set(hex(t.sha256), t);
    return { revision: 0 };
  }

  #bytes(): Uint8Array {
    if (this.isEmpty()) return new Uint8Array(0);
    return packCanonical([VERSION, this.list().map((t) => [t.name, t.role, t.sha256, t.createdAt, t.expiresAt ?? null, t.createdBy])]);
  }

  snapshot(): AsyncIterable<Uint8Array> {
    const bytes = this.#bytes();
    return (async function* () {
      if (bytes.length > 0) yield bytes;
    })();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    const list = await readTokens(chunks);
    return () => {
      this.#byName = new Map(list.map((t) => [t.name, t]));
      this.#byHash = new Map(list.map((t) => [hex(t.sha256), t]));
    };
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await readTokens(chunks);
  }

  checksum(): string {
    return createHash('sha256').update(this.#bytes()).digest('hex');
  }
}

async function readTokens(chunks: AsyncIterable<Uint8Array>): Promise<StoredToken[]> {
  const raw = await readSmallSection(chunks, TOKENS_MACHINE_ID, 4 * 1024 * 1024);
  if (raw === undefined) return [];
  const [v, list] = raw;
  if (v !== VERSION) throw new SnapshotVersionError(Number(v), VERSION);
  if (raw.length !== 2 || !Array.isArray(list)) throw new SnapshotCorruptError(0, 'tokens', 'expected [version, tokens]');
  const out: StoredToken[] = [];
  const names = new Set<string>();
  list.forEach((item: unknown, i) => {
    const f = `tokens[${i}]`;
    if (!Array.isArray(item) || item.length !== 6) throw new SnapshotCorruptError(0, f, 'expected [name, role, sha256, createdAt, expiresAt, createdBy]');
    const [name, role, sha256, createdAt, expiresAt, createdBy] = item as unknown[];
    if (!isName(name) || names.has(name)) throw new SnapshotCorruptError(0, `${f}.name`, 'expected a unique token name');
    if (!isRole(role)) throw new SnapshotCorruptError(0, `${f}.role`, 'expected reader, operator or admin');
    if (!isHash(sha256)) throw new SnapshotCorruptError(0, `${f}.sha256`, 'expected 32 bytes');
    if (!isTime(createdAt)) throw new SnapshotCorruptError(0, `${f}.createdAt`, 'expected a time in ms');
    if (expiresAt !== null && !isTime(expiresAt)) throw new SnapshotCorruptError(0, `${f}.expiresAt`, 'expected a time in ms or nil');
    if (!isActor(createdBy)) throw new SnapshotCorruptError(0, `${f}.createdBy`, 'expected a string');
    names.add(name);
    out.push({ name, role, sha256, createdAt, expiresAt: (expiresAt ?? undefined) as number | undefined, createdBy });
  });
  return out;
}
