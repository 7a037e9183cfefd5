// Helpers shared by the transport tests (src/transport/*.test.ts) and the
// peer-port attack integration test.
import { collectSnapshot } from '../../src/state/snapshot.js';
import { connect } from 'node:net';
import { Packr } from 'msgpackr';
import type { Socket } from 'node:net';
import type { Message, SnapshotMeta } from '../../src/raft/types.js';
import {
  decodeAuth, decodeChallenge, decodeHelloOpen, encodeAuth, encodeChallenge, encodeFrame, encodeHelloAck, encodeHelloOpen, FrameDecoder,
} from '../../src/transport/codec.js';
import type { Frame, Hello } from '../../src/transport/codec.js';
import { acceptorMac, dialerMac, MIN_COMPATIBLE_VERSION, newNonce, PROTOCOL_VERSION } from '../../src/transport/handshake.js';
import { PeerTransport } from '../../src/transport/peer-transport.js';
import type { DisconnectReason, PeerTransportOptions } from '../../src/transport/options.js';
import { captureLogger } from './log.js';
import type { CaptureLogger } from './log.js';

/** Poll `cond` until true; fails after `timeoutMs` naming what was awaited. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function msg(over: Partial<Message> & Pick<Message, 'from' | 'to'>): Message {
  return { type: 'heartbeat', term: 1, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: 0, ...over };
}

export const SNAP_META: SnapshotMeta = { index: 42, term: 3, membership: { members: [{ id: 1, role: 'voter' }, { id: 2, role: 'voter' }, { id: 3, role: 'learner' }], removed: [9] } };

export interface Node {
  readonly t: PeerTransport;
  readonly id: number;
  port: number;
  readonly log: CaptureLogger;
  readonly received: Message[];
  readonly batches: Message[][];
  readonly disconnects: { peer: number; reason: DisconnectReason; atMs: number }[];
  readonly snapshots: { from: number; meta: SnapshotMeta; data: Uint8Array; msg: Message }[];
}

/** The cluster secret every test node shares (32 bytes). */
export const TEST_SECRET = new Uint8Array(32).fill(7);
/** Another cluster's secret. */
export const OTHER_SECRET = new Uint8Array(32).fill(9);

export async function startNode(id: number, over: Partial<PeerTransportOptions> = {}): Promise<Node> {
  const log = captureLogger();
  const received: Message[] = [];
  const batches: Message[][] = [];
  const disconnects: Node['disconnects'] = [];
  const snapshots: Node['snapshots'] = [];
  const t = new PeerTransport({
    nodeId: id, nodeName: `node${id}`, haId: 'test-ha', listenHost: '127.0.0.1', listenPort: 0, tls: 'off', logger: log,
    clusterSecret: TEST_SECRET,
    onMessages: (m) => {
      batches.push(m);
      received.push(...m);
    },
    onPeerDisconnected: (peer, reason) => disconnects.push({ peer, reason, atMs: Date.now() }),
    // The snapshot arrives as a file: read it back whole (tests send small ones) and remove it.
    onSnapshot: (from, meta, source, m) =>
      void collectSnapshot(source.read()).then(async (data) => {
        await source.discard();
        snapshots.push({ from, meta, data, msg: m });
      }),
    ...over,
  });
  const { port } = await t.listen();
  return { t, id, port, log, received, batches, disconnects, snapshots };
}

/** Point every node at every other. */
export function mesh(nodes: readonly Node[]): void {
  for (const n of nodes) {
    n.t.setPeers(new Map(nodes.filter((o) => o !== n).map((o) => [o.id, { host: '127.0.0.1', port: o.port }])));
  }
}

export async function connected(a: Node, b: Node): Promise<void> {
  await until(() => a.t.stats().get(b.id)?.connected === true && b.t.stats().get(a.id)?.inboundConnected === true, `node ${a.id} connected to ${b.id}`);
}

/** Nodes 1 and 2 (with per-node option overrides), meshed and connected both ways. */
export async function connectedPair(overA: Partial<PeerTransportOptions> = {}, overB: Partial<PeerTransportOptions> = {}): Promise<[Node, Node]> {
  const a = await startNode(1, overA);
  const b = await startNode(2, overB);
  mesh([a, b]);
  await connected(a, b);
  await connected(b, a);
  return [a, b];
}

/** A raw client for protocol-level tests: collects decoded frames and notes when the socket closes. */
export interface RawClient {
  readonly socket: Socket;
  readonly frames: Frame[];
  closed: boolean;
  /** Send only the opening hello (versions + nonce), or raw bytes in its place. */
  open(over?: { protocolVersion?: number; minCompatibleVersion?: number; payload?: Uint8Array }): void;
  /**
   * Run the dialer's side of the handshake: opening, wait for the challenge,
   * then the auth frame with a proof under `secret` (default TEST_SECRET).
   * `mac` replaces the proof. Resolves once auth is sent (or the socket closed).
   */
  hello(over?: Partial<Hello>, opts?: { secret?: Uint8Array; mac?: Uint8Array }): Promise<void>;
  /** Resolves when the handshake was answered: 'helloAck', 'refuse', or 'closed'. */
  answer(): Promise<string>;
}

export function defaultHello(over: Partial<Hello> = {}): Hello {
  return {
    protocolVersion: PROTOCOL_VERSION, minCompatibleVersion: MIN_COMPATIBLE_VERSION, haId: 'test-ha', fromId: 77, fromName: 'raw',
    toId: 2, channel: 'messages', apiUrl: '', role: '', incarnation: '', ...over,
  };
}

export async function rawClient(port: number, connectTo: () => Socket = () => connect({ host: '127.0.0.1', port })): Promise<RawClient> {
  const socket = connectTo();
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const dec = new FrameDecoder();
  const nonce = newNonce();
  const c: RawClient = {
    socket, frames: [], closed: false,
    open(over = {}) {
      const payload = over.payload ?? encodeHelloOpen({
        protocolVersion: over.protocolVersion ?? PROTOCOL_VERSION, minCompatibleVersion: over.minCompatibleVersion ?? MIN_COMPATIBLE_VERSION, nonce,
      });
      socket.write(encodeFrame('hello', payload));
    },
    async hello(over = {}, opts = {}) {
      c.open();
      await until(() => c.closed || c.frames.some((f) => f.type === 'challenge'), 'the challenge');
      const ch = c.frames.find((f) => f.type === 'challenge');
      if (!ch) return;
      const h = defaultHello(over);
      const mac = opts.mac ?? dialerMac(opts.secret ?? TEST_SECRET, nonce, decodeChallenge(ch.payload, ch.offset).nonce, h);
      socket.write(encodeFrame('auth', encodeAuth({ hello: h, mac })));
    },
    async answer() {
      await until(() => c.closed || c.frames.some((f) => f.type === 'helloAck' || f.type === 'refuse'), 'the handshake answer');
      return c.frames.find((f) => f.type === 'helloAck' || f.type === 'refuse')?.type ?? 'closed';
    },
  };
  socket.on('data', (d: Buffer) => c.frames.push(...dec.push(d)));
  socket.on('error', () => undefined);
  socket.on('close', () => {
    c.closed = true;
  });
  return c;
}

/**
 * The acceptor's side of the handshake on a raw socket, for fake peers:
 * answers the opening with a challenge and an auth with a helloAck whose
 * proof is made with `secret` (it does not check the dialer's proof).
 */
/** A version-2 acceptor (no version in its challenge, no feature level in its helloAck); `challengeVersion` makes it claim a version in its challenge. */
export function fakeAcceptorHandshake(
  socket: Socket, secret: Uint8Array, as: { nodeId: number; haId?: string; challengeVersion?: number }, onEstablished: (rest: Frame[]) => void, onHello?: (hello: Hello) => void,
): void {
  const dec = new FrameDecoder();
  const nonceA = newNonce();
  let nonceD: Uint8Array | undefined;
  let done = false;
  socket.on('data', (d: Buffer) => {
    if (done) return;
    const frames = dec.push(d);
    for (let i = 0; i < frames.length; i++) {
      const f = frames[i]!;
      if (f.type === 'hello') {
        nonceD = decodeHelloOpen(f.payload, f.offset).open?.nonce;
        socket.write(encodeFrame('challenge', encodeChallenge(as.challengeVersion === undefined ? { nonce: nonceA } : { nonce: nonceA, protocolVersion: as.challengeVersion })));
      } else if (f.type === 'auth' && nonceD) {
        const auth = decodeAuth(f.payload, f.offset);
        onHello?.(auth.hello);
        const body = { protocolVersion: PROTOCOL_VERSION, nodeId: as.nodeId, nodeName: 'fake', haId: as.haId ?? 'test-ha', incarnation: '', knownIncarnation: '' };
        const mac = acceptorMac(secret, nonceD, nonceA, auth.mac, auth.hello.fromId, auth.hello.channel, body);
        socket.write(encodeFrame('helloAck', encodeHelloAck({ ...body, mac })));
        done = true;
        onEstablished(frames.slice(i + 1));
        return;
      }
    }
  });
  socket.on('error', () => undefined);
}

/**
 * A msgpackr record + structured-clone hello whose values share references
 * 17 levels deep, plus one trailing byte (233 bytes, under the hello limit):
 * the old decoder's trailing-byte error serialized the 2^17-fold value
 * (each further level doubles the stall: 22 levels took 4 s).
 */
export function stallFrame(): Buffer {
  let v: unknown = { haId: 'x', fromId: 1 };
  for (let i = 0; i < 17; i++) v = [v, v];
  const body = new Packr({ useRecords: true, structuredClone: true }).pack(v);
  return encodeFrame('hello', Buffer.concat([body, Buffer.from([0])]));
}
