// security.tls "auto" on a node: its key and certificate from the cluster CA
// (./cluster-ca.ts), kept current. Files in `<dataDir>/tls/` (dir 0700):
//   node.key  this node's EC P-256 private key, PKCS#8 PEM, mode 0600, made once, never sent anywhere
//   node.crt  its certificate from the current root (re-issued each period and whenever the secret changes)
//   ca.crt    the roots trusted now (what `quorate ca export` prints; clients' --ca)
//   ca-epoch.json  the CA epoch (`quorate ca rotate`, ./ca-rotate.ts) last used, and the one kept in grace:
//            where a restarted node (or a joiner, from the join answer) starts before its log is replayed
// A timer re-checks the period and the cluster secret (rotated in place by
// isolate, ./isolate.ts); on a change it issues a new certificate, writes the
// files and hands the new material to its listeners (the peer transport, the
// HTTPS API). A loopback-only cluster keeps plain TCP (as before): `forNode`
// then answers undefined.
import { existsSync, readFileSync } from 'node:fs';
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
  certificateProblem, clusterTokenRef, epochOfIssuer, issueNodeCert, memberIdOf, newNodeKeyPem, periodOf, trustedEpochs, trustedRoots,
  type NodeIdentity, type RootCa,
} from './cluster-ca.js';
import type { CaEpochState } from '../state/index.js';

const EPOCH_FILE = 'ca-epoch.json';

/** The CA epoch a node starts with: `<dataDir>/tls/ca-epoch.json`, epoch 0 when absent or unreadable (the replicated state then corrects it). */
export function readCaEpochHint(tlsDir: string): CaEpochState {
  try {
    const o = JSON.parse(readFileSync(join(tlsDir, EPOCH_FILE), 'utf8')) as { epoch?: unknown; graceEpoch?: unknown };
    const epoch = typeof o.epoch === 'number' && Number.isSafeInteger(o.epoch) && o.epoch >= 0 ? o.epoch : 0;
    const grace = o.graceEpoch === epoch - 1 && epoch > 0 ? epoch - 1 : undefined;
    return { epoch, graceEpoch: grace };
  } catch {
    return { epoch: 0, graceEpoch: undefined };
  }
}

/** A joiner writes the epoch the leader told it (join answer), trusting the previous one as well until it applied the cluster's state. */
export async function writeCaEpochHint(dataDir: string, epoch: number): Promise<void> {
  const dir = join(dataDir, 'tls');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await atomicWriteFile(join(dir, EPOCH_FILE), [Buffer.from(JSON.stringify({ epoch, graceEpoch: epoch > 0 ? epoch - 1 : null }))], 0o644);
}

/** What a material listener is told besides the material. */
export interface MaterialChange {
  /** The certificate now comes from another CA epoch (`quorate ca rotate`): peers learn it only from new handshakes. */
  readonly epochChanged: boolean;
}
import type { Bootstrap } from './members.js';
import { trustForPeerGets } from './peer-get.js';


const hostOf = (u: string): string => new URL(u.includes('://') ? u : `tcp://${u}`).hostname.replace(/^\[|\]$/g, '');

/** security.apiTls "auto": the API serves the node's certificate files (written before the API starts). */
export function autoApiTlsFiles(config: QuorateConfig): { certFile: string; keyFile: string } {
  return { certFile: join(config.node.dataDir, 'tls', 'node.crt'), keyFile: join(config.node.dataDir, 'tls', 'node.key') };
}

/**
 * security.apiTls "auto" in the daemon: the CA certificates its https calls to other nodes trust (Node's store
 * plus the cluster CA's roots, following re-issues), and the process's global fetch (Node 20's fetch takes no CA
 * option; see src/api/ca-fetch.ts) and the node's probes (./peer-get.ts) made to trust them. One node per agent
 * process, so the globals are this node's.
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
  trustForPeerGets(trust);
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
  #keyPem: string;
  readonly #listeners: ((m: TlsMaterial, change: MaterialChange) => void)[] = [];
  #material!: TlsMaterial;
  #roots: RootCa[] = [];
  #certPem = '';
  #issuedPeriod = 0;
  #secretRef = '';
  /** The CA epoch and grace to issue and trust from (replicated, ./ca-rotate.ts); the ones the current material has. */
  #ca: CaEpochState;
  #issuedCa: CaEpochState = { epoch: -1, graceEpoch: undefined };
  /** The CA epoch of the certificate each peer last presented on a connection to this node. */
  readonly #peerEpochs = new Map<number, number>();
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  readonly #now: () => number;

  private constructor(o: { log: Logger; dir: string; id: NodeIdentity; periodMs: number; secret: Uint8Array; keyPem: string; now: () => number; ca: CaEpochState }) {
    this.#ca = o.ca;
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
    const t = new AutoTls({ ...o, keyPem, now: o.now ?? Date.now, ca: readCaEpochHint(o.dir) });
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
  onMaterial(listener: (m: TlsMaterial, change: MaterialChange) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * The replicated CA epoch changed (apply, restore, start): re-issue from it (a new epoch also gets a new node key).
   * Never backwards: a node restarting replays its log from a snapshot that may predate the epoch it already uses
   * (ca-epoch.json); going back would make it issue from, and trust only, roots its peers no longer trust.
   */
  setCaEpochs(ca: CaEpochState): Promise<void> {
    if (ca.epoch < this.#ca.epoch) return this.refresh();
    this.#ca = ca;
    return this.refresh();
  }

  /** The CA epoch this node's certificate comes from, and the one still trusted in grace. */
  get caEpochs(): CaEpochState {
    return this.#issuedCa;
  }

  /** The CA epoch of the certificate `id` last presented to this node (undefined: none seen since this node started). */
  peerEpoch(id: number): number | undefined {
    return this.#peerEpochs.get(id);
  }

  /**
   * The peer transport's check: the dialer's certificate must be bound to the id it claims. Also notes the CA epoch of
   * its issuer (`issuerCn`): how the leader learns that a member re-issued after `quorate ca rotate`.
   */
  peerCertificateProblem(id: number, subjectAltName: string | undefined, issuerCn?: string): string | undefined {
    const named = memberIdOf(subjectAltName, this.#id.haId);
    if (named === id) {
      const epoch = epochOfIssuer(issuerCn);
      if (epoch !== undefined) this.#peerEpochs.set(id, epoch);
      return undefined;
    }
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

  /** Why the material is not current (undefined: it is): the period, the cluster secret or the CA epoch changed. */
  #staleReason(): string | undefined {
    if (clusterTokenRef(this.#secret) !== this.#secretRef) return 'cluster_secret_rotated';
    if (this.#ca.epoch !== this.#issuedCa.epoch) return 'ca_rotated';
    if (this.#ca.graceEpoch !== this.#issuedCa.graceEpoch) return 'ca_rotation_complete';
    if (periodOf(this.#now(), this.#periodMs) !== this.#issuedPeriod) return 'period';
    return undefined;
  }

  /** Re-issue when the period, the cluster secret (isolate) or the CA epoch (ca rotate) changed. Never throws (logs). */
  refresh(): Promise<void> {
    if (this.#staleReason() === undefined) return this.#refreshing ?? Promise.resolve();
    this.#refreshing ??= (async () => {
      // Changes that arrive while one issue runs are taken by the next round.
      for (let reason = this.#staleReason(); reason !== undefined; reason = this.#staleReason()) await this.#issue(reason);
    })().catch((e: unknown) => {
      this.#log.error({ event: 'tls_certificate_failed', err: (e as Error).message }, `could not issue this node's certificate from the cluster CA: ${(e as Error).message}; retrying`);
    }).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #issue(reason: string): Promise<void> {
    const now = this.#now();
    const secret = new Uint8Array(this.#secret);
    const ca = this.#ca;
    const epochChanged = this.#issuedCa.epoch !== -1 && ca.epoch !== this.#issuedCa.epoch;
    if (epochChanged) {
      // A new CA epoch also retires this node's key (a copy of the old node.key, e.g. in a backup, becomes useless).
      this.#keyPem = await newNodeKeyPem();
      await atomicWriteFile(join(this.#dir, 'node.key'), [Buffer.from(this.#keyPem)], 0o600);
    }
    const roots = await trustedRoots(secret, this.#id.haId, now, this.#periodMs, trustedEpochs(ca.epoch, ca.graceEpoch));
    const period = periodOf(now, this.#periodMs);
    const current = roots.find((r) => r.epoch === ca.epoch && r.period === period)!;
    const certPem = await issueNodeCert(current, this.#id, this.#keyPem, now);
    const problem = certificateProblem(certPem, roots, this.#id, now);
    if (problem !== undefined) throw new Error(`the certificate just issued is not usable: ${problem}`);
    const bundle = roots.map((r) => r.pem).join('');
    await atomicWriteFile(join(this.#dir, 'node.crt'), [Buffer.from(certPem)], 0o644);
    await atomicWriteFile(join(this.#dir, 'ca.crt'), [Buffer.from(bundle)], 0o644);
    await atomicWriteFile(join(this.#dir, EPOCH_FILE), [Buffer.from(JSON.stringify({ epoch: ca.epoch, graceEpoch: ca.graceEpoch ?? null }))], 0o644);
    this.#roots = roots;
    this.#certPem = certPem;
    this.#issuedPeriod = current.period;
    this.#secretRef = clusterTokenRef(secret);
    this.#issuedCa = ca;
    this.#material = { cert: certPem, key: this.#keyPem, ca: roots.map((r) => r.pem) };
    this.#log.info({ event: 'tls_certificate_issued', reason, period: current.period, epoch: ca.epoch, graceEpoch: ca.graceEpoch, notAfter: current.notAfter.toISOString(), roots: roots.map((r) => r.fingerprint.slice(0, 16)) },
      `node certificate issued from cluster CA root ${current.period}${ca.epoch > 0 ? ` of epoch ${ca.epoch}` : ''} (${reason}); valid until ${current.notAfter.toISOString()}`);
    for (const l of this.#listeners) {
      try {
        l(this.#material, { epochChanged });
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
    const current = this.#roots.find((r) => r.epoch === this.#issuedCa.epoch && r.period === this.#issuedPeriod) ?? this.#roots[1]!;
    return {
      period: periodOf(this.#now(), this.#periodMs),
      periodSeconds: this.#periodMs / 1000,
      epoch: this.#issuedCa.epoch,
      graceEpoch: this.#issuedCa.graceEpoch ?? null,
      roots: this.#roots.map((r) => ({ period: r.period, epoch: r.epoch, fingerprint: r.fingerprint, notBefore: r.notBefore.toISOString(), notAfter: r.notAfter.toISOString(), pem: r.pem })),
      nodeCertificate: { notAfter: current.notAfter.toISOString(), issuedFromPeriod: this.#issuedPeriod, issuedFromEpoch: this.#issuedCa.epoch },
      token: this.#secretRef,
    };
  }

  /** The current certificate (PEM). */
  certificatePem(): string {
    return this.#certPem;
  }
}
