// Options and public shapes of PeerTransport.
import type { Message, SnapshotMeta } from '../raft/types.js';
import type { ReceivedSnapshotFile } from './snapshot.js';
import type { ClusterSettings, FrameTypeName, JoinAuthFrame } from './codec.js';
import type { TlsSetting } from './security.js';

/** pino-compatible: (object, message). */
export interface TransportLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export type DisconnectReason = 'reset' | 'closed' | 'timeout';

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface PeerHelloInfo {
  readonly nodeName: string;
  readonly apiUrl: string;
  readonly role: 'voter' | 'observer' | 'dr' | undefined;
  readonly incarnation: string;
  /** The feature level it announced (1 when it sent none). */
  readonly featureLevel: number;
  /** The cluster settings it announced (protocol 4+); absent when it sent none. */
  readonly settings?: ClusterSettings;
}

/** What a peer's helloAck told the dialer (authenticated). */
export interface PeerAckInfo {
  readonly knownIncarnation: string | undefined;
  readonly featureLevel: number;
  readonly nodeName: string;
  readonly settings?: ClusterSettings;
}

export interface PeerTransportOptions {
  readonly nodeId: number;
  readonly nodeName: string;
  readonly haId: string;
  readonly listenHost: string;
  /** 0 picks a free port (see listen()). */
  readonly listenPort: number;
  /** Default 'off' (then every peer must be on loopback; see assertTransportSecurity). */
  readonly tls?: TlsSetting;
  /**
   * The cluster secret (security.clusterSecretFile, see loadClusterSecret): at
   * least 32 bytes. Every connection, both directions, is authenticated by a
   * challenge–response over it before any message is accepted; it never goes
   * on the wire. REQUIRED: the constructor throws TransportConfigError without
   * it.
   */
  readonly clusterSecret: Uint8Array;
  /** Opaque id of this node's data dir (≤ 64 characters), sent in every hello. */
  readonly incarnation?: string;
  /** The incarnation this node's membership records for peer `id`, told to it in the helloAck (authenticated). */
  recordedIncarnation?(id: number): string | undefined;
  /** A peer accepted our message connection and told us the incarnation it records for us (undefined: none). */
  onPeerAck?(peerId: number, info: PeerAckInfo): void;
  /**
   * Per-period handshake keys (protocol version 6, handshake.ts): the length of a key period (the node passes
   * security.caRotationSeconds; default 30 days). An acceptor always takes a dialer's key of its previous, current
   * or next period.
   */
  readonly keyPeriodMs?: number;
  /** Whether this node dials with period keys (the node: once the cluster is at feature level 4). Default false: the cluster secret itself. */
  usePeriodKeys?(): boolean;
  /** The clock key periods are counted with. Default Date.now (tests give another to simulate skew). */
  readonly clock?: () => number;
  /** This node's feature level (src/node/features.ts), announced in the authenticated handshake to peers of protocol version 3+. */
  readonly featureLevel?: number;
  /**
   * This node's config keys that must agree across members, announced in the
   * authenticated handshake to peers of protocol version 4+. A dialer that
   * announces another database.writeQuorum is refused (code config_mismatch).
   */
  readonly clusterSettings?: ClusterSettings;
  /**
   * With TLS: the host a peer's client certificate must name (IP or DNS SAN)
   * for it to be accepted as node `id`. Default: the host given for `id` to
   * setPeers(). A dialer whose id has no expected host is refused.
   */
  expectedPeerHost?(id: number): string | undefined;
  /**
   * With TLS: why the dialer's client certificate (its subjectAltName as Node
   * prints it) may not be node `id`'s (undefined: accept). Replaces the
   * expectedPeerHost check; the automatic cluster CA binds each certificate
   * to a member id (src/node/cluster-ca.ts). `issuerCn` is the CN of the
   * certificate's issuer (the cluster CA notes which CA epoch it comes from).
   */
  peerCertificateProblem?(id: number, subjectAltName: string | undefined, issuerCn?: string): string | undefined;
  readonly logger: TransportLogger;
  /** A batch from one peer, validated, in the order sent. Called synchronously from socket I/O. */
  onMessages(msgs: Message[]): void;
  /**
   * An established message connection with the peer ended: 'reset' when the
   * peer closed or reset it (its process likely died), 'closed' when this node
   * dropped it for a protocol error, 'timeout' when it went silent past
   * idleTimeoutMs. Reported once per outage.
   */
  onPeerDisconnected(peerId: number, reason: DisconnectReason): void;
  /**
   * A snapshot stream arrived whole and verified (CRC-32C per chunk, SHA-256
   * overall), in a file of snapshotSpoolDir: the callee owns the file from now
   * on (read it with source.read(), remove it with source.discard()).
   */
  onSnapshot(from: number, meta: SnapshotMeta, source: ReceivedSnapshotFile, msg: Message): void;
  /**
   * A peer completed an authenticated handshake on its message connection to
   * us. Called only after its proof over the cluster secret verified (and,
   * with TLS, its certificate matched its id). apiUrl is '' or an http(s) URL
   * with a port; role is undefined when the peer sent none; incarnation is ''
   * when the peer sent none.
   */
  onPeerHello?(peerId: number, info: PeerHelloInfo): void;
  /**
   * A joiner sent a join request (join.ts) after the ordinary opening and
   * challenge: resolve with the whole frame to answer (joinAck or refuse);
   * the connection ends after it. Absent: join requests are refused.
   */
  onJoin?(auth: JoinAuthFrame, joinerNonce: Uint8Array, leaderNonce: Uint8Array): Promise<Buffer>;
  /**
   * After the policy checks: why an authenticated dialer is not the member
   * whose id it claims (undefined: accept). Refused with code
   * identity_mismatch, the reason logged here only.
   */
  identityProblem?(hello: { readonly fromId: number; readonly fromName: string; readonly incarnation: string }): string | undefined;
  /** Was this id removed from the membership? An authenticated dialer with such an id is refused with code 'removed' and told why. */
  isRemovedPeer?(id: number): boolean;
  /** A peer refused our authenticated dial with code 'removed': the membership it holds removed this node. */
  onRemovedByPeer?(peer: number, reason: string): void;
  /**
   * This node's cluster generation (src/node/generation.ts; 0 or absent: never promoted or recovered), sent in
   * every hello and helloAck when above 0 and covered by the MACs. A peer of another generation is refused at the
   * handshake, so no message of another generation is ever delivered: a transport has one generation for life.
   */
  readonly generation?: number;
  /** A peer refused our authenticated dial with code generation_superseded: the cluster moved to a newer generation without this node. */
  onSupersededByPeer?(peer: number, reason: string): void;
  /** This node's advertised API URL, sent in every hello. */
  readonly apiUrl?: string;
  /** This node's configured role (voter | observer | dr), sent in every hello. */
  readonly role?: string;
  /** Only accept dialers with these ids; 'peers' = the ids last given to setPeers(). Default: any id of the same haId. */
  readonly allowedPeerIds?: readonly number[] | 'peers';
  /** Per-peer outbound bound: queued + unsent socket bytes beyond which messages are dropped. Default 16 MiB. */
  readonly maxPendingBytes?: number;
  /** Default 1 MiB. */
  readonly snapshotChunkBytes?: number;
  /** Largest snapshot accepted from a peer (written to a file as it arrives). Default 1 GiB. */
  readonly maxSnapshotBytes?: number;
  /**
   * Where incoming snapshots are written while they arrive (created if
   * needed). The node passes a dir on the data dir's file system; default
   * `<os tmpdir>/quorate-snapshots`.
   */
  readonly snapshotSpoolDir?: string;
  /** Default 5000. */
  readonly handshakeTimeoutMs?: number;
  /** Open inbound connections per remote address, counted from accept (before any handshake); more are cut at once. Default 16. */
  readonly maxConnectionsPerAddress?: number;
  /** Dialers send a ping when idle this long. Default 1000. */
  readonly pingIntervalMs?: number;
  /** An inbound message connection silent this long is closed ('timeout'). Default 10000; 0 disables. */
  readonly idleTimeoutMs?: number;
  /** A snapshot stream with no progress this long fails. Default 30000. */
  readonly snapshotIdleTimeoutMs?: number;
  /** Reconnect backoff: doubles from initialMs to maxMs, each delay jittered ±50%. Default 50 → 2000. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Per-frame-type payload limits for received frames (see codec.ts DEFAULT_FRAME_LIMITS). */
  readonly frameLimits?: Partial<Record<FrameTypeName, number>>;
}

export interface PeerStats {
  /** Our outbound message connection to the peer is established. */
  readonly connected: boolean;
  /** The peer's message connection to us is established. */
  readonly inboundConnected: boolean;
  readonly bytesSent: number;
  readonly msgsSent: number;
  readonly bytesReceived: number;
  readonly msgsReceived: number;
  /** Messages dropped: peer not connected, or its outbound bound was full. */
  readonly dropped: number;
  /** Outbound connections re-established after the first. */
  readonly reconnects: number;
  readonly snapshotsSent: number;
  readonly snapshotBytesSent: number;
}
