// PeerTransport: Raft messages and snapshot streams between quorate nodes.
//
// Connections: each node dials every peer for its OWN outbound messages and
// accepts the peers' connections for inbound ones — two TCP connections per
// pair, one per direction. No tie-break when both sides dial at once, each
// side owns exactly the socket it writes to (its queue, backoff and
// backpressure), and a dead peer is seen on both (EOF / RST). Snapshots use a
// third, short-lived connection each, so they never delay heartbeats.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect, createServer as netCreateServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Message } from '../raft/types.js';
import {
  decodeAuth, decodeHelloOpen, decodeJoinAuth, decodeMessages, DEFAULT_FRAME_LIMITS, encodeChallenge, encodeFrame, encodeHelloAck,
  encodeMessages, encodeRefusal, estimateMessageBytes, INCARNATION_MAX, REFUSED,
} from './codec.js';
import type { Channel, Frame, Hello } from './codec.js';
import { FramedConn } from './connection.js';
import type { CloseInfo } from './connection.js';
import { DialerHandshake } from './dialer-handshake.js';
import { AddressLimit, DEFAULT_MAX_PEER_CONNECTIONS_PER_ADDRESS } from './address-limit.js';
import { FrameError, PeerUnknown, SnapshotTransferFailed, TransportClosed, TransportConfigError } from './errors.js';
import {
  acceptorMac, CLUSTER_SECRET_MIN_BYTES, describeRange, dialerMac, GENERATION_SUPERSEDED, judgeHello, macEqual, MIN_COMPATIBLE_VERSION,
  negotiateVersion, newNonce, PROTOCOL_VERSION,
} from './handshake.js';
import { assertTransportSecurity, certificateNamesHost, clientTlsOptions, isTlsAuto, loadTlsMaterial, serverTlsOptions, type TlsMaterial } from './security.js';
import { sendSnapshotOver, SnapshotReceiver } from './snapshot.js';
import type { SnapshotSend } from './snapshot.js';
import type { DisconnectReason, PeerAddress, PeerStats, PeerTransportOptions, TransportLogger } from './options.js';

const MiB = 1024 * 1024;

interface MutableStats {
  bytesSent: number;
  msgsSent: number;
  bytesReceived: number;
  msgsReceived: number;
  dropped: number;
  reconnects: number;
  snapshotsSent: number;
  snapshotBytesSent: number;
}

/** Our outbound message connection to one peer. */
interface Link {
  readonly id: number;
  addr: PeerAddress;
  conn: FramedConn | undefined;
  connected: boolean;
  timer: NodeJS.Timeout | undefined;
  attempt: number;
  everConnected: boolean;
  queue: Message[];
  queuedBytes: number;
  lastWriteMs: number;
  /** Last dial problem logged (refusal or connect failure), to log each distinct one once per REFUSAL_RELOG_MS. */
  lastProblem: string | undefined;
  lastProblemLogMs: number;
  /** The connection is being replaced on purpose (address change): not an outage. */
  redialing: boolean;
  lastDropLogMs: number;
  removed: boolean;
  readonly stats: MutableStats;
}

const REFUSAL_RELOG_MS = 30_000;
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
    (this.#server as ReturnType<typeof tlsCreateServer> | undefined)?.setSecureContext({ cert: m.cert, key: m.key, ca: m.ca as string[], minVersion: 'TLSv1.3' });
    this.#log.info({ event: 'peer_tls_material' }, 'peer TLS certificate and trust roots replaced');
  }

  /** Start accepting peers. Resolves with the bound port (useful with listenPort 0). */
  listen(): Promise<{ port: number }> {
    if (this.#closing) return Promise.reject(new TransportClosed('listen() after close()'));
    if (this.#server) return Promise.reject(new Error('PeerTransport.listen() called twice'));
    const server = this.#tls
      ? tlsCreateServer(serverTlsOptions(this.#tls, this.#tlsAuto), (s) => this.#accept(s))
      : netCreateServer((s) => this.#accept(s));
    if (this.#tls) {
      server.on('tlsClientError', (err: Error & { code?: string }, s: Socket) => {
        // A reset socket no longer knows its peer; the accepted TCP socket under it cached it (read by AddressLimit).
        const raw = (s as Socket & { _parent?: Socket })._parent;
        const remote = s.remoteAddress !== undefined ? `${s.remoteAddress}:${s.remotePort}` : `${raw?.remoteAddress}:${raw?.remotePort}`;
        this.#log.warn({ event: 'peer_tls_rejected', remote, code: err.code, err: err.message }, `peer TLS handshake rejected from ${remote}: ${err.message}`);
      });
    }
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
        this.#dropLink(link);
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
      const link: Link = {
        id, addr: { host: addr.host, port: addr.port }, conn: undefined, connected: false, timer: undefined, attempt: 0,
        everConnected: false, queue: [], queuedBytes: 0, lastWriteMs: 0, lastProblem: undefined, lastProblemLogMs: 0,
        redialing: false, lastDropLogMs: 0, removed: false,
        stats: { bytesSent: 0, msgsSent: 0, bytesReceived: 0, msgsReceived: 0, dropped: 0, reconnects: 0, snapshotsSent: 0, snapshotBytesSent: 0 },
      };
      this.#links.set(id, link);
      this.#dial(link);
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
    const socket = this.#dialSocket(link.addr);
    const started = Date.now();
    const send = sendSnapshotOver({
      socket, handshake: this.#dialerHandshake(link, 'snapshot'), peerId: to, msg, chunks, totalBytes, chunkBytes: this.#chunkBytes,
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
    for (const link of this.#links.values()) this.#dropLink(link);
    this.#links.clear();
    for (const s of this.#snapshotSends) s.abort('transport closed');
    for (const c of this.#accepted) c.close({ initiator: 'local', detail: 'transport closed' });
    this.#inbound.clear();
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- outbound ----------------------------------------------------------

  #hello(toId: number, channel: Channel): Hello {
    return {
      protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION, haId: this.#o.haId,
      fromId: this.#o.nodeId, fromName: this.#o.nodeName, toId, channel,
      apiUrl: this.#o.apiUrl ?? '', role: (this.#o.role ?? '') as Hello['role'], incarnation: this.#o.incarnation ?? '',
      ...(this.#o.featureLevel !== undefined ? { featureLevel: this.#o.featureLevel } : {}),
      ...(this.#o.clusterSettings !== undefined ? { settings: this.#o.clusterSettings } : {}),
      ...((this.#o.generation ?? 0) > 0 ? { generation: this.#o.generation } : {}),
    };
  }

  #dialerHandshake(link: Link, channel: Channel): DialerHandshake {
    return new DialerHandshake(this.#secret, this.#hello(link.id, channel), `${link.addr.host}:${link.addr.port}`);
  }

  #dialSocket(addr: PeerAddress): Socket {
    return this.#tls
      ? tlsConnect({ host: addr.host, port: addr.port, ...clientTlsOptions(this.#tls, addr.host) })
      : netConnect({ host: addr.host, port: addr.port });
  }

  #dial(link: Link): void {
    link.timer = undefined;
    if (this.#closing || link.removed) return;
    const socket = this.#dialSocket(link.addr);
    const handshakeMs = this.#o.handshakeTimeoutMs ?? 5000;
    const hs = this.#dialerHandshake(link, 'messages');
    const conn: FramedConn = new FramedConn(socket, {
      ...(this.#o.frameLimits ? { limits: this.#o.frameLimits } : {}),
      onFrame: (f) => this.#onDialerFrame(link, conn, hs, f),
      onClose: (info) => this.#onDialerClose(link, conn, info),
      onProtocolError: (err) => this.#log.warn({ event: 'peer_frame_invalid', peer: link.id, channel: 'messages', offset: err.offset, reason: err.reason }, `closing connection to peer ${link.id}: ${err.message}`),
    });
    link.conn = conn;
    socket.setTimeout(handshakeMs); // cleared once established
    conn.write(hs.openFrame());
  }

  #onDialerFrame(link: Link, conn: FramedConn, hs: DialerHandshake, f: Frame): void {
    if (link.connected) {
      if (f.type === 'ping') return;
      throw new FrameError(f.offset, `unexpected ${f.type} frame from the acceptor of an outbound message connection`);
    }
    const step = hs.step(f);
    if (step.kind === 'send') {
      conn.write(step.frame);
      return;
    }
    if (step.kind === 'refused') {
      const r = step.refusal;
      if (r.code === 'removed') this.#o.onRemovedByPeer?.(link.id, r.reason);
      if (r.code === GENERATION_SUPERSEDED) this.#o.onSupersededByPeer?.(link.id, r.reason);
      this.#logDialProblem(link, 'error', { event: 'peer_refused', peer: link.id, code: r.code, reason: r.reason },
        `peer ${link.id} at ${link.addr.host}:${link.addr.port} refused the connection (${r.reason}); its log says why — check that both nodes hold the same cluster secret (security.clusterSecretFile), cluster.haId and compatible versions`);
      conn.close({ initiator: 'local', detail: `refused: ${r.reason}` });
      return;
    }
    if (step.kind === 'failed') {
      this.#logDialProblem(link, 'error', { event: 'peer_auth_failed', peer: link.id, reason: step.reason }, step.reason);
      conn.close({ initiator: 'local', detail: step.reason });
      return;
    }
    const ack = step.ack;
    conn.markEstablished();
    conn.socket.setTimeout(0);
    link.connected = true;
    link.attempt = 0;
    link.lastProblem = undefined;
    if (link.everConnected) link.stats.reconnects++;
    link.everConnected = true;
    this.#reportedDown.delete(link.id);
    this.#log.info({ event: 'peer_connected', peer: link.id, name: ack.nodeName, version: ack.protocolVersion, direction: 'out' }, `connected to peer ${link.id} (${ack.nodeName})`);
    this.#o.onPeerAck?.(link.id, {
      knownIncarnation: ack.knownIncarnation === '' ? undefined : ack.knownIncarnation, featureLevel: ack.featureLevel ?? 1,
      nodeName: ack.nodeName, ...(ack.settings !== undefined ? { settings: ack.settings } : {}),
    });
  }

  #onDialerClose(link: Link, conn: FramedConn, info: CloseInfo): void {
    if (link.conn !== conn) return;
    const wasConnected = link.connected;
    link.conn = undefined;
    link.connected = false;
    if (link.queue.length > 0) {
      link.stats.dropped += link.queue.length;
      link.queue = [];
      link.queuedBytes = 0;
    }
    if (this.#closing || link.removed) return;
    if (link.redialing) {
      link.redialing = false;
      this.#dial(link);
      return;
    }
    if (wasConnected) {
      this.#log.warn({ event: 'peer_disconnected', peer: link.id, direction: 'out', initiator: info.initiator, detail: info.detail }, `connection to peer ${link.id} lost: ${info.detail}`);
      this.#reportDown(link.id, info);
    } else if (info.initiator !== 'local') {
      this.#logDialProblem(link, 'warn', { event: 'peer_dial_failed', peer: link.id, detail: info.detail },
        `cannot connect to peer ${link.id} at ${link.addr.host}:${link.addr.port}: ${info.detail}`);
    }
    this.#scheduleDial(link);
  }

  /** Log each distinct dial problem at `level` once per REFUSAL_RELOG_MS; repeats go to debug. */
  #logDialProblem(link: Link, level: 'warn' | 'error', obj: Record<string, unknown>, text: string): void {
    const now = Date.now();
    const key = String(obj['reason'] ?? obj['detail']);
    if (key !== link.lastProblem || now - link.lastProblemLogMs > REFUSAL_RELOG_MS) {
      this.#log[level](obj, text);
      link.lastProblemLogMs = now;
    } else {
      this.#log.debug(obj, text);
    }
    link.lastProblem = key;
  }

  /**
   * The peer is back (it dialed us and authenticated): dial it now instead of
   * at the end of the backoff, which grew to seconds while it was down. A
   * restarted follower then hears the leader within a round trip of its start.
   */
  #dialNowIfWaiting(peerId: number): void {
    const link = this.#links.get(peerId);
    if (!link || link.removed || this.#closing || link.conn !== undefined || link.timer === undefined) return;
    clearTimeout(link.timer);
    link.attempt = 0;
    this.#dial(link);
  }

  #scheduleDial(link: Link): void {
    if (link.timer || this.#closing || link.removed) return;
    const { initialMs, maxMs } = this.#o.backoff ?? { initialMs: 50, maxMs: 2000 };
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(link.attempt, 30));
    link.attempt++;
    const delayMs = Math.round(base * (0.5 + Math.random()));
    link.timer = setTimeout(() => this.#dial(link), delayMs);
    link.timer.unref();
  }

  #dropLink(link: Link): void {
    link.removed = true;
    if (link.timer) clearTimeout(link.timer);
    link.timer = undefined;
    link.conn?.close({ initiator: 'local', detail: 'peer removed' });
    link.conn = undefined;
    link.connected = false;
    link.queue = [];
    link.queuedBytes = 0;
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
        const frame = encodeFrame('messages', encodeMessages(queue.slice(start, end)));
        conn.write(frame);
        link.stats.bytesSent += frame.length;
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

  // ---- inbound -----------------------------------------------------------

  #accept(socket: Socket): void {
    if (this.#closing || socket.destroyed) {
      socket.destroy();
      return;
    }
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    let peerId = 0;
    let state: 'open' | 'auth' | 'messages' | 'snapshot' | 'done' = 'open';
    let receiver: SnapshotReceiver | undefined;
    let lastProgressLog = Date.now();
    let dialerNonce: Uint8Array | undefined;
    let acceptorNonce: Uint8Array | undefined;
    let version = 0;
    const handshakeTimer = setTimeout(() => conn.close({ initiator: 'timeout', detail: 'handshake not completed in time' }), this.#o.handshakeTimeoutMs ?? 5000);
    handshakeTimer.unref();
    /** Refuse an unauthenticated dialer: it hears "refused"; the reason stays in this node's log. */
    const refuse = (code: string, reason: string, extra: Record<string, unknown> = {}): void => {
      clearTimeout(handshakeTimer);
      this.#log.warn({ event: 'peer_refused_inbound', remote, code, reason, ...extra }, `refused connection from ${remote}: ${reason}`);
      state = 'done';
      conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal(REFUSED)));
    };

    const conn: FramedConn = new FramedConn(socket, {
      ...(this.#o.frameLimits ? { limits: this.#o.frameLimits } : {}),
      onProtocolError: (err) => this.#log.warn({ event: 'peer_frame_invalid', peer: peerId || undefined, remote, channel: state, offset: err.offset, reason: err.reason }, `closing connection from ${peerId ? `peer ${peerId}` : remote}: ${err.message}`),
      onFrame: (f) => {
        if (state === 'open') {
          if (f.type !== 'hello') throw new FrameError(f.offset, `expected a hello frame first, got ${f.type}`);
          const open = decodeHelloOpen(f.payload, f.offset);
          const me = { protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION };
          if (open.versions && negotiateVersion(me, open.versions) === undefined) {
            return refuse('version_incompatible', `protocol versions incompatible: the dialer speaks ${describeRange(open.versions)}, this node ${JSON.stringify(this.#o.nodeName)} speaks ${describeRange(me)}` +
              (open.versions.protocolVersion < 2 ? ' (version 1 peers do not authenticate: upgrade them)' : ''));
          }
          if (!open.open) return refuse('hello_invalid', `invalid hello: ${open.problem ?? 'unreadable'}`);
          dialerNonce = open.open.nonce;
          acceptorNonce = newNonce();
          state = 'auth';
          conn.write(encodeFrame('challenge', encodeChallenge({ nonce: acceptorNonce, protocolVersion: PROTOCOL_VERSION })));
          return;
        }
        if (state === 'auth' && f.type === 'joinAuth') {
          // The join exchange (join.ts): the node decides and builds the answer frame.
          const onJoin = this.#o.onJoin;
          if (onJoin === undefined) return refuse('join_unsupported', 'a join request arrived, but this node does not take joins');
          let ja: ReturnType<typeof decodeJoinAuth>;
          try {
            ja = decodeJoinAuth(f.payload, f.offset);
          } catch (err) {
            if (err instanceof FrameError) return refuse('hello_invalid', `invalid joinAuth frame: ${err.reason}`);
            throw err;
          }
          clearTimeout(handshakeTimer);
          state = 'done';
          socket.setTimeout(30_000);
          void onJoin(ja, dialerNonce!, acceptorNonce!).then(
            (frame) => conn.endWith({ initiator: 'local', detail: 'join answered' }, frame),
            (err: unknown) => {
              this.#log.warn({ event: 'join_failed', remote, err: (err as Error).message }, `join request from ${remote} failed: ${(err as Error).message}`);
              conn.endWith({ initiator: 'local', detail: 'join failed' }, encodeFrame('refuse', encodeRefusal(REFUSED)));
            },
          );
          return;
        }
        if (state === 'auth' && this.#tlsAuto && !(socket as TLSSocket).authorized) {
          // Only the join exchange goes without a certificate of the cluster CA.
          const why = (socket as TLSSocket).authorizationError;
          return refuse('certificate_required', `the dialer presented no certificate of this cluster's CA (${why === null || why === undefined ? 'none' : String(why)}): only a join request may come without one`);
        }
        if (state === 'auth') {
          if (f.type !== 'auth') throw new FrameError(f.offset, `expected an auth frame, got ${f.type}`);
          let auth: ReturnType<typeof decodeAuth>;
          try {
            auth = decodeAuth(f.payload, f.offset);
          } catch (err) {
            if (err instanceof FrameError) return refuse('hello_invalid', `invalid auth frame: ${err.reason}`);
            throw err;
          }
          const hello = auth.hello;
          const claimed = { claimedId: hello.fromId, claimedName: hello.fromName };
          const prev = this.#previousSecret;
          if (prev !== undefined && macEqual(dialerMac(prev, dialerNonce!, acceptorNonce!, hello), auth.mac)) {
            // It holds the secret before the last rotation: say so (to it too: it proved that secret), never accept it.
            const reason = `node ${JSON.stringify(hello.fromName)} (claiming id ${hello.fromId}) proved the previous cluster secret, rotated since by \`quorate isolate\`: ` +
              'a member that was down during the rotation gets the current one by copying security.clusterSecretFile from a member (then restart it), or by enrollment; an isolated node stays refused';
            clearTimeout(handshakeTimer);
            this.#log.warn({ event: 'peer_refused_inbound', remote, code: 'secret_rotated', reason, ...claimed }, `refused connection from ${remote}: ${reason}`);
            state = 'done';
            conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal({ code: 'secret_rotated', reason })));
            return;
          }
          if (!macEqual(dialerMac(this.#secret, dialerNonce!, acceptorNonce!, hello), auth.mac)) {
            return refuse('auth_failed', `the dialer's proof did not verify: it does not hold this cluster's secret (security.clusterSecretFile), or the handshake was altered (it claimed node id ${hello.fromId})`, claimed);
          }
          const allowed = this.#o.allowedPeerIds;
          const verdict = judgeHello(hello, {
            nodeId: this.#o.nodeId, nodeName: this.#o.nodeName, haId: this.#o.haId,
            protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION,
            ...(allowed === undefined ? {} : { isAllowed: (id: number) => (allowed === 'peers' ? this.#links.has(id) : allowed.includes(id)) }),
            ...(this.#o.clusterSettings !== undefined ? { settings: this.#o.clusterSettings } : {}),
            generation: this.#o.generation ?? 0,
          });
          if (!verdict.ok && (verdict.code === GENERATION_SUPERSEDED || verdict.code === 'generation_newer')) {
            // It proved the cluster secret: tell it why (an old-generation node then serves no data, src/node/generation.ts).
            clearTimeout(handshakeTimer);
            this.#log.warn({ event: 'peer_refused_generation', remote, code: verdict.code, generation: this.#o.generation ?? 0, theirs: hello.generation ?? 0, reason: verdict.reason, ...claimed },
              `refused connection from ${remote}: ${verdict.reason}`);
            state = 'done';
            conn.endWith({ initiator: 'local', detail: verdict.reason }, encodeFrame('refuse', encodeRefusal({ code: verdict.code, reason: verdict.reason })));
            return;
          }
          if (!verdict.ok && verdict.code === 'peer_unknown' && this.#o.isRemovedPeer?.(hello.fromId)) {
            // It proved the cluster secret: tell it why, so it stops serving (src/node: role removed).
            const reason = `node id ${hello.fromId} was removed from cluster ${JSON.stringify(this.#o.haId)}; its id is never reused`;
            clearTimeout(handshakeTimer);
            this.#log.warn({ event: 'peer_refused_inbound', remote, code: 'removed', reason, ...claimed }, `refused connection from ${remote}: ${reason}`);
            state = 'done';
            conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal({ code: 'removed', reason })));
            return;
          }
          if (!verdict.ok) return refuse(verdict.code, verdict.reason, claimed);
          const identity = this.#o.identityProblem?.(hello);
          if (identity !== undefined) return refuse('identity_mismatch', identity, claimed);
          if (this.#tls && this.#o.peerCertificateProblem) {
            const problem = this.#o.peerCertificateProblem(hello.fromId, (socket as TLSSocket).getPeerCertificate?.()?.subjectaltname);
            if (problem !== undefined) return refuse('certificate_mismatch', problem, claimed);
          } else if (this.#tls) {
            const expected = this.#o.expectedPeerHost ? this.#o.expectedPeerHost(hello.fromId) : this.#links.get(hello.fromId)?.addr.host;
            const san = (socket as TLSSocket).getPeerCertificate?.()?.subjectaltname;
            if (expected === undefined) return refuse('certificate_mismatch', `node id ${hello.fromId} has no known peer host to check its certificate against`, claimed);
            if (!certificateNamesHost(san, expected)) {
              return refuse('certificate_mismatch', `the client certificate (subjectAltName ${san ?? 'none'}) does not name ${expected}, the host of node id ${hello.fromId}: a member may not claim another member's id`, claimed);
            }
          }
          clearTimeout(handshakeTimer);
          version = verdict.version;
          peerId = hello.fromId;
          conn.markEstablished();
          const ackBody = {
            protocolVersion: version, nodeId: this.#o.nodeId, nodeName: this.#o.nodeName, haId: this.#o.haId, incarnation: this.#o.incarnation ?? '',
            knownIncarnation: this.#o.recordedIncarnation?.(hello.fromId) ?? '',
            // Our level only to a dialer that sent its own: an older one would not verify our MAC over it.
            ...(hello.featureLevel !== undefined && this.#o.featureLevel !== undefined ? { featureLevel: this.#o.featureLevel } : {}),
            // Likewise our settings only to a dialer that sent its own (version 4+).
            ...(hello.settings !== undefined && this.#o.clusterSettings !== undefined ? { settings: this.#o.clusterSettings } : {}),
            ...((this.#o.generation ?? 0) > 0 ? { generation: this.#o.generation } : {}),
          };
          const mac = acceptorMac(this.#secret, dialerNonce!, acceptorNonce!, auth.mac, hello.fromId, hello.channel, ackBody);
          conn.write(encodeFrame('helloAck', encodeHelloAck({ ...ackBody, mac })));
          if (hello.channel === 'snapshot') {
            state = 'snapshot';
            const older = this.#snapshotIn.get(peerId);
            this.#snapshotIn.set(peerId, conn);
            older?.close({ initiator: 'local', detail: 'superseded by a newer snapshot stream from the same peer' });
            receiver = new SnapshotReceiver(peerId, this.#o.nodeId, this.#o.maxSnapshotBytes ?? 1024 * MiB, this.#o.snapshotSpoolDir ?? join(tmpdir(), 'quorate-snapshots'));
            socket.setTimeout(this.#o.snapshotIdleTimeoutMs ?? 30_000);
            return;
          }
          state = 'messages';
          const old = this.#inbound.get(peerId);
          this.#inbound.set(peerId, conn);
          if (old) {
            // The peer redialed: the old connection is half-open or dying. Not an outage.
            this.#log.info({ event: 'peer_redialed', peer: peerId }, `peer ${peerId} opened a new connection; closing its old one`);
            old.close({ initiator: 'local', detail: 'superseded by a new connection from the same peer' });
          }
          this.#reportedDown.delete(peerId);
          socket.setTimeout(this.#o.idleTimeoutMs ?? 10_000);
          this.#log.info({ event: 'peer_connected', peer: peerId, name: hello.fromName, version, direction: 'in' }, `peer ${peerId} (${hello.fromName}) connected`);
          this.#dialNowIfWaiting(peerId);
          this.#o.onPeerHello?.(peerId, {
            nodeName: hello.fromName, apiUrl: hello.apiUrl, role: hello.role === '' ? undefined : hello.role, incarnation: hello.incarnation,
            featureLevel: hello.featureLevel ?? 1, ...(hello.settings !== undefined ? { settings: hello.settings } : {}),
          });
          return;
        }
        if (state === 'messages') {
          if (f.type === 'ping') return;
          if (f.type !== 'messages') throw new FrameError(f.offset, `unexpected ${f.type} frame on an inbound message connection`);
          const msgs = decodeMessages(f.payload, f.offset);
          for (let i = 0; i < msgs.length; i++) {
            const m = msgs[i]!;
            if (m.from !== peerId) throw new FrameError(f.offset, `messages[${i}].from ${m.from} differs from the connection's node id ${peerId}`);
            if (m.to !== this.#o.nodeId) throw new FrameError(f.offset, `messages[${i}].to ${m.to} is not this node (${this.#o.nodeId})`);
          }
          const st = this.#links.get(peerId)?.stats;
          if (st) {
            st.bytesReceived += f.payload.length + 5;
            st.msgsReceived += msgs.length;
          }
          if (msgs.length > 0 && !this.#dropAll) this.#o.onMessages(msgs);
          return;
        }
        if (state === 'snapshot' && receiver) {
          if (this.#dropAll) {
            conn.close({ initiator: 'local', detail: 'peer traffic is dropped by a drill (isolate fault)' });
            return;
          }
          const got = receiver.handle(f);
          const now = Date.now();
          if (!got && now - lastProgressLog >= 1000) {
            lastProgressLog = now;
            this.#log.info({ event: 'snapshot_receive_progress', peer: peerId, bytes: receiver.receivedBytes, total: receiver.declaredBytes },
              `snapshot from peer ${peerId}: ${receiver.receivedBytes}/${receiver.declaredBytes} bytes received`);
          }
          if (!got) return;
          state = 'done';
          this.#log.info({ event: 'snapshot_received', peer: peerId, index: got.meta.index, bytes: got.source.bytes }, `snapshot at index ${got.meta.index} (${got.source.bytes} bytes) received from peer ${peerId}`);
          this.#o.onSnapshot(peerId, got.meta, got.source, got.msg);
          conn.endWith({ initiator: 'local', detail: 'snapshot received' }, encodeFrame('snapshotAck'));
          return;
        }
        throw new FrameError(f.offset, `unexpected ${f.type} frame after the stream ended`);
      },
      onClose: (info) => {
        clearTimeout(handshakeTimer);
        this.#accepted.delete(conn);
        if (this.#snapshotIn.get(peerId) === conn) this.#snapshotIn.delete(peerId);
        if (state === 'snapshot') receiver?.abort();
        if (state === 'snapshot' && info.initiator !== 'local') {
          this.#log.warn({ event: 'snapshot_receive_failed', peer: peerId, receivedBytes: receiver?.receivedBytes, detail: info.detail }, `snapshot stream from peer ${peerId} ended early: ${info.detail}`);
        }
        if (peerId === 0 || state !== 'messages' || this.#inbound.get(peerId) !== conn) return;
        this.#inbound.delete(peerId);
        if (this.#closing) return;
        this.#log.warn({ event: 'peer_disconnected', peer: peerId, direction: 'in', initiator: info.initiator, detail: info.detail }, `connection from peer ${peerId} lost: ${info.detail}`);
        this.#reportDown(peerId, info);
      },
    });
    this.#accepted.add(conn);
  }
}
