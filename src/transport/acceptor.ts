// The acceptor's side of a peer connection (moved out of peer-transport.ts,
// no behaviour change): opening → challenge → auth (proof over the cluster
// secret, policy, identity, certificate) → helloAck, then the inbound message
// or snapshot stream. The join exchange branches off after the challenge.
// The transport's state it needs comes through AcceptorHost.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  decodeAuth, decodeHelloOpen, decodeJoinAuth, decodeMessages, encodeChallenge, encodeFrame, encodeHelloAck, encodeRefusal, REFUSED,
} from './codec.js';
import { FramedConn } from './connection.js';
import type { CloseInfo } from './connection.js';
import { FrameError } from './errors.js';
import {
  acceptorMac, DEFAULT_KEY_PERIOD_MS, describeRange, describeSkew, dialerMac, GENERATION_SUPERSEDED, judgeHello, KEY_PERIOD_SKEW, macEqual, MIN_COMPATIBLE_VERSION,
  negotiateVersion, newNonce, periodKey, PROTOCOL_VERSION,
} from './handshake.js';
import { certificateNamesHost, type TlsMaterial } from './security.js';
import { SnapshotReceiver } from './snapshot.js';
import type { PeerTransportOptions, TransportLogger } from './options.js';

const MiB = 1024 * 1024;

/** Per-peer receive counters the acceptor bumps. */
export interface ReceiveStats {
  bytesReceived: number;
  msgsReceived: number;
}

/** What an accepted connection needs from its PeerTransport. */
export interface AcceptorHost {
  readonly o: PeerTransportOptions;
  readonly log: TransportLogger;
  /** Established inbound message connections, by the dialer's node id. */
  readonly inbound: Map<number, FramedConn>;
  /** At most one inbound snapshot stream per peer. */
  readonly snapshotIn: Map<number, FramedConn>;
  /** Every accepted socket still open. */
  readonly accepted: Set<FramedConn>;
  readonly tlsAuto: boolean;
  closing(): boolean;
  dropAll(): boolean;
  secret(): Uint8Array;
  previousSecret(): Uint8Array | undefined;
  tls(): TlsMaterial | undefined;
  /** Is `id` in the current peer set (setPeers)? */
  isPeer(id: number): boolean;
  /** The host given for `id` to setPeers. */
  peerHost(id: number): string | undefined;
  peerStats(id: number): ReceiveStats | undefined;
  /** This node's current key period (per-period handshake keys). */
  keyPeriod(): number;
  /** A message connection with `id` is established: its outage is over. */
  peerUp(id: number): void;
  reportDown(id: number, info: CloseInfo): void;
}

/** Runs the acceptor's handshake and then the stream on one accepted socket. */
export function acceptPeer(h: AcceptorHost, socket: Socket): void {
  const o = h.o;
  const log = h.log;
  if (h.closing() || socket.destroyed) {
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
  const handshakeTimer = setTimeout(() => conn.close({ initiator: 'timeout', detail: 'handshake not completed in time' }), o.handshakeTimeoutMs ?? 5000);
  handshakeTimer.unref();
  /** Refuse an unauthenticated dialer: it hears "refused"; the reason stays in this node's log. */
  const refuse = (code: string, reason: string, extra: Record<string, unknown> = {}): void => {
    clearTimeout(handshakeTimer);
    log.warn({ event: 'peer_refused_inbound', remote, code, reason, ...extra }, `refused connection from ${remote}: ${reason}`);
    state = 'done';
    conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal(REFUSED)));
  };

  const conn: FramedConn = new FramedConn(socket, {
    ...(o.frameLimits ? { limits: o.frameLimits } : {}),
    onProtocolError: (err) => log.warn({ event: 'peer_frame_invalid', peer: peerId || undefined, remote, channel: state, offset: err.offset, reason: err.reason }, `closing connection from ${peerId ? `peer ${peerId}` : remote}: ${err.message}`),
    onFrame: (f) => {
      if (state === 'open') {
        if (f.type !== 'hello') throw new FrameError(f.offset, `expected a hello frame first, got ${f.type}`);
        const open = decodeHelloOpen(f.payload, f.offset);
        const me = { protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION };
        if (open.versions && negotiateVersion(me, open.versions) === undefined) {
          return refuse('version_incompatible', `protocol versions incompatible: the dialer speaks ${describeRange(open.versions)}, this node ${JSON.stringify(o.nodeName)} speaks ${describeRange(me)}` +
            (open.versions.protocolVersion < 2 ? ' (version 1 peers do not authenticate: upgrade them)' : ''));
        }
        if (!open.open) return refuse('hello_invalid', `invalid hello: ${open.problem ?? 'unreadable'}`);
        dialerNonce = open.open.nonce;
        acceptorNonce = newNonce();
        state = 'auth';
        // Our key period: a dialer of version 6+ may key its proof with that period's handshake key.
        conn.write(encodeFrame('challenge', encodeChallenge({ nonce: acceptorNonce, protocolVersion: PROTOCOL_VERSION, keyPeriod: h.keyPeriod() })));
        return;
      }
      if (state === 'auth' && f.type === 'joinAuth') {
        // The join exchange (join.ts): the node decides and builds the answer frame.
        const onJoin = o.onJoin;
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
            log.warn({ event: 'join_failed', remote, err: (err as Error).message }, `join request from ${remote} failed: ${(err as Error).message}`);
            conn.endWith({ initiator: 'local', detail: 'join failed' }, encodeFrame('refuse', encodeRefusal(REFUSED)));
          },
        );
        return;
      }
      if (state === 'auth' && h.tlsAuto && !(socket as TLSSocket).authorized) {
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
        // The proof is keyed with the secret itself, or (version 6) with the handshake key of the period the dialer names.
        const kp = hello.keyPeriod;
        const keyOf = (s: Uint8Array): Uint8Array => (kp === undefined ? s : periodKey(s, o.haId, kp));
        const prev = h.previousSecret();
        if (prev !== undefined && macEqual(dialerMac(keyOf(prev), dialerNonce!, acceptorNonce!, hello), auth.mac)) {
          // It holds the secret before the last rotation: say so (to it too: it proved that secret), never accept it.
          const reason = `node ${JSON.stringify(hello.fromName)} (claiming id ${hello.fromId}) proved the previous cluster secret, rotated since by \`quorate isolate\`: ` +
            'a member that was down during the rotation gets the current one by copying security.clusterSecretFile from a member (then restart it), or by enrollment; an isolated node stays refused';
          clearTimeout(handshakeTimer);
          log.warn({ event: 'peer_refused_inbound', remote, code: 'secret_rotated', reason, ...claimed }, `refused connection from ${remote}: ${reason}`);
          state = 'done';
          conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal({ code: 'secret_rotated', reason })));
          return;
        }
        const key = keyOf(h.secret());
        if (!macEqual(dialerMac(key, dialerNonce!, acceptorNonce!, hello), auth.mac)) {
          return refuse('auth_failed', `the dialer's proof did not verify: it does not hold this cluster's secret (security.clusterSecretFile), or the handshake was altered (it claimed node id ${hello.fromId})`, claimed);
        }
        if (kp !== undefined && Math.abs(kp - h.keyPeriod()) > KEY_PERIOD_SKEW) {
          // It holds the secret, but its clock is too far from ours: tell it (it proved the secret) and say by how much.
          const reason = `node ${JSON.stringify(hello.fromName)} (id ${hello.fromId}) proved the cluster secret with the handshake key of another period: ${describeSkew(kp, h.keyPeriod(), o.keyPeriodMs ?? DEFAULT_KEY_PERIOD_MS)}; fix the clocks (NTP) on both nodes`;
          clearTimeout(handshakeTimer);
          log.warn({ event: 'peer_clock_skew', remote, code: 'clock_skew', theirPeriod: kp, myPeriod: h.keyPeriod(), skewMs: (kp - h.keyPeriod()) * (o.keyPeriodMs ?? DEFAULT_KEY_PERIOD_MS), reason, ...claimed },
            `refused connection from ${remote}: ${reason}`);
          state = 'done';
          conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal({ code: 'clock_skew', reason })));
          return;
        }
        const allowed = o.allowedPeerIds;
        const verdict = judgeHello(hello, {
          nodeId: o.nodeId, nodeName: o.nodeName, haId: o.haId,
          protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION,
          ...(allowed === undefined ? {} : { isAllowed: (id: number) => (allowed === 'peers' ? h.isPeer(id) : allowed.includes(id)) }),
          ...(o.clusterSettings !== undefined ? { settings: o.clusterSettings } : {}),
          generation: o.generation ?? 0,
        });
        if (!verdict.ok && (verdict.code === GENERATION_SUPERSEDED || verdict.code === 'generation_newer')) {
          // It proved the cluster secret: tell it why (an old-generation node then serves no data, src/node/generation.ts).
          clearTimeout(handshakeTimer);
          log.warn({ event: 'peer_refused_generation', remote, code: verdict.code, generation: o.generation ?? 0, theirs: hello.generation ?? 0, reason: verdict.reason, ...claimed },
            `refused connection from ${remote}: ${verdict.reason}`);
          state = 'done';
          conn.endWith({ initiator: 'local', detail: verdict.reason }, encodeFrame('refuse', encodeRefusal({ code: verdict.code, reason: verdict.reason })));
          return;
        }
        if (!verdict.ok && verdict.code === 'peer_unknown' && o.isRemovedPeer?.(hello.fromId)) {
          // It proved the cluster secret: tell it why, so it stops serving (src/node: role removed).
          const reason = `node id ${hello.fromId} was removed from cluster ${JSON.stringify(o.haId)}; its id is never reused`;
          clearTimeout(handshakeTimer);
          log.warn({ event: 'peer_refused_inbound', remote, code: 'removed', reason, ...claimed }, `refused connection from ${remote}: ${reason}`);
          state = 'done';
          conn.endWith({ initiator: 'local', detail: reason }, encodeFrame('refuse', encodeRefusal({ code: 'removed', reason })));
          return;
        }
        if (!verdict.ok) return refuse(verdict.code, verdict.reason, claimed);
        const identity = o.identityProblem?.(hello);
        if (identity !== undefined) return refuse('identity_mismatch', identity, claimed);
        if (h.tls() && o.peerCertificateProblem) {
          const cert = (socket as TLSSocket).getPeerCertificate?.();
          const issuerCn = cert?.issuer?.CN;
          const problem = o.peerCertificateProblem(hello.fromId, cert?.subjectaltname, Array.isArray(issuerCn) ? issuerCn[0] : issuerCn);
          if (problem !== undefined) return refuse('certificate_mismatch', problem, claimed);
        } else if (h.tls()) {
          const expected = o.expectedPeerHost ? o.expectedPeerHost(hello.fromId) : h.peerHost(hello.fromId);
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
          protocolVersion: version, nodeId: o.nodeId, nodeName: o.nodeName, haId: o.haId, incarnation: o.incarnation ?? '',
          knownIncarnation: o.recordedIncarnation?.(hello.fromId) ?? '',
          // Our level only to a dialer that sent its own: an older one would not verify our MAC over it.
          ...(hello.featureLevel !== undefined && o.featureLevel !== undefined ? { featureLevel: o.featureLevel } : {}),
          // Likewise our settings only to a dialer that sent its own (version 4+).
          ...(hello.settings !== undefined && o.clusterSettings !== undefined ? { settings: o.clusterSettings } : {}),
          ...((o.generation ?? 0) > 0 ? { generation: o.generation } : {}),
        };
        const mac = acceptorMac(key, dialerNonce!, acceptorNonce!, auth.mac, hello.fromId, hello.channel, ackBody);
        conn.write(encodeFrame('helloAck', encodeHelloAck({ ...ackBody, mac })));
        if (hello.channel === 'snapshot') {
          state = 'snapshot';
          const older = h.snapshotIn.get(peerId);
          h.snapshotIn.set(peerId, conn);
          older?.close({ initiator: 'local', detail: 'superseded by a newer snapshot stream from the same peer' });
          receiver = new SnapshotReceiver(peerId, o.nodeId, o.maxSnapshotBytes ?? 1024 * MiB, o.snapshotSpoolDir ?? join(tmpdir(), 'quorate-snapshots'));
          socket.setTimeout(o.snapshotIdleTimeoutMs ?? 30_000);
          return;
        }
        state = 'messages';
        const old = h.inbound.get(peerId);
        h.inbound.set(peerId, conn);
        if (old) {
          // The peer redialed: the old connection is half-open or dying. Not an outage.
          log.info({ event: 'peer_redialed', peer: peerId }, `peer ${peerId} opened a new connection; closing its old one`);
          old.close({ initiator: 'local', detail: 'superseded by a new connection from the same peer' });
        }
        h.peerUp(peerId);
        socket.setTimeout(o.idleTimeoutMs ?? 10_000);
        log.info({ event: 'peer_connected', peer: peerId, name: hello.fromName, version, direction: 'in', ...(kp !== undefined ? { keyPeriod: kp } : {}) }, `peer ${peerId} (${hello.fromName}) connected`);
        o.onPeerHello?.(peerId, {
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
          if (m.to !== o.nodeId) throw new FrameError(f.offset, `messages[${i}].to ${m.to} is not this node (${o.nodeId})`);
        }
        const st = h.peerStats(peerId);
        if (st) {
          st.bytesReceived += f.payload.length + 5;
          st.msgsReceived += msgs.length;
        }
        if (msgs.length > 0 && !h.dropAll()) o.onMessages(msgs);
        return;
      }
      if (state === 'snapshot' && receiver) {
        if (h.dropAll()) {
          conn.close({ initiator: 'local', detail: 'peer traffic is dropped by a drill (isolate fault)' });
          return;
        }
        const got = receiver.handle(f);
        const now = Date.now();
        if (!got && now - lastProgressLog >= 1000) {
          lastProgressLog = now;
          log.info({ event: 'snapshot_receive_progress', peer: peerId, bytes: receiver.receivedBytes, total: receiver.declaredBytes },
            `snapshot from peer ${peerId}: ${receiver.receivedBytes}/${receiver.declaredBytes} bytes received`);
        }
        if (!got) return;
        state = 'done';
        log.info({ event: 'snapshot_received', peer: peerId, index: got.meta.index, bytes: got.source.bytes }, `snapshot at index ${got.meta.index} (${got.source.bytes} bytes) received from peer ${peerId}`);
        o.onSnapshot(peerId, got.meta, got.source, got.msg);
        conn.endWith({ initiator: 'local', detail: 'snapshot received' }, encodeFrame('snapshotAck'));
        return;
      }
      throw new FrameError(f.offset, `unexpected ${f.type} frame after the stream ended`);
    },
    onClose: (info) => {
      clearTimeout(handshakeTimer);
      h.accepted.delete(conn);
      if (h.snapshotIn.get(peerId) === conn) h.snapshotIn.delete(peerId);
      if (state === 'snapshot') receiver?.abort();
      if (state === 'snapshot' && info.initiator !== 'local') {
        log.warn({ event: 'snapshot_receive_failed', peer: peerId, receivedBytes: receiver?.receivedBytes, detail: info.detail }, `snapshot stream from peer ${peerId} ended early: ${info.detail}`);
      }
      if (peerId === 0 || state !== 'messages' || h.inbound.get(peerId) !== conn) return;
      h.inbound.delete(peerId);
      if (h.closing()) return;
      log.warn({ event: 'peer_disconnected', peer: peerId, direction: 'in', initiator: info.initiator, detail: info.detail }, `connection from peer ${peerId} lost: ${info.detail}`);
      h.reportDown(peerId, info);
    },
  });
  h.accepted.add(conn);
}
