// The peer transport's sockets and their TLS material (moved out of
// peer-transport.ts, no behaviour change): the listener (plain TCP, or TLS 1.3
// with client certificates), replacing its certificate and trust roots in
// place (security.tls "auto" renewals and re-rootings), and dialing a peer.
import { connect as netConnect, createServer as netCreateServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import type { PeerAddress, TransportLogger } from './options.js';
import { clientTlsOptions, serverTlsOptions, type TlsMaterial } from './security.js';

/**
 * The listener: TLS when `tls` is given (a dialer without a certificate of the
 * CA gets through the TLS layer only with `tlsAuto`, for the join exchange),
 * plain TCP otherwise. Rejected TLS handshakes are logged (peer_tls_rejected).
 */
export function createPeerServer(tls: TlsMaterial | undefined, tlsAuto: boolean, onSocket: (s: Socket) => void, log: TransportLogger): Server {
  if (!tls) return netCreateServer(onSocket);
  const server = tlsCreateServer(serverTlsOptions(tls, tlsAuto), onSocket);
  server.on('tlsClientError', (err: Error & { code?: string }, s: Socket) => {
    // A reset socket no longer knows its peer; the accepted TCP socket under it cached it (read by AddressLimit).
    const raw = (s as Socket & { _parent?: Socket })._parent;
    const remote = s.remoteAddress !== undefined ? `${s.remoteAddress}:${s.remotePort}` : `${raw?.remoteAddress}:${raw?.remotePort}`;
    log.warn({ event: 'peer_tls_rejected', remote, code: err.code, err: err.message }, `peer TLS handshake rejected from ${remote}: ${err.message}`);
  });
  return server;
}

/** New certificate, key and trust roots for handshakes still to come; established connections keep theirs. */
export function replaceServerMaterial(server: Server | undefined, m: TlsMaterial): void {
  (server as ReturnType<typeof tlsCreateServer> | undefined)?.setSecureContext({ cert: m.cert, key: m.key, ca: m.ca as string[], minVersion: 'TLSv1.3' });
}

/** A socket to `addr`: TLS 1.3 presenting our certificate and verifying the peer's when `tls` is given, else plain TCP. */
export function dialPeerSocket(tls: TlsMaterial | undefined, addr: PeerAddress): Socket {
  return tls
    ? tlsConnect({ host: addr.host, port: addr.port, ...clientTlsOptions(tls, addr.host) })
    : netConnect({ host: addr.host, port: addr.port });
}
