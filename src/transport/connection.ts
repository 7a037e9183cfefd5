// One socket with a frame decoder, and a record of who ended it and why.
import type { Socket } from 'node:net';
import { encodeFrame, encodeRefusal, FrameDecoder, REFUSED } from './codec.js';
import type { Frame, FrameTypeName } from './codec.js';
import { FrameError } from './errors.js';

/**
 * remote: the other side closed or reset (EOF, ECONNRESET, EPIPE) — its process
 *   likely died or restarted.
 * local: this side closed it (protocol error, shutdown, peer removed).
 * timeout: nothing arrived within the idle limit.
 * failed: never established (refused, unreachable, TLS handshake failure).
 */
export type CloseInitiator = 'remote' | 'local' | 'timeout' | 'failed';

export interface CloseInfo {
  readonly initiator: CloseInitiator;
  readonly detail: string;
}

export interface FramedConnHandlers {
  limits?: Partial<Record<FrameTypeName, number>>;
  /** Throw a FrameError to reject a frame: the peer is told why and the connection closes. */
  onFrame(frame: Frame): void;
  onClose(info: CloseInfo): void;
  /** Called once with the reason when this side rejects the stream. */
  onProtocolError(err: FrameError): void;
}

const LINGER_MS = 1000;

export class FramedConn {
  readonly socket: Socket;
  #decoder: FrameDecoder;
  #handlers: FramedConnHandlers;
  #established = false;
  #ending: CloseInfo | undefined;
  #error: (Error & { code?: string }) | undefined;
  #closed = false;
  #onCloseCalled = false;

  constructor(socket: Socket, handlers: FramedConnHandlers) {
    this.socket = socket;
    this.#handlers = handlers;
    this.#decoder = new FrameDecoder(handlers.limits ? { limits: handlers.limits } : {});
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 1000);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err: Error & { code?: string }) => {
      this.#error ??= err;
    });
    socket.on('timeout', () => this.close({ initiator: 'timeout', detail: `no data for ${socket.timeout ?? 0} ms` }));
    socket.on('close', () => this.#finish());
  }

  get closed(): boolean {
    return this.#closed || this.#ending !== undefined;
  }

  /** Mark the connection as having carried a completed handshake (changes how a failure is classified). */
  markEstablished(): void {
    this.#established = true;
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }

  write(data: Uint8Array): boolean {
    if (this.closed) return false;
    return this.socket.write(data);
  }

  /** Writes `pieces` in order, in one writev where the socket can. */
  writePieces(pieces: readonly Uint8Array[]): boolean {
    if (this.closed) return false;
    if (pieces.length === 1) return this.socket.write(pieces[0]!);
    this.socket.cork();
    let ok = true;
    for (const p of pieces) ok = this.socket.write(p);
    this.socket.uncork();
    return ok;
  }

  /** Close now (destroy). Idempotent; the first reason wins. */
  close(info: CloseInfo): void {
    if (this.#closed) return;
    this.#ending ??= info;
    this.#closed = true;
    this.socket.destroy();
  }

  /** Send `last` (if any), half-close, and destroy after a short linger so the peer can read it. */
  endWith(info: CloseInfo, last?: Uint8Array): void {
    if (this.closed) return;
    this.#ending = info;
    if (last) this.socket.end(last);
    else this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), LINGER_MS);
    t.unref();
  }

  /**
   * Reject the stream: log via the handler, send a refuse frame, close. Before
   * the handshake completed the other side is unauthenticated and is told only
   * "refused"; afterwards it is told why.
   */
  reject(err: FrameError, refuse = true): void {
    if (this.closed) return;
    this.#handlers.onProtocolError(err);
    const info: CloseInfo = { initiator: 'local', detail: err.message };
    const refusal = this.#established ? { code: err.code, reason: err.message } : REFUSED;
    if (refuse) this.endWith(info, encodeFrame('refuse', encodeRefusal(refusal)));
    else this.close(info);
  }

  #onData(chunk: Buffer): void {
    if (this.closed) return;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      if (err instanceof FrameError) return this.reject(err);
      throw err;
    }
    for (const frame of frames) {
      if (this.closed) return;
      try {
        this.#handlers.onFrame(frame);
      } catch (err) {
        // Only a peer's bad bytes are handled here; anything else is a bug and propagates.
        if (err instanceof FrameError) return this.reject(err);
        throw err;
      }
    }
  }

  #finish(): void {
    this.#closed = true;
    if (this.#onCloseCalled) return;
    this.#onCloseCalled = true;
    let info = this.#ending;
    if (!info) {
      const e = this.#error;
      if (!this.#established) info = { initiator: 'failed', detail: e ? `${e.code ?? e.name}: ${e.message}` : 'closed before the handshake completed' };
      else info = { initiator: 'remote', detail: e ? `${e.code ?? e.name}: ${e.message}` : 'closed by the peer (EOF)' };
    }
    this.#handlers.onClose(info);
  }
}
