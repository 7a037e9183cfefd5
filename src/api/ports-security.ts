// What the API needs from a node for managed tokens and the audit log (SPEC
// §4 `/v1/tokens`, `/v1/audit`): a separate port beside ClusterControl and
// KvService. The node implements it over its replicated "tokens" and "audit"
// machines (src/node/security.ts).
import type { Role } from './auth.js';

export interface TokenInfo {
  readonly name: string;
  readonly role: Role;
  /** ISO times. */
  readonly createdAt: string;
  readonly expiresAt: string | null;
  readonly createdBy: string;
  readonly expired: boolean;
}

export interface CreatedToken {
  /** The bearer token, in full: shown once, never stored. */
  readonly token: string;
  readonly info: TokenInfo;
}

/** One audited action; `actor` is the token's name, `address` the client's. */
export interface AuditInput {
  readonly actor: string;
  readonly action: string;
  readonly target?: string | undefined;
  readonly address: string;
  /** HTTP status answered; 0 for actions not made over HTTP. */
  readonly status: number;
  /** `ok` or the error code. */
  readonly result: string;
  readonly detail?: string | undefined;
}

export interface AuditView {
  readonly seq: number;
  readonly index: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string | null;
  readonly address: string;
  readonly node: string;
  readonly status: number;
  readonly result: string;
  readonly detail: string | null;
}

/** The automatic cluster CA as this node sees it (GET /v1/ca; security.tls "auto" off loopback). */
export interface CaInfo {
  /** The current period (root) number and the rotation period. */
  readonly period: number;
  readonly periodSeconds: number;
  /** The CA epoch (`quorate ca rotate` moves it), and the previous one while it is still trusted (the rotation's grace), else null. */
  readonly epoch: number;
  readonly graceEpoch: number | null;
  /** The roots trusted now (previous, current, next period of each trusted epoch), public certificates. */
  readonly roots: readonly { readonly period: number; readonly epoch: number; readonly fingerprint: string; readonly notBefore: string; readonly notAfter: string; readonly pem: string }[];
  readonly nodeCertificate: { readonly notAfter: string; readonly issuedFromPeriod: number; readonly issuedFromEpoch: number };
  /** A reference to the cluster secret the roots derive from (ha-state.json Token), never the secret. */
  readonly token: string;
  /** While a `ca rotate` is in its grace: the new epoch and the members not yet seen with a certificate of it (as this node saw them; the leader's view decides). */
  readonly pending?: { readonly epoch: number; readonly waitingFor: readonly string[] } | null;
}

export interface SecurityPort {
  /** The cluster CA, when this node uses it (undefined: security.tls is not "auto", or the cluster is loopback-only). */
  caInfo?(): CaInfo | undefined;
  /** `quorate ca rotate`, on the leader: move the cluster CA to its next epoch (./src/node/ca-rotate.ts). */
  caRotate?(): Promise<{ readonly epoch: number; readonly message: string }>;
  /** The replicated token whose SHA-256 this is, unless expired or unknown. */
  verifyToken(sha256: Buffer): { readonly name: string; readonly role: Role } | undefined;
  /** The replicated tokens (never their secrets). */
  listTokens(): readonly TokenInfo[];
  /** Leader only (not_leader otherwise): creates a token and waits until it applied. */
  createToken(req: { readonly name: string; readonly role: Role; readonly ttlMs: number | undefined; readonly createdBy: string }): Promise<CreatedToken>;
  /** Leader only: revokes by name; false when there is no such token. */
  revokeToken(name: string): Promise<boolean>;
  /**
   * Records one audit entry, in the background: proposed on the leader, or
   * sent to it (authenticated with the cluster secret) from another node.
   * Never throws; a failure to record is logged.
   */
  recordAudit(entry: AuditInput): void;
  /** The newest `limit` audit records of this node's applied state, oldest first. */
  audit(limit: number | undefined): { readonly records: readonly AuditView[]; readonly seq: number; readonly appliedIndex: number };
  /** An audit entry another node sent here: checks its signature (cluster secret) and records it. False: bad signature. */
  acceptForwardedAudit(body: Buffer, signature: string): boolean;
  /** Signs a request this node forwards (cluster secret, with this node's name and the send time). */
  signForward(c: { readonly method: string; readonly url: string; readonly forwardedFor: string }): { node: string; sentAt: number; signature: string };
  /** Checks a forwarded request's signature and send time (clocks within 5 minutes). False: not signed by a current member. */
  verifyForward(c: { readonly node: string; readonly sentAt: number; readonly method: string; readonly url: string; readonly forwardedFor: string }, signature: string): boolean;
}
