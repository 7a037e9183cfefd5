// The automatic cluster CA of `security.tls: "auto"` (SPEC §3): certificate
// issuance and the trust set, with @peculiar/x509 over Node's webcrypto.
//
// Roots are derived, not stored. The root of period k (k = floor(now / P),
// P = security.caRotationSeconds, 30 days by default) has an EC P-256 key
// whose private scalar is HKDF-SHA256(cluster secret, haId, k): every member
// holds the cluster secret (0600 file, handed to joiners sealed under the join
// token), so every member derives the same roots without any exchange, any
// leader can issue, and no CA key is ever written to disk (nothing to encrypt
// at rest beyond the secret file itself). Root k is valid from (k-1)·P to
// (k+2)·P (three periods); at any time a node trusts roots k-1, k and k+1, so
// the next root is trusted a whole period before nodes issue from it (the
// overlap Digital Rebar gets with cross-signing) and a node whose clock is up
// to a period off still interoperates.
//
// Each node makes its own key (EC P-256, never leaves the node, 0600) and
// issues its own certificate from the current root: SANs are the hosts of its
// advertised peer and API URLs plus `urn:quorate:<haId>:node:<id>`, which
// binds the certificate to its member id (checked at the peer handshake). It
// is re-issued when the period changes, i.e. long before it expires at
// (k+2)·P.
//
// Rotating the cluster secret (`quorate isolate`) changes every root at once:
// members re-issue from the new chain and stop trusting the old one, so the
// isolated node, which could derive the old roots, holds nothing trusted.
//
// CA epochs (`quorate ca rotate`, ./ca-rotate.ts): the roots also depend on a
// replicated epoch e (0 until the first `ca rotate`; epoch 0 derives exactly
// the roots of the releases before epochs). A node at epoch e trusts the roots
// of e and e+1 (the next epoch's roots are derivable ahead, so a member that
// applies the rotation late still trusts the certificates of those that
// applied it), plus e-1 while the rotation's grace lasts (until every member
// showed a certificate of e), and issues from e.
import { createECDH, createHash, createPrivateKey, createPublicKey, hkdfSync, randomBytes, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import { x509Module } from '../lib/lazy-modules.js';

const subtle = webcrypto.subtle;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** The order of P-256. */
const N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

export const DEFAULT_CA_PERIOD_MS = 30 * 24 * 3600_000;

export interface RootCa {
  readonly period: number;
  /** The CA epoch (0 before any `quorate ca rotate`). */
  readonly epoch: number;
  readonly cert: X509.X509Certificate;
  readonly pem: string;
  readonly key: CryptoKey;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the DER, hex. */
  readonly fingerprint: string;
}

export interface NodeIdentity {
  readonly haId: string;
  readonly nodeId: number;
  readonly nodeName: string;
  /** Hosts (IP or DNS) the certificate must name: those of the advertised peer and API URLs. */
  readonly hosts: readonly string[];
}

export const periodOf = (nowMs: number, periodMs: number): number => Math.floor(nowMs / periodMs);

/** The URI SAN binding a certificate to member `id` of cluster `haId`. */
export function memberUri(haId: string, id: number): string {
  return `urn:quorate:${encodeURIComponent(haId)}:node:${id}`;
}

const pemOf = (c: X509.X509Certificate): string => `${c.toString('pem').trimEnd()}\n`;
const b64u = (b: Buffer): string => b.toString('base64url');

/** The root key of period k in CA epoch e: a P-256 scalar from HKDF over the cluster secret (deterministic, never stored). */
export async function deriveRootKey(secret: Uint8Array, haId: string, period: number, epoch = 0): Promise<CryptoKeyPair> {
  const info = epoch === 0 ? `root\0${period}` : `root\0epoch ${epoch}\0${period}`;
  const okm = Buffer.from(hkdfSync('sha256', secret, Buffer.from(`quorate-ca-v1\0${haId}`, 'utf8'), Buffer.from(info, 'utf8'), 48));
  const d = (BigInt(`0x${okm.toString('hex')}`) % (N - 1n)) + 1n;
  const dBytes = Buffer.from(d.toString(16).padStart(64, '0'), 'hex');
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(dBytes);
  const pub = ecdh.getPublicKey();
  const jwk = { kty: 'EC', crv: 'P-256', x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33, 65)) };
  const privateKey = await subtle.importKey('jwk', { ...jwk, d: b64u(dBytes), ext: true }, EC, true, ['sign']);
  const publicKey = await subtle.importKey('jwk', { ...jwk, ext: true }, EC, true, ['verify']);
  return { privateKey, publicKey };
}

/** The subject CN of root `period` in `epoch` (epoch 0: as before epochs existed). */
function rootName(haId: string, period: number, epoch: number): string {
  return `quorate ${haId.replace(/[,+="<>#;\\]/g, '_')} root ${period}${epoch === 0 ? '' : ` epoch ${epoch}`}`;
}

/** The CA epoch of a certificate issued by a root of this CA, from its issuer's CN (undefined: not one of ours). */
export function epochOfIssuer(issuerCn: string | undefined): number | undefined {
  const m = /^quorate .* root (0|[1-9][0-9]{0,15})(?: epoch ([1-9][0-9]{0,15}))?$/.exec(issuerCn ?? '');
  return m === null ? undefined : m[2] === undefined ? 0 : Number(m[2]);
}

/** Root k's self-signed certificate in `epoch` (same key, subject and validity on every member). */
export async function rootCa(secret: Uint8Array, haId: string, period: number, periodMs: number, epoch = 0): Promise<RootCa> {
  const keys = await deriveRootKey(secret, haId, period, epoch);
  const spki = Buffer.from(await subtle.exportKey('spki', keys.publicKey));
  const notBefore = new Date((period - 1) * periodMs);
  const notAfter = new Date((period + 2) * periodMs);
  const x509 = x509Module();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // Positive, deterministic: the same on every member.
    serialNumber: `01${createHash('sha256').update(spki).digest('hex').slice(0, 30)}`,
    name: `CN=${rootName(haId, period, epoch)}`,
    notBefore, notAfter, keys, signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const der = Buffer.from(cert.rawData);
  return { period, epoch, cert, pem: pemOf(cert), key: keys.privateKey, notBefore, notAfter, fingerprint: createHash('sha256').update(der).digest('hex') };
}

/** The roots trusted at `nowMs`: periods k-1, k, k+1 of every epoch in `epochs` (default: epoch 0 only), epoch by epoch. */
export async function trustedRoots(secret: Uint8Array, haId: string, nowMs: number, periodMs: number, epochs: readonly number[] = [0]): Promise<RootCa[]> {
  const k = periodOf(nowMs, periodMs);
  return Promise.all(epochs.flatMap((e) => [k - 1, k, k + 1].map((p) => rootCa(secret, haId, p, periodMs, e))));
}

/** The epochs a node trusts: from the one kept during a rotation's grace (or the current one) to the next. */
export function trustedEpochs(epoch: number, graceEpoch: number | undefined): number[] {
  const out: number[] = [];
  for (let e = Math.min(graceEpoch ?? epoch, epoch); e <= epoch + 1; e++) out.push(e);
  return out;
}

/** A new node key pair (EC P-256) as PKCS#8 PEM. */
export async function newNodeKeyPem(): Promise<string> {
  const pair = (await subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', pair.privateKey));
  return `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
}

/** The public key (SPKI DER) of a PEM private key. */
function publicSpkiOf(keyPem: string): Buffer {
  return Buffer.from(createPublicKey(createPrivateKey(keyPem)).export({ format: 'der', type: 'spki' }));
}

/** Issues a node certificate for `keyPem`'s public key from `root` (server and client auth). */
export async function issueNodeCert(root: RootCa, id: NodeIdentity, keyPem: string, nowMs: number): Promise<string> {
  const publicKey = await subtle.importKey('spki', publicSpkiOf(keyPem), EC, true, ['verify']);
  const names: { type: 'dns' | 'ip' | 'url'; value: string }[] = [];
  for (const h of new Set(id.hosts.map((x) => x.replace(/^\[|\]$/g, '').toLowerCase()))) names.push({ type: isIP(h) === 0 ? 'dns' : 'ip', value: h });
  names.push({ type: 'url', value: memberUri(id.haId, id.nodeId) });
  const notBefore = new Date(Math.max(root.notBefore.getTime(), nowMs - 3600_000));
  const x509 = x509Module();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    subject: `CN=${id.nodeName.replace(/[,+="<>#;\\]/g, '_')}`,
    issuer: root.cert.subject,
    notBefore, notAfter: root.notAfter,
    publicKey, signingKey: root.key, signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert.publicKey),
    ],
  });
  return pemOf(cert);
}

/** The member id a peer certificate's subjectAltName (as Node prints it) binds it to in `haId`; undefined when none. */
export function memberIdOf(subjectAltName: string | undefined, haId: string): number | undefined {
  if (!subjectAltName) return undefined;
  const prefix = `URI:${memberUri(haId, 0).slice(0, -1)}`;
  for (const entry of subjectAltName.split(',')) {
    const e = entry.trim();
    if (e.startsWith(prefix)) {
      const n = e.slice(prefix.length);
      if (/^(0|[1-9][0-9]{0,15})$/.test(n)) return Number(n);
    }
  }
  return undefined;
}

/** Why `certPem` is not a usable node certificate for `id` under `roots` at `nowMs` (undefined: usable). */
export function certificateProblem(certPem: string, roots: readonly RootCa[], id: NodeIdentity, nowMs: number): string | undefined {
  let c: NodeX509;
  try {
    c = new NodeX509(certPem);
  } catch (e) {
    return `not a certificate: ${(e as Error).message}`;
  }
  const issuer = roots.find((r) => c.checkIssued(new NodeX509(r.pem)) && c.verify(new NodeX509(r.pem).publicKey));
  if (issuer === undefined) return 'not issued by a trusted root of the cluster CA';
  if (Date.parse(c.validTo) <= nowMs || Date.parse(c.validFrom) > nowMs) return `outside its validity (${c.validFrom} – ${c.validTo})`;
  if (memberIdOf(c.subjectAltName, id.haId) !== id.nodeId) return `it does not name member id ${id.nodeId}`;
  for (const h of id.hosts) {
    const host = h.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0 ? c.checkIP(host) === undefined : c.checkHost(host) === undefined) return `it does not name ${host}`;
  }
  return undefined;
}

/** A short reference to the cluster secret (ha-state.json `Token`): never the secret, changes when it is rotated. */
export function clusterTokenRef(secret: Uint8Array): string {
  return `sha256:${createHash('sha256').update('quorate cluster token reference\0').update(secret).digest('hex').slice(0, 32)}`;
}
