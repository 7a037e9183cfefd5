// A snapshot section held whole in memory: for small machines (settings-sized,
// at most a few MiB) whose state is one canonical msgpack value. The empty
// state is written as no bytes at all, so a legacy snapshot can leave the
// section out.
import { unpackCanonical } from './commands.js';
import { SnapshotCorruptError } from './errors.js';

/** Reads a whole section (at most `maxBytes`) and unpacks it; undefined for an empty section. */
export async function readSmallSection(chunks: AsyncIterable<Uint8Array>, machine: string, maxBytes: number): Promise<unknown[] | undefined> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
    if (total > maxBytes) throw new SnapshotCorruptError(0, machine, `section larger than ${maxBytes} bytes`);
  }
  if (total === 0) return undefined;
  const buf = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    buf.set(p, off);
    off += p.length;
  }
  let raw: unknown;
  try {
    raw = unpackCanonical(buf);
  } catch (e) {
    throw new SnapshotCorruptError(0, machine, `not valid msgpack (${(e as Error).message})`);
  }
  if (!Array.isArray(raw)) throw new SnapshotCorruptError(0, machine, 'expected an array');
  return raw as unknown[];
}
