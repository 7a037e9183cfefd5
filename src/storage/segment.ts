// Reading one WAL segment at recovery: verify the header and every record,
// and classify a failure as a torn tail (truncate) or corruption (stop).
import type { Entry } from '../raft/types.js';
import { SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, SEGMENT_VERSION, decodeRecord, findValidRecordAfter, readU64 } from './codec.js';
import { CorruptLogError, UnsupportedFormatError } from './errors.js';

export interface ParsedSegment {
  /** Byte offset of each record; record i holds index firstIndex + i. */
  readonly offsets: number[];
  readonly terms: number[];
  /** Copies of the entries with index >= keepFrom. */
  readonly entries: Entry[];
  /** Set when the tail is torn: truncate the file to `offset` (0 = the header itself is torn). */
  readonly torn?: { readonly offset: number; readonly reason: string };
}

export interface ParseOptions {
  readonly path: string;
  readonly firstIndex: number;
  /** Term of the previous segment's last entry (terms never decrease), 0 if unknown. */
  readonly prevTerm: number;
  /** Entries below this index are verified but not copied out. */
  readonly keepFrom: number;
  /** Only the last segment may have a torn tail. */
  readonly isLast: boolean;
}

function allZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function parseSegment(buf: Buffer, o: ParseOptions): ParsedSegment {
  const { path, firstIndex, isLast } = o;
  const offsets: number[] = [];
  const terms: number[] = [];
  const entries: Entry[] = [];
  // Header. A short or all-zero header can only come from a crash while the
  // last segment was being created.
  if (buf.length < SEGMENT_HEADER_BYTES || allZero(buf.subarray(0, SEGMENT_HEADER_BYTES))) {
    if (isLast && (buf.length < SEGMENT_HEADER_BYTES || allZero(buf))) {
      return { offsets, terms, entries, torn: { offset: 0, reason: `segment header torn (${buf.length} bytes in file)` } };
    }
    throw new CorruptLogError(path, 0, `segment header is missing or damaged (${buf.length} bytes in file)`);
  }
  if (buf.readUInt32LE(0) !== SEGMENT_MAGIC) throw new CorruptLogError(path, 0, 'bad segment magic (not a quorate WAL segment)');
  const version = buf.readUInt16LE(4);
  if (version !== SEGMENT_VERSION) throw new UnsupportedFormatError(path, `WAL segment version ${version}, this build reads ${SEGMENT_VERSION}`);
  if (buf.readUInt16LE(6) !== 0) throw new CorruptLogError(path, 6, 'reserved header bytes are not zero');
  const headerFirst = readU64(buf, 8);
  if (headerFirst !== firstIndex) throw new CorruptLogError(path, 8, `header says first index ${headerFirst} but the file name says ${firstIndex}`);

  let at = SEGMENT_HEADER_BYTES;
  let expected = firstIndex;
  let prevTerm = o.prevTerm;
  while (at < buf.length) {
    const r = decodeRecord(buf, at);
    if (!r.ok) {
      if (r.reason === 'bad payload') throw new CorruptLogError(path, at, `record has a valid checksum but ${r.detail}`);
      if (!isLast) throw new CorruptLogError(path, at, `${r.reason} in record for index ${expected} (not the last segment, so not a torn write)`);
      const valid = findValidRecordAfter(buf, at + 1, expected);
      if (valid !== undefined) throw new CorruptLogError(path, at, `${r.reason} in record for index ${expected}, followed by a valid record at byte offset ${valid}`);
      return { offsets, terms, entries, torn: { offset: at, reason: r.reason } };
    }
    if (r.index !== expected) throw new CorruptLogError(path, at, `record holds index ${r.index}, expected ${expected}`);
    if (r.term < prevTerm) throw new CorruptLogError(path, at, `record for index ${r.index} has term ${r.term}, lower than the previous entry's term ${prevTerm}`);
    offsets.push(at);
    terms.push(r.term);
    if (r.index >= o.keepFrom) entries.push({ term: r.term, index: r.index, type: r.type, data: new Uint8Array(buf.subarray(r.dataStart, r.end)) });
    prevTerm = r.term;
    expected++;
    at = r.end;
  }
  return { offsets, terms, entries };
}
