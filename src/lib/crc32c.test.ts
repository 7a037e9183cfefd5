import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, crc32cRange } from './crc32c.js';

function reference(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

test('crc32c matches the standard check value for "123456789"', () => {
  assert.equal(crc32c(Buffer.from('123456789', 'ascii')), 0xe3069283);
});

test('crc32c matches the RFC 3720 (iSCSI) test vectors', () => {
  assert.equal(crc32c(new Uint8Array(0)), 0);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
});

test('crc32c agrees with a bitwise reference at every length and alignment', () => {
  const buf = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 17) & 0xff);
  for (let start = 0; start < 9; start++) {
    for (let len = 0; len + start <= buf.length; len += 7) {
      const part = buf.subarray(start, start + len);
      assert.equal(crc32c(part), reference(part), `start ${start} len ${len}`);
    }
  }
});

test('crc32c chains: crc(b, crc(a)) equals crc(a ++ b)', () => {
  const a = Buffer.from('hello, ');
  const b = Buffer.from('quorate write-ahead log');
  assert.equal(crc32c(b, crc32c(a)), crc32c(Buffer.concat([a, b])));
});

test('crc32cRange of data[start, end) equals the bitwise reference of that slice, chained or not, at every alignment', () => {
  const data = new Uint8Array(97).map((_, i) => (i * 131 + 7) & 0xff);
  for (let start = 0; start <= 20; start++) {
    for (let end = start; end <= data.length; end += 1 + (end % 5)) {
      const slice = data.subarray(start, end);
      assert.equal(crc32cRange(data, start, end), reference(slice), `[${start}, ${end})`);
      assert.equal(crc32cRange(data, start, end, crc32c(data.subarray(0, start))), reference(data.subarray(0, end)), `chained [0, ${start}) + [${start}, ${end})`);
    }
  }
});
