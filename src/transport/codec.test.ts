import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../raft/types.js';
import {
  decodeHello, decodeMessages, decodeSnapshotChunk, encodeFrame, encodeFrameHeader, encodeHello, encodeMessages,
  encodeSnapshotChunkHeader, FrameDecoder, messageToTuple, pack,
} from './codec.js';
import { crc32c } from '../lib/crc32c.js';
import { FrameError } from './errors.js';
import { judgeHello, negotiateVersion } from './handshake.js';
import { msg, SNAP_META } from './test-helpers.js';

const sample: Message[] = [
  msg({ from: 1, to: 2, type: 'app', term: 5, logTerm: 4, index: 10, commit: 9, entries: [
    { term: 5, index: 11, type: 'normal', data: new Uint8Array([1, 2, 3, 255]) },
    { term: 5, index: 12, type: 'conf', data: new Uint8Array(0) },
  ] }),
  msg({ from: 1, to: 2, type: 'appResp', reject: true, rejectHint: 7, term: 5 }),
  msg({ from: 1, to: 2, type: 'snap', term: 5, snapshot: SNAP_META }),
  msg({ from: 1, to: 2, type: 'heartbeat', context: 3, commit: 9 }),
];

function expectFrameError(fn: () => unknown, pattern: RegExp): FrameError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof FrameError, `expected a FrameError, got ${String(caught)}`);
  assert.equal(caught.code, 'frame_invalid');
  assert.match(caught.message, pattern);
  return caught;
}

describe('message codec', () => {
  it('round-trips every field of a batch, entry data as plain Uint8Array', () => {
    const out = decodeMessages(encodeMessages(sample), 0);
    assert.deepStrictEqual(out, sample);
    assert.equal(Object.getPrototypeOf(out[0]!.entries[0]!.data), Uint8Array.prototype);
  });

  const bad: [string, (t: unknown[]) => void, RegExp][] = [
    ['negative term', (t) => { t[3] = -1; }, /messages\[0\]\.term: expected a non-negative integer, got -1/],
    ['fractional index', (t) => { t[5] = 1.5; }, /messages\[0\]\.index: expected a non-negative integer, got 1\.5/],
    ['unsafe integer commit', (t) => { t[6] = 2 ** 60; }, /messages\[0\]\.commit/],
    ['missing fields', (t) => { t.length = 5; }, /messages\[0\]: expected an array of 11 to 12/],
    ['zero from', (t) => { t[1] = 0; }, /messages\[0\]\.from: expected a positive integer node id, got 0/],
    ['unknown type code', (t) => { t[0] = 99; }, /messages\[0\]\.type: expected a code 0\.\.9, got 99/],
    ['string reject', (t) => { t[7] = 'yes'; }, /messages\[0\]\.reject: expected a boolean/],
    ['entry data as string', (t) => { (t[10] as unknown[][])[0]![3] = 'abc'; }, /messages\[0\]\.entries\[0\]\.data: expected binary data/],
    ['entry with 3 fields', (t) => { (t[10] as unknown[][])[0]!.length = 3; }, /messages\[0\]\.entries\[0\]: expected an array of 4/],
    ['bad member role', (t) => { t.push([1, 1, [[1, 7]], []]); }, /messages\[0\]\.snapshot\.membership\.members\[0\]\.role/],
  ];
  for (const [name, mutate, pattern] of bad) {
    it(`rejects a message with ${name}, naming the field`, () => {
      const t = messageToTuple(sample[0]!);
      mutate(t);
      expectFrameError(() => decodeMessages(pack([t]), 123), pattern);
    });
  }

  it('rejects an undecodable payload with its offset', () => {
    const err = expectFrameError(() => decodeMessages(new Uint8Array([0x93, 0x01]), 4096), /byte offset 4096: undecodable messages payload/);
    assert.equal(err.offset, 4096);
  });

  it('rejects a payload with trailing bytes', () => {
    const p = encodeMessages(sample);
    expectFrameError(() => decodeMessages(new Uint8Array([...p, 0]), 0), /undecodable/);
  });

  it('rejects a hello with a wrong-typed field', () => {
    const h = { protocolVersion: 1, minCompatibleVersion: 1, haId: 'x', fromId: 2, fromName: 'n', channel: 'messages' };
    assert.deepStrictEqual(decodeHello(encodeHello(h as never), 0), h);
    expectFrameError(() => decodeHello(pack({ ...h, fromId: '2' }), 0), /hello\.fromId/);
    expectFrameError(() => decodeHello(pack({ ...h, channel: 'x' }), 0), /hello\.channel/);
    expectFrameError(() => decodeHello(pack([1, 2]), 0), /hello: expected a map/);
  });
});

describe('FrameDecoder', () => {
  const frames = [encodeFrame('hello', new Uint8Array([9, 9])), encodeFrame('messages', encodeMessages(sample)), encodeFrame('ping'), encodeFrame('snapshotAck')];
  const stream = Buffer.concat(frames);

  it('yields the same frames when fed one byte at a time', () => {
    const dec = new FrameDecoder();
    const out = [];
    for (let i = 0; i < stream.length; i++) out.push(...dec.push(stream.subarray(i, i + 1)));
    assert.deepStrictEqual(out.map((f) => f.type), ['hello', 'messages', 'ping', 'snapshotAck']);
    assert.deepStrictEqual(decodeMessages(out[1]!.payload, out[1]!.offset), sample);
    assert.deepStrictEqual(out.map((f) => f.offset), [0, frames[0]!.length, frames[0]!.length + frames[1]!.length, stream.length - 5]);
    assert.equal(dec.offset, stream.length);
    assert.equal(dec.bufferedBytes, 0);
  });

  it('yields all frames from one big chunk and from random splits', () => {
    assert.equal(new FrameDecoder().push(stream).length, 4);
    const dec = new FrameDecoder();
    const out = [];
    for (let i = 0; i < stream.length;) {
      const n = 1 + ((i * 7919) % 13);
      out.push(...dec.push(stream.subarray(i, i + n)));
      i += n;
    }
    assert.equal(out.length, 4);
  });

  it('rejects an oversize length before buffering the payload, naming the offset', () => {
    const dec = new FrameDecoder();
    dec.push(frames[0]!);
    const err = expectFrameError(() => dec.push(encodeFrameHeader('ping', 0).fill(0xff, 0, 4)), /byte offset 7: frame length 4294967295 exceeds/);
    assert.equal(err.offset, 7);
  });

  it('applies per-type limits', () => {
    const dec = new FrameDecoder({ limits: { hello: 10 } });
    expectFrameError(() => dec.push(encodeFrame('hello', new Uint8Array(11))), /hello frame length 11 exceeds the limit of 10 bytes/);
    expectFrameError(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 1, 8, 0])), /ping frame length 1 exceeds the limit of 0/);
  });

  it('rejects an unknown frame type and stays failed', () => {
    const dec = new FrameDecoder();
    expectFrameError(() => dec.push(Buffer.from([0, 0, 0, 0, 0x7e])), /byte offset 0: unknown frame type 0x7e/);
    expectFrameError(() => dec.push(frames[2]!), /unknown frame type/);
  });
});

describe('snapshot chunk checksum', () => {
  it('computes the CRC-32C check value', () => {
    assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
    const big = new Uint8Array(10_001).map((_, i) => i * 31);
    assert.equal(crc32c(big.subarray(5000), crc32c(big.subarray(0, 5000))), crc32c(big));
  });

  it('rejects a chunk whose bytes were altered', () => {
    const data = new Uint8Array(1000).fill(7);
    const frame = Buffer.concat([encodeSnapshotChunkHeader(data), data]);
    const payload = new FrameDecoder().push(frame)[0]!.payload;
    assert.ok(Buffer.from(decodeSnapshotChunk(payload, 0)).equals(data));
    payload[500] = payload[500]! ^ 1;
    expectFrameError(() => decodeSnapshotChunk(payload, 64), /byte offset 64: snapshotChunk CRC-32C mismatch/);
  });
});

describe('handshake policy', () => {
  const me = { nodeId: 1, nodeName: 'a', haId: 'prod', protocolVersion: 3, minCompatibleVersion: 2 };
  const hello = { protocolVersion: 3, minCompatibleVersion: 2, haId: 'prod', fromId: 2, fromName: 'b', channel: 'messages' as const };

  it('negotiates the lower version when the ranges overlap', () => {
    assert.equal(negotiateVersion(me, { protocolVersion: 2, minCompatibleVersion: 1 }), 2);
    assert.equal(negotiateVersion(me, { protocolVersion: 5, minCompatibleVersion: 3 }), 3);
    assert.equal(negotiateVersion(me, { protocolVersion: 5, minCompatibleVersion: 4 }), undefined);
    assert.equal(negotiateVersion(me, { protocolVersion: 1, minCompatibleVersion: 1 }), undefined);
  });

  it('refuses another cluster, an unknown id, a wrong target and a duplicate id', () => {
    const r = (h: object, m: object = me) => judgeHello({ ...hello, ...h }, { ...me, ...m });
    assert.deepStrictEqual(r({}), { ok: true, version: 3 });
    assert.match(JSON.stringify(r({ haId: 'dev' })), /peer belongs to cluster \\"dev\\", this node to \\"prod\\"/);
    assert.match(JSON.stringify(r({}, { isAllowed: (id: number) => id === 3 })), /peer_unknown/);
    assert.match(JSON.stringify(r({ toId: 9 })), /wrong_node/);
    assert.match(JSON.stringify(r({ fromId: 1 })), /duplicate_id/);
  });
});
