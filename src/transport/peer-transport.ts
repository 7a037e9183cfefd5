// PeerTransport: Raft messages and snapshot streams between quorate nodes.
//
// Connections: each node dials every peer for its OWN outbound messages and
// accepts the peers' connections for inbound ones — two TCP connections per
// pair, one per direction. No tie-break when both sides dial at once, each
// side owns exactly the socket it writes to (its queue, backoff and
// backpressure), and a dead peer is seen on both (EOF / RST). Snapshots use a
// third, short-lived connection each, so they never delay heartbeats.
// The dial side is ./dialer.ts, the accept side ./acceptor.ts.
import type { Server, Socket } from 'node:net';
import type { Message } from '../raft/types.js';
import { DEFAULT_FRAME_LIMITS, encodeFrame, encodeMessagesFramePieces, estimateMessageBytes, INCARNATION_MAX } from './codec.js';
import { acceptPeer, type AcceptorHost } from './acceptor.js';
import { FramedConn } from './connection.js';
import type { CloseInfo } from './connection.js';
import { AddressLimit, DEFAULT_MAX_PEER_CONNECTIONS_PER_ADDRESS } from './address-limit.js';
import { PeerUnknown, SnapshotTransferFailed, TransportClosed, TransportConfigError } from './errors.js';
import { CLUSTER_SECRET_MIN_BYTES, DEFAULT_KEY_PERIOD_MS } from './handshake.js';
import { assertTransportSecurity, isTlsAuto, loadTlsMaterial, type TlsMaterial } from './security.js';
import { sendSnapshotOver } from './snapshot.js';
import { Dialer, newLink, type Link } from './dialer.js';
import type { SnapshotSend } from './snapshot.js';
import { createPeerServer, replaceServerMaterial } from './tls-peer.js';
import type { DisconnectReason, PeerAddress, PeerStats, PeerTransportOptions, TransportLogger } from './options.js';

const MiB = 1024 * 1024;

const DROP_LOG_MS = 1_000;

export class PeerTransport {
  readonly #o: PeerTransportOptions;
  #secret: Uint8Array;
  /** The secret before the last rotation: a dialer proving it is refused with code secret_rotated (told why), never accepted. */
  #previousSecret: Uint8Array | undefined;
  readonly #log: TransportLogger;
  #tls: TlsMaterial | undefined;
  readonly #tlsAuto: boolean;
  readonly #maxPendingBytes: number;
  readonly #chunkBytes: number;
  readonly #frameBytesMax: number;
  #server: Server | undefined;
  #closing = false;
  #links = new Map<number, Link>();
  /** Established inbound message connections, by the dialer's node id. */
  #inbound = new Map<number, FramedConn>();
  /** At most one inbound snapshot stream per peer (each holds up to maxSnapshotBytes). */
  #snapshotIn = new Map<number, FramedConn>();
  /** Every accepted socket still open (handshaking, messages, snapshots). */
  #accepted = new Set<FramedConn>();
  #snapshotSends = new Set<SnapshotSend>();
  /** Peers whose outage was already reported; cleared when any message connection with them is established. */
  #reportedDown = new Set<number>();
  #flushScheduled = false;
  #pingTimer: NodeJS.Timeout | undefined;
  /** A drill's isolate fault (src/node/drill-faults.ts): every Raft message in or out is dropped while set. */
  #dropAll = false;
  readonly #dialer: Dialer;

  constructor(opts: PeerTransportOptions) {
    this.#o = opts;
    this.#log = opts.logger;
    const secret: unknown = opts.clusterSecret;
    if (!(secret instanceof Uint8Array) || secret.length < CLUSTER_SECRET_MIN_BYTES) {
      throw new TransportConfigError(
        `the cluster secret must be at least ${CLUSTER_SECRET_MIN_BYTES} bytes (security.clusterSecretFile; \`quorate init\` writes one), got ${secret instanceof Uint8Array ? `${secret.length} bytes` : 'none'}`,
      );
    }
    this.#secret = new Uint8Array(secret);
    if (opts.incarnation !== undefined && opts.incarnation.length > INCARNATION_MAX) {
      throw new TransportConfigError(`incarnation must be at most ${INCARNATION_MAX} characters, got ${opts.incarnation.length}`);
    }
    const tls = opts.tls ?? 'off';
    this.#tls = tls === 'off' ? undefined : loadTlsMaterial(tls);
    this.#tlsAuto = isTlsAuto(tls);
    this.#maxPendingBytes = opts.maxPendingBytes ?? 16 * MiB;
    this.#chunkBytes = opts.snapshotChunkBytes ?? MiB;
    // Our batches must fit the receiver's default limit for `messages` frames.
    this.#frameBytesMax = Math.floor(DEFAULT_FRAME_LIMITS.messages / 2);
    this.#dialer = new Dialer({
      o: opts, log: this.#log,
      closing: () => this.#closing,
      secret: () => this.#secret,
      tls: () => this.#tls,
      keyPeriod: () => this.#keyPeriod(),
      connected: (id) => this.#reportedDown.delete(id),
      reportDown: (id, info) => this.#reportDown(id, info),
    });
  }

  /**
   * The cluster secret was rotated (`quorate isolate`): new handshakes, both
   * ways, prove the new one. Established connections stay: they were
   * authenticated among members (the isolated node's are closed by setPeers,
   * its id being removed), and a member that has not applied the rotation yet
   * still hears the commit over them.
   */
  setClusterSecret(secret: Uint8Array): void {
    if (secret.length < CLUSTER_SECRET_MIN_BYTES) throw new TransportConfigError(`the cluster secret must be at least ${CLUSTER_SECRET_MIN_BYTES} bytes`);
    if (Buffer.from(secret).equals(Buffer.from(this.#secret))) return;
    this.#previousSecret = this.#secret;
    this.#secret = new Uint8Array(secret);
  }

  /**
   * New certificate, key and trust roots (security.tls "auto": a renewal, a
   * root rotation, a re-rooting after the cluster secret was rotated). New
   * handshakes, both ways, use them; established connections stay.
   */
  setTlsMaterial(m: TlsMaterial): void {
    if (!this.#tlsAuto) throw new TransportConfigError('setTlsMaterial needs a transport started with tls {auto}');
    this.#tls = m;
    replaceServerMaterial(this.#server, m);
    this.#log.info({ event: 'peer_tls_material' }, 'peer TLS certificate and trust roots replaced');
  }

  /**
   * Replace every established outbound message connection by a new one,
   * make-before-break: the new one is opened beside the old, and the old is
   * closed only once the new one is established (the acceptor swaps them too),
   * so no side sees an outage and messages keep flowing meanwhile. After a CA
   * epoch change (`quorate ca rotate`) the peers learn this node's new
   * certificate only from a new handshake.
   */
  redialAll(reason: string): void {
    if (this.#closing) return;
    let n = 0;
    for (const link of this.#links.values()) {
      if (!link.connected || !link.conn || link.redialing || link.replacement) continue;
      link.replacement = this.#dialer.open(link);
      n++;
    }
    if (n > 0) this.#log.info({ event: 'peer_redial_all', peers: n, reason }, `reconnecting to ${n} peer(s): ${reason}`);
  }

  /** Start accepting peers. Resolves with the bound port (useful with listenPort 0). */
  listen(): Promise<{ port: number }> {
    if (this.#closing) return Promise.reject(new TransportClosed('listen() after close()'));
    if (this.#server) return Promise.reject(new Error('PeerTransport.listen() called twice'));
    const host = this.#acceptorHost();
    const server = createPeerServer(this.#tls, this.#tlsAuto, (s) => acceptPeer(host, s), this.#log);
    // Before any handshake: at most maxConnectionsPerAddress open connections per remote address (./address-limit.ts).
    const perAddress = new AddressLimit(this.#o.maxConnectionsPerAddress ?? DEFAULT_MAX_PEER_CONNECTIONS_PER_ADDRESS, this.#log);
    server.prependListener('connection', (s: Socket) => void perAddress.admit(s));
    this.#server = server;
    this.#pingTimer = setInterval(() => this.#pingIdle(), this.#o.pingIntervalMs ?? 1000);
    this.#pingTimer.unref();
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(this.#o.listenPort, this.#o.listenHost, () => {
        server.off('error', onError);
        server.on('error', (err) => this.#log.error({ event: 'peer_listener_error', err: err.message }, `peer listener error: ${err.message}`));
        const addr = server.address();
        const port = typeof addr === 'object' && addr ? addr.port : this.#o.listenPort;
        this.#log.info({ event: 'peer_listening', host: this.#o.listenHost, port, tls: this.#tls !== undefined }, `peer transport listening on ${this.#o.listenHost}:${port}`);
        resolve({ port });
      });
    });
  }

  /** Replace the peer set: new peers are dialed, removed ones dropped, moved ones redialed. */
  setPeers(peers: ReadonlyMap<number, PeerAddress>): void {
    if (this.#closing) return;
    assertTransportSecurity(this.#o.tls ?? 'off', [...peers.values()].map((p) => p.host));
    for (const [id, link] of this.#links) {
      const next = peers.get(id);
      if (!next) {
        this.#dialer.drop(link);
        this.#links.delete(id);
        if (this.#o.allowedPeerIds === 'peers') this.#inbound.get(id)?.close({ initiator: 'local', detail: `peer ${id} removed` });
      } else if (next.host !== link.addr.host || next.port !== link.addr.port) {
        link.addr = { host: next.host, port: next.port };
        link.attempt = 0;
        if (link.conn) {
          link.redialing = true;
          link.conn.close({ initiator: 'local', detail: 'peer address changed' });
        }
      }
    }
    for (const [id, addr] of peers) {
      if (id === this.#o.nodeId || this.#links.has(id)) continue;
      const link = newLink(id, addr);
      this.#links.set(id, link);
      this.#dialer.dial(link);
    }
  }

  /**
   * Queue messages for their peers; never blocks. Batched per peer and written
   * as one frame in a microtask: after the caller's synchronous work (every
   * message of one Ready goes into one frame), but before any I/O the caller
   * awaits next — a leader's appends leave before its own fsync, not after it.
   * Messages for an unconnected peer, or
   * beyond its outbound bound, are dropped and counted (Raft retries).
   */
  send(msgs: readonly Message[]): void {
    if (this.#closing) return;
    if (this.#dropAll) {
      for (const m of msgs) { const l = this.#links.get(m.to); if (l) l.stats.dropped++; }
      return;
    }
    for (const m of msgs) {
      if (m.from !== this.#o.nodeId) {
        // The receiver would treat this as spoofing and drop the whole connection.
        this.#log.error({ event: 'peer_send_bad_from', from: m.from, to: m.to, type: m.type }, `dropping ${m.type} with from=${m.from}: this node is ${this.#o.nodeId}`);
        continue;
      }
      const link = this.#links.get(m.to);
      if (!link) {
        this.#log.debug({ event: 'peer_send_unknown', to: m.to, type: m.type }, `dropping ${m.type} for unknown peer ${m.to}`);
        continue;
      }
      if (!link.connected || !link.conn) {
        link.stats.dropped++;
        continue;
      }
      const size = estimateMessageBytes(m);
      if (size > this.#frameBytesMax) {
        link.stats.dropped++;
        this.#log.error({ event: 'peer_send_too_large', peer: link.id, type: m.type, bytes: size, limit: this.#frameBytesMax }, `dropping a ${m.type} of about ${size} bytes to peer ${link.id}: larger than one frame may carry (${this.#frameBytesMax})`);
        continue;
      }
      if (link.queuedBytes + link.conn.writableLength + size > this.#maxPendingBytes) {
        link.stats.dropped++;
        this.#noteDrop(link);
        continue;
      }
      link.queue.push(m);
      link.queuedBytes += size;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Stream a snapshot to `to` on its own connection; resolves when the peer verified and took it. */
  sendSnapshot(to: number, msg: Message, chunks: AsyncIterable<Uint8Array>, totalBytes: number, onProgress?: (sentBytes: number, totalBytes: number) => void): Promise<void> {
    if (this.#closing) return Promise.reject(new TransportClosed('sendSnapshot() after close()'));
    if (this.#dropAll) return Promise.reject(new SnapshotTransferFailed(to, 'peer traffic is dropped by a drill (isolate fault)'));
    const link = this.#links.get(to);
    if (!link) return Promise.reject(new PeerUnknown(to));
    if (msg.type !== 'snap' || msg.snapshot === undefined || msg.to !== to || msg.from !== this.#o.nodeId) {
      return Promise.reject(new SnapshotTransferFailed(to, `the message must be a 'snap' from ${this.#o.nodeId} to ${to} with snapshot metadata (got '${msg.type}' from ${msg.from} to ${msg.to})`));
    }
    const socket = this.#dialer.socket(link.addr);
    const started = Date.now();
    const send = sendSnapshotOver({
      socket, handshake: this.#dialer.handshake(link, 'snapshot'), peerId: to, msg, chunks, totalBytes, chunkBytes: this.#chunkBytes,
      handshakeTimeoutMs: this.#o.handshakeTimeoutMs ?? 5000, idleTimeoutMs: this.#o.snapshotIdleTimeoutMs ?? 30_000,
      ...(this.#o.frameLimits ? { limits: this.#o.frameLimits } : {}),
      ...(onProgress ? { onProgress } : {}),
      onProtocolError: (err) => this.#log.warn({ event: 'peer_frame_invalid', peer: to, channel: 'snapshot', offset: err.offset, reason: err.reason }, `closing snapshot stream to peer ${to}: ${err.message}`),
    });
    this.#snapshotSends.add(send);
    this.#log.info({ event: 'snapshot_send_start', peer: to, index: msg.snapshot.index, bytes: totalBytes }, `streaming snapshot at index ${msg.snapshot.index} (${totalBytes} bytes) to peer ${to}`);
    return send.done.then(
      () => {
        this.#snapshotSends.delete(send);
        link.stats.snapshotsSent++;
        link.stats.snapshotBytesSent += totalBytes;
        this.#log.info({ event: 'snapshot_send_done', peer: to, bytes: totalBytes, ms: Date.now() - started }, `snapshot delivered to peer ${to}`);
      },
      (err: unknown) => {
        this.#snapshotSends.delete(send);
        this.#log.warn({ event: 'snapshot_send_failed', peer: to, err: (err as Error).message }, (err as Error).message);
        throw err;
      },
    );
  }

  /**
   * The drop switch of a drill's isolate fault: while on, every Raft message
   * this node sends or receives is dropped (connections stay open, so the
   * fault ends the moment it is switched off), and snapshot sends fail.
   */
  setDropAll(on: boolean): void {
    if (on === this.#dropAll) return;
    this.#dropAll = on;
    this.#log.warn({ event: on ? 'peer_traffic_dropped' : 'peer_traffic_restored' }, on ? 'dropping all peer traffic (drill isolate fault)' : 'peer traffic restored (drill isolate fault over)');
  }

  get droppingAll(): boolean {
    return this.#dropAll;
  }

  /** Per-peer counters for the peers in the current peer set. */
  stats(): Map<number, PeerStats> {
    const out = new Map<number, PeerStats>();
    for (const [id, l] of this.#links) {
      out.set(id, { ...l.stats, connected: l.connected, inboundConnected: this.#inbound.has(id) });
    }
    return out;
  }

  /** Stop listening, drop every connection, fail snapshot streams in flight. No callbacks fire afterwards. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    for (const link of this.#links.values()) this.#dialer.drop(link);
    this.#links.clear();
    for (const s of this.#snapshotSends) s.abort('transport closed');
    for (const c of this.#accepted) c.close({ initiator: 'local', detail: 'transport closed' });
    this.#inbound.clear();
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** This node's current key period (per-period handshake keys, handshake.ts). */
  #keyPeriod(): number {
    return Math.floor((this.#o.clock ?? Date.now)() / (this.#o.keyPeriodMs ?? DEFAULT_KEY_PERIOD_MS));
  }

  #dialNowIfWaiting(peerId: number): void {
    const link = this.#links.get(peerId);
    if (link) this.#dialer.dialNowIfWaiting(link);
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closing) return;
    const now = Date.now();
    for (const link of this.#links.values()) {
      if (link.queue.length === 0) continue;
      const queue = link.queue;
      link.queue = [];
      link.queuedBytes = 0;
      const conn = link.conn;
      if (!link.connected || !conn || conn.closed) {
        link.stats.dropped += queue.length;
        continue;
      }
      // One frame per flush, split only if a batch would exceed the frame limit.
      let start = 0;
      while (start < queue.length) {
        let end = start;
        let bytes = 0;
        while (end < queue.length && (end === start || bytes + estimateMessageBytes(queue[end]!) <= this.#frameBytesMax)) {
          bytes += estimateMessageBytes(queue[end]!);
          end++;
        }
        const pieces = encodeMessagesFramePieces(queue.slice(start, end));
        conn.writePieces(pieces);
        for (const p of pieces) link.stats.bytesSent += p.length;
        link.stats.msgsSent += end - start;
        start = end;
      }
      link.lastWriteMs = now;
    }
  }

  #pingIdle(): void {
    const now = Date.now();
    const interval = this.#o.pingIntervalMs ?? 1000;
    for (const link of this.#links.values()) {
      if (!link.connected || !link.conn || now - link.lastWriteMs < interval) continue;
      link.conn.write(encodeFrame('ping'));
      link.lastWriteMs = now;
    }
  }

  #noteDrop(link: Link): void {
    const now = Date.now();
    if (now - link.lastDropLogMs < DROP_LOG_MS) return;
    link.lastDropLogMs = now;
    this.#log.warn({ event: 'peer_backpressure', peer: link.id, dropped: link.stats.dropped, pendingBytes: link.queuedBytes + (link.conn?.writableLength ?? 0), maxPendingBytes: this.#maxPendingBytes },
      `peer ${link.id} is slow: outbound bound of ${this.#maxPendingBytes} bytes reached, dropping messages (${link.stats.dropped} so far)`);
  }

  #reportDown(peerId: number, info: CloseInfo): void {
    if (this.#closing || this.#reportedDown.has(peerId)) return;
    const reason: DisconnectReason = info.initiator === 'timeout' ? 'timeout' : info.initiator === 'local' ? 'closed' : 'reset';
    this.#reportedDown.add(peerId);
    this.#o.onPeerDisconnected(peerId, reason);
  }

  // ---- inbound (./acceptor.ts) ------------------------------------------

  #acceptorHost(): AcceptorHost {
    return {
      o: this.#o, log: this.#log, inbound: this.#inbound, snapshotIn: this.#snapshotIn, accepted: this.#accepted, tlsAuto: this.#tlsAuto,
      closing: () => this.#closing,
      dropAll: () => this.#dropAll,
      secret: () => this.#secret,
      previousSecret: () => this.#previousSecret,
      tls: () => this.#tls,
      isPeer: (id) => this.#links.has(id),
      peerHost: (id) => this.#links.get(id)?.addr.host,
      peerStats: (id) => this.#links.get(id)?.stats,
      peerUp: (id) => {
        this.#reportedDown.delete(id);
        this.#dialNowIfWaiting(id);
      },
      keyPeriod: () => this.#keyPeriod(),
      reportDown: (id, info) => this.#reportDown(id, info),
    };
  }
}
