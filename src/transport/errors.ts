// Typed errors of the peer transport. Each has a stable `code` (the API layer
// maps codes to HTTP statuses in one table); messages name the wrong value.

export class TransportError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'TransportError';
  }
}

/** A frame that cannot be accepted; `offset` is the stream byte offset of the frame's first byte. */
export class FrameError extends TransportError {
  readonly offset: number;
  readonly reason: string;
  constructor(offset: number, reason: string, options?: { cause?: unknown }) {
    super('frame_invalid', `invalid frame at byte offset ${offset}: ${reason}`, options);
    this.name = 'FrameError';
    this.offset = offset;
    this.reason = reason;
  }
}

/** The remote side refused the handshake (cluster, version, identity) and said why. */
export class HandshakeRefused extends TransportError {
  readonly peerId: number;
  readonly reason: string;
  constructor(peerId: number, reason: string) {
    super('handshake_refused', `peer ${peerId} refused the connection: ${reason}`);
    this.name = 'HandshakeRefused';
    this.peerId = peerId;
    this.reason = reason;
  }
}

/** The id is not in the peer set given to setPeers(). */
export class PeerUnknown extends TransportError {
  readonly peerId: number;
  constructor(peerId: number) {
    super('peer_unknown', `peer ${peerId} is not in the transport's peer set`);
    this.name = 'PeerUnknown';
    this.peerId = peerId;
  }
}

/** The transport was closed (or was never listening) while the operation ran. */
export class TransportClosed extends TransportError {
  constructor(what: string) {
    super('transport_closed', `transport closed: ${what}`);
    this.name = 'TransportClosed';
  }
}

/** A snapshot stream failed: connection lost, refused, corrupted in flight, or timed out. */
export class SnapshotTransferFailed extends TransportError {
  readonly peerId: number;
  readonly reason: string;
  constructor(peerId: number, reason: string, options?: { cause?: unknown }) {
    super('snapshot_transfer_failed', `snapshot transfer to peer ${peerId} failed: ${reason}`, options);
    this.name = 'SnapshotTransferFailed';
    this.peerId = peerId;
    this.reason = reason;
  }
}

/** security.tls is 'off' but a peer is not on loopback. */
export class InsecureTransport extends TransportError {
  readonly hosts: readonly string[];
  constructor(hosts: readonly string[]) {
    super(
      'insecure_transport',
      `peer traffic in plain TCP is accepted only when every peer is on loopback (non-loopback peers: ${hosts.join(', ')}); ` +
        'set security.tls to {certFile,keyFile,caFile} (auto-issued certificates come in a later release)',
    );
    this.name = 'InsecureTransport';
    this.hosts = hosts;
  }
}

/** Options given to the transport are unusable (e.g. unreadable TLS files). */
export class TransportConfigError extends TransportError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('transport_config_invalid', message, options);
    this.name = 'TransportConfigError';
  }
}
