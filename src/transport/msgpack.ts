// msgpack for peer payloads, and the field validators every decoder uses.
// A peer's bytes are untrusted: scanMsgpack checks the raw bytes (no
// extension types, bounded nesting, no declared length beyond the payload)
// before msgpackr decodes anything, and validators name the field at fault.
import { Packr, RESET_BUFFER_MODE, Unpackr } from 'msgpackr';
import { FrameError } from './errors.js';

export type Tuple = unknown[];

const packr = new Packr({ useRecords: false, variableMapSize: true });
// Maps decode to Map (never to plain objects: no prototype games from a peer's
// keys). Every msgpackr extension is off; scanMsgpack refuses ext types anyway.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, structuredClone: false, bundleStrings: false, moreTypes: false });

export function pack(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * pack() into the encoder's buffer at the same place every time: the bytes
 * are valid only until the next pack, so copy them at once (a frame). A
 * message of 1 MiB file chunks then reuses one buffer instead of making the
 * encoder grow a new one (four times the message) every few messages, which
 * is garbage the V8 collects late (outside its heap).
 */
export function packTransient(value: unknown): Uint8Array {
  return packr.pack(value, RESET_BUFFER_MODE);
}

/** Deepest container nesting a peer payload may use (messages need 5: batch → message → snapshot → members → member). */
export const MSGPACK_MAX_DEPTH = 8;

/**
 * A strict pre-scan of msgpack bytes, before msgpackr sees them: exactly one
 * value, no extension types (msgpackr's records, structured clone, bundled
 * strings all ride on them), no reserved byte, nesting at most `maxDepth`,
 * and no declared length or element count beyond the bytes that remain.
 * Linear in the payload; returns the problem (naming a byte position, never a
 * value) or undefined.
 */
export function scanMsgpack(b: Uint8Array, maxDepth = MSGPACK_MAX_DEPTH): string | undefined {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.length;
  let p = 0;
  const counts: number[] = [1];
  while (counts.length > 0) {
    const top = counts.length - 1;
    if (counts[top] === 0) {
      counts.pop();
      continue;
    }
    counts[top]!--;
    if (p >= n) return `truncated at byte ${p}`;
    const at = p;
    const t = b[p++]!;
    let skip = 0;
    let items = -1;
    let lenBytes = 0;
    if (t <= 0x7f || t >= 0xe0) {
      // fixint
    } else if (t <= 0x8f) items = (t & 0x0f) * 2;
    else if (t <= 0x9f) items = t & 0x0f;
    else if (t <= 0xbf) skip = t & 0x1f;
    else {
      switch (t) {
        case 0xc0: case 0xc2: case 0xc3: break;
        case 0xc4: case 0xd9: lenBytes = 1; break;
        case 0xc5: case 0xda: lenBytes = 2; break;
        case 0xc6: case 0xdb: lenBytes = 4; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        case 0xdc: case 0xde:
          if (p + 2 > n) return `truncated at byte ${p}`;
          items = dv.getUint16(p) * (t === 0xde ? 2 : 1);
          p += 2;
          break;
        case 0xdd: case 0xdf:
          if (p + 4 > n) return `truncated at byte ${p}`;
          items = dv.getUint32(p) * (t === 0xdf ? 2 : 1);
          p += 4;
          break;
        case 0xc1: return `reserved msgpack byte 0xc1 at byte ${at}`;
        default: return `msgpack extension type (0x${t.toString(16)}) at byte ${at}: not accepted`;
      }
    }
    if (lenBytes > 0) {
      if (p + lenBytes > n) return `truncated at byte ${p}`;
      skip = lenBytes === 1 ? b[p]! : lenBytes === 2 ? dv.getUint16(p) : dv.getUint32(p);
      p += lenBytes;
    }
    if (skip > 0) {
      if (skip > n - p) return `the value at byte ${at} declares ${skip} bytes, more than the ${n - p} that remain`;
      p += skip;
    }
    if (items >= 0) {
      if (items > n - p) return `the container at byte ${at} declares ${items} elements, more than the ${n - p} bytes that remain`;
      if (counts.length > maxDepth) return `nesting deeper than ${maxDepth} at byte ${at}`;
      counts.push(items);
    }
  }
  if (p !== n) return `${n - p} trailing bytes after the value`;
  return undefined;
}

/**
 * msgpack-decode a peer's payload after scanMsgpack; any complaint becomes a
 * FrameError at `offset`. The message never holds the decoded value.
 */
export function unpack(payload: Uint8Array, offset: number, what: string): unknown {
  const problem = scanMsgpack(payload);
  if (problem !== undefined) throw new FrameError(offset, `undecodable ${what} payload: ${problem}`);
  try {
    return unpackr.unpack(payload);
  } catch (err) {
    void err; // its message may quote the value: never passed on
    throw new FrameError(offset, `undecodable ${what} payload: the msgpack decoder rejected it`);
  }
}

export class Invalid extends Error {}

export function fail(path: string, expected: string, got: unknown): never {
  throw new Invalid(`${path}: expected ${expected}, got ${describe(got)}`);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return typeof v;
}

export const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function uint(v: unknown, path: string): number {
  if (!isUint(v)) fail(path, 'a non-negative integer', v);
  return v;
}

export function nodeId(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail(path, 'a positive integer node id', v);
  return v;
}

export function tuple(v: unknown, path: string, min: number, max: number): Tuple {
  if (!Array.isArray(v) || v.length < min || v.length > max) {
    fail(path, min === max ? `an array of ${min}` : `an array of ${min} to ${max}`, v);
  }
  return v as Tuple;
}

export function array(v: unknown, path: string): Tuple {
  if (!Array.isArray(v)) fail(path, 'an array', v);
  return v as Tuple;
}

export function code<T>(list: readonly T[], v: unknown, path: string): T {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= list.length) fail(path, `a code 0..${list.length - 1}`, v);
  return list[v]!;
}

export function bytes(v: unknown, path: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(path, 'binary data', v);
  // A plain Uint8Array view (msgpackr gives Buffers); no copy.
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function validated<T>(offset: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof Invalid) throw new FrameError(offset, err.message);
    throw err;
  }
}
