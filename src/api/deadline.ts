// The deadline for receiving a request's body (408 request_timeout).
//
// Node's own `requestTimeout` is one value for the whole server, counted from
// the start of the request to the last byte of its body: a 256 MiB upload
// that streams steadily for more than 60 s would be cut. So the server leaves
// Node's at 0 (headers keep Node's `headersTimeout`) and each request gets
// one of these:
//   - total (every route): the whole body within `requestTimeoutMs`;
//   - idle (streamed uploads: PUT /v1/files/*, POST /v1/cluster/restore,
//     switched to by `RequestContext.streamedBody()`): no byte of the body
//     for `streamIdleTimeoutMs` while the handler waits for one. Time spent
//     while the handler does not read (its buffer holds unread bytes, e.g.
//     while the upload waits for the log to commit) does not count.
// Responses are never limited (watch streams, downloads): only the receipt
// of the request, as before.
import type { IncomingMessage } from 'node:http';

export class BodyDeadline {
  readonly #req: IncomingMessage;
  readonly #onExpire: (why: string) => void;
  #timer: NodeJS.Timeout | undefined;
  #done = false;

  constructor(req: IncomingMessage, totalMs: number, onExpire: (why: string) => void) {
    this.#req = req;
    this.#onExpire = onExpire;
    if (req.complete || totalMs <= 0) {
      this.#done = true;
      return;
    }
    this.#timer = setTimeout(() => this.#check(`the whole request within ${totalMs} ms`), totalMs);
    this.#timer.unref();
  }

  #check(why: string): void {
    this.#timer = undefined;
    if (this.#done) return;
    this.#done = true;
    if (this.#req.complete || this.#req.socket.destroyed) return;
    this.#onExpire(why);
  }

  /** From now on, only idleness counts: no byte received for `idleMs` while the body's buffer is empty. */
  toIdle(idleMs: number): void {
    if (this.#done) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const req = this.#req;
    const socket = req.socket;
    let lastBytes = socket.bytesRead;
    let lastAt = performance.now();
    const step = Math.max(20, Math.min(1000, Math.floor(idleMs / 4)));
    const tick = (): void => {
      this.#timer = undefined;
      if (this.#done) return;
      if (req.complete || socket.destroyed) {
        this.#done = true;
        return;
      }
      const now = performance.now();
      // Bytes arrived, or the handler has not taken what arrived (it is busy, not the client): not idle.
      if (socket.bytesRead !== lastBytes || req.readableLength > 0) {
        lastBytes = socket.bytesRead;
        lastAt = now;
      } else if (now - lastAt >= idleMs) {
        this.#check(`a byte of the body at least every ${idleMs} ms (files.uploadIdleTimeoutMs)`);
        return;
      }
      this.#timer = setTimeout(tick, step);
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, step);
    this.#timer.unref();
  }

  stop(): void {
    this.#done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
