// TLS settings and the rule that plain TCP is for loopback only.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { InsecureTransport, TransportConfigError } from './errors.js';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}
export type TlsSetting = TlsFiles | 'off';

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

interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

export function loadTlsMaterial(files: TlsFiles): TlsMaterial {
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
export function serverTlsOptions(m: TlsMaterial): TlsOptions {
  return { ...m, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: true };
}

/** Client side: TLS 1.3 only, presents its certificate, verifies the server against the cluster CA and the dialed host. */
export function clientTlsOptions(m: TlsMaterial, host: string): ConnectionOptions {
  const opts: ConnectionOptions = { ...m, minVersion: 'TLSv1.3', rejectUnauthorized: true };
  // SNI must not be an IP address; the certificate's IP SANs are still checked.
  return isIP(host) === 0 ? { ...opts, servername: host } : opts;
}
