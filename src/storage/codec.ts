// Binary encodings of the WAL: segment header and entry records.
//
// Segment file  = header (16 bytes) + records (+ zero tail in version 2).
//   header      = "QWAL" | version u16 LE (2; 1 still read) | reserved u16 (0) | firstIndex u64 LE
//   Version 2 files are preallocated (sparse zeros) and always keep at least
//   ZERO_TAIL_BYTES zero bytes after the last record: a zero length = end of log.
// Record        = length u32 LE | crc32c u32 LE | payload (length bytes)
//   crc32c covers the 4 length bytes and the payload, so a damaged length is caught.
//   payload     = type u8 (1 normal, 2 conf) | term u64 LE | index u64 LE | data
// u64 values are written as two u32 halves and must be safe integers (< 2^53).
import type { Entry, EntryType } from '../raft/types.js';
import { crc32cRange } from '../lib/crc32c.js';

export const SEGMENT_MAGIC = 0x4c415751; // "QWAL" read as u32 LE
export const SEGMENT_VERSION = 2;
/** Written by the previous release: no preallocation, read with the old torn-tail rules. */
export const SEGMENT_VERSION_LEGACY = 1;
/** A version-2 segment always has at least this many zero bytes after its last record. */
export const ZERO_TAIL_BYTES = 8;
/** Torn-write granularity assumed at recovery (as etcd: a sector is written whole or not at all). */
export const SECTOR_BYTES = 512;
/** Page-cache writeback unit: an unfinished write may lose whole pages, in any order. */
export const PAGE_BYTES = 4096;
export const SEGMENT_HEADER_BYTES = 16;
export const RECORD_HEADER_BYTES = 8;
export const ENTRY_FIXED_BYTES = 17;
export const MIN_RECORD_BYTES = RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES;
/** Largest payload accepted; anything larger is treated as a damaged length. */
export const RECORD_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024;

const TYPE_NORMAL = 1;
const TYPE_CONF = 2;
const TWO_32 = 0x1_0000_0000;

export function segmentFileName(firstIndex: number): string {
  return `${String(firstIndex).padStart(20, '0')}.seg`;
}

const SEGMENT_NAME = /^(\d{20})\.seg$/;
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (m === null) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value >>> 0, at);
  buf.writeUInt32LE(Math.floor(value / TWO_32), at + 4);
}

/** Returns -1 when the value is not a safe integer. */
export function readU64(buf: Buffer, at: number): number {
  const hi = buf.readUInt32LE(at + 4);
  if (hi >= 0x20_0000) return -1;
  return hi * TWO_32 + buf.readUInt32LE(at);
}

export function encodeSegmentHeader(firstIndex: number, version = SEGMENT_VERSION): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  b.writeUInt32LE(SEGMENT_MAGIC, 0);
  b.writeUInt16LE(version, 4);
  writeU64(b, firstIndex, 8);
  return b;
}

export function recordBytes(entry: Entry): number {
  return RECORD_HEADER_BYTES + ENTRY_FIXED_BYTES + entry.data.length;
}

/** Encodes one entry as a record into `buf` at `at` (caller ensures room); returns the end offset. */
export function encodeRecord(entry: Entry, buf: Buffer, at: number): number {
  const payloadLen = ENTRY_FIXED_BYTES + entry.data.length;
  const p = at + RECORD_HEADER_BYTES;
  buf.writeUInt32LE(payloadLen, at);
  buf[p] = entry.type === 'conf' ? TYPE_CONF : TYPE_NORMAL;
  writeU64(buf, entry.term, p + 1);
  writeU64(buf, entry.index, p + 9);
  buf.set(entry.data, p + ENTRY_FIXED_BYTES);
  const end = p + payloadLen;
  const crc = crc32cRange(buf, p, end, crc32cRange(buf, at, at + 4));
  buf.writeUInt32LE(crc, at + 4);
  return end;
}

/** Why a record does not decode. */
export type DecodeFailure =
  | { readonly reason: 'short header' | 'short payload' | 'bad length' | 'bad checksum' }
  /** The checksum matched but the contents are not a valid entry: never a torn write. */
  | { readonly reason: 'bad payload'; readonly detail: string };

/** The fields of a valid record (`data` is buf[dataStart, end)). */
export interface RecordFields {
  term: number;
  index: number;
  type: EntryType;
  dataStart: number;
  end: number;
}

const SHORT_HEADER: DecodeFailure = { reason: 'short header' };
const BAD_LENGTH: DecodeFailure = { reason: 'bad length' };
const SHORT_PAYLOAD: DecodeFailure = { reason: 'short payload' };
const BAD_CHECKSUM: DecodeFailure = { reason: 'bad checksum' };

/**
 * Decodes the record at `at` into `out` without copying or allocating:
 * undefined when it is valid, else why not. Recovery checks every record of
 * the newest segment (up to 64 MiB of them): a result object per record was
 * most of its garbage.
 */
export function decodeRecordInto(buf: Buffer, at: number, out: RecordFields): DecodeFailure | undefined {
  const len = buf.length;
  if (at + RECORD_HEADER_BYTES > len) return SHORT_HEADER;
  const payloadLen = buf.readUInt32LE(at);
  if (payloadLen < ENTRY_FIXED_BYTES || payloadLen > RECORD_PAYLOAD_BYTES_MAX) return BAD_LENGTH;
  const p = at + RECORD_HEADER_BYTES;
  const end = p + payloadLen;
  if (end > len) return SHORT_PAYLOAD;
  if (crc32cRange(buf, p, end, crc32cRange(buf, at, at + 4)) !== buf.readUInt32LE(at + 4)) return BAD_CHECKSUM;
  const t = buf[p];
  if (t !== TYPE_NORMAL && t !== TYPE_CONF) return { reason: 'bad payload', detail: `unknown entry type byte ${String(t)}` };
  const term = readU64(buf, p + 1);
  const index = readU64(buf, p + 9);
  if (term < 0 || index < 1) return { reason: 'bad payload', detail: 'term or index out of range' };
  out.term = term;
  out.index = index;
  out.type = t === TYPE_CONF ? 'conf' : 'normal';
  out.dataStart = p + ENTRY_FIXED_BYTES;
  out.end = end;
  return undefined;
}

/**
 * Looks for any record with a valid checksum starting in buf[from..] whose index
 * is at least `minIndex`. Used to tell a torn tail (nothing valid follows) from
 * corruption (valid records follow the damage). Cheap filters first, CRC last.
 */
export function findValidRecordAfter(buf: Buffer, from: number, minIndex: number, to = buf.length): number | undefined {
  const len = to;
  const maxIndex = minIndex + Math.ceil(len / MIN_RECORD_BYTES) + 1;
  const scratch: RecordFields = { term: 0, index: 0, type: 'normal', dataStart: 0, end: 0 };
  for (let p = from; p + MIN_RECORD_BYTES <= len; p++) {
    const payloadLen = buf.readUInt32LE(p);
    if (payloadLen < ENTRY_FIXED_BYTES || payloadLen > RECORD_PAYLOAD_BYTES_MAX) continue;
    if (p + RECORD_HEADER_BYTES + payloadLen > buf.length) continue;
    const t = buf[p + RECORD_HEADER_BYTES];
    if (t !== TYPE_NORMAL && t !== TYPE_CONF) continue;
    const index = readU64(buf, p + RECORD_HEADER_BYTES + 9);
    if (index < minIndex || index > maxIndex) continue;
    if (decodeRecordInto(buf, p, scratch) === undefined) return p;
  }
  return undefined;
}

const ZERO_CHUNK = Buffer.alloc(64 * 1024);

/** True when buf[from, to) is all zero (native compares, 64 KiB at a time). */
export function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let at = from; at < to; at += ZERO_CHUNK.length) {
    const end = Math.min(to, at + ZERO_CHUNK.length);
    if (ZERO_CHUNK.compare(buf, at, end, 0, end - at) !== 0) return false;
  }
  return true;
}

/** Offset of the first non-zero byte of buf[from, to), or `to` when all are zero. */
export function firstNonZero(buf: Buffer, from: number, to = buf.length): number {
  for (let at = from; at < to; at += ZERO_CHUNK.length) {
    const end = Math.min(to, at + ZERO_CHUNK.length);
    if (ZERO_CHUNK.compare(buf, at, end, 0, end - at) === 0) continue;
    for (let i = at; i < end; i++) if (buf[i] !== 0) return i;
  }
  return to;
}

/** One past the last non-zero byte of buf[from, to), or `from` when all are zero. */
export function endOfNonZero(buf: Buffer, from: number, to = buf.length): number {
  let end = to;
  while (end > from) {
    const start = Math.max(from, end - ZERO_CHUNK.length);
    if (ZERO_CHUNK.compare(buf, start, end, 0, end - start) === 0) {
      end = start;
      continue;
    }
    for (let i = end - 1; i >= start; i--) if (buf[i] !== 0) return i + 1;
  }
  return from;
}

/**
 * etcd's isTornEntry: a record whose checksum fails was torn by a crash only if
 * part of it lies in a sector that was never written (all zero). The record's
 * bytes are split at file-offset sector boundaries; any all-zero piece counts.
 */
export function hasZeroSector(buf: Buffer, from: number, to: number): boolean {
  let at = from;
  while (at < to) {
    const end = Math.min(to, (Math.floor(at / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    if (isZero(buf, at, end)) return true;
    at = end;
  }
  return false;
}
