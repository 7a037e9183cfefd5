// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), shared by WAL records,
// snapshot files and transport snapshot chunks. Table-driven with
// slicing-by-8: eight 256-entry tables let the loop consume 8 bytes per step.
// Chaining: crc32c(b, crc32c(a)) === crc32c(concat(a, b)).

const POLY = 0x82f63b78;
const TABLE = new Uint32Array(8 * 256);

for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  TABLE[i] = c >>> 0;
}
for (let i = 0; i < 256; i++) {
  let c = TABLE[i]!;
  for (let t = 1; t < 8; t++) {
    c = TABLE[c & 0xff]! ^ (c >>> 8);
    TABLE[t * 256 + i] = c >>> 0;
  }
}

/** CRC32C of `data`, continuing from `previous` (the CRC32C of the bytes before it; 0 to start). */
export function crc32c(data: Uint8Array, previous = 0): number {
  return crc32cRange(data, 0, data.length, previous);
}

/**
 * CRC32C of data[start, end), continuing from `previous`: crc32c of a
 * subarray without making one (a WAL record's checksum covers two ranges of
 * the record; a restart checks every record of a segment, up to 64 MiB of
 * them, and a subarray per range was a Buffer object each).
 */
export function crc32cRange(data: Uint8Array, start: number, end: number, previous = 0): number {
  const t = TABLE;
  let c = ~previous;
  let i = start;
  const n = end;
  const end8 = n - ((n - start) & 7);
  while (i < end8) {
    const lo = c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    c =
      t[1792 + (lo & 0xff)]! ^
      t[1536 + ((lo >>> 8) & 0xff)]! ^
      t[1280 + ((lo >>> 16) & 0xff)]! ^
      t[1024 + (lo >>> 24)]! ^
      t[768 + data[i + 4]!]! ^
      t[512 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
    i += 8;
  }
  while (i < n) {
    c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
    i++;
  }
  return ~c >>> 0;
}
