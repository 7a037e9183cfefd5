import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeKvPayload, encodeCommand, encodeKvPayload, packCanonical, unpackCanonical, type Command } from './commands.js';
import { decodeEntry, decodeEntryGeneral, encodeEnvelope } from './envelope.js';
import { decodeKeyRecordFast, decodeKvEntryFast, encodeKvEntryFast, keyRecordBytes, writeKeyRecord } from './fast-entry.js';
import { MAX_TTL_MS, MAX_VALUE_BYTES } from './limits.js';

/** What the general path makes of `data`: the envelope's fields and the KV command, or the error it throws. */
function general(data: Uint8Array): { ok: true; at: number; idempotencyKey: string | undefined; payload: Uint8Array; command: Command } | { ok: false; error: string } {
  try {
    const d = decodeEntryGeneral(data, 2);
    if (d.version !== 2 || d.envelope.machine !== 'kv') return { ok: false, error: 'not a format-2 KV entry' };
    return { ok: true, at: d.envelope.at, idempotencyKey: d.envelope.idempotencyKey, payload: d.envelope.payload, command: decodeKvPayload(d.envelope.payload) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** The in-place decoder either declines or agrees with the general one, value for value (and key order). */
function agrees(data: Uint8Array): boolean {
  const f = decodeKvEntryFast(data);
  if (f === undefined) return false;
  const g = general(data);
  assert.ok(g.ok, `the in-place decoder accepted bytes the general path refuses (${g.ok ? '' : g.error}): ${Buffer.from(data).toString('hex')}`);
  assert.equal(f.at, g.at);
  assert.equal(f.idempotencyKey, g.idempotencyKey);
  assert.deepEqual(Buffer.from(f.payload), Buffer.from(g.payload));
  assert.deepEqual(f.command, g.command);
  assert.deepEqual(Object.keys(f.command), Object.keys(g.command));
  return true;
}

const str = fc.oneof({ arbitrary: fc.string({ maxLength: 40, unit: 'grapheme-ascii' }), weight: 6 }, fc.string({ maxLength: 40 }), fc.string({ minLength: 200, maxLength: 70000, unit: 'grapheme-ascii' }), fc.string({ maxLength: 20, unit: 'binary' }), fc.constant(''));
const optUint = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(MAX_TTL_MS + 1));
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key: str, value: str, ifRevision: optUint, ttlMs: optUint }, { requiredKeys: ['type', 'key', 'value'] }),
  fc.record({ type: fc.constant('delete' as const), key: str, ifRevision: optUint }, { requiredKeys: ['type', 'key'] }),
);
/** The command's payload, or undefined where encodeKvPayload refuses it (invalid commands are hand-made in the last test). */
function payloadOf(c: Command): Uint8Array | undefined {
  try {
    return encodeKvPayload(c);
  } catch {
    return undefined;
  }
}

test('decodeEntry reads a KV put or delete in place exactly as the msgpack path does, or leaves it to that path', () => {
  let fast = 0;
  fc.assert(fc.property(command, fc.oneof(fc.integer({ min: 0, max: 2 ** 50 }), fc.constant(Date.now())), fc.option(str, { nil: undefined }), (c, at, ik) => {
    const payload = payloadOf(c);
    if (payload === undefined) return;
    let data: Uint8Array;
    try {
      data = encodeEnvelope({ machine: 'kv', at, ...(ik !== undefined ? { idempotencyKey: ik } : {}), payload });
    } catch {
      return;
    }
    if (agrees(data)) fast++;
    const d = decodeEntry(data);
    assert.equal(d.version, 2);
    if (d.version === 2) assert.deepEqual(d.kvCommand ?? decodeKvPayload(d.envelope.payload), { ...c });
  }), { numRuns: 1500 });
  assert.ok(fast > 500, `only ${fast} of 1500 entries took the in-place path`);
});

test('the in-place decoder never accepts bytes the msgpack path refuses or reads differently: flipped, cut and extended entries', () => {
  const base = [
    encodeEnvelope({ machine: 'kv', at: Date.now(), payload: encodeKvPayload({ type: 'put', key: 'k1', value: 'v'.repeat(40), ifRevision: 7, ttlMs: 5000 }) }),
    encodeEnvelope({ machine: 'kv', at: 5, idempotencyKey: 'ik', payload: encodeKvPayload({ type: 'delete', key: 'abc', ifRevision: 300 }) }),
    encodeEnvelope({ machine: 'kv', at: 2 ** 33, payload: encodeKvPayload({ type: 'put', key: 'x', value: 'y'.repeat(300) }) }),
  ];
  fc.assert(fc.property(fc.constantFrom(...base), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.integer({ min: -3, max: 3 }), (b, flips, resize) => {
    const data = Uint8Array.from(b);
    for (const [at, v] of flips) data[at % data.length] = v;
    const sized = resize < 0 ? data.subarray(0, data.length + resize) : Uint8Array.from([...data, ...Array<number>(resize).fill(0xc0)]);
    agrees(sized);
  }), { numRuns: 3000 });
});

test('the in-place decoder declines what it does not read: other machines, format 1, txn, non-ASCII, an empty idempotency key, a TTL out of range', () => {
  const at = 1_700_000_000_000;
  assert.equal(decodeKvEntryFast(encodeEnvelope({ machine: 'settings', at, payload: encodeKvPayload({ type: 'put', key: 'a', value: 'b' }) })), undefined);
  assert.equal(decodeKvEntryFast(encodeCommand({ at, command: { type: 'put', key: 'a', value: 'b' } })), undefined);
  assert.equal(decodeKvEntryFast(encodeEnvelope({ machine: 'kv', at, payload: encodeKvPayload({ type: 'txn', compare: [], success: [{ type: 'put', key: 'a', value: 'b' }], failure: [] }) })), undefined);
  assert.equal(decodeKvEntryFast(encodeEnvelope({ machine: 'kv', at, payload: encodeKvPayload({ type: 'put', key: 'a', value: 'é' }) })), undefined);
  const ok = decodeKvEntryFast(encodeEnvelope({ machine: 'kv', at, idempotencyKey: 'req-1', payload: encodeKvPayload({ type: 'put', key: 'a', value: 'b', ttlMs: 1000 }) }));
  assert.deepEqual(ok?.command, { type: 'put', key: 'a', value: 'b', ttlMs: 1000 });
  assert.equal(ok?.at, at);
  assert.equal(ok?.idempotencyKey, 'req-1');
  // Hand-made bytes the encoder refuses to write: the general path's error is what the caller gets.
  const ttl = Buffer.alloc(8);
  ttl.writeDoubleBE(MAX_TTL_MS + 1);
  const payload = Buffer.concat([Buffer.from('9501a161a162c0cb', 'hex'), ttl]);
  const data = Buffer.concat([Buffer.from('9502a26b7605c0c4', 'hex'), Buffer.from([payload.length]), payload]);
  assert.equal(decodeKvEntryFast(data), undefined);
  assert.deepEqual(general(data), { ok: false, error: general(data).ok ? '' : (general(data) as { error: string }).error });
  assert.throws(() => decodeKvPayload(payload), /put\.ttlMs/);
  // A value one byte over the limit (str 32), and a key the key rules refuse (NUL).
  const big = Buffer.alloc(MAX_VALUE_BYTES + 1, 0x61);
  const bigHeader = Buffer.alloc(5);
  bigHeader[0] = 0xdb;
  bigHeader.writeUInt32BE(big.length, 1);
  for (const p of [Buffer.concat([Buffer.from('9501a161', 'hex'), bigHeader, big, Buffer.from('c0c0', 'hex')]), Buffer.from('9501a200' + '62a162c0c0', 'hex')]) {
    const pl = Buffer.alloc(5);
    pl[0] = 0xc6;
    pl.writeUInt32BE(p.length, 1);
    const entry = Buffer.concat([Buffer.from('9502a26b7605c0', 'hex'), pl, p]);
    assert.equal(decodeKvEntryFast(entry), undefined);
    assert.throws(() => decodeKvPayload(p), /put\.(value|key)/);
  }
});

/** The general encoder's bytes for these fields, or undefined where it refuses them. */
function generalBytes(c: Command, at: number, ik: string | undefined): Uint8Array | undefined {
  try {
    return encodeEnvelope({ machine: 'kv', at, ...(ik !== undefined ? { idempotencyKey: ik } : {}), payload: encodeKvPayload(c) });
  } catch {
    return undefined;
  }
}

/** Strings at msgpackr's str header boundaries (31/32, 255/256, 65535/65536 characters) as well as the arbitrary ones. */
const boundaryStr = fc.constantFrom(31, 32, 255, 256, 65535, 65536).map((n) => 'a'.repeat(n));
/** Integers at its uint boundaries (fixint, uint 8/16/32, then float 64). */
const boundaryUint = fc.constantFrom(0, 127, 128, 255, 256, 65535, 65536, 0xffffffff, 0x100000000, Number.MAX_SAFE_INTEGER, MAX_TTL_MS, MAX_TTL_MS + 1);
const anyStr = fc.oneof(str, boundaryStr);
const anyUint = fc.oneof(optUint, boundaryUint);
const anyCommand: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key: anyStr, value: anyStr, ifRevision: anyUint, ttlMs: anyUint }, { requiredKeys: ['type', 'key', 'value'] }),
  fc.record({ type: fc.constant('delete' as const), key: anyStr, ifRevision: anyUint }, { requiredKeys: ['type', 'key'] }),
  fc.constant({ type: 'noop' as const }),
);

test('encodeKvEntryFast writes the very bytes the general encoder writes, or leaves the command to it (which may refuse it)', () => {
  let fast = 0;
  fc.assert(fc.property(anyCommand, fc.oneof({ arbitrary: boundaryUint, weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 2 ** 50 }), weight: 3 }, { arbitrary: fc.constant(Date.now()), weight: 3 }, fc.constant(-1), fc.constant(1.5)), fc.option(anyStr, { nil: undefined }), (c, at, ik) => {
    const f = encodeKvEntryFast(c, at, ik);
    if (f === undefined) return;
    fast++;
    const g = generalBytes(c, at, ik);
    assert.ok(g !== undefined, `encodeKvEntryFast encoded a command the general encoder refuses: ${JSON.stringify({ c, at, ik }).slice(0, 300)}`);
    assert.deepEqual(Buffer.from(f), Buffer.from(g));
    assert.equal(Object.getPrototypeOf(f), Uint8Array.prototype);
    const d = decodeEntry(f);
    assert.ok(d.version === 2 && d.kvCommand !== undefined, 'what it writes is read back in place');
  }), { numRuns: 2000 });
  assert.ok(fast > 400, `only ${fast} of 2000 commands took the direct path`);
});

test('encodeKvEntryFast declines what the general encoder refuses: a NUL in the key, an empty key or idempotency key, a TTL of 0 or over the limit, a value over the limit', () => {
  const at = 1_700_000_000_000;
  assert.equal(encodeKvEntryFast({ type: 'put', key: 'a\u0000b', value: 'v' }, at, undefined), undefined);
  assert.equal(encodeKvEntryFast({ type: 'put', key: '', value: 'v' }, at, undefined), undefined);
  assert.equal(encodeKvEntryFast({ type: 'put', key: 'a', value: 'v' }, at, ''), undefined);
  assert.equal(encodeKvEntryFast({ type: 'put', key: 'a', value: 'v', ttlMs: 0 }, at, undefined), undefined);
  assert.equal(encodeKvEntryFast({ type: 'put', key: 'a', value: 'v', ttlMs: MAX_TTL_MS + 1 }, at, undefined), undefined);
  assert.equal(encodeKvEntryFast({ type: 'put', key: 'a', value: 'v'.repeat(MAX_VALUE_BYTES + 1) }, at, undefined), undefined);
  assert.equal(encodeKvEntryFast({ type: 'delete', key: 'a', ifRevision: -1 }, at, undefined), undefined);
  assert.equal(encodeKvEntryFast({ type: 'put', key: 'a', value: 'v' }, -5, undefined), undefined);
  assert.ok(encodeKvEntryFast({ type: 'put', key: 'a', value: 'v'.repeat(MAX_VALUE_BYTES) }, at, undefined) !== undefined);
});

test('decodeKeyRecordFast reads a KV snapshot record as the msgpack decoder does, or leaves it to it: encoded, flipped, cut and extended records', () => {
  let fast = 0;
  const record = fc.tuple(anyStr, anyStr, anyUint, anyUint, anyUint, fc.option(anyUint, { nil: null }));
  fc.assert(fc.property(record, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 2 }), fc.integer({ min: -2, max: 2 }), (t, flips, resize) => {
    const clean = packCanonical(t);
    for (const data of [clean, (() => {
      const d = Uint8Array.from(clean);
      for (const [at, v] of flips) d[at % d.length] = v;
      return resize < 0 ? d.subarray(0, Math.max(0, d.length + resize)) : Uint8Array.from([...d, ...Array<number>(resize).fill(0xc0)]);
    })()]) {
      const f = decodeKeyRecordFast(data);
      if (f === undefined) continue;
      fast++;
      assert.deepEqual(f, unpackCanonical(data));
    }
  }), { numRuns: 2000 });
  assert.ok(fast > 500, `only ${fast} records took the in-place path`);
});

const ascii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

test('writeKeyRecord writes the very bytes packCanonical writes for a snapshot record; keyRecordBytes declines only non-ASCII strings and numbers msgpack would not write as integers', () => {
  let fast = 0;
  const num = fc.oneof({ arbitrary: anyUint, weight: 8 }, fc.constant(-1), fc.constant(1.5), fc.constant(2 ** 53));
  const record = fc.record({ key: anyStr, value: anyStr, createRevision: num, modRevision: num, version: num, leaseDeadlineMs: num }, { requiredKeys: ['key', 'value', 'createRevision', 'modRevision', 'version'] });
  fc.assert(fc.property(record, fc.nat(5), (r, offset) => {
    const size = keyRecordBytes(r);
    const lease = r.leaseDeadlineMs;
    const plain = ascii(r.key) && ascii(r.value) && [r.createRevision, r.modRevision, r.version, ...(lease === undefined ? [] : [lease])].every((n) => Number.isSafeInteger(n) && n >= 0);
    if (!plain) return assert.equal(size, -1);
    fast++;
    const out = Buffer.alloc(offset + size + 3, 0xee);
    writeKeyRecord(r, out, offset);
    const tuple = [r.key, r.value, r.createRevision, r.modRevision, r.version, lease ?? null];
    assert.deepEqual(out.subarray(offset, offset + size), Buffer.from(packCanonical(tuple)));
    assert.ok(out.subarray(0, offset).every((x) => x === 0xee) && out.subarray(offset + size).every((x) => x === 0xee), 'nothing outside the record is written');
    assert.deepEqual(decodeKeyRecordFast(out.subarray(offset, offset + size)), tuple);
  }), { numRuns: 2000 });
  assert.ok(fast > 500, `only ${fast} records took the direct path`);
});
