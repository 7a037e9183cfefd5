// security.tls "auto" on a node: its key and certificate from the cluster CA
// (./cluster-ca.ts), kept current. Files in `<dataDir>/tls/` (dir 0700):
//   node.key  this node's EC P-256 private key, PKCS#8 PEM, mode 0600, made once, never sent anywhere
//   node.crt  its certificate from the current root (re-issued each period and whenever the secret changes)
//   ca.crt    the roots trusted now (what `quorate ca export` prints; clients' --ca)
// A timer re-checks the period and the cluster secret (rotated in place by
// isolate, ./isolate.ts); on a change it issues a new certificate, writes the
// files and hands the new material to its listeners (the peer transport, the
// HTTPS API). A loopback-only cluster keeps plain TCP (as before): `forNode`
// then answers undefined.
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { fetchTrusting } from '../api/ca-fetch.js';
import type { Logger } from 'pino';
import type { CaInfo } from '../api/ports-security.js';
import { isLoopback, type QuorateConfig } from '../config/index.js';
import { atomicWriteFile } from '../storage/fsutil.js';
import type { TlsAuto, TlsMaterial } from '../transport/security.js';
import {
  certificateProblem, clusterTokenRef, issueNodeCert, memberIdOf, newNodeKeyPem, periodOf, trustedRoots,
  type NodeIdentity, type RootCa,
} from './cluster-ca.js';
import type { Bootstrap } from './members.js';


const hostOf = (u: string): string => new URL(u.includes('://') ? u : `tcp://${u}`).hostname.replace(/^\[|\]$/g, '');

/** security.apiTls "auto": the API serves the node's certificate files (written before the API starts). */
export function autoApiTlsFiles(config: QuorateConfig): { certFile: string; keyFile: string } {
  return { certFile: join(config.node.dataDir, 'tls', 'node.crt'), keyFile: join(config.node.dataDir, 'tls', 'node.key') };
}

/**
 * security.apiTls "auto" in the daemon: the CA certificates its https calls to other nodes trust (Node's store
 * plus the cluster CA's roots, following re-issues), and the process's global fetch made to trust them (Node 20's
 * fetch takes no CA option; see src/api/ca-fetch.ts). One node per agent process, so the global is this node's.
 */
export function trustClusterCa(current: () => AutoTls | undefined): () => readonly (string | Buffer)[] {
  let seen: TlsMaterial | undefined;
  let list: readonly string[] = rootCertificates;
  const trust = (): readonly string[] => {
    const m = current()?.material();
    if (m !== undefined && m !== seen) {
      seen = m;
      list = [...rootCertificates, ...(m.ca as string[])];
    }
    return list;
  };
  globalThis.fetch = fetchTrusting(trust);
  return trust;
}

/** True when security.tls "auto" must use the cluster CA: some peer-facing address is not loopback, or the API is served with a CA certificate (apiTls "auto"). */
export function needsClusterCa(config: QuorateConfig, bootstrap: { readonly members: readonly { readonly peerUrl: string }[] }): boolean {
  if (config.security.tls !== 'auto') return false;
  if (config.security.apiTls === 'auto') return true;
  const hosts = [config.node.advertisePeerUrl, config.node.peerAddress, ...config.cluster.peerEndpoints, ...bootstrap.members.map((m) => m.peerUrl)].map(hostOf);
  return hosts.some((h) => !isLoopback(h));
}

export class AutoTls {
  readonly #log: Logger;
  readonly #dir: string;
  readonly #id: NodeIdentity;
  readonly #periodMs: number;
  /** The node's cluster secret: the same array isolate overwrites in place on rotation. */
  readonly #secret: Uint8Array;
  readonly #keyPem: string;
  readonly #listeners: ((m: TlsMaterial) => void)[] = [];
  #material!: TlsMaterial;
  #roots: RootCa[] = [];
  #certPem = '';
  #issuedPeriod = 0;
  #secretRef = '';
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  readonly #now: () => number;

  private constructor(o: { log: Logger; dir: string; id: NodeIdentity; periodMs: number; secret: Uint8Array; keyPem: string; now: () => number }) {
    this.#log = o.log;
    this.#dir = o.dir;
    this.#id = o.id;
    this.#periodMs = o.periodMs;
    this.#secret = o.secret;
    this.#keyPem = o.keyPem;
    this.#now = o.now;
  }

  /** The node's automatic TLS, or undefined when security.tls is not "auto" or the cluster is loopback-only (plain TCP, logged). */
  static async forNode(config: QuorateConfig, bootstrap: Pick<Bootstrap, 'members'>, nodeId: number, secret: Uint8Array, logger: Logger, now: () => number = Date.now): Promise<AutoTls | undefined> {
    if (config.security.tls !== 'auto') return undefined;
    if (!needsClusterCa(config, bootstrap)) {
      logger.warn({ node: config.node.nodeName, event: 'tls_auto_loopback' }, 'security.tls "auto" on a loopback-only cluster: peer traffic is plain TCP on this machine');
      return undefined;
    }
    // The advertised hosts, and the peer bind address when it is a specific one (peers may list it in peerEndpoints).
    const bind = hostOf(config.node.peerAddress);
    const hosts = [...new Set([config.node.advertisePeerUrl, config.node.advertiseApiUrl].map(hostOf).concat(bind === '0.0.0.0' || bind === '::' ? [] : [bind]))];
    const id: NodeIdentity = { haId: config.cluster.haId, nodeId, nodeName: config.node.nodeName, hosts };
    const t = await AutoTls.open({ log: logger.child({ node: config.node.nodeName }), dir: join(config.node.dataDir, 'tls'), id, periodMs: config.security.caRotationSeconds * 1000, secret, now });
    return t;
  }

  /** Opens (or creates) the key in `dir` and issues the first certificate. */
  static async open(o: { log: Logger; dir: string; id: NodeIdentity; periodMs: number; secret: Uint8Array; now?: () => number }): Promise<AutoTls> {
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    await chmod(o.dir, 0o700);
    const keyFile = join(o.dir, 'node.key');
    let keyPem: string;
    if (existsSync(keyFile)) {
      keyPem = await readFile(keyFile, 'utf8');
      await chmod(keyFile, 0o600);
    } else {
      keyPem = await newNodeKeyPem();
      await atomicWriteFile(keyFile, [Buffer.from(keyPem)], 0o600);
    }
    const t = new AutoTls({ ...o, keyPem, now: o.now ?? Date.now });
    await t.#issue('start');
    return t;
  }

  /** What the peer transport is given: tls {auto} with the current material. */
  transportSetting(): TlsAuto {
    return { auto: this.#material };
  }

  material(): TlsMaterial {
    return this.#material;
  }

  /** Called with the new material after every re-issue. */
  onMaterial(listener: (m: TlsMaterial) => void): void {
    this.#listeners.push(listener);
  }

  /** The peer transport's check: the dialer's certificate must be bound to the id it claims. */
  peerCertificateProblem(id: number, subjectAltName: string | undefined): string | undefined {
    const named = memberIdOf(subjectAltName, this.#id.haId);
    if (named === id) return undefined;
    return named === undefined
      ? `the client certificate names no member of cluster ${JSON.stringify(this.#id.haId)} (subjectAltName ${subjectAltName ?? 'none'}); it claimed node id ${id}`
      : `the client certificate belongs to member id ${named}, but the dialer claimed id ${id}: a member may not claim another member's id`;
  }

  /** Starts the renewal timer: checks every min(period/20, 60 s). */
  start(): void {
    const every = Math.max(500, Math.min(60_000, Math.floor(this.#periodMs / 20)));
    this.#timer = setInterval(() => void this.refresh(), every);
    this.#timer.unref();
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Re-issue when the period or the cluster secret changed (rotation, isolate). Never throws (logs). */
  refresh(): Promise<void> {
    const period = periodOf(this.#now(), this.#periodMs);
    const ref = clusterTokenRef(this.#secret);
    if (period === this.#issuedPeriod && ref === this.#secretRef) return Promise.resolve();
    this.#refreshing ??= this.#issue(ref !== this.#secretRef ? 'cluster_secret_rotated' : 'period').catch((e: unknown) => {
      this.#log.error({ event: 'tls_certificate_failed', err: (e as Error).message }, `could not issue this node's certificate from the cluster CA: ${(e as Error).message}; retrying`);
    }).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #issue(reason: string): Promise<void> {
    const now = this.#now();
    const secret = new Uint8Array(this.#secret);
    const roots = await trustedRoots(secret, this.#id.haId, now, this.#periodMs);
    const current = roots[1]!;
    const certPem = await issueNodeCert(current, this.#id, this.#keyPem, now);
    const problem = certificateProblem(certPem, roots, this.#id, now);
    if (problem !== undefined) throw new Error(`the certificate just issued is not usable: ${problem}`);
    const bundle = roots.map((r) => r.pem).join('');
    await atomicWriteFile(join(this.#dir, 'node.crt'), [Buffer.from(certPem)], 0o644);
    await atomicWriteFile(join(this.#dir, 'ca.crt'), [Buffer.from(bundle)], 0o644);
    this.#roots = roots;
    this.#certPem = certPem;
    this.#issuedPeriod = current.period;
    this.#secretRef = clusterTokenRef(secret);
    this.#material = { cert: certPem, key: this.#keyPem, ca: roots.map((r) => r.pem) };
    this.#log.info({ event: 'tls_certificate_issued', reason, period: current.period, notAfter: current.notAfter.toISOString(), roots: roots.map((r) => r.fingerprint.slice(0, 16)) },
      `node certificate issued from cluster CA root ${current.period} (${reason}); valid until ${current.notAfter.toISOString()}`);
    for (const l of this.#listeners) {
      try {
        l(this.#material);
      } catch (e) {
        this.#log.error({ event: 'tls_material_listener_failed', err: (e as Error).message }, `could not apply the new certificate: ${(e as Error).message}`);
      }
    }
  }

  /** ha-state.json fields: Roots (PEM, public) and Token (a reference to the cluster secret, never the secret). */
  haStateFields(): { Roots: string[]; Token: string } {
    return { Roots: this.#roots.map((r) => r.pem), Token: this.#secretRef };
  }

  view(): CaInfo {
    return {
      period: periodOf(this.#now(), this.#periodMs),
      periodSeconds: this.#periodMs / 1000,
      roots: this.#roots.map((r) => ({ period: r.period, fingerprint: r.fingerprint, notBefore: r.notBefore.toISOString(), notAfter: r.notAfter.toISOString(), pem: r.pem })),
      nodeCertificate: { notAfter: this.#roots[1]!.notAfter.toISOString(), issuedFromPeriod: this.#issuedPeriod },
      token: this.#secretRef,
    };
  }

  /** The current certificate (PEM). */
  certificatePem(): string {
    return this.#certPem;
  }
}
