// Wire codec: length-prefixed frames and their payloads.
//
//   frame = [u32 BE payload length][u8 frame type][payload]
//
// Payloads are msgpack (msgpackr) except snapshot chunks (raw bytes after a
// CRC-32C) and empty ones (ping, snapshotAck). Raft messages travel as
// positional tuples (see README.md) and every field is validated on decode:
// a peer's bytes are untrusted input.
import type { Entry, EntryType, Member, MemberRole, Message, MessageType, SnapshotMeta } from '../raft/types.js';
import { crc32c } from '../lib/crc32c.js';
import { FrameError } from './errors.js';
import { array, bytes, code, fail, isUint, nodeId, pack, packTransient, tuple, uint, unpack, validated, type Tuple } from './msgpack.js';

export { MSGPACK_MAX_DEPTH, pack, scanMsgpack, unpack } from './msgpack.js';
export * from './handshake-codec.js';

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
  /** The join exchange (join.ts): a joiner's proof of a join token, the leader's sealed answer. */
  joinAuth: 12,
  joinAck: 13,
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
  joinAuth: 8 * KiB,
  joinAck: 256 * KiB,
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
// ---- Raft messages -------------------------------------------------------

/** Wire codes: index in these lists. Append only. */
const MESSAGE_TYPES: readonly MessageType[] = [
  'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp', 'snap', 'timeoutNow',
];
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'conf'];
const ROLES: readonly MemberRole[] = ['voter', 'observer', 'learner'];


function snapshotToTuple(s: SnapshotMeta): Tuple {
  return [s.index, s.term, s.membership.members.map(memberToTuple), [...s.membership.removed]];
}

/** [id, role code] plus, when recorded, [incarnation, apiUrl, name, catchUpTo] and then [peerUrl] (null where absent; appended, so older tuples still decode). */
function memberToTuple(m: Member): Tuple {
  const t: Tuple = [m.id, ROLES.indexOf(m.role)];
  if (m.incarnation === undefined && m.apiUrl === undefined && m.name === undefined && m.catchUpTo === undefined && m.peerUrl === undefined) return t;
  t.push(m.incarnation ?? null, m.apiUrl ?? null, m.name ?? null, m.catchUpTo ?? null);
  if (m.peerUrl !== undefined) t.push(m.peerUrl);
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

/** A 'messages' frame of `msgs` (encoded in the encoder's reused buffer, copied into the frame). */
export function encodeMessagesFrame(msgs: readonly Message[]): Buffer {
  return encodeFrame('messages', packTransient(msgs.map(messageToTuple)));
}

/** Entry data this large or larger is written from the log's own Buffer, not copied into the frame. */
export const LARGE_ENTRY_BYTES = 64 * 1024;

/**
 * A 'messages' frame of `msgs` as pieces to write in order (one writev):
 * the same bytes as encodeMessagesFrame, but each entry's data of
 * LARGE_ENTRY_BYTES or more is a piece of its own (the entry's Buffer
 * itself) instead of a copy. The leader of a file upload sends each 1 MiB
 * chunk to every follower: copied, that was 1 MiB of Buffers per follower
 * per chunk, dead once written (docs/performance.md "Memory of a large file
 * upload"). Messages without large entries are one piece, as before.
 */
export function encodeMessagesFramePieces(msgs: readonly Message[]): Uint8Array[] {
  if (!msgs.some((m) => m.entries.some((e) => e.data.length >= LARGE_ENTRY_BYTES))) return [encodeMessagesFrame(msgs)];
  const pieces: Uint8Array[] = [];
  let small: Uint8Array[] = [arrayHeader(msgs.length)];
  const flushSmall = (): void => {
    if (small.length > 0) pieces.push(small.length === 1 ? small[0]! : Buffer.concat(small));
    small = [];
  };
  for (const m of msgs) {
    const t = messageToTuple(m);
    small.push(arrayHeader(t.length));
    // Elements 0..9 as pack() encodes them; 10 the entries, piece by piece; 11 the snapshot, if any.
    for (let i = 0; i < 10; i++) small.push(pack(t[i]));
    small.push(arrayHeader(m.entries.length));
    for (const e of m.entries) {
      small.push(arrayHeader(4), pack(e.term), pack(e.index), pack(ENTRY_TYPES.indexOf(e.type)));
      if (e.data.length < LARGE_ENTRY_BYTES) {
        small.push(pack(e.data));
        continue;
      }
      small.push(binHeader(e.data.length));
      flushSmall();
      pieces.push(e.data);
    }
    for (let i = 11; i < t.length; i++) small.push(pack(t[i]));
  }
  flushSmall();
  let total = 0;
  for (const p of pieces) total += p.length;
  pieces.unshift(encodeFrameHeader('messages', total));
  return pieces;
}

/** msgpack array header for `n` elements (fixarray, array 16, array 32), as pack() writes it. */
function arrayHeader(n: number): Uint8Array {
  if (n < 16) return Uint8Array.of(0x90 | n);
  if (n < 0x10000) return Uint8Array.of(0xdc, n >>> 8, n & 0xff);
  return Uint8Array.of(0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** msgpack bin header for `n` bytes (bin 8, 16, 32), as pack() writes it. */
function binHeader(n: number): Uint8Array {
  if (n < 0x100) return Uint8Array.of(0xc4, n);
  if (n < 0x10000) return Uint8Array.of(0xc5, n >>> 8, n & 0xff);
  return Uint8Array.of(0xc6, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

function metaStr(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 256) fail(path, 'a string of 1 to 256 characters', v);
  return v;
}

function snapshotFromTuple(v: unknown, path: string): SnapshotMeta {
  const t = tuple(v, path, 4, 4);
  const members: Member[] = array(t[2], `${path}.membership.members`).map((mv, i) => {
    const p = `${path}.membership.members[${i}]`;
    const mt = tuple(mv, p, 2, 7);
    const opt = (k: number, what: string): string | undefined => (mt[k] === undefined || mt[k] === null ? undefined : metaStr(mt[k], `${p}.${what}`));
    const incarnation = opt(2, 'incarnation');
    const apiUrl = opt(3, 'apiUrl');
    const name = opt(4, 'name');
    const peerUrl = opt(6, 'peerUrl');
    const catchUpTo = mt[5] === undefined || mt[5] === null ? undefined : uint(mt[5], `${p}.catchUpTo`);
    return {
      id: nodeId(mt[0], `${p}.id`), role: code(ROLES, mt[1], `${p}.role`),
      ...(incarnation !== undefined ? { incarnation } : {}), ...(apiUrl !== undefined ? { apiUrl } : {}),
      ...(name !== undefined ? { name } : {}), ...(catchUpTo !== undefined ? { catchUpTo } : {}),
      ...(peerUrl !== undefined ? { peerUrl } : {}),
    };
  });
  const removed = array(t[3], `${path}.membership.removed`).map((x, i) => nodeId(x, `${path}.membership.removed[${i}]`));
  return { index: uint(t[0], `${path}.index`), term: uint(t[1], `${path}.term`), membership: { members, removed } };
}

/**
 * A valid entry tuple `[term, index, type, data]`, or undefined: then
 * checkedEntryFromTuple says what is wrong. An append carries thousands of
 * entries while a follower catches up; the checked path builds a field path
 * string per check, which is only worth doing for the one that fails.
 */
function entryFromTuple(ev: unknown): Entry | undefined {
  if (!Array.isArray(ev) || ev.length !== 4) return undefined;
  const [term, index, type, data] = ev as unknown[];
  if (!isUint(term) || !isUint(index) || typeof type !== 'number' || !Number.isInteger(type) || ENTRY_TYPES[type] === undefined || !(data instanceof Uint8Array)) return undefined;
  return { term, index, type: ENTRY_TYPES[type], data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function checkedEntryFromTuple(ev: unknown, p: string): Entry {
  const et = tuple(ev, p, 4, 4);
  return { term: uint(et[0], `${p}.term`), index: uint(et[1], `${p}.index`), type: code(ENTRY_TYPES, et[2], `${p}.type`), data: bytes(et[3], `${p}.data`) };
}

/** Validate one decoded message tuple; throws Invalid naming the field. */
export function messageFromTuple(v: unknown, path = 'message'): Message {
  const t = tuple(v, path, 11, 12);
  if (typeof t[7] !== 'boolean') fail(`${path}.reject`, 'a boolean', t[7]);
  const entries: Entry[] = array(t[10], `${path}.entries`).map((ev, i) => entryFromTuple(ev) ?? checkedEntryFromTuple(ev, `${path}.entries[${i}]`));
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


/** Decode and validate a `messages` payload. */
export function decodeMessages(payload: Uint8Array, offset: number): Message[] {
  const v = unpack(payload, offset, 'messages');
  return validated(offset, () => array(v, 'messages').map((m, i) => messageFromTuple(m, `messages[${i}]`)));
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
