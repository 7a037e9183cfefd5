// A bound on open peer connections per remote address, applied when a TCP
// connection is accepted, before any handshake (TLS or quorate's): a host that
// opens more is cut at once, so one address cannot use up the node's sockets,
// handshake timers and memory. A member needs few (its message connection, a
// snapshot stream, a join), so the default leaves a wide margin.
import type { Socket } from 'node:net';
import type { TransportLogger } from './options.js';

export const DEFAULT_MAX_PEER_CONNECTIONS_PER_ADDRESS = 16;

export class AddressLimit {
  readonly #max: number;
  readonly #log: TransportLogger;
  readonly #open = new Map<string, number>();
  #refused = 0;
  #warnedMs = -Infinity;

  constructor(max: number, log: TransportLogger) {
    this.#max = max;
    this.#log = log;
  }

  /** Counts an accepted socket until it closes; destroys it (and returns false) when its address is over the bound. */
  admit(socket: Socket): boolean {
    const addr = socket.remoteAddress ?? 'unknown';
    const n = this.#open.get(addr) ?? 0;
    if (n >= this.#max) {
      socket.destroy();
      this.#refused++;
      const now = Date.now();
      if (now - this.#warnedMs >= 10_000) {
        this.#warnedMs = now;
        this.#log.warn({ event: 'peer_connections_refused', address: addr, refused: this.#refused, maxPerAddress: this.#max },
          `refused ${this.#refused} peer connection(s): ${addr} already holds ${n} open connections (the limit per address)`);
        this.#refused = 0;
      }
      return false;
    }
    this.#open.set(addr, n + 1);
    socket.once('close', () => {
      const left = (this.#open.get(addr) ?? 1) - 1;
      if (left <= 0) this.#open.delete(addr);
      else this.#open.set(addr, left);
    });
    return true;
  }

  /** Open connections counted for `address`. */
  openFrom(address: string): number {
    return this.#open.get(address) ?? 0;
  }
}
