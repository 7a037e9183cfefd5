// The benchmarks' load generator: HTTP/1.1 over keep-alive sockets, one
// request in flight per connection, the status of each answer read and its
// body skipped. It shares the two cores with the servers it measures, so it
// does the least it can: Node's http client spent 36–60 µs of CPU per request
// (as much as the quorate leader serving it), this about a third of that
// (`cpuUsPerOp.client` in the report). Both systems are measured through it.
import net from 'node:net';

/** One answer: its status, or 0 (connection refused, reset or closed, or no answer within the timeout). */
type Done = (status: number) => void;

class Connection {
  readonly #socket: net.Socket;
  #buf: Buffer | undefined;
  #done: Done | undefined;
  #deadline = 0;
  /** Parse state of the answer being read. */
  #status = 0;
  #inBody = false;
  #bodyLeft = 0;
  #chunked = false;
  #closeAfter = false;
  closed = false;

  constructor(host: string, port: number, private readonly onIdle: (c: Connection) => void) {
    this.#socket = net.connect({ host, port, noDelay: true });
    this.#socket.on('data', (d: Buffer) => this.#onData(d));
    this.#socket.on('error', () => this.#close());
    this.#socket.on('close', () => this.#close());
  }

  send(bytes: string, done: Done, timeoutMs: number): void {
    this.#done = done;
    this.#deadline = performance.now() + timeoutMs;
    this.#status = 0;
    this.#inBody = false;
    this.#socket.write(bytes);
  }

  /** Fails the request in flight if its deadline passed. */
  expire(now: number): void {
    if (this.#done !== undefined && now > this.#deadline) this.#close();
  }

  destroy(): void {
    this.#close();
  }

  #close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#socket.destroy();
    const done = this.#done;
    this.#done = undefined;
    done?.(0);
  }

  #onData(d: Buffer): void {
    if (this.#done === undefined) return; // nothing asked: ignore
    this.#buf = this.#buf === undefined || this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    if (!this.#inBody) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.#buf.toString('latin1', 0, end);
      this.#status = Number(head.slice(9, 12)) || 0;
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
      this.#chunked = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head);
      this.#closeAfter = /\r\nconnection:[ \t]*close/i.test(head);
      this.#bodyLeft = length ? Number(length[1]) : 0;
      this.#inBody = true;
      this.#buf = this.#buf.subarray(end + 4);
    }
    if (this.#chunked ? !this.#skipChunks() : !this.#skipBody()) return;
    const done = this.#done;
    this.#done = undefined;
    const status = this.#status;
    if (this.#closeAfter) this.#close();
    done(status);
    if (!this.closed) this.onIdle(this);
  }

  #skipBody(): boolean {
    const take = Math.min(this.#bodyLeft, this.#buf!.length);
    this.#bodyLeft -= take;
    this.#buf = this.#buf!.subarray(take);
    return this.#bodyLeft === 0;
  }

  /** Consumes whole chunks; true once the last (empty) chunk and the trailer's end are in. */
  #skipChunks(): boolean {
    for (;;) {
      const buf = this.#buf!;
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return false;
      const size = parseInt(buf.toString('latin1', 0, eol), 16);
      if (!Number.isFinite(size)) {
        this.#close();
        return false;
      }
      if (size === 0) {
        const end = buf.indexOf('\r\n\r\n', eol); // the size line's end, or the trailers' end
        if (end < 0) return false;
        this.#buf = buf.subarray(end + 4);
        return true;
      }
      if (buf.length < eol + 2 + size + 2) return false;
      this.#buf = buf.subarray(eol + 2 + size + 2);
    }
  }
}

interface Target {
  readonly host: string;
  readonly hostname: string;
  readonly port: number;
  readonly idle: Connection[];
}

/** Keep-alive connections to each address, at most one request in flight on each. */
export class LoadClient {
  readonly #targets = new Map<string, Target>();
  readonly #all = new Set<Connection>();
  readonly #timer: NodeJS.Timeout;

  constructor(private readonly timeoutMs = 5000) {
    this.#timer = setInterval(() => {
      const now = performance.now();
      for (const c of this.#all) c.expire(now);
    }, 100);
  }

  /** `url` is the server's base (http://host:port, loopback only); resolves with the answer's status, or 0. */
  request(url: string, method: string, path: string, body: string | undefined, headers: Readonly<Record<string, string>>): Promise<number> {
    const t = this.#target(url);
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${t.host}\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    if (body !== undefined) head += `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
    const bytes = `${head}\r\n${body ?? ''}`;
    const idle = t.idle;
    let c = idle.pop();
    while (c !== undefined && c.closed) c = idle.pop();
    if (c === undefined) {
      c = new Connection(t.hostname, t.port, (free) => {
        idle.push(free);
      });
      this.#all.add(c);
    }
    const conn = c;
    return new Promise<number>((resolve) =>
      conn.send(bytes, (status) => {
        if (conn.closed) this.#all.delete(conn);
        resolve(status);
      }, this.timeoutMs),
    );
  }

  /** The address behind a base URL (parsed once) and its idle connections; loopback only. */
  #target(url: string): Target {
    let t = this.#targets.get(url);
    if (t === undefined) {
      const u = new URL(url);
      if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') throw new Error(`the load generator only sends to loopback, not ${u.hostname}`);
      t = { host: u.host, hostname: u.hostname, port: Number(u.port), idle: [] };
      this.#targets.set(url, t);
    }
    return t;
  }

  destroy(): void {
    clearInterval(this.#timer);
    for (const c of this.#all) c.destroy();
    this.#all.clear();
    this.#targets.clear();
  }
}
