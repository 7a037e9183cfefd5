// Wire codec: length-prefixed frames and their payloads.
//
//   frame = [u32 BE payload length][u8 frame type][payload]
//
// Payloads are msgpack (msgpackr) except snapshot chunks (raw bytes after a
// CRC-32C) and empty ones (ping, snapshotAck). Raft messages travel as
// positional tuples (see README.md) and every field is validated on decode:
// a peer's bytes are untrusted input.
import { Packr, Unpackr } from 'msgpackr';
import type { Entry, EntryType, Member, MemberRole, Message, MessageType, SnapshotMeta } from '../raft/types.js';
import { crc32c } from '../lib/crc32c.js';
import { FrameError } from './errors.js';

export const FRAME_HEADER_BYTES = 5;

/** Wire codes of frame types. New types get new codes; codes are never reused. */
export const FrameType = {
  hello: 1,
  helloAck: 2,
  refuse: 3,
  messages: 4,
  snapshotBegin: 5,
  snapshotChunk: 6,
  snapshotEnd: 7,
  ping: 8,
  snapshotAck: 9,
  challenge: 10,
  auth: 11,
} as const;
export type FrameTypeName = keyof typeof FrameType;
export type FrameTypeCode = (typeof FrameType)[FrameTypeName];

const FRAME_NAMES = new Map<number, FrameTypeName>(
  (Object.keys(FrameType) as FrameTypeName[]).map((name) => [FrameType[name], name]),
);

const KiB = 1024;
const MiB = 1024 * KiB;

/** Per-type payload limits (bytes). Control frames are tiny; bulk frames are bounded by what a sender may produce. */
export const DEFAULT_FRAME_LIMITS: Readonly<Record<FrameTypeName, number>> = {
  hello: 256,
  challenge: 256,
  auth: 8 * KiB,
  helloAck: 8 * KiB,
  refuse: 8 * KiB,
  messages: 32 * MiB,
  snapshotBegin: 4 * MiB,
  snapshotChunk: 64 * MiB,
  snapshotEnd: 4 * KiB,
  ping: 0,
  snapshotAck: 0,
};
const ABSOLUTE_FRAME_MAX_BYTES = 64 * MiB;

export interface Frame {
  readonly type: FrameTypeName;
  readonly payload: Uint8Array;
  /** Stream byte offset of the frame's header (for error messages). */
  readonly offset: number;
}

export interface FrameDecoderOptions {
  readonly limits?: Partial<Record<FrameTypeName, number>>;
}

/**
 * Streaming frame decoder: push chunks of any size (down to one byte), get
 * whole frames. After the first FrameError it stays failed: the caller must
 * close the connection, since the stream cannot be resynchronised.
 */
export class FrameDecoder {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #offset = 0;
  #failed: FrameError | undefined;
  readonly #limits: Readonly<Record<FrameTypeName, number>>;
  readonly #maxAny: number;

  constructor(opts: FrameDecoderOptions = {}) {
    this.#limits = { ...DEFAULT_FRAME_LIMITS, ...opts.limits };
    this.#maxAny = Math.max(...Object.values(this.#limits));
  }

  /** Bytes consumed by whole frames so far. */
  get offset(): number {
    return this.#offset;
  }

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.#failed) throw this.#failed;
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const out: Frame[] = [];
    try {
      for (;;) {
        if (this.#buffered < 4) break;
        const head = this.#peek(Math.min(FRAME_HEADER_BYTES, this.#buffered));
        const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
        const length = view.getUint32(0, false);
        if (length > this.#maxAny) {
          throw new FrameError(this.#offset, `frame length ${length} exceeds the largest allowed frame (${this.#maxAny} bytes)`);
        }
        if (head.length < FRAME_HEADER_BYTES) break;
        const code = head[4]!;
        const type = FRAME_NAMES.get(code);
        if (type === undefined) throw new FrameError(this.#offset, `unknown frame type 0x${code.toString(16).padStart(2, '0')}`);
        const limit = this.#limits[type];
        if (length > limit) {
          throw new FrameError(this.#offset, `${type} frame length ${length} exceeds the limit of ${limit} bytes for that type`);
        }
        if (this.#buffered < FRAME_HEADER_BYTES + length) break;
        const bytes = this.#take(FRAME_HEADER_BYTES + length);
        out.push({ type, payload: bytes.subarray(FRAME_HEADER_BYTES), offset: this.#offset });
        this.#offset += FRAME_HEADER_BYTES + length;
      }
    } catch (err) {
      if (err instanceof FrameError) {
        this.#failed = err;
        this.#chunks = [];
        this.#buffered = 0;
      }
      throw err;
    }
    return out;
  }

  #peek(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let got = 0;
    for (const c of this.#chunks) {
      const k = Math.min(c.length, n - got);
      out.set(c.subarray(0, k), got);
      got += k;
      if (got === n) break;
    }
    return out;
  }

  #take(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - got);
      out.set(c.subarray(0, k), got);
      got += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#buffered -= n;
    return out;
  }
}

export function encodeFrameHeader(type: FrameTypeName, payloadBytes: number): Buffer {
  if (payloadBytes > ABSOLUTE_FRAME_MAX_BYTES) throw new RangeError(`frame payload of ${payloadBytes} bytes exceeds ${ABSOLUTE_FRAME_MAX_BYTES}`);
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32BE(payloadBytes, 0);
  h.writeUInt8(FrameType[type], 4);
  return h;
}

export function encodeFrame(type: FrameTypeName, payload: Uint8Array = EMPTY): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  buf.writeUInt32BE(payload.length, 0);
  buf.writeUInt8(FrameType[type], 4);
  buf.set(payload, FRAME_HEADER_BYTES);
  return buf;
}

const EMPTY = new Uint8Array(0);
const packr = new Packr({ useRecords: false, variableMapSize: true });
// Maps decode to Map (never to plain objects: no prototype games from a peer's
// keys). Every msgpackr extension is off; scanMsgpack refuses ext types anyway.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, structuredClone: false, bundleStrings: false, moreTypes: false });

export function pack(value: unknown): Uint8Array {
  return packr.pack(value);
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

// ---- Raft messages -------------------------------------------------------

/** Wire codes: index in these lists. Append only. */
const MESSAGE_TYPES: readonly MessageType[] = [
  'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp', 'snap', 'timeoutNow',
];
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf'];
const ROLES: readonly MemberRole[] = ['voter', 'observer', 'learner'];

type Tuple = unknown[];

function snapshotToTuple(s: SnapshotMeta): Tuple {
  return [s.index, s.term, s.membership.members.map(memberToTuple), [...s.membership.removed]];
}

/** [id, role code] plus, when recorded, [incarnation, apiUrl, name, catchUpTo] (null where absent). */
function memberToTuple(m: Member): Tuple {
  const t: Tuple = [m.id, ROLES.indexOf(m.role)];
  if (m.incarnation === undefined && m.apiUrl === undefined && m.name === undefined && m.catchUpTo === undefined) return t;
  t.push(m.incarnation ?? null, m.apiUrl ?? null, m.name ?? null, m.catchUpTo ?? null);
  return t;
}

export function messageToTuple(m: Message): Tuple {
  const t: Tuple = [
    MESSAGE_TYPES.indexOf(m.type), m.from, m.to, m.term, m.logTerm, m.index, m.commit, m.reject, m.rejectHint, m.context,
    m.entries.map((e) => [e.term, e.index, ENTRY_TYPES.indexOf(e.type), e.data]),
  ];
  if (m.snapshot !== undefined) t.push(snapshotToTuple(m.snapshot));
  return t;
}

/** Rough encoded size of a message, used for batching and outbound bounds. */
export function estimateMessageBytes(m: Message): number {
  let n = 64;
  for (const e of m.entries) n += 24 + e.data.length;
  if (m.snapshot) n += 32 + 12 * m.snapshot.membership.removed.length + 800 * m.snapshot.membership.members.length;
  return n;
}

/** Payload of one `messages` frame. */
export function encodeMessages(msgs: readonly Message[]): Uint8Array {
  return pack(msgs.map(messageToTuple));
}

class Invalid extends Error {}

function fail(path: string, expected: string, got: unknown): never {
  throw new Invalid(`${path}: expected ${expected}, got ${describe(got)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return typeof v;
}

function uint(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(path, 'a non-negative integer', v);
  return v;
}

function nodeId(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail(path, 'a positive integer node id', v);
  return v;
}

function tuple(v: unknown, path: string, min: number, max: number): Tuple {
  if (!Array.isArray(v) || v.length < min || v.length > max) {
    fail(path, min === max ? `an array of ${min}` : `an array of ${min} to ${max}`, v);
  }
  return v as Tuple;
}

function array(v: unknown, path: string): Tuple {
  if (!Array.isArray(v)) fail(path, 'an array', v);
  return v as Tuple;
}

function code<T>(list: readonly T[], v: unknown, path: string): T {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= list.length) fail(path, `a code 0..${list.length - 1}`, v);
  return list[v]!;
}

function bytes(v: unknown, path: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(path, 'binary data', v);
  // A plain Uint8Array view (msgpackr gives Buffers); no copy.
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function metaStr(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 256) fail(path, 'a string of 1 to 256 characters', v);
  return v;
}

function snapshotFromTuple(v: unknown, path: string): SnapshotMeta {
  const t = tuple(v, path, 4, 4);
  const members: Member[] = array(t[2], `${path}.membership.members`).map((mv, i) => {
    const p = `${path}.membership.members[${i}]`;
    const mt = tuple(mv, p, 2, 6);
    const opt = (k: number, what: string): string | undefined => (mt[k] === undefined || mt[k] === null ? undefined : metaStr(mt[k], `${p}.${what}`));
    const incarnation = opt(2, 'incarnation');
    const apiUrl = opt(3, 'apiUrl');
    const name = opt(4, 'name');
    const catchUpTo = mt[5] === undefined || mt[5] === null ? undefined : uint(mt[5], `${p}.catchUpTo`);
    return {
      id: nodeId(mt[0], `${p}.id`), role: code(ROLES, mt[1], `${p}.role`),
      ...(incarnation !== undefined ? { incarnation } : {}), ...(apiUrl !== undefined ? { apiUrl } : {}),
      ...(name !== undefined ? { name } : {}), ...(catchUpTo !== undefined ? { catchUpTo } : {}),
    };
  });
  const removed = array(t[3], `${path}.membership.removed`).map((x, i) => nodeId(x, `${path}.membership.removed[${i}]`));
  return { index: uint(t[0], `${path}.index`), term: uint(t[1], `${path}.term`), membership: { members, removed } };
}

/** Validate one decoded message tuple; throws Invalid naming the field. */
export function messageFromTuple(v: unknown, path = 'message'): Message {
  const t = tuple(v, path, 11, 12);
  if (typeof t[7] !== 'boolean') fail(`${path}.reject`, 'a boolean', t[7]);
  const entries: Entry[] = array(t[10], `${path}.entries`).map((ev, i) => {
    const p = `${path}.entries[${i}]`;
    const et = tuple(ev, p, 4, 4);
    return { term: uint(et[0], `${p}.term`), index: uint(et[1], `${p}.index`), type: code(ENTRY_TYPES, et[2], `${p}.type`), data: bytes(et[3], `${p}.data`) };
  });
  const base = {
    type: code(MESSAGE_TYPES, t[0], `${path}.type`),
    from: nodeId(t[1], `${path}.from`),
    to: nodeId(t[2], `${path}.to`),
    term: uint(t[3], `${path}.term`),
    logTerm: uint(t[4], `${path}.logTerm`),
    index: uint(t[5], `${path}.index`),
    entries,
    commit: uint(t[6], `${path}.commit`),
    reject: t[7],
    rejectHint: uint(t[8], `${path}.rejectHint`),
    context: uint(t[9], `${path}.context`),
  };
  if (t.length === 12) return { ...base, snapshot: snapshotFromTuple(t[11], `${path}.snapshot`) };
  return base;
}

function validated<T>(offset: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof Invalid) throw new FrameError(offset, err.message);
    throw err;
  }
}

/** Decode and validate a `messages` payload. */
export function decodeMessages(payload: Uint8Array, offset: number): Message[] {
  const v = unpack(payload, offset, 'messages');
  return validated(offset, () => array(v, 'messages').map((m, i) => messageFromTuple(m, `messages[${i}]`)));
}

// ---- Handshake -----------------------------------------------------------
//
//   dialer → hello {protocolVersion, minCompatibleVersion, nonce}
//   acceptor → challenge {nonce}
//   dialer → auth {…Hello, mac}
//   acceptor → helloAck {…, mac} | refuse {code: 'refused', reason: 'refused'}
//
// See handshake.ts for the MACs and README.md for what each side learns.

export type Channel = 'messages' | 'snapshot';

export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
export const INCARNATION_MAX = 64;

/** The dialer's opening: versions and a fresh nonce; nothing about who it is. */
export interface HelloOpen {
  readonly protocolVersion: number;
  readonly minCompatibleVersion: number;
  readonly nonce: Uint8Array;
}

/** The acceptor's answer to an opening: only its own fresh nonce. */
export interface Challenge {
  readonly nonce: Uint8Array;
}

/** What a dialer claims; sent in the `auth` frame with a MAC over it and both nonces. */
export interface Hello {
  readonly protocolVersion: number;
  readonly minCompatibleVersion: number;
  readonly haId: string;
  readonly fromId: number;
  readonly fromName: string;
  readonly toId: number;
  readonly channel: Channel;
  /** The dialer's advertised HTTP API URL ('' when unknown): how peers learn where to forward requests. */
  readonly apiUrl: string;
  /** The dialer's configured role, '' when not given. */
  readonly role: 'voter' | 'observer' | 'dr' | '';
  /** Opaque id of the dialer's data dir (≤ 64 characters), '' when not given. */
  readonly incarnation: string;
}

export interface Auth {
  readonly hello: Hello;
  readonly mac: Uint8Array;
}

export interface HelloAck {
  /** The version both sides now speak. */
  readonly protocolVersion: number;
  readonly nodeId: number;
  readonly nodeName: string;
  readonly haId: string;
  readonly incarnation: string;
  /**
   * The incarnation the acceptor's membership records for the dialer ('' when
   * none): a node that finds it differs from its own came back with a new
   * data dir, and withholds its vote until it has caught up.
   */
  readonly knownIncarnation: string;
  readonly mac: Uint8Array;
}

export interface Refusal {
  /** 'refused' before a handshake completed (nothing more is said); a FrameError code after it. */
  readonly code: string;
  readonly reason: string;
}

/** The only refusal an unauthenticated party ever gets. */
export const REFUSED: Refusal = { code: 'refused', reason: 'refused' };

const STRING_MAX = 1024;

function str(v: unknown, path: string, max = STRING_MAX): string {
  if (typeof v !== 'string' || v.length > max) fail(path, `a string of at most ${max} characters`, v);
  return v;
}

function asMap(v: unknown, path: string): Map<unknown, unknown> {
  if (!(v instanceof Map)) fail(path, 'a map', v);
  return v;
}

function fixedBytes(v: unknown, path: string, n: number): Uint8Array {
  const b = bytes(v, path);
  if (b.length !== n) fail(path, `${n} bytes`, b);
  return b;
}

/** "" or an http(s) URL with an explicit port and nothing after it. */
export function isPeerApiUrl(s: string): boolean {
  if (s === '') return true;
  if (!/^https?:\/\//i.test(s)) return false;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.port !== '' && u.username === '' && u.password === ''
    && (u.pathname === '/' || u.pathname === '') && u.search === '' && u.hash === '';
}

export function encodeHelloOpen(h: HelloOpen): Uint8Array {
  return pack({ protocolVersion: h.protocolVersion, minCompatibleVersion: h.minCompatibleVersion, nonce: h.nonce });
}

/** Versions first: an old peer's hello (no nonce) still yields its version range for the local log. */
export function decodeHelloOpen(payload: Uint8Array, offset: number): { versions?: { protocolVersion: number; minCompatibleVersion: number }; open?: HelloOpen; problem?: string } {
  const v = unpack(payload, offset, 'hello');
  try {
    const m = asMap(v, 'hello');
    const versions = {
      protocolVersion: uint(m.get('protocolVersion'), 'hello.protocolVersion'),
      minCompatibleVersion: uint(m.get('minCompatibleVersion'), 'hello.minCompatibleVersion'),
    };
    try {
      return { versions, open: { ...versions, nonce: fixedBytes(m.get('nonce'), 'hello.nonce', NONCE_BYTES) } };
    } catch (err) {
      if (err instanceof Invalid) return { versions, problem: err.message };
      throw err;
    }
  } catch (err) {
    if (err instanceof Invalid) return { problem: err.message };
    throw err;
  }
}

export function encodeChallenge(c: Challenge): Uint8Array {
  return pack({ nonce: c.nonce });
}

export function decodeChallenge(payload: Uint8Array, offset: number): Challenge {
  const v = unpack(payload, offset, 'challenge');
  return validated(offset, () => ({ nonce: fixedBytes(asMap(v, 'challenge').get('nonce'), 'challenge.nonce', NONCE_BYTES) }));
}

export function encodeAuth(a: Auth): Uint8Array {
  const h = a.hello;
  return pack({
    protocolVersion: h.protocolVersion, minCompatibleVersion: h.minCompatibleVersion, haId: h.haId, fromId: h.fromId,
    fromName: h.fromName, toId: h.toId, channel: h.channel, apiUrl: h.apiUrl, role: h.role, incarnation: h.incarnation, mac: a.mac,
  });
}

export function decodeAuth(payload: Uint8Array, offset: number): Auth {
  const v = unpack(payload, offset, 'auth');
  return validated(offset, () => {
    const m = asMap(v, 'auth');
    const ch = m.get('channel');
    if (ch !== 'messages' && ch !== 'snapshot') fail('auth.channel', "'messages' or 'snapshot'", ch);
    const role = m.get('role');
    if (role !== '' && role !== 'voter' && role !== 'observer' && role !== 'dr') fail('auth.role', "'voter', 'observer', 'dr' or ''", role);
    const apiUrl = str(m.get('apiUrl'), 'auth.apiUrl');
    if (!isPeerApiUrl(apiUrl)) fail('auth.apiUrl', 'an http(s) URL with a port, or ""', apiUrl);
    const hello: Hello = {
      protocolVersion: uint(m.get('protocolVersion'), 'auth.protocolVersion'),
      minCompatibleVersion: uint(m.get('minCompatibleVersion'), 'auth.minCompatibleVersion'),
      haId: str(m.get('haId'), 'auth.haId'),
      fromId: nodeId(m.get('fromId'), 'auth.fromId'),
      fromName: str(m.get('fromName'), 'auth.fromName'),
      toId: nodeId(m.get('toId'), 'auth.toId'),
      channel: ch,
      apiUrl,
      role: role as Hello['role'],
      incarnation: str(m.get('incarnation'), 'auth.incarnation', INCARNATION_MAX),
    };
    return { hello, mac: fixedBytes(m.get('mac'), 'auth.mac', MAC_BYTES) };
  });
}

export function encodeHelloAck(a: HelloAck): Uint8Array {
  return pack({ protocolVersion: a.protocolVersion, nodeId: a.nodeId, nodeName: a.nodeName, haId: a.haId, incarnation: a.incarnation, knownIncarnation: a.knownIncarnation, mac: a.mac });
}

export function decodeHelloAck(payload: Uint8Array, offset: number): HelloAck {
  const v = unpack(payload, offset, 'helloAck');
  return validated(offset, () => {
    const m = asMap(v, 'helloAck');
    return {
      protocolVersion: uint(m.get('protocolVersion'), 'helloAck.protocolVersion'),
      nodeId: nodeId(m.get('nodeId'), 'helloAck.nodeId'),
      nodeName: str(m.get('nodeName'), 'helloAck.nodeName'),
      haId: str(m.get('haId'), 'helloAck.haId'),
      incarnation: str(m.get('incarnation'), 'helloAck.incarnation', INCARNATION_MAX),
      knownIncarnation: str(m.get('knownIncarnation') ?? '', 'helloAck.knownIncarnation', INCARNATION_MAX),
      mac: fixedBytes(m.get('mac'), 'helloAck.mac', MAC_BYTES),
    };
  });
}

export function encodeRefusal(r: Refusal): Uint8Array {
  return pack({ code: r.code, reason: r.reason });
}

export function decodeRefusal(payload: Uint8Array, offset: number): Refusal {
  const v = unpack(payload, offset, 'refuse');
  return validated(offset, () => {
    const m = asMap(v, 'refuse');
    return { code: str(m.get('code'), 'refuse.code'), reason: str(m.get('reason'), 'refuse.reason') };
  });
}

// ---- Snapshot stream -----------------------------------------------------

export interface SnapshotBegin {
  readonly msg: Message;
  readonly totalBytes: number;
}

export function encodeSnapshotBegin(b: SnapshotBegin): Uint8Array {
  return pack([messageToTuple(b.msg), b.totalBytes]);
}

export function decodeSnapshotBegin(payload: Uint8Array, offset: number): SnapshotBegin {
  const v = unpack(payload, offset, 'snapshotBegin');
  return validated(offset, () => {
    const t = tuple(v, 'snapshotBegin', 2, 2);
    return { msg: messageFromTuple(t[0], 'snapshotBegin.msg'), totalBytes: uint(t[1], 'snapshotBegin.totalBytes') };
  });
}

/** Header (frame header + CRC-32C) of a chunk frame; write it, then `data`, to avoid copying the chunk. */
export function encodeSnapshotChunkHeader(data: Uint8Array): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 4);
  h.writeUInt32BE(4 + data.length, 0);
  h.writeUInt8(FrameType.snapshotChunk, 4);
  h.writeUInt32BE(crc32c(data), FRAME_HEADER_BYTES);
  return h;
}

/** Verify a chunk's CRC-32C; returns its data. */
export function decodeSnapshotChunk(payload: Uint8Array, offset: number): Uint8Array {
  if (payload.length < 4) throw new FrameError(offset, `snapshotChunk payload of ${payload.length} bytes is shorter than its 4-byte CRC`);
  const want = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0, false);
  const data = payload.subarray(4);
  const got = crc32c(data);
  if (got !== want) {
    throw new FrameError(offset, `snapshotChunk CRC-32C mismatch (frame says ${hex32(want)}, data gives ${hex32(got)})`);
  }
  return data;
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

export interface SnapshotEnd {
  readonly totalBytes: number;
  readonly sha256: Uint8Array;
}

export function encodeSnapshotEnd(e: SnapshotEnd): Uint8Array {
  return pack([e.totalBytes, e.sha256]);
}

export function decodeSnapshotEnd(payload: Uint8Array, offset: number): SnapshotEnd {
  const v = unpack(payload, offset, 'snapshotEnd');
  return validated(offset, () => {
    const t = tuple(v, 'snapshotEnd', 2, 2);
    const sha256 = bytes(t[1], 'snapshotEnd.sha256');
    if (sha256.length !== 32) fail('snapshotEnd.sha256', '32 bytes', sha256);
    return { totalBytes: uint(t[0], 'snapshotEnd.totalBytes'), sha256 };
  });
}
