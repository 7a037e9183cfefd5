// Helpers shared by this folder's tests (not part of the public surface).
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Message, SnapshotMeta } from '../raft/types.js';
import { encodeFrame, encodeHello, FrameDecoder } from './codec.js';
import type { Frame, Hello } from './codec.js';
import { PeerTransport } from './peer-transport.js';
import type { DisconnectReason, PeerTransportOptions, TransportLogger } from './options.js';

export interface LogLine {
  readonly level: 'info' | 'warn' | 'error' | 'debug';
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

export function captureLogger(): TransportLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (obj: object, msg?: string): void => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  };
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

/** Poll `cond` until true; fails after `timeoutMs` naming what was awaited. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
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
  readonly log: ReturnType<typeof captureLogger>;
  readonly received: Message[];
  readonly batches: Message[][];
  readonly disconnects: { peer: number; reason: DisconnectReason; atMs: number }[];
  readonly snapshots: { from: number; meta: SnapshotMeta; data: Uint8Array; msg: Message }[];
}

export async function startNode(id: number, over: Partial<PeerTransportOptions> = {}): Promise<Node> {
  const log = captureLogger();
  const received: Message[] = [];
  const batches: Message[][] = [];
  const disconnects: Node['disconnects'] = [];
  const snapshots: Node['snapshots'] = [];
  const t = new PeerTransport({
    nodeId: id, nodeName: `node${id}`, haId: 'test-ha', listenHost: '127.0.0.1', listenPort: 0, tls: 'off', logger: log,
    onMessages: (m) => {
      batches.push(m);
      received.push(...m);
    },
    onPeerDisconnected: (peer, reason) => disconnects.push({ peer, reason, atMs: Date.now() }),
    onSnapshot: (from, meta, data, m) => snapshots.push({ from, meta, data, msg: m }),
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

/** A raw client for protocol-level tests: collects decoded frames and notes when the socket closes. */
export interface RawClient {
  readonly socket: Socket;
  readonly frames: Frame[];
  closed: boolean;
  hello(over?: Partial<Hello>): void;
}

export async function rawClient(port: number): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const dec = new FrameDecoder();
  const c: RawClient = {
    socket, frames: [], closed: false,
    hello(over = {}) {
      const h: Hello = { protocolVersion: 1, minCompatibleVersion: 1, haId: 'test-ha', fromId: 77, fromName: 'raw', channel: 'messages', ...over };
      socket.write(encodeFrame('hello', encodeHello(h)));
    },
  };
  socket.on('data', (d: Buffer) => c.frames.push(...dec.push(d)));
  socket.on('error', () => undefined);
  socket.on('close', () => {
    c.closed = true;
  });
  return c;
}
