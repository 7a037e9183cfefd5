// The common entry, read and written without the general msgpack codec: a
// format-2 envelope for the KV machine holding a put or a delete whose
// strings are ASCII (src/state/envelope.ts, src/state/commands.ts give the
// layouts):
//
//   [2, "kv", at, idempotencyKey|nil, bin([1, key, value, ifRevision|nil, ttlMs|nil])]
//   [2, "kv", at, idempotencyKey|nil, bin([2, key, ifRevision|nil])]
//
// Every node decodes every entry it applies, and a restarted follower decodes
// thousands before it catches up: the general path (two msgpack decodes of
// the entry, then the payload) took about 2 µs of the 4 µs an entry's apply
// costs. This reads the bytes in place instead. It returns undefined for
// anything else (another machine, another command, a non-ASCII string, an
// encoding the canonical encoder does not write, any byte out of place), and
// the caller then takes the general path, which gives the same answer or the
// same error. msgpack is unambiguous, so where this accepts the bytes the
// general decoder reads the same values; ASCII is where msgpackr's string
// decoding (JavaScript or native) and Buffer#latin1Slice agree byte for byte.
// Decoding also checks what the general path's validation would (validateKey, the
// sizes, the TTL's range) and returns undefined where that would fail, so the
// general path then throws the very same error. An ASCII string has no lone
// surrogate and is as many UTF-8 bytes as characters, which is all
// validateValue checks beyond its size.
//
// The leader encodes every write the same way (encodeKvEntryFast): the bytes
// the general encoder writes (msgpackr, then the envelope around the payload),
// built directly in one buffer. The general path took 9 µs of the leader's
// time per write: two encodes, two copies out of the encoder's buffer, an
// unpooled allocation. Anything it does not handle, or that would not pass
// validation, it leaves to the general path (which then throws the error).
import { isAscii } from 'node:buffer';
import type { Command } from './commands.js';
import type { KeyRecord } from './kv.js';
import { MAX_IDEMPOTENCY_KEY_BYTES, MAX_TTL_MS, MAX_VALUE_BYTES, validateKey } from './limits.js';

const VERSION = 2;
const TAG_PUT = 1;
const TAG_DELETE = 2;

/** What decodeEntry returns for a format-2 KV entry, plus its payload already decoded and validated. */
export interface FastKvEntry {
  readonly at: number;
  readonly idempotencyKey: string | undefined;
  readonly payload: Uint8Array;
  readonly command: Command;
}

/** Reader state: position in `b` (a Buffer over the entry's bytes); -1 once something did not fit. */
class Reader {
  pos = 0;
  constructor(readonly b: Buffer, readonly end: number) {}

  /** A reader of all of `data` (a Buffer view, no copy), at `pos`. */
  static over(data: Uint8Array, pos: number): Reader {
    const r = new Reader(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), data.length);
    r.pos = pos;
    return r;
  }

  /** An unsigned integer as msgpack writes it (fixint, uint 8/16/32, or an integral float 64), or -1. */
  uint(): number {
    const b = this.b;
    if (this.pos >= this.end) return -1;
    const t = b[this.pos]!;
    if (t < 0x80) {
      this.pos += 1;
      return t;
    }
    let n: number;
    let size: number;
    switch (t) {
      case 0xcc: size = 1; break;
      case 0xcd: size = 2; break;
      case 0xce: size = 4; break;
      case 0xcb: size = 8; break;
      default: return -1;
    }
    if (this.pos + 1 + size > this.end) return -1;
    const at = this.pos + 1;
    if (t === 0xcc) n = b[at]!;
    else if (t === 0xcd) n = b.readUInt16BE(at);
    else if (t === 0xce) n = b.readUInt32BE(at);
    else {
      n = b.readDoubleBE(at);
      if (!Number.isSafeInteger(n) || n < 0) return -1;
    }
    this.pos = at + size;
    return n;
  }

  /** nil → undefined; an unsigned integer → it; anything else → -1. */
  optUint(): number | undefined {
    if (this.pos < this.end && this.b[this.pos] === 0xc0) {
      this.pos += 1;
      return undefined;
    }
    return this.uint();
  }

  /**
   * The length in a str or bin header at pos (str: fixstr, then tag8 = str 8,
   * tag8 + 1 = str 16, tag8 + 2 = str 32; bin the same from bin 8, without a
   * fix form), moving past the header; -1 if it is not one or the bytes
   * it announces are not all there.
   */
  #length(fixstr: boolean, tag8: number): number {
    const b = this.b;
    if (this.pos >= this.end) return -1;
    const t = b[this.pos]!;
    let len: number;
    let header: number;
    if (fixstr && (t & 0xe0) === 0xa0) {
      len = t & 0x1f;
      header = 1;
    } else if (t === tag8 && this.pos + 2 <= this.end) {
      len = b[this.pos + 1]!;
      header = 2;
    } else if (t === tag8 + 1 && this.pos + 3 <= this.end) {
      len = b.readUInt16BE(this.pos + 1);
      header = 3;
    } else if (t === tag8 + 2 && this.pos + 5 <= this.end) {
      len = b.readUInt32BE(this.pos + 1);
      header = 5;
    } else {
      return -1;
    }
    if (this.pos + header + len > this.end) return -1;
    this.pos += header;
    return len;
  }

  /** An ASCII str, or undefined (not a str, or a byte over 0x7f). */
  ascii(): string | undefined {
    const len = this.#length(true, 0xd9);
    if (len < 0) return undefined;
    const b = this.b;
    const start = this.pos;
    const stop = start + len;
    if (len > 0 && !isAscii(b.subarray(start, stop))) return undefined;
    this.pos = stop;
    return b.toString('latin1', start, stop);
  }

  /** A bin's bounds [start, end) (bin 8/16/32), moving past it, or undefined. */
  bin(): [number, number] | undefined {
    const len = this.#length(false, 0xc4);
    if (len < 0) return undefined;
    const start = this.pos;
    this.pos += len;
    return [start, start + len];
  }
}

/** `key` if validateKey accepts it, else undefined. */
function validKey(key: string | undefined): string | undefined {
  if (key === undefined) return undefined;
  try {
    return validateKey(key);
  } catch {
    return undefined;
  }
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * What the general path's validation (validateCommand, validateEnvelopeFields)
 * accepts of a put or delete whose strings are ASCII, which the caller has
 * checked: a key validateKey takes, a value of at most MAX_VALUE_BYTES, a
 * revision that is a non-negative integer, a TTL in 1..MAX_TTL_MS, an
 * idempotency key of 1..MAX_IDEMPOTENCY_KEY_BYTES. Both directions ask this
 * one question, so what they take in place cannot drift apart.
 */
function valid(c: Command, idempotencyKey: string | undefined): boolean {
  if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > MAX_IDEMPOTENCY_KEY_BYTES)) return false;
  if (c.type !== 'put' && c.type !== 'delete') return false;
  if (typeof c.key !== 'string' || validKey(c.key) === undefined) return false;
  if (c.ifRevision !== undefined && !isUint(c.ifRevision)) return false;
  if (c.type === 'delete') return true;
  return typeof c.value === 'string' && c.value.length <= MAX_VALUE_BYTES && (c.ttlMs === undefined || (isUint(c.ttlMs) && c.ttlMs > 0 && c.ttlMs <= MAX_TTL_MS));
}

/** The payload of a KV put or delete, its shape only (valid() checks the rest), or undefined (see the file's comment). */
function command(r: Reader): Command | undefined {
  const b = r.b;
  const head = b[r.pos];
  const tag = b[r.pos + 1];
  r.pos += 2;
  if (head === 0x95 && tag === TAG_PUT) {
    const key = r.ascii();
    if (key === undefined) return undefined;
    const value = r.ascii();
    if (value === undefined) return undefined;
    const ifRevision = r.optUint();
    const ttlMs = r.optUint();
    if (ifRevision === -1 || ttlMs === -1) return undefined;
    // The same object (and key order) as decodeCommandTuple builds.
    if (ifRevision === undefined && ttlMs === undefined) return { type: 'put', key, value };
    const put: { type: 'put'; key: string; value: string; ifRevision?: number; ttlMs?: number } = { type: 'put', key, value };
    if (ifRevision !== undefined) put.ifRevision = ifRevision;
    if (ttlMs !== undefined) put.ttlMs = ttlMs;
    return put;
  }
  if (head === 0x93 && tag === TAG_DELETE) {
    const key = r.ascii();
    if (key === undefined) return undefined;
    const ifRevision = r.optUint();
    if (ifRevision === -1) return undefined;
    return ifRevision === undefined ? { type: 'delete', key } : { type: 'delete', key, ifRevision };
  }
  return undefined;
}

/**
 * A format-2 KV put or delete with ASCII strings, decoded in place and valid,
 * or undefined for anything else: then decode it the general way.
 */
export function decodeKvEntryFast(data: Uint8Array): FastKvEntry | undefined {
  // [0x95, 2, fixstr "kv", ...]
  if (data.length < 8 || data[0] !== 0x95 || data[1] !== VERSION || data[2] !== 0xa2 || data[3] !== 0x6b || data[4] !== 0x76) return undefined;
  const r = Reader.over(data, 5);
  const b = r.b;
  const at = r.uint();
  if (at === -1) return undefined;
  let idempotencyKey: string | undefined;
  if (b[r.pos] === 0xc0) r.pos += 1;
  else if ((idempotencyKey = r.ascii()) === undefined) return undefined;
  const bounds = r.bin();
  if (bounds === undefined || r.pos !== b.length) return undefined;
  const [start, end] = bounds;
  if (end - start < 3) return undefined;
  const p = new Reader(b, end);
  p.pos = start;
  const c = command(p);
  if (c === undefined || p.pos !== end || !valid(c, idempotencyKey)) return undefined;
  return { at, idempotencyKey, payload: new Uint8Array(b.buffer, b.byteOffset + start, end - start), command: c };
}

/**
 * A KV snapshot record `[key, value, createRevision, modRevision, version,
 * leaseDeadlineMs|nil]` (./kv-section.ts) with ASCII strings, read in place:
 * the array the msgpack decoder would return, or undefined for anything else
 * (then decode it that way). Not checked beyond its shape: the caller checks
 * every record (KeyChecker) whichever way it was read. A restart or a
 * snapshot install reads one per key.
 */
export function decodeKeyRecordFast(data: Uint8Array): unknown[] | undefined {
  if (data.length < 7 || data[0] !== 0x96) return undefined;
  const r = Reader.over(data, 1);
  const key = r.ascii();
  if (key === undefined) return undefined;
  const value = r.ascii();
  if (value === undefined) return undefined;
  const createRevision = r.uint();
  const modRevision = r.uint();
  const version = r.uint();
  const lease = r.optUint();
  if (createRevision === -1 || modRevision === -1 || version === -1 || lease === -1 || r.pos !== r.end) return undefined;
  return [key, value, createRevision, modRevision, version, lease ?? null];
}

// ---- encoding ---------------------------------------------------------------

/** Bytes of a str header for an ASCII string of `n` characters, as msgpackr writes it. */
function strHeaderBytes(n: number): number {
  return n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Bytes of an unsigned integer as msgpackr writes it (fixint, uint 8/16/32, float 64 above 32 bits). */
function uintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n <= 0xffffffff ? 5 : 9;
}

/** Every character below 0x80: each other one (a lone surrogate too) is two or more bytes of UTF-8. Counting them natively is 8 times faster than a loop over the characters. */
function isAsciiString(s: string): boolean {
  return Buffer.byteLength(s, 'utf8') === s.length;
}

class Writer {
  pos = 0;
  constructor(readonly b: Buffer) {}

  /** A str or bin length header, as msgpackr writes it: fix | n below 32 where there is a fix form, else tag8, tag8 + 1, tag8 + 2 by size. */
  length(n: number, fix: number | undefined, tag8: number): void {
    const b = this.b;
    if (fix !== undefined && n < 32) b[this.pos++] = fix | n;
    else if (n < 0x100) {
      b[this.pos++] = tag8;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos] = tag8 + 1;
      b.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    } else {
      b[this.pos] = tag8 + 2;
      b.writeUInt32BE(n, this.pos + 1);
      this.pos += 5;
    }
  }

  /** An ASCII string as a msgpack str. */
  str(s: string): void {
    this.length(s.length, 0xa0, 0xd9);
    this.pos += this.b.write(s, this.pos, s.length, 'latin1');
  }

  uint(n: number): void {
    const b = this.b;
    if (n < 0x80) b[this.pos++] = n;
    else if (n < 0x100) {
      b[this.pos++] = 0xcc;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos] = 0xcd;
      b.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    } else if (n <= 0xffffffff) {
      b[this.pos] = 0xce;
      b.writeUInt32BE(n, this.pos + 1);
      this.pos += 5;
    } else {
      b[this.pos] = 0xcb;
      b.writeDoubleBE(n, this.pos + 1);
      this.pos += 9;
    }
  }

  optUint(n: number | undefined): void {
    if (n === undefined) this.b[this.pos++] = 0xc0;
    else this.uint(n);
  }
}

/**
 * The format-2 entry of a valid KV put or delete with ASCII strings, the same
 * bytes as encodeEnvelope({ machine: 'kv', at, idempotencyKey, payload:
 * encodeKvPayload(command) }); undefined for anything else (encode that the
 * general way).
 */
export function encodeKvEntryFast(command: Command, at: number, idempotencyKey: string | undefined): Uint8Array | undefined {
  if (!isUint(at) || !valid(command, idempotencyKey) || (idempotencyKey !== undefined && !isAsciiString(idempotencyKey))) return undefined;
  let payload: number;
  if (command.type === 'put') {
    const { key, value, ifRevision, ttlMs } = command;
    if (!isAsciiString(key) || !isAsciiString(value)) return undefined;
    payload = 2 + strHeaderBytes(key.length) + key.length + strHeaderBytes(value.length) + value.length +
      (ifRevision === undefined ? 1 : uintBytes(ifRevision)) + (ttlMs === undefined ? 1 : uintBytes(ttlMs));
  } else if (command.type === 'delete') {
    const { key, ifRevision } = command;
    if (!isAsciiString(key)) return undefined;
    payload = 2 + strHeaderBytes(key.length) + key.length + (ifRevision === undefined ? 1 : uintBytes(ifRevision));
  } else {
    return undefined;
  }
  const binHeader = payload < 0x100 ? 2 : payload < 0x10000 ? 3 : 5;
  const ik = idempotencyKey === undefined ? 1 : strHeaderBytes(idempotencyKey.length) + idempotencyKey.length;
  const total = 5 + uintBytes(at) + ik + binHeader + payload;
  const b = Buffer.allocUnsafe(total);
  const w = new Writer(b);
  // [2, "kv", at, idempotencyKey|nil, bin(payload)]
  b[0] = 0x95;
  b[1] = VERSION;
  b[2] = 0xa2;
  b[3] = 0x6b;
  b[4] = 0x76;
  w.pos = 5;
  w.uint(at);
  if (idempotencyKey === undefined) b[w.pos++] = 0xc0;
  else w.str(idempotencyKey);
  w.length(payload, undefined, 0xc4);
  if (command.type === 'put') {
    b[w.pos++] = 0x95;
    b[w.pos++] = TAG_PUT;
    w.str(command.key);
    w.str(command.value);
    w.optUint(command.ifRevision);
    w.optUint(command.ttlMs);
  } else {
    b[w.pos++] = 0x93;
    b[w.pos++] = TAG_DELETE;
    w.str(command.key);
    w.optUint(command.ifRevision);
  }
  if (w.pos !== total) throw new Error(`encodeKvEntryFast: wrote ${w.pos} of ${total} bytes`);
  return new Uint8Array(b.buffer, b.byteOffset, total);
}

/**
 * The size of the KV snapshot record of `r`, `[key, value, createRevision,
 * modRevision, version, leaseDeadlineMs|nil]` (./kv-section.ts), when its
 * strings are ASCII and its numbers safe integers: writeKeyRecord then writes
 * the bytes packCanonical writes for it. -1 for anything else (pack it the
 * general way). A snapshot writes one per key, on the event loop: building
 * the tuple and running msgpackr over it was most of a record's cost.
 */
export function keyRecordBytes(r: KeyRecord): number {
  const lease = r.leaseDeadlineMs;
  if (!isUint(r.createRevision) || !isUint(r.modRevision) || !isUint(r.version) || (lease !== undefined && !isUint(lease))) return -1;
  if (!isAsciiString(r.key) || !isAsciiString(r.value)) return -1;
  return 1 + strHeaderBytes(r.key.length) + r.key.length + strHeaderBytes(r.value.length) + r.value.length +
    uintBytes(r.createRevision) + uintBytes(r.modRevision) + uintBytes(r.version) + (lease === undefined ? 1 : uintBytes(lease));
}

/** Writes the record keyRecordBytes(r) measured (it must not be -1) into `b` at `at`. */
export function writeKeyRecord(r: KeyRecord, b: Buffer, at: number): void {
  const w = new Writer(b);
  b[at] = 0x96;
  w.pos = at + 1;
  w.str(r.key);
  w.str(r.value);
  w.uint(r.createRevision);
  w.uint(r.modRevision);
  w.uint(r.version);
  w.optUint(r.leaseDeadlineMs);
}
