// Managed API tokens and the audit log on a node: the API's SecurityPort
// (src/api/ports-security.ts) over the replicated "tokens" and "audit"
// machines (src/state/tokens.ts, src/state/audit.ts).
//
// Tokens: the leader creates them (a random secret, only its SHA-256 goes in
// the log) and revokes them; every node verifies against its applied copy.
//
// Audit entries are recorded in the background and never fail the action
// they describe: on the leader they are proposed; on another node they are
// sent to the leader's `POST /v1/audit` signed with the cluster secret
// (HMAC-SHA256, with the send time: the leader refuses stale or unsigned
// ones). Undelivered entries wait in a bounded queue and are retried.
// `record()` is the one call other features use (backups, drills, rotation).
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditInput, AuditView, CaInfo, CreatedToken, SecurityPort, TokenInfo } from '../api/ports-security.js';
import type { Role } from '../api/auth.js';
import {
  AUDIT_FIELD_MAX, AUDIT_MACHINE_ID, TOKENS_MACHINE_ID, TOKENS_MAX,
  encodeAuditPayload, encodeEnvelope, encodeTokensPayload,
  type ApplyResult, type AuditMachine, type AuditRecord, type StoredToken, type TokensMachine,
} from '../state/index.js';
import { NodeError } from './errors.js';

/** Prefix of every managed token (so a leaked one is recognisable in logs and scanners). */
export const TOKEN_PREFIX = 'qrt_';
/** A forwarded audit entry older (or newer) than this is refused. */
const FORWARD_MAX_SKEW_MS = 5 * 60_000;
/** Entries waiting to be recorded at most (older ones are dropped, with a warning). */
const QUEUE_MAX = 1000;
const RETRY_MS = 1000;
const MAX_ATTEMPTS = 60;

export interface NodeSecurityOptions {
  readonly log: Logger;
  readonly nodeName: string;
  readonly tokens: TokensMachine;
  readonly audit: AuditMachine;
  readonly clusterSecret: Uint8Array;
  /** Bound of the audit log (carried by each entry). */
  readonly auditMax: number;
  isLeader(): boolean;
  notLeader(): Error;
  featureLevel(): number;
  appliedIndex(): number;
  leaderApiUrl(): string | undefined;
  /** Proposes an entry on this node (the leader) and waits until it applied. */
  propose(entry: Uint8Array): Promise<ApplyResult>;
  now?: () => number;
  /** The automatic cluster CA's view (./tls-auto.ts), when used. */
  ca?: () => CaInfo | undefined;
  /** `quorate ca rotate` on this node, the leader (./ca-rotate.ts). */
  caRotate?: () => Promise<{ readonly epoch: number; readonly message: string }>;
}

interface Pending {
  readonly entry: AuditInput & { readonly node: string };
  readonly key: string;
  attempts: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const cut = (s: string): string => (s.length > AUDIT_FIELD_MAX ? `${s.slice(0, AUDIT_FIELD_MAX - 1)}…` : s);
const cutOpt = (s: string | undefined): string | undefined => (s === undefined ? undefined : cut(s));

export function tokenSha256(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function auditSignature(secret: Uint8Array, body: Buffer | string): string {
  return createHmac('sha256', secret).update('quorate-audit-v1\n').update(body).digest('hex');
}

/** What a forwarding node signs: who forwards, when, and the request line it forwards with the client's address. */
export interface ForwardClaim {
  readonly node: string;
  readonly sentAt: number;
  readonly method: string;
  readonly url: string;
  readonly forwardedFor: string;
}

export function forwardSignature(secret: Uint8Array, c: ForwardClaim): string {
  return createHmac('sha256', secret).update('quorate-forward-v1\n').update([c.node, String(c.sentAt), c.method, c.url, c.forwardedFor].join('\n')).digest('hex');
}

export class NodeSecurity implements SecurityPort {
  readonly #o: NodeSecurityOptions;
  readonly #now: () => number;
  readonly #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing = false;
  #closed = false;

  constructor(o: NodeSecurityOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#queue.length > 0) this.#o.log.warn({ event: 'audit_undelivered', entries: this.#queue.length }, `${this.#queue.length} audit entries were not recorded before the node stopped`);
  }

  #info(t: StoredToken): TokenInfo {
    return {
      name: t.name, role: t.role, createdAt: iso(t.createdAt), expiresAt: t.expiresAt === undefined ? null : iso(t.expiresAt),
      createdBy: t.createdBy, expired: t.expiresAt !== undefined && t.expiresAt <= this.#now(),
    };
  }

  caInfo(): CaInfo | undefined {
    return this.#o.ca?.();
  }

  caRotate(): Promise<{ readonly epoch: number; readonly message: string }> {
    const rotate = this.#o.caRotate;
    // external-shared: the CA's epochs live in the replicated secrets of a local-sync cluster, which this mode does not have.
    if (rotate === undefined) return Promise.reject(new NodeError('feature_unavailable', 'rotating the cluster CA is not available with database.mode "external-shared" in this version: its peers keep the CA they started with; see docs/operations.md "External-shared mode"'));
    return rotate();
  }

  verifyToken(sha256: Buffer): { name: string; role: Role } | undefined {
    const t = this.#o.tokens.byHash(sha256);
    if (t === undefined || (t.expiresAt !== undefined && t.expiresAt <= this.#now())) return undefined;
    return { name: t.name, role: t.role };
  }

  listTokens(): readonly TokenInfo[] {
    return this.#o.tokens.list().map((t) => this.#info(t));
  }

  #checkLevel(what: string): void {
    const level = this.#o.featureLevel();
    if (level < 2) {
      throw new NodeError('feature_unavailable', `${what} needs cluster feature level 2 (this cluster is at ${level}: some member runs the previous release or has not been heard from); upgrade every member, then retry`);
    }
  }

  async createToken(req: { name: string; role: Role; ttlMs: number | undefined; createdBy: string }): Promise<CreatedToken> {
    const o = this.#o;
    if (!o.isLeader()) throw o.notLeader();
    this.#checkLevel('managed API tokens');
    if (o.tokens.get(req.name) !== undefined) {
      throw new NodeError('token_exists', `a token named "${req.name}" exists; choose another name, or revoke it first (\`quorate token revoke ${req.name}\`)`);
    }
    const live = o.tokens.list().filter((t) => t.expiresAt === undefined || t.expiresAt > this.#now()).length;
    if (live >= TOKENS_MAX) throw new NodeError('too_many_tokens', `the cluster holds ${TOKENS_MAX} tokens (the limit); revoke unused ones first (\`quorate token ls\`)`);
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const sha256 = tokenSha256(token);
    const now = this.#now();
    const expiresAt = req.ttlMs === undefined ? undefined : now + req.ttlMs;
    const payload = encodeTokensPayload({ op: 'create', name: req.name, role: req.role, sha256, expiresAt, createdBy: cut(req.createdBy) });
    await o.propose(encodeEnvelope({ machine: TOKENS_MACHINE_ID, at: now, payload }));
    const stored = o.tokens.byHash(sha256);
    if (stored === undefined || stored.name !== req.name) {
      throw new NodeError('token_exists', `a token named "${req.name}" was created at the same time by another request; choose another name`);
    }
    o.log.info({ event: 'token_created', name: req.name, role: req.role, expiresAt: expiresAt === undefined ? null : iso(expiresAt), by: req.createdBy }, `API token "${req.name}" (${req.role}) created`);
    return { token, info: this.#info(stored) };
  }

  async revokeToken(name: string): Promise<boolean> {
    const o = this.#o;
    if (!o.isLeader()) throw o.notLeader();
    this.#checkLevel('managed API tokens');
    if (o.tokens.get(name) === undefined) return false;
    await o.propose(encodeEnvelope({ machine: TOKENS_MACHINE_ID, at: this.#now(), payload: encodeTokensPayload({ op: 'revoke', name }) }));
    o.log.info({ event: 'token_revoked', name }, `API token "${name}" revoked`);
    return true;
  }

  audit(limit: number | undefined): { records: readonly AuditView[]; seq: number; appliedIndex: number } {
    return { records: this.#o.audit.records(limit).map(auditView), seq: this.#o.audit.seq, appliedIndex: this.#o.appliedIndex() };
  }

  /** Records one audit entry (the one call for every feature). Never throws. */
  recordAudit(entry: AuditInput): void {
    this.#enqueue({ ...entry, node: this.#o.nodeName }, randomUUID());
  }

  #enqueue(entry: AuditInput & { node: string }, key: string): void {
    if (this.#closed) return;
    if (this.#queue.length >= QUEUE_MAX) {
      const dropped = this.#queue.shift()!;
      this.#o.log.warn({ event: 'audit_dropped', action: dropped.entry.action, actor: dropped.entry.actor }, 'audit queue full: the oldest unrecorded entry was dropped');
    }
    this.#queue.push({ entry, key, attempts: 0 });
    void this.#flush();
  }

  signForward(c: Omit<ForwardClaim, 'node' | 'sentAt'>): { node: string; sentAt: number; signature: string } {
    const claim = { ...c, node: this.#o.nodeName, sentAt: this.#now() };
    return { node: claim.node, sentAt: claim.sentAt, signature: forwardSignature(this.#o.clusterSecret, claim) };
  }

  verifyForward(c: ForwardClaim, signature: string): boolean {
    const expected = Buffer.from(forwardSignature(this.#o.clusterSecret, c), 'hex');
    const got = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, 'hex') : Buffer.alloc(32);
    return timingSafeEqual(expected, got) && Math.abs(this.#now() - c.sentAt) <= FORWARD_MAX_SKEW_MS;
  }

  acceptForwardedAudit(body: Buffer, signature: string): boolean {
    const expected = Buffer.from(auditSignature(this.#o.clusterSecret, body), 'hex');
    const got = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, 'hex') : Buffer.alloc(32);
    if (!timingSafeEqual(expected, got)) return false;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      return false;
    }
    const s = (k: string): string | undefined => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
    const sentAt = o['sentAt'];
    if (typeof sentAt !== 'number' || Math.abs(this.#now() - sentAt) > FORWARD_MAX_SKEW_MS) return false;
    const actor = s('actor'), action = s('action'), address = s('address'), node = s('node'), result = s('result'), key = s('key');
    const status = o['status'];
    if (actor === undefined || action === undefined || action === '' || address === undefined || node === undefined || result === undefined || result === '' || key === undefined || typeof status !== 'number' || !Number.isSafeInteger(status) || status < 0 || status > 999) return false;
    this.#enqueue({ actor, action, target: s('target'), address, node, status, result, detail: s('detail') }, key);
    return true;
  }

  async #flush(): Promise<void> {
    if (this.#flushing || this.#closed) return;
    this.#flushing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const p = this.#queue[0]!;
        try {
          await this.#deliver(p);
          this.#queue.shift();
        } catch (err) {
          p.attempts++;
          if (p.attempts >= MAX_ATTEMPTS) {
            this.#queue.shift();
            this.#o.log.warn({ event: 'audit_dropped', action: p.entry.action, actor: p.entry.actor, err: (err as Error).message }, `an audit entry could not be recorded after ${MAX_ATTEMPTS} attempts and was dropped`);
            continue;
          }
          this.#timer ??= setTimeout(() => {
            this.#timer = undefined;
            void this.#flush();
          }, RETRY_MS);
          this.#timer.unref();
          return;
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #deliver(p: Pending): Promise<void> {
    const o = this.#o;
    const e = p.entry;
    if (o.featureLevel() < 2) throw new Error('the cluster feature level is below 2: audit entries wait until every member is upgraded');
    if (o.isLeader()) {
      const payload = encodeAuditPayload({ max: o.auditMax, actor: cut(e.actor), action: cut(e.action), target: cutOpt(e.target), address: cut(e.address), node: cut(e.node), status: e.status, result: cut(e.result), detail: cutOpt(e.detail) });
      await o.propose(encodeEnvelope({ machine: AUDIT_MACHINE_ID, at: this.#now(), idempotencyKey: `audit:${p.key}`, payload }));
      return;
    }
    const url = o.leaderApiUrl();
    if (url === undefined) throw new Error('no leader known');
    const body = JSON.stringify({ ...e, key: p.key, sentAt: this.#now() });
    const res = await fetch(`${url.replace(/\/$/, '')}/v1/audit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-quorate-audit-signature': auditSignature(o.clusterSecret, body) },
      body,
      signal: AbortSignal.timeout(5000),
    });
    await res.arrayBuffer();
    if (res.status !== 202) throw new Error(`the leader answered ${res.status}`);
  }
}

export function auditView(r: AuditRecord): AuditView {
  return {
    seq: r.seq, index: r.index, at: iso(r.at), actor: r.actor, action: r.action, target: r.target ?? null,
    address: r.address, node: r.node, status: r.status, result: r.result, detail: r.detail ?? null,
  };
}

