// Bearer-token authentication and roles.
//
// Managed tokens (`quorate token create`, /v1/tokens) live in the replicated
// state and are checked through `replicated` (the node's SecurityPort).
// File tokens come from `<dataDir>/tokens.json` ([{token, role, name}], written by
// `quorate init`) plus the admin token file (`<dataDir>/admin.token`, or
// security.adminTokenFile). Both are re-read when they change: a stat at most
// once per `checkIntervalMs`, so rotating a token needs no restart. A file
// that becomes unreadable or malformed keeps the last good set (and is logged).
//
// Comparison is timing-safe: the presented token and every stored token are
// hashed to SHA-256 and compared with timingSafeEqual against ALL entries, so
// neither the length nor the position of a match leaks through timing.
import * as nodeCrypto from 'node:crypto';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { ApiError } from './errors.js';

export const ROLES = ['reader', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const RANK: Readonly<Record<Role, number>> = { reader: 0, operator: 1, admin: 2 };

export function roleAllows(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

export interface Principal {
  readonly name: string;
  readonly role: Role;
}

interface Entry extends Principal {
  readonly digest: Buffer;
}

interface FileState {
  /** mtime/size/inode fingerprint of the last read; '' = missing. */
  fingerprint: string;
  entries: Entry[];
}

export interface TokenStoreOptions {
  readonly tokensFile: string;
  readonly adminTokenFiles: readonly string[];
  readonly logger: Logger;
  /** How often the files are stat'ed for changes. Default 1000. */
  readonly checkIntervalMs?: number;
  /** Managed tokens in the replicated state (src/api/ports-security.ts), by SHA-256; checked after the files. */
  readonly replicated?: (sha256: Buffer) => Principal | undefined;
}

// Every request hashes its token: crypto.hash (Node.js 20.12 and later) does
// it in one call, without a Hash object (2.1 against 3.4 µs a token here).
const oneShot = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;
const digest = oneShot !== undefined
  ? (token: string): Buffer => oneShot('sha256', token, 'buffer')
  : (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** The digest cache's bounds: tokens this long at most (quorate's are 40–60 characters), this many of them. */
const DIGEST_CACHE_TOKEN_CHARS = 512;
const DIGEST_CACHE_ENTRIES = 1024;

function fingerprint(path: string): string {
  try {
    const s = statSync(path);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  } catch {
    return '';
  }
}

export class TokenStore {
  readonly #tokensFile: string;
  readonly #adminFiles: readonly string[];
  readonly #logger: Logger;
  readonly #checkIntervalMs: number;
  readonly #replicated: ((sha256: Buffer) => Principal | undefined) | undefined;
  readonly #files = new Map<string, FileState>();
  #lastCheckMs = -Infinity;
  #entries: Entry[] = [];
  /**
   * SHA-256 of the bearer tokens presented lately (a client sends the same
   * one with every request, and hashing it took 4 µs of the leader's ~70 per
   * write). Only digests: what a digest grants is looked up afresh each time,
   * so a revoked token stops working at once. Bounded: cleared when full.
   */
  readonly #digests = new Map<string, Buffer>();

  constructor(options: TokenStoreOptions) {
    this.#tokensFile = options.tokensFile;
    this.#adminFiles = [...new Set(options.adminTokenFiles)].filter((f) => f !== options.tokensFile);
    this.#logger = options.logger;
    this.#checkIntervalMs = options.checkIntervalMs ?? 1000;
    this.#replicated = options.replicated;
    this.refresh(true);
  }

  /** Number of tokens currently accepted. */
  get size(): number {
    this.refresh();
    return this.#entries.length;
  }

  /** Re-reads changed files (at most once per interval unless forced). */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.#lastCheckMs < this.#checkIntervalMs) return;
    this.#lastCheckMs = now;
    let changed = false;
    changed = this.#check(this.#tokensFile, (text) => this.#parseTokens(text)) || changed;
    for (const f of this.#adminFiles) changed = this.#check(f, (text) => this.#parseAdmin(text)) || changed;
    if (changed) this.#entries = [...this.#files.values()].flatMap((s) => s.entries);
  }

  #check(path: string, parse: (text: string) => Entry[]): boolean {
    const fp = fingerprint(path);
    const prev = this.#files.get(path);
    if (prev !== undefined && prev.fingerprint === fp) return false;
    if (fp === '') {
      this.#files.set(path, { fingerprint: '', entries: [] });
      if (prev !== undefined && prev.entries.length > 0) this.#logger.warn({ file: path }, 'token file removed; its tokens are no longer accepted');
      return true;
    }
    try {
      const entries = parse(readFileSync(path, 'utf8'));
      this.#files.set(path, { fingerprint: fp, entries });
      this.#logger.info({ file: path, tokens: entries.length }, 'token file loaded');
      return true;
    } catch (err) {
      // Keep the last good tokens: a half-written file must not lock operators out.
      this.#files.set(path, { fingerprint: fp, entries: prev?.entries ?? [] });
      this.#logger.warn({ file: path, err: (err as Error).message }, 'token file unreadable or malformed; keeping the previous tokens');
      return true;
    }
  }

  #parseTokens(text: string): Entry[] {
    const raw: unknown = JSON.parse(text);
    if (!Array.isArray(raw)) throw new Error('expected a JSON array of {token, role, name}');
    const out: Entry[] = [];
    const seen = new Map<string, number>();
    raw.forEach((item: unknown, i) => {
      const o = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
      const token = o['token'];
      const role = o['role'];
      const name = o['name'];
      if (typeof token !== 'string' || token.trim() === '') {
        this.#logger.warn({ file: this.#tokensFile, index: i }, `tokens[${i}].token: must be a non-empty string; entry ignored`);
        return;
      }
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
        this.#logger.warn({ file: this.#tokensFile, index: i }, `tokens[${i}].role: must be admin, operator or reader; entry ignored`);
        return;
      }
      const d = digest(token.trim());
      const first = seen.get(d.toString('hex'));
      if (first !== undefined) {
        // One token, two entries: which role would it have? The first entry keeps it; say so.
        this.#logger.warn({ file: this.#tokensFile, index: i }, `tokens[${i}].token: the same token as tokens[${first}] (each token must be listed once); entry ignored, tokens[${first}] applies`);
        return;
      }
      seen.set(d.toString('hex'), i);
      out.push({ name: typeof name === 'string' && name !== '' ? name : `token${i}`, role: role as Role, digest: d });
    });
    return out;
  }

  #parseAdmin(text: string): Entry[] {
    const token = text.trim();
    return token === '' ? [] : [{ name: 'admin', role: 'admin', digest: digest(token) }];
  }

  /** The principal for `Authorization: Bearer <token>`, or undefined. */
  verify(token: string): Principal | undefined {
    this.refresh();
    const d = this.#digestOf(token);
    let found: Entry | undefined;
    for (const e of this.#entries) {
      // No early exit: every entry is compared.
      if (timingSafeEqual(d, e.digest) && found === undefined) found = e;
    }
    if (found !== undefined) return { name: found.name, role: found.role };
    // Managed tokens: looked up by the SHA-256 of a high-entropy secret, so
    // the lookup's timing tells nothing usable about any stored token.
    return this.#replicated?.(d);
  }

  #digestOf(token: string): Buffer {
    let d = this.#digests.get(token);
    if (d !== undefined) return d;
    d = digest(token);
    if (token.length > DIGEST_CACHE_TOKEN_CHARS) return d;
    if (this.#digests.size >= DIGEST_CACHE_ENTRIES) this.#digests.clear();
    this.#digests.set(token, d);
    return d;
  }

  /**
   * Checks the Authorization header against `need`. Throws ApiError 401
   * (missing/invalid token, with WWW-Authenticate) or 403 (role too low).
   */
  authorize(header: string | undefined, need: Role): Principal {
    const challenge = { 'www-authenticate': 'Bearer realm="quorate"' };
    const m = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (m === null) {
      const why = header === undefined ? 'missing Authorization header' : 'Authorization header is not "Bearer <token>"';
      throw new ApiError('unauthorized', `${why}: send Authorization: Bearer <token> (the admin token is in admin.token in the node's data dir)`, {}, challenge);
    }
    const p = this.verify(m[1]!);
    if (p === undefined) {
      throw new ApiError('unauthorized', 'invalid bearer token (revoked, expired or unknown: managed tokens are listed by `quorate token ls`; file tokens are read from tokens.json and admin.token in the data dir)', {}, {
        'www-authenticate': 'Bearer realm="quorate", error="invalid_token"',
      });
    }
    if (!roleAllows(p.role, need)) {
      throw new ApiError('forbidden', `this call needs role ${need}; token "${p.name}" has role ${p.role}`, { requiredRole: need, role: p.role });
    }
    return p;
  }
}
