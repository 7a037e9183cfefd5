// The dial side of the peer transport (./peer-transport.ts): this node's
// outbound message connection to each peer (a Link), dialed, authenticated
// (./dialer-handshake.ts), redialed with jittered exponential backoff, and
// replaced make-before-break (redialAll). The transport owns the links (their
// queues, flush and bounds) and reports outages; the accept side is
// ./acceptor.ts. Snapshot streams dial through socket() and handshake() too.
import type { Socket } from 'node:net';
import type { Message } from '../raft/types.js';
import type { Channel, Frame, Hello } from './codec.js';
import { FramedConn } from './connection.js';
import type { CloseInfo } from './connection.js';
import { DialerHandshake } from './dialer-handshake.js';
import { FrameError } from './errors.js';
import { GENERATION_SUPERSEDED, MIN_COMPATIBLE_VERSION, PROTOCOL_VERSION } from './handshake.js';
import type { TlsMaterial } from './security.js';
import { dialPeerSocket } from './tls-peer.js';
import type { PeerAddress, PeerTransportOptions, TransportLogger } from './options.js';

export interface MutableStats {
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
export interface Link {
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
  /** A second connection being opened to replace the established one (redialAll): swapped in once established. */
  replacement: FramedConn | undefined;
  lastDropLogMs: number;
  removed: boolean;
  readonly stats: MutableStats;
}

/** A link to a peer not dialed yet. */
export function newLink(id: number, addr: PeerAddress): Link {
  return {
    id, addr: { host: addr.host, port: addr.port }, conn: undefined, connected: false, timer: undefined, attempt: 0,
    everConnected: false, queue: [], queuedBytes: 0, lastWriteMs: 0, lastProblem: undefined, lastProblemLogMs: 0,
    redialing: false, replacement: undefined, lastDropLogMs: 0, removed: false,
    stats: { bytesSent: 0, msgsSent: 0, bytesReceived: 0, msgsReceived: 0, dropped: 0, reconnects: 0, snapshotsSent: 0, snapshotBytesSent: 0 },
  };
}

const REFUSAL_RELOG_MS = 30_000;

/** What the dialer reads from and reports to its transport. */
export interface DialerHost {
  readonly o: PeerTransportOptions;
  readonly log: TransportLogger;
  closing(): boolean;
  secret(): Uint8Array;
  tls(): TlsMaterial | undefined;
  /** This node's current key period (per-period handshake keys). */
  keyPeriod(): number;
  /** A message connection to the peer is established: a later outage is reported again. */
  connected(peerId: number): void;
  reportDown(peerId: number, info: CloseInfo): void;
}

export class Dialer {
  readonly #h: DialerHost;

  constructor(host: DialerHost) {
    this.#h = host;
  }

  #hello(toId: number, channel: Channel): Hello {
    return {
      protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION, haId: this.#h.o.haId,
      fromId: this.#h.o.nodeId, fromName: this.#h.o.nodeName, toId, channel,
      apiUrl: this.#h.o.apiUrl ?? '', role: (this.#h.o.role ?? '') as Hello['role'], incarnation: this.#h.o.incarnation ?? '',
      ...(this.#h.o.featureLevel !== undefined ? { featureLevel: this.#h.o.featureLevel } : {}),
      ...(this.#h.o.clusterSettings !== undefined ? { settings: this.#h.o.clusterSettings } : {}),
      ...((this.#h.o.generation ?? 0) > 0 ? { generation: this.#h.o.generation } : {}),
    };
  }

  handshake(link: Link, channel: Channel): DialerHandshake {
    const o = this.#h.o;
    const keys = o.usePeriodKeys === undefined ? undefined : { enabled: () => o.usePeriodKeys!(), period: () => this.#h.keyPeriod() };
    return new DialerHandshake(this.#h.secret(), this.#hello(link.id, channel), `${link.addr.host}:${link.addr.port}`, keys);
  }

  socket(addr: PeerAddress): Socket {
    return dialPeerSocket(this.#h.tls(), addr);
  }

  dial(link: Link): void {
    link.timer = undefined;
    if (this.#h.closing() || link.removed) return;
    link.conn = this.open(link);
  }

  /** A new outbound message connection to the link's peer, its handshake started. */
  open(link: Link): FramedConn {
    const socket = this.socket(link.addr);
    const handshakeMs = this.#h.o.handshakeTimeoutMs ?? 5000;
    const hs = this.handshake(link, 'messages');
    const conn: FramedConn = new FramedConn(socket, {
      ...(this.#h.o.frameLimits ? { limits: this.#h.o.frameLimits } : {}),
      onFrame: (f) => this.#onDialerFrame(link, conn, hs, f),
      onClose: (info) => this.#onDialerClose(link, conn, info),
      onProtocolError: (err) => this.#h.log.warn({ event: 'peer_frame_invalid', peer: link.id, channel: 'messages', offset: err.offset, reason: err.reason }, `closing connection to peer ${link.id}: ${err.message}`),
    });
    socket.setTimeout(handshakeMs); // cleared once established
    conn.write(hs.openFrame());
    return conn;
  }

  #onDialerFrame(link: Link, conn: FramedConn, hs: DialerHandshake, f: Frame): void {
    if (conn === link.replacement) return this.#onReplacementFrame(link, conn, hs, f);
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
      if (r.code === 'removed') this.#h.o.onRemovedByPeer?.(link.id, r.reason);
      if (r.code === GENERATION_SUPERSEDED) this.#h.o.onSupersededByPeer?.(link.id, r.reason);
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
    this.#h.connected(link.id);
    this.#h.log.info({ event: 'peer_connected', peer: link.id, name: ack.nodeName, version: ack.protocolVersion, direction: 'out' }, `connected to peer ${link.id} (${ack.nodeName})`);
    this.#h.o.onPeerAck?.(link.id, {
      knownIncarnation: ack.knownIncarnation === '' ? undefined : ack.knownIncarnation, featureLevel: ack.featureLevel ?? 1,
      nodeName: ack.nodeName, ...(ack.settings !== undefined ? { settings: ack.settings } : {}),
    });
  }

  /** The handshake of a replacement connection (redialAll); the established one carries the messages meanwhile. */
  #onReplacementFrame(link: Link, conn: FramedConn, hs: DialerHandshake, f: Frame): void {
    const step = hs.step(f);
    if (step.kind === 'send') {
      conn.write(step.frame);
      return;
    }
    if (step.kind !== 'established') {
      // Keep the established connection; the next redial (or reconnect) tries again.
      const why = step.kind === 'refused' ? `refused: ${step.refusal.reason}` : step.reason;
      link.replacement = undefined;
      this.#h.log.warn({ event: 'peer_redial_failed', peer: link.id, reason: why }, `could not replace the connection to peer ${link.id} (${why}); keeping the established one`);
      conn.close({ initiator: 'local', detail: why });
      return;
    }
    const old = link.conn;
    link.conn = conn;
    link.replacement = undefined;
    conn.markEstablished();
    conn.socket.setTimeout(0);
    this.#h.log.info({ event: 'peer_reconnected', peer: link.id, name: step.ack.nodeName, version: step.ack.protocolVersion, direction: 'out' }, `replaced the connection to peer ${link.id} (${step.ack.nodeName})`);
    old?.close({ initiator: 'local', detail: 'replaced by a new connection' });
  }

  #onDialerClose(link: Link, conn: FramedConn, info: CloseInfo): void {
    if (conn === link.replacement) link.replacement = undefined;
    if (link.conn !== conn) return;
    if (link.replacement) {
      // The established connection ended while its replacement handshakes (typically the acceptor, having taken the
      // new one, closed the old one first): the replacement becomes the link's connection, not an outage.
      link.conn = link.replacement;
      link.replacement = undefined;
      link.connected = false;
      dropQueued(link);
      return;
    }
    const wasConnected = link.connected;
    link.conn = undefined;
    link.connected = false;
    dropQueued(link);
    if (this.#h.closing() || link.removed) return;
    if (link.redialing) {
      link.redialing = false;
      this.dial(link);
      return;
    }
    if (wasConnected) {
      this.#h.log.warn({ event: 'peer_disconnected', peer: link.id, direction: 'out', initiator: info.initiator, detail: info.detail }, `connection to peer ${link.id} lost: ${info.detail}`);
      this.#h.reportDown(link.id, info);
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
      this.#h.log[level](obj, text);
      link.lastProblemLogMs = now;
    } else {
      this.#h.log.debug(obj, text);
    }
    link.lastProblem = key;
  }

  /**
   * The peer is back (it dialed us and authenticated): dial it now instead of
   * at the end of the backoff, which grew to seconds while it was down. A
   * restarted follower then hears the leader within a round trip of its start.
   */
  dialNowIfWaiting(link: Link): void {
    if (link.removed || this.#h.closing() || link.conn !== undefined || link.timer === undefined) return;
    clearTimeout(link.timer);
    link.attempt = 0;
    this.dial(link);
  }

  #scheduleDial(link: Link): void {
    if (link.timer || this.#h.closing() || link.removed) return;
    const { initialMs, maxMs } = this.#h.o.backoff ?? { initialMs: 50, maxMs: 2000 };
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(link.attempt, 30));
    link.attempt++;
    const delayMs = Math.round(base * (0.5 + Math.random()));
    link.timer = setTimeout(() => this.dial(link), delayMs);
    link.timer.unref();
  }

  drop(link: Link): void {
    link.removed = true;
    if (link.timer) clearTimeout(link.timer);
    link.timer = undefined;
    link.conn?.close({ initiator: 'local', detail: 'peer removed' });
    link.conn = undefined;
    link.replacement?.close({ initiator: 'local', detail: 'peer removed' });
    link.replacement = undefined;
    link.connected = false;
    link.queue = [];
    link.queuedBytes = 0;
  }
}

/** Messages queued for a connection that ended are dropped (counted): Raft retransmits what matters. */
function dropQueued(link: Link): void {
  if (link.queue.length === 0) return;
  link.stats.dropped += link.queue.length;
  link.queue = [];
  link.queuedBytes = 0;
}
