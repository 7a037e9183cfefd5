// Snapshot streams: one dedicated connection per snapshot, so bulk bytes
// never queue behind (or in front of) heartbeats on the message connection.
//
//   dialer:   hello → auth(channel=snapshot) → snapshotBegin{msg,totalBytes}
//             → snapshotChunk[crc32c|bytes]* → snapshotEnd{totalBytes,sha256}
//   acceptor: challenge → helloAck … snapshotAck (whole, verified, delivered) or refuse{reason}
//
// Neither side holds the snapshot: the sender pulls chunks from its source
// (a file) only when the socket has drained; the receiver writes each chunk
// to a file in its spool dir as it arrives (a synchronous write, so the
// socket is not read further meanwhile) and hands the node that file.
import { noteLargeBuffers } from '../lib/memory-governor.js';
import { closeSync, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
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

/** A received snapshot in a file of the spool dir: read it back as chunks, then discard it. */
export interface ReceivedSnapshotFile {
  readonly path: string;
  readonly bytes: number;
  /** The file's bytes in fresh chunks of at most 1 MiB (each call reads anew). */
  read(): AsyncIterable<Uint8Array>;
  /** Removes the file (idempotent; a missing file is fine). */
  discard(): Promise<void>;
}

export interface ReceivedSnapshot {
  readonly msg: Message;
  readonly meta: SnapshotMeta;
  readonly source: ReceivedSnapshotFile;
}

const READ_CHUNK_BYTES = 1024 * 1024;

/** A file of `bytes` bytes as a ReceivedSnapshotFile. */
export function snapshotFile(path: string, bytes: number): ReceivedSnapshotFile {
  return {
    path,
    bytes,
    async *read() {
      const fh = await open(path, 'r');
      try {
        for (let pos = 0; pos < bytes; ) {
          const b = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, bytes - pos));
          const { bytesRead } = await fh.read(b, 0, b.length, pos);
          if (bytesRead === 0) throw new Error(`${path} ends at byte ${pos}, expected ${bytes} bytes`);
          pos += bytesRead;
          yield bytesRead === b.length ? b : b.subarray(0, bytesRead);
        }
      } finally {
        await fh.close();
      }
    },
    async discard() {
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
  };
}

/**
 * Verifies one inbound stream and writes it to a file in `spoolDir`
 * (`incoming-<from>-<term>-<index>-<random>.tmp`); `handle` throws FrameError
 * on anything wrong. Memory: one frame at a time, whatever the size.
 */
export class SnapshotReceiver {
  readonly #peerId: number;
  readonly #nodeId: number;
  readonly #maxBytes: number;
  readonly #spoolDir: string;
  #msg: Message | undefined;
  /** Declared by snapshotBegin (≤ maxBytes); nothing is reserved from it. */
  #declared = 0;
  #received = 0;
  #hash: Hash | undefined;
  #fd: number | undefined;
  #path: string | undefined;

  constructor(peerId: number, nodeId: number, maxBytes: number, spoolDir: string) {
    this.#peerId = peerId;
    this.#nodeId = nodeId;
    this.#maxBytes = maxBytes;
    this.#spoolDir = spoolDir;
  }

  /** A local file error (disk full...) ends the stream: the sender hears why and retries later. */
  #disk(at: number, op: () => void): void {
    try {
      op();
    } catch (err) {
      const path = this.#path;
      this.abort();
      throw new FrameError(at, `this node could not write the snapshot to ${path}: ${(err as Error).message}`);
    }
  }

  /** The stream failed or was superseded: removes its file. Idempotent. */
  abort(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // closing is best effort here
      }
    }
    if (this.#path !== undefined) {
      try {
        unlinkSync(this.#path);
      } catch {
        // already gone
      }
    }
    this.#path = undefined;
  }

  get receivedBytes(): number {
    return this.#received;
  }

  /** The size snapshotBegin announced (0 before it). */
  get declaredBytes(): number {
    return this.#declared;
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
      const s = msg.snapshot;
      this.#path = join(this.#spoolDir, `incoming-${msg.from}-${s.term}-${s.index}-${randomBytes(4).toString('hex')}.tmp`);
      this.#disk(at, () => {
        mkdirSync(this.#spoolDir, { recursive: true });
        this.#fd = openSync(this.#path!, 'w', 0o600);
      });
      return undefined;
    }
    if (!this.#msg || !this.#hash) throw new FrameError(at, `${frame.type} frame before snapshotBegin`);
    if (frame.type === 'snapshotChunk') {
      const data = decodeSnapshotChunk(frame.payload, at);
      if (this.#received + data.length > this.#declared) {
        throw new FrameError(at, `snapshotChunk overruns the declared ${this.#declared} bytes (already ${this.#received}, chunk ${data.length})`);
      }
      this.#hash.update(data);
      this.#disk(at, () => {
        for (let off = 0; off < data.length; ) off += writeSync(this.#fd!, data, off, data.length - off, this.#received + off);
      });
      this.#received += data.length;
      noteLargeBuffers(data.length);
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
      this.#disk(at, () => closeSync(this.#fd!));
      this.#fd = undefined;
      const path = this.#path!;
      this.#path = undefined; // the node owns the file now
      return { msg: this.#msg, meta: this.#msg.snapshot!, source: snapshotFile(path, this.#received) };
    }
    throw new FrameError(at, `unexpected ${frame.type} frame on a snapshot stream`);
  }
}

export interface SendSnapshotParams {
  readonly socket: Socket;
  readonly handshake: DialerHandshake;
  readonly peerId: number;
  readonly msg: Message;
  /** The snapshot, pulled only as the socket drains. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Its size: announced first, and the chunks must add up to it exactly. */
  readonly totalBytes: number;
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
    const total = p.totalBytes;
    const hash = createHash('sha256');
    conn.write(encodeFrame('snapshotBegin', encodeSnapshotBegin({ msg: p.msg, totalBytes: total })));
    let sent = 0;
    for await (const piece of p.chunks) {
      for (let at = 0; at < piece.length; ) {
        if (settled) return; // leaving the loop closes the source
        const chunk = piece.subarray(at, Math.min(piece.length, at + p.chunkBytes));
        at += chunk.length;
        if (sent + chunk.length > total) throw new Error(`the snapshot source holds more than the ${total} bytes announced`);
        hash.update(chunk);
        conn.write(encodeSnapshotChunkHeader(chunk));
        const more = conn.write(chunk);
        sent += chunk.length;
        noteLargeBuffers(chunk.length);
        p.onProgress?.(sent, total);
        if (!more) await drained();
        else await new Promise<void>((r) => setImmediate(r)); // yield: let heartbeats and I/O interleave
      }
    }
    if (sent !== total) throw new Error(`the snapshot source ended after ${sent} of the ${total} bytes announced`);
    if (settled) return;
    conn.write(encodeFrame('snapshotEnd', encodeSnapshotEnd({ totalBytes: total, sha256: hash.digest() })));
    phase = 'awaitAck';
  }

  return { done, abort: (reason) => finish(failed(reason)) };
}
