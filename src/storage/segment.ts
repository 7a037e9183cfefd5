// Reading one WAL segment at recovery: verify the header and every record,
// and classify a failure as a torn write (cut it off) or corruption (stop).
//
// Version 2 (preallocated, zero tail) — only what a torn write can explain is cut:
//   - a zero length prefix is the end of the log; non-zero bytes after it in the
//     last segment are the rest of an unfinished write (zeroed) if they start
//     within the page after the one holding the end and no valid record is
//     among them; otherwise corruption (records missing, or foreign bytes);
//   - a record whose checksum fails is torn only in the last segment, only if
//     part of it lies in an all-zero (never written) sector, and only if no
//     valid record follows it;
//   - an impossible length is torn only in the last segment, only if the length
//     field crosses a sector boundary and the sector after it is all zero (a
//     write cut inside the field), and only if no valid record follows it;
//   - a length running past the end of the file, a file that ends without its
//     zero tail, a checksum failure in a complete record: corruption.
// Version 1 (previous release) keeps the old rules: in the last segment any
// failure with no valid record after it is a torn tail (the file is shortened).
import type { Entry } from '../raft/types.js';
import {
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  SEGMENT_VERSION,
  SEGMENT_VERSION_LEGACY,
  ZERO_TAIL_BYTES,
  PAGE_BYTES,
  SECTOR_BYTES,
  endOfNonZero,
  findValidRecordAfter,
  firstNonZero,
  hasZeroSector,
  isZero,
  readU64,
  decodeRecordInto,
  type RecordFields,
} from './codec.js';
import { CorruptLogError, UnsupportedFormatError } from './errors.js';
import type { StorageFile, StorageFs } from './fs.js';

export interface ParsedSegment {
  readonly version: number;
  /** Byte offset of each record; record i holds index firstIndex + i. */
  readonly offsets: number[];
  readonly terms: number[];
  /** Copies of the entries with index >= keepFrom. */
  readonly entries: Entry[];
  /** End of the last valid record (after any repair below). */
  readonly end: number;
  /** The last segment's header was never completely written: remove the file. */
  readonly headerTorn?: string;
  /** Version 1: the tail is torn; shorten the file to `offset`. */
  readonly truncate?: { readonly offset: number; readonly reason: string };
  /** Version 2: an unfinished write; zero bytes [from, to) (the file keeps its size). */
  readonly zeroFill?: { readonly from: number; readonly to: number; readonly reason: string };
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

export function parseSegment(buf: Buffer, o: ParseOptions): ParsedSegment {
  const { path, firstIndex, isLast } = o;
  const offsets: number[] = [];
  const terms: number[] = [];
  const entries: Entry[] = [];
  // Header. A short or all-zero header can only come from a crash while the
  // last segment was being created (the caller checks that it was not durable).
  if (buf.length < SEGMENT_HEADER_BYTES || isZero(buf, 0, SEGMENT_HEADER_BYTES)) {
    if (isLast && (buf.length < SEGMENT_HEADER_BYTES || isZero(buf, 0, buf.length))) {
      return { version: 0, offsets, terms, entries, end: 0, headerTorn: `segment header torn (${buf.length} bytes in file, no header)` };
    }
    throw new CorruptLogError(path, 0, `segment header is missing or damaged (${buf.length} bytes in file)`);
  }
  if (buf.readUInt32LE(0) !== SEGMENT_MAGIC) throw new CorruptLogError(path, 0, 'bad segment magic (not a quorate WAL segment)');
  const version = buf.readUInt16LE(4);
  if (version !== SEGMENT_VERSION && version !== SEGMENT_VERSION_LEGACY) {
    throw new UnsupportedFormatError(path, `WAL segment version ${version} (byte offset 4), this build reads ${SEGMENT_VERSION_LEGACY} and ${SEGMENT_VERSION}`);
  }
  if (buf.readUInt16LE(6) !== 0) throw new CorruptLogError(path, 6, 'reserved header bytes are not zero');
  const headerFirst = readU64(buf, 8);
  if (headerFirst !== firstIndex) throw new CorruptLogError(path, 8, `header says first index ${headerFirst} but the file name says ${firstIndex}`);

  let at = SEGMENT_HEADER_BYTES;
  let expected = firstIndex;
  let prevTerm = o.prevTerm;
  const rec: RecordFields = { term: 0, index: 0, type: 'normal', dataStart: 0, end: 0 };
  const accept = (r: Readonly<RecordFields>): void => {
    if (r.index !== expected) throw new CorruptLogError(path, at, `record holds index ${r.index}, expected ${expected}`);
    if (r.term < prevTerm) throw new CorruptLogError(path, at, `record for index ${r.index} has term ${r.term}, lower than the previous entry's term ${prevTerm}`);
    offsets.push(at);
    terms.push(r.term);
    if (r.index >= o.keepFrom) entries.push({ term: r.term, index: r.index, type: r.type, data: new Uint8Array(buf.subarray(r.dataStart, r.end)) });
    prevTerm = r.term;
    expected++;
    at = r.end;
  };

  if (version === SEGMENT_VERSION_LEGACY) {
    while (at < buf.length) {
      const r = decodeRecordInto(buf, at, rec);
      if (r !== undefined) {
        if (r.reason === 'bad payload') throw new CorruptLogError(path, at, `record for index ${expected} has a valid checksum but ${r.detail}`);
        if (!isLast) throw new CorruptLogError(path, at, `${r.reason} in record for index ${expected} (not the last segment, so not a torn write)`);
        const valid = findValidRecordAfter(buf, at + 1, expected);
        if (valid !== undefined) throw new CorruptLogError(path, at, `${r.reason} in record for index ${expected}, followed by a valid record at byte offset ${valid}`);
        return { version, offsets, terms, entries, end: at, truncate: { offset: at, reason: r.reason } };
      }
      accept(rec);
    }
    return { version, offsets, terms, entries, end: at };
  }

  for (;;) {
    if (at + ZERO_TAIL_BYTES > buf.length) {
      throw new CorruptLogError(
        path,
        at,
        `the file ends at byte ${buf.length}, after ${expected > firstIndex ? `the record for index ${expected - 1}` : 'the segment header'}, without the zero tail every version-2 segment keeps after its last record: the file was shortened (records from index ${expected} on may be lost)`,
      );
    }
    const length = buf.readUInt32LE(at);
    if (length === 0) {
      // End of the log. What follows must be zero, or the rest of an unfinished write.
      const nz = endOfNonZero(buf, at);
      if (nz === at) return { version, offsets, terms, entries, end: at };
      if (!isLast) throw new CorruptLogError(path, at, `non-zero bytes up to byte offset ${nz} after the last record (index ${expected - 1}) of a sealed segment`);
      // An unfinished write that lost its first page(s) leaves data right after
      // them; bytes farther out were never written by this log.
      const first = firstNonZero(buf, at, nz);
      if (first >= (Math.floor(at / PAGE_BYTES) + 2) * PAGE_BYTES) {
        throw new CorruptLogError(
          path,
          first,
          `non-zero bytes at byte offset ${first}, ${first - at} bytes after the end of the log (index ${expected - 1}), farther out than an interrupted write can reach`,
        );
      }
      const valid = findValidRecordAfter(buf, at + 1, expected, nz);
      if (valid !== undefined) {
        throw new CorruptLogError(path, at, `zero record length (end of log) where the record for index ${expected} belongs, but a valid record follows at byte offset ${valid}: records are missing in the middle of the log`);
      }
      return { version, offsets, terms, entries, end: at, zeroFill: { from: at, to: nz, reason: `bytes of an unfinished write after the record for index ${expected - 1}` } };
    }
    const r = decodeRecordInto(buf, at, rec);
    if (r === undefined) {
      accept(rec);
      continue;
    }
    if (r.reason === 'bad payload') throw new CorruptLogError(path, at, `record for index ${expected} has a valid checksum but ${r.detail}`);
    if (r.reason === 'bad length') {
      // A write torn inside the length field keeps its low bytes (the sector
      // before the boundary) and leaves the rest zero (the unwritten sector after it).
      const boundary = (Math.floor(at / SECTOR_BYTES) + 1) * SECTOR_BYTES;
      const tornLength = isLast && boundary < at + 4 && isZero(buf, boundary, Math.min(buf.length, boundary + SECTOR_BYTES));
      if (!tornLength) throw new CorruptLogError(path, at, `record for index ${expected} has an impossible length ${length}`);
      const nz = Math.max(at + 4, endOfNonZero(buf, at));
      const valid = findValidRecordAfter(buf, at + 1, expected, nz);
      if (valid !== undefined) throw new CorruptLogError(path, at, `record for index ${expected} has an impossible length ${length}, followed by a valid record at byte offset ${valid}`);
      return { version, offsets, terms, entries, end: at, zeroFill: { from: at, to: nz, reason: `torn record for index ${expected}: its length field was cut at the sector boundary ${boundary} (the sector after it never written)` } };
    }
    const recEnd = at + RECORD_HEADER_BYTES + length;
    if (r.reason === 'short payload' || r.reason === 'short header') {
      throw new CorruptLogError(path, at, `record for index ${expected} has length ${length}, which runs past the end of the file (${buf.length} bytes): the file was shortened`);
    }
    // Checksum mismatch in a record that lies wholly inside the file.
    if (!isLast) throw new CorruptLogError(path, at, `checksum mismatch in the record for index ${expected} (bytes ${at}..${recEnd}; not the last segment, so not a torn write)`);
    if (!hasZeroSector(buf, at, recEnd)) {
      throw new CorruptLogError(path, at, `checksum mismatch in the complete record for index ${expected} (bytes ${at}..${recEnd}), which has no unwritten (all-zero) sector, so it is not a torn write`);
    }
    const nz = Math.max(recEnd, endOfNonZero(buf, recEnd));
    const valid = findValidRecordAfter(buf, at + 1, expected, nz);
    if (valid !== undefined) throw new CorruptLogError(path, at, `checksum mismatch in the record for index ${expected}, followed by a valid record at byte offset ${valid}`);
    return { version, offsets, terms, entries, end: at, zeroFill: { from: at, to: nz, reason: `torn record for index ${expected}: checksum mismatch, part of it never written (an all-zero sector)` } };
  }
}

/** How much of a segment's end readSegment reads at a time while it looks for the last non-zero byte. */
const SCAN_BYTES = 4 * 1024 * 1024;

/**
 * Reads and parses one segment at recovery. A version-2 segment is
 * preallocated to segmentBytesMax (8 MiB by default; 64 until the ninth
 * session, when this was measured) and the last one is
 * mostly zeros after its last record: reading it whole cost a restarted node
 * about 200 ms (half of it waiting on the thread pool) and a 64 MiB Buffer.
 * So the file's end is scanned backwards in SCAN_BYTES pieces, reusing one
 * buffer, for its last non-zero byte; only the bytes before it (plus the zero
 * tail and a page) are read and parsed. Every byte after that prefix is zero,
 * so when the prefix parses cleanly (every record valid, then a zero length
 * and zeros to the prefix's end) the whole file parses the same way. Anything
 * else (a torn or corrupt tail, a bad header) is decided on the whole file, as
 * before, so the repairs and the errors are exactly those of parseSegment.
 */
export async function readSegment(fs: StorageFs, o: ParseOptions, prefetched?: Promise<SegmentPrefix | undefined>): Promise<{ readonly parsed: ParsedSegment; readonly fileBytes: number }> {
  const prefix = await (prefetched ?? readBeforeZeroTail(fs, o.path));
  if (prefix !== undefined) {
    let parsed: ParsedSegment | undefined;
    try {
      parsed = parseSegment(prefix.buf, o);
    } catch {
      parsed = undefined; // decided on the whole file below
    }
    const clean = parsed !== undefined && parsed.headerTorn === undefined && parsed.truncate === undefined && parsed.zeroFill === undefined;
    if (clean) return { parsed: parsed!, fileBytes: prefix.fileBytes };
  }
  const buf = await fs.readFile(o.path);
  return { parsed: parseSegment(buf, o), fileBytes: buf.length };
}

/** What readBeforeZeroTail read: the bytes before the zero tail (plus the tail and a page), and the file's size. */
export interface SegmentPrefix {
  readonly buf: Buffer;
  readonly fileBytes: number;
}

/**
 * The file's bytes up to its last non-zero byte plus the zero tail and a page,
 * or undefined when that is the whole file (readSegment then reads it whole).
 * Exported so that recovery can start this I/O early (readSegment's `prefetched`).
 */
export async function readBeforeZeroTail(fs: StorageFs, path: string): Promise<SegmentPrefix | undefined> {
  const fh = await fs.open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const scan = Buffer.allocUnsafe(Math.min(size, SCAN_BYTES));
    let dataEnd = 0;
    for (let end = size; end > 0; ) {
      const start = Math.max(0, end - scan.length);
      const n = await readFully(fh, scan, end - start, start);
      if (n < end - start) return undefined; // the file changed under us: read it whole
      const nz = endOfNonZero(scan, 0, n);
      if (nz > 0) {
        dataEnd = start + nz;
        break;
      }
      end = start;
    }
    const want = (Math.ceil((dataEnd + ZERO_TAIL_BYTES) / PAGE_BYTES) + 1) * PAGE_BYTES;
    if (want >= size) return undefined;
    const buf = Buffer.allocUnsafe(want);
    if ((await readFully(fh, buf, want, 0)) < want) return undefined;
    return { buf, fileBytes: size };
  } finally {
    await fh.close();
  }
}

async function readFully(fh: StorageFile, buf: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const n = await fh.read(buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}
