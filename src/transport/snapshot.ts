// Snapshot streams: one dedicated connection per snapshot, so bulk bytes
// never queue behind (or in front of) heartbeats on the message connection.
//
//   dialer:   hello → auth(channel=snapshot) → snapshotBegin{msg,totalBytes}
//             → snapshotChunk[crc32c|bytes]* → snapshotEnd{totalBytes,sha256}
//   acceptor: challenge → helloAck … snapshotAck (whole, verified, delivered) or refuse{reason}
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Message, SnapshotMeta } from '../raft/types.js';
import {
  decodeRefusal, decodeSnapshotBegin, decodeSnapshotChunk, decodeSnapshotEnd, encodeFrame,
  encodeSnapshotBegin, encodeSnapshotChunkHeader, encodeSnapshotEnd,
} from './codec.js';
import type { Frame, FrameTypeName } from './codec.js';
import { FramedConn } from './connection.js';
import type { DialerHandshake } from './dialer-handshake.js';
import { FrameError, SnapshotTransferFailed } from './errors.js';

export interface ReceivedSnapshot {
  readonly msg: Message;
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** Reassembles and verifies one inbound stream; `handle` throws FrameError on anything wrong. */
export class SnapshotReceiver {
  readonly #peerId: number;
  readonly #nodeId: number;
  readonly #maxBytes: number;
  #msg: Message | undefined;
  /** Declared by snapshotBegin (≤ maxBytes); memory is taken only as chunks arrive. */
  #declared = 0;
  #chunks: Uint8Array[] = [];
  #received = 0;
  #hash: Hash | undefined;

  constructor(peerId: number, nodeId: number, maxBytes: number) {
    this.#peerId = peerId;
    this.#nodeId = nodeId;
    this.#maxBytes = maxBytes;
  }

  get receivedBytes(): number {
    return this.#received;
  }

  /** Returns the snapshot once the end frame verified it. */
  handle(frame: Frame): ReceivedSnapshot | undefined {
    const at = frame.offset;
    if (frame.type === 'snapshotBegin') {
      if (this.#msg) throw new FrameError(at, 'a second snapshotBegin on one snapshot stream');
      const { msg, totalBytes } = decodeSnapshotBegin(frame.payload, at);
      if (msg.type !== 'snap') throw new FrameError(at, `snapshotBegin.msg.type is '${msg.type}', expected 'snap'`);
      if (msg.snapshot === undefined) throw new FrameError(at, 'snapshotBegin.msg has no snapshot metadata');
      if (msg.from !== this.#peerId) throw new FrameError(at, `snapshotBegin.msg.from ${msg.from} differs from the connection's node id ${this.#peerId}`);
      if (msg.to !== this.#nodeId) throw new FrameError(at, `snapshotBegin.msg.to ${msg.to} is not this node (${this.#nodeId})`);
      if (totalBytes > this.#maxBytes) throw new FrameError(at, `snapshot of ${totalBytes} bytes exceeds maxSnapshotBytes ${this.#maxBytes}`);
      this.#msg = msg;
      this.#declared = totalBytes;
      this.#hash = createHash('sha256');
      return undefined;
    }
    if (!this.#msg || !this.#hash) throw new FrameError(at, `${frame.type} frame before snapshotBegin`);
    if (frame.type === 'snapshotChunk') {
      const data = decodeSnapshotChunk(frame.payload, at);
      if (this.#received + data.length > this.#declared) {
        throw new FrameError(at, `snapshotChunk overruns the declared ${this.#declared} bytes (already ${this.#received}, chunk ${data.length})`);
      }
      // Frame payloads are never reused by the decoder: keep the view, copy once at the end.
      this.#chunks.push(data);
      this.#hash.update(data);
      this.#received += data.length;
      return undefined;
    }
    if (frame.type === 'snapshotEnd') {
      const end = decodeSnapshotEnd(frame.payload, at);
      if (end.totalBytes !== this.#declared || this.#received !== this.#declared) {
        throw new FrameError(at, `snapshotEnd after ${this.#received} bytes, but ${this.#declared} were declared and the end frame says ${end.totalBytes}`);
      }
      const digest = this.#hash.digest();
      if (!digest.equals(end.sha256)) {
        throw new FrameError(at, `snapshot SHA-256 mismatch (sender ${Buffer.from(end.sha256).toString('hex')}, received ${digest.toString('hex')})`);
      }
      const data = this.#chunks.length === 1 ? this.#chunks[0]! : new Uint8Array(Buffer.concat(this.#chunks, this.#received));
      this.#chunks = [];
      return { msg: this.#msg, meta: this.#msg.snapshot!, data };
    }
    throw new FrameError(at, `unexpected ${frame.type} frame on a snapshot stream`);
  }
}

export interface SendSnapshotParams {
  readonly socket: Socket;
  readonly handshake: DialerHandshake;
  readonly peerId: number;
  readonly msg: Message;
  readonly data: Uint8Array;
  readonly chunkBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly limits?: Partial<Record<FrameTypeName, number>>;
  readonly onProgress?: (sentBytes: number, totalBytes: number) => void;
  readonly onProtocolError: (err: FrameError) => void;
}

export interface SnapshotSend {
  readonly done: Promise<void>;
  abort(reason: string): void;
}

/** Stream one snapshot over `socket` (already dialing). Resolves when the receiver acknowledged it. */
export function sendSnapshotOver(p: SendSnapshotParams): SnapshotSend {
  let settle: { resolve(): void; reject(e: Error): void } | undefined;
  const done = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  let settled = false;
  let phase: 'hello' | 'streaming' | 'awaitAck' = 'hello';
  const finish = (err?: Error): void => {
    if (settled) return;
    settled = true;
    clearTimeout(handshakeTimer);
    if (err) {
      conn.close({ initiator: 'local', detail: err.message });
      settle!.reject(err);
    } else {
      conn.endWith({ initiator: 'local', detail: 'snapshot delivered' });
      settle!.resolve();
    }
  };
  const failed = (reason: string, cause?: unknown): SnapshotTransferFailed =>
    new SnapshotTransferFailed(p.peerId, reason, cause === undefined ? undefined : { cause });

  const conn: FramedConn = new FramedConn(p.socket, {
    ...(p.limits ? { limits: p.limits } : {}),
    onProtocolError: p.onProtocolError,
    onFrame(frame) {
      if (phase === 'hello') {
        const step = p.handshake.step(frame);
        if (step.kind === 'send') {
          conn.write(step.frame);
          return;
        }
        if (step.kind === 'refused') {
          finish(failed(`peer refused: ${step.refusal.reason}`));
          return;
        }
        if (step.kind === 'failed') {
          finish(failed(step.reason));
          return;
        }
        conn.markEstablished();
        clearTimeout(handshakeTimer);
        phase = 'streaming';
        pump().catch((err: unknown) => finish(failed(`streaming failed: ${String(err)}`, err)));
        return;
      }
      if (frame.type === 'refuse') {
        const r = decodeRefusal(frame.payload, frame.offset);
        finish(failed(`peer refused: ${r.reason}`));
        return;
      }
      if (phase === 'awaitAck' && frame.type === 'snapshotAck') {
        finish();
        return;
      }
      throw new FrameError(frame.offset, `unexpected ${frame.type} frame while ${phase} on a snapshot stream`);
    },
    onClose(info) {
      finish(failed(`connection ${info.initiator === 'local' ? 'closed' : info.initiator}: ${info.detail}`));
    },
  });
  p.socket.setTimeout(p.idleTimeoutMs);
  const handshakeTimer = setTimeout(() => finish(failed(`no handshake answer within ${p.handshakeTimeoutMs} ms`)), p.handshakeTimeoutMs);
  handshakeTimer.unref();
  conn.write(p.handshake.openFrame());

  const drained = (): Promise<void> =>
    new Promise((resolve) => {
      const go = (): void => {
        p.socket.off('drain', go);
        p.socket.off('close', go);
        resolve();
      };
      p.socket.on('drain', go);
      p.socket.on('close', go);
    });

  async function pump(): Promise<void> {
    const total = p.data.length;
    const hash = createHash('sha256');
    conn.write(encodeFrame('snapshotBegin', encodeSnapshotBegin({ msg: p.msg, totalBytes: total })));
    let sent = 0;
    while (sent < total) {
      if (settled) return;
      const chunk = p.data.subarray(sent, Math.min(total, sent + p.chunkBytes));
      hash.update(chunk);
      conn.write(encodeSnapshotChunkHeader(chunk));
      const more = conn.write(chunk);
      sent += chunk.length;
      p.onProgress?.(sent, total);
      if (!more) await drained();
      else await new Promise<void>((r) => setImmediate(r)); // yield: let heartbeats and I/O interleave
    }
    if (settled) return;
    conn.write(encodeFrame('snapshotEnd', encodeSnapshotEnd({ totalBytes: total, sha256: hash.digest() })));
    phase = 'awaitAck';
  }

  return { done, abort: (reason) => finish(failed(reason)) };
}
