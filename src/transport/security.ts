// TLS settings and the rule that plain TCP is for loopback only.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { InsecureTransport, TransportConfigError } from './errors.js';
import { CLUSTER_SECRET_MIN_BYTES } from './handshake.js';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}
/**
 * Certificates in memory, replaceable while running (PeerTransport.setTlsMaterial):
 * the automatic cluster CA (src/node/cluster-ca.ts). The server also takes
 * dialers without a client certificate, for the join exchange only (a joiner
 * has no certificate yet; the exchange is authenticated by the join token).
 */
export interface TlsAuto {
  readonly auto: TlsMaterial;
}
export type TlsSetting = TlsFiles | TlsAuto | 'off';

export const isTlsAuto = (t: TlsSetting | undefined): t is TlsAuto => typeof t === 'object' && 'auto' in t;

/** True for 127.0.0.0/8, ::1 (and its IPv4-mapped forms) and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h.startsWith('::ffff:')) h = h.slice('::ffff:'.length);
  const kind = isIP(h);
  if (kind === 4) return h.split('.')[0] === '127';
  if (kind === 6) return /^(0{0,4}:){1,7}0{0,3}1$/.test(h) || h === '::1';
  return false;
}

/** Throws InsecureTransport when TLS is off and any peer host is not loopback. */
export function assertTransportSecurity(tlsSetting: TlsSetting, peerHosts: readonly string[]): void {
  if (tlsSetting !== 'off') return;
  const exposed = peerHosts.filter((h) => !isLoopbackHost(h));
  if (exposed.length > 0) throw new InsecureTransport(exposed);
}

export interface TlsMaterial {
  readonly cert: Buffer | string;
  readonly key: Buffer | string;
  readonly ca: Buffer | string | readonly (Buffer | string)[];
}

export function loadTlsMaterial(setting: TlsFiles | TlsAuto): TlsMaterial {
  if ('auto' in setting) return setting.auto;
  const files = setting;
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new TransportConfigError(`cannot read security.tls.${what} ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { cert: read('certFile', files.certFile), key: read('keyFile', files.keyFile), ca: read('caFile', files.caFile) };
}

/** Server side: TLS 1.3 only, client certificate required and checked against the cluster CA. */
export function serverTlsOptions(m: TlsMaterial, allowJoinWithoutCert = false): TlsOptions {
  // With allowJoinWithoutCert the TLS layer lets a dialer without a (valid) certificate in; the transport then
  // refuses it for everything but the join exchange (see socket.authorized in peer-transport.ts).
  return { ...m, ca: m.ca as TlsOptions['ca'], minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: !allowJoinWithoutCert };
}

/** Client side: TLS 1.3 only, presents its certificate, verifies the server against the cluster CA and the dialed host. */
export function clientTlsOptions(m: TlsMaterial, host: string): ConnectionOptions {
  const opts: ConnectionOptions = { ...m, ca: m.ca as ConnectionOptions['ca'], minVersion: 'TLSv1.3', rejectUnauthorized: true };
  // SNI must not be an IP address; the certificate's IP SANs are still checked.
  return isIP(host) === 0 ? { ...opts, servername: host } : opts;
}

// ---- Cluster secret ------------------------------------------------------

/** A new cluster secret: 32 random bytes. Write it with formatClusterSecret. */
export function newClusterSecret(): Uint8Array {
  return new Uint8Array(randomBytes(CLUSTER_SECRET_MIN_BYTES));
}

/** The file format: hex digits and a newline (what `openssl rand -hex 32` prints). */
export function formatClusterSecret(secret: Uint8Array): string {
  return `${Buffer.from(secret).toString('hex')}\n`;
}

/**
 * Reads security.clusterSecretFile: at least 64 hex digits (32 bytes), mode
 * 0600 (nothing for group or others). Throws TransportConfigError naming the
 * file and what to do.
 */
export function loadClusterSecret(path: string): Uint8Array {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new TransportConfigError(
        `security.clusterSecretFile ${JSON.stringify(path)} does not exist: run \`quorate init\` to create it, or copy the file from another member of the cluster (mode 0600)`,
        { cause: err },
      );
    }
    throw new TransportConfigError(`cannot read security.clusterSecretFile ${JSON.stringify(path)}: ${e.message}`, { cause: err });
  }
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new TransportConfigError(
      `security.clusterSecretFile ${JSON.stringify(path)} is readable by group or others (mode 0${(mode & 0o777).toString(8)}): run \`chmod 600 ${path}\``,
    );
  }
  const hex = text.trim();
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0) {
    throw new TransportConfigError(`security.clusterSecretFile ${JSON.stringify(path)} must hold hex digits only (e.g. from \`openssl rand -hex 32\`)`);
  }
  const secret = new Uint8Array(Buffer.from(hex, 'hex'));
  if (secret.length < CLUSTER_SECRET_MIN_BYTES) {
    throw new TransportConfigError(
      `security.clusterSecretFile ${JSON.stringify(path)} holds ${secret.length} bytes; the cluster secret must be at least ${CLUSTER_SECRET_MIN_BYTES} bytes (${2 * CLUSTER_SECRET_MIN_BYTES} hex digits)`,
    );
  }
  return secret;
}

// ---- Certificate ↔ node id ----------------------------------------------

function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

function sameIp(a: string, b: string): boolean {
  const ka = isIP(a);
  if (ka === 0 || ka !== isIP(b)) return false;
  if (ka === 4) return a === b;
  return expandV6(a) === expandV6(b);
}

function expandV6(a: string): string {
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((x) => x.padStart(4, '0')).join(':');
}

/**
 * True when a certificate's subjectAltName (as Node prints it:
 * "IP Address:10.0.1.11, DNS:node2.example") names `host`: an IP SAN equal to
 * an IP host, or a DNS SAN equal (case-insensitively; "*.x" covers one label)
 * to a name.
 */
export function certificateNamesHost(subjectAltName: string | undefined, host: string): boolean {
  if (!subjectAltName) return false;
  const want = normalizeHost(host);
  const wantIp = isIP(want) !== 0;
  for (const entry of subjectAltName.split(',')) {
    const e = entry.trim();
    if (wantIp && e.startsWith('IP Address:')) {
      if (sameIp(normalizeHost(e.slice('IP Address:'.length)), want)) return true;
    } else if (!wantIp && e.startsWith('DNS:')) {
      const name = normalizeHost(e.slice('DNS:'.length));
      if (name === want) return true;
      if (name.startsWith('*.') && want.endsWith(name.slice(1)) && !want.slice(0, want.length - name.length + 1).includes('.')) return true;
    }
  }
  return false;
}
