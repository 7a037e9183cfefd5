// Zeroing part of a segment durably (overwriting a suffix of the log, or
// repairing a torn tail at recovery), with the intent recorded first.
//
// `<dir>/zero-fill`: a zero-fill of a segment's tail is in progress. A crash
// can persist any part of that write, leaving zeros before stale records,
// which would look like records lost in the middle of the log; recovery
// finishes the zero-fill it names first (finishZeroFill).
import { join } from 'node:path';
import { SEGMENT_HEADER_BYTES, endOfNonZero, segmentFileName } from './codec.js';
import { CorruptLogError } from './errors.js';
import { atomicWriteFile } from './fsutil.js';
import type { StorageFile, StorageFs } from './fs.js';

export const ZERO_FILL_FILE = 'zero-fill';
const MiB = 1024 * 1024;

/** Overwrites [from, to) of a file with zeros and fdatasyncs it. */
export async function zeroFill(fh: StorageFile, from: number, to: number): Promise<void> {
  const zeros = Buffer.alloc(Math.min(to - from, MiB));
  for (let at = from; at < to; ) {
    const n = Math.min(zeros.length, to - at);
    const bytesWritten = await fh.write(zeros, 0, n, at);
    at += bytesWritten;
  }
  await fh.datasync();
}

/**
 * Zero-fills [from, to) of segment `firstIndex` (open as `fh`) durably, with
 * the intent recorded first in `<dir>/zero-fill` so that recovery completes it
 * after a crash.
 */
export async function zeroFillSegment(fs: StorageFs, dir: string, fh: StorageFile, firstIndex: number, from: number, to: number): Promise<void> {
  const marker = join(dir, ZERO_FILL_FILE);
  await atomicWriteFile(marker, [Buffer.from(`${JSON.stringify({ segment: firstIndex, from })}\n`)], 0o600, fs);
  await zeroFill(fh, from, to);
  await fs.unlink(marker);
  await fs.fsyncDir(dir);
}

/** Completes a zero-fill a crash interrupted (see ZERO_FILL_FILE); warnings are pushed to `warnings`. */
export async function finishZeroFill(fs: StorageFs, dir: string, walDir: string, warnings: string[]): Promise<void> {
  const marker = join(dir, ZERO_FILL_FILE);
  let text: string;
  try {
    text = (await fs.readFile(marker)).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let intent: { segment: number; from: number };
  try {
    intent = JSON.parse(text) as { segment: number; from: number };
    if (!Number.isSafeInteger(intent.segment) || !Number.isSafeInteger(intent.from) || intent.segment < 1 || intent.from < SEGMENT_HEADER_BYTES) throw new Error('bad fields');
  } catch (err) {
    throw new CorruptLogError(marker, 0, `zero-fill intent is not valid (${(err as Error).message}); it is written atomically, so this is damage`);
  }
  const path = join(walDir, segmentFileName(intent.segment));
  let buf: Buffer | undefined;
  try {
    buf = await fs.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (buf !== undefined && intent.from < buf.length) {
    const to = endOfNonZero(buf, intent.from);
    if (to > intent.from) {
      const fh = await fs.open(path, 'r+');
      try {
        await zeroFill(fh, intent.from, to);
      } finally {
        await fh.close();
      }
      warnings.push(`completed zeroing bytes ${intent.from}..${to} of ${path}, which a crash had interrupted (entries being overwritten, or a torn tail being repaired)`);
    }
  }
  await fs.unlink(marker);
  await fs.fsyncDir(dir);
}
