import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '../raft/types.js';
import { Packr } from 'msgpackr';
import {
  decodeAuth, decodeChallenge, decodeHelloAck, decodeHelloOpen, decodeMessages, encodeChallenge, encodeHelloAck, decodeSnapshotChunk, encodeAuth, encodeFrame, encodeFrameHeader, encodeHelloOpen,
  encodeMessages, encodeMessagesFrame, encodeMessagesFramePieces, encodeSnapshotChunkHeader, FrameDecoder, LARGE_ENTRY_BYTES, messageToTuple, pack, scanMsgpack, unpack,
} from './codec.js';
import { crc32c } from '../lib/crc32c.js';
import { FrameError } from './errors.js';
import { acceptorMac, dialerMac, judgeHello, macEqual, negotiateVersion, settingsDiffer } from './handshake.js';
import { certificateNamesHost } from './security.js';
import { defaultHello, msg, SNAP_META, TEST_SECRET } from '../../test/support/transport.js';

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

  it('a frame with large entries is written in pieces: the same bytes, each large entry its own Buffer (not a copy)', () => {
    const big = (n: number, fill: number) => new Uint8Array(n).fill(fill);
    const large = big(LARGE_ENTRY_BYTES, 7);
    const huge = big(1024 * 1024 + 3, 9);
    const many = Array.from({ length: 17 }, (_, i) => ({ term: 6, index: 100 + i, type: 'normal' as const, data: i % 5 === 0 ? big(LARGE_ENTRY_BYTES + i, i) : big(i * 300, i) }));
    const batches: Message[][] = [
      [msg({ from: 1, to: 2, type: 'app', term: 5, logTerm: 4, index: 10, commit: 9, entries: [{ term: 5, index: 11, type: 'normal', data: large }] })],
      [...sample, msg({ from: 1, to: 3, type: 'app', term: 6, index: 99, commit: 98, context: 4, entries: many }), msg({ from: 1, to: 3, type: 'app', term: 6, entries: [
        { term: 6, index: 117, type: 'normal', data: big(LARGE_ENTRY_BYTES - 1, 1) }, { term: 6, index: 118, type: 'normal', data: huge }, { term: 6, index: 119, type: 'conf', data: big(3, 2) },
      ] }), msg({ from: 1, to: 2, type: 'snap', term: 6, snapshot: SNAP_META })],
      Array.from({ length: 20 }, (_, i) => msg({ from: 1, to: 2, type: 'app', term: 7, index: i, entries: [{ term: 7, index: i + 1, type: 'normal', data: big(LARGE_ENTRY_BYTES * (1 + (i % 2)), i) }] })),
    ];
    for (const msgs of batches) {
      const pieces = encodeMessagesFramePieces(msgs);
      assert.deepEqual(Buffer.concat(pieces), encodeMessagesFrame(msgs));
      const larges = msgs.flatMap((m) => m.entries.map((e) => e.data)).filter((d) => d.length >= LARGE_ENTRY_BYTES);
      assert.ok(larges.length > 0);
      for (const d of larges) assert.ok(pieces.includes(d), 'a large entry is written from its own Buffer');
      assert.ok(pieces.length <= 2 + 2 * larges.length, 'the header, then at most one piece of packed bytes before and after each large entry');
      const frames = new FrameDecoder().push(Buffer.concat(pieces));
      assert.deepStrictEqual(decodeMessages(frames[0]!.payload, 0), msgs);
    }
  });

  it('a frame without large entries is one piece, as before', () => {
    const pieces = encodeMessagesFramePieces(sample);
    assert.equal(pieces.length, 1);
    assert.deepEqual(pieces[0], encodeMessagesFrame(sample));
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
    ['negative entry index', (t) => { (t[10] as unknown[][])[0]![1] = -3; }, /messages\[0\]\.entries\[0\]\.index: expected a non-negative integer, got -3/],
    ['unknown entry type code', (t) => { (t[10] as unknown[][])[0]![2] = 2; }, /messages\[0\]\.entries\[0\]\.type: expected a code 0\.\.1, got 2/],
    ['fractional entry type code', (t) => { (t[10] as unknown[][])[0]![2] = 0.5; }, /messages\[0\]\.entries\[0\]\.type: expected a code 0\.\.1, got 0\.5/],
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

  it('round-trips the opening and the auth frame; rejects wrong-typed fields', () => {
    const nonce = new Uint8Array(32).fill(1);
    assert.deepStrictEqual(decodeHelloOpen(encodeHelloOpen({ protocolVersion: 2, minCompatibleVersion: 2, nonce }), 0).open, { protocolVersion: 2, minCompatibleVersion: 2, nonce });
    assert.match(decodeHelloOpen(pack({ protocolVersion: 2, minCompatibleVersion: 2, nonce: new Uint8Array(8) }), 0).problem ?? '', /hello\.nonce: expected 32 bytes/);
    const h = defaultHello({ apiUrl: 'https://10.0.0.1:7101', role: 'voter', incarnation: 'x'.repeat(64) });
    const mac = new Uint8Array(32).fill(2);
    assert.deepStrictEqual(decodeAuth(encodeAuth({ hello: h, mac }), 0), { hello: h, mac });
    const m = (over: object): Uint8Array => pack({ ...h, mac, ...over });
    expectFrameError(() => decodeAuth(m({ fromId: '2' }), 0), /auth\.fromId/);
    expectFrameError(() => decodeAuth(m({ channel: 'x' }), 0), /auth\.channel/);
    expectFrameError(() => decodeAuth(m({ role: 'leader' }), 0), /auth\.role/);
    expectFrameError(() => decodeAuth(m({ incarnation: 'x'.repeat(65) }), 0), /auth\.incarnation: expected a string of at most 64 characters/);
    expectFrameError(() => decodeAuth(m({ apiUrl: 'http://10.0.0.1' }), 0), /auth\.apiUrl: expected an http\(s\) URL with a port/);
    expectFrameError(() => decodeAuth(m({ mac: new Uint8Array(31) }), 0), /auth\.mac: expected 32 bytes/);
    expectFrameError(() => decodeAuth(pack([1, 2]), 0), /auth: expected a map/);
  });

  it('carries an optional feature level in auth, helloAck and the challenge; absent stays absent, anything but 1..255 is refused', () => {
    const h = defaultHello({ featureLevel: 2 });
    const mac = new Uint8Array(32).fill(2);
    assert.deepStrictEqual(decodeAuth(encodeAuth({ hello: h, mac }), 0), { hello: h, mac });
    assert.equal(decodeAuth(encodeAuth({ hello: defaultHello(), mac }), 0).hello.featureLevel, undefined);
    for (const bad of [0, 256, 1.5, '2', null]) {
      expectFrameError(() => decodeAuth(pack({ ...h, mac, featureLevel: bad }), 0), /auth\.featureLevel: expected an integer in 1\.\.255/);
    }
    const ack = { protocolVersion: 3, nodeId: 2, nodeName: 'n2', haId: 'test-ha', incarnation: '', knownIncarnation: '', mac };
    assert.equal(decodeHelloAck(encodeHelloAck({ ...ack, featureLevel: 2 }), 0).featureLevel, 2);
    assert.equal(decodeHelloAck(encodeHelloAck(ack), 0).featureLevel, undefined);
    expectFrameError(() => decodeHelloAck(pack({ ...ack, featureLevel: -1 }), 0), /helloAck\.featureLevel/);
    const nonce = new Uint8Array(32).fill(5);
    assert.deepStrictEqual(decodeChallenge(encodeChallenge({ nonce }), 0), { nonce });
    assert.deepStrictEqual(decodeChallenge(encodeChallenge({ nonce, protocolVersion: 3 }), 0), { nonce, protocolVersion: 3 });
    expectFrameError(() => decodeChallenge(pack({ nonce, protocolVersion: 'x' }), 0), /challenge\.protocolVersion/);
  });

  it('carries optional cluster settings in auth and helloAck; absent stays absent, a bad value is refused naming the field', () => {
    const settings = { writeQuorum: 0, electionTimeoutMs: 1000, heartbeatIntervalMs: 100 };
    const h = defaultHello({ featureLevel: 2, settings });
    const mac = new Uint8Array(32).fill(2);
    assert.deepStrictEqual(decodeAuth(encodeAuth({ hello: h, mac }), 0), { hello: h, mac });
    assert.equal(decodeAuth(encodeAuth({ hello: defaultHello(), mac }), 0).hello.settings, undefined);
    expectFrameError(() => decodeAuth(pack({ ...h, mac, settings: { ...settings, electionTimeoutMs: 0 } }), 0), /auth\.settings\.electionTimeoutMs: expected an integer in 1\.\./);
    expectFrameError(() => decodeAuth(pack({ ...h, mac, settings: { ...settings, writeQuorum: -1 } }), 0), /auth\.settings\.writeQuorum/);
    expectFrameError(() => decodeAuth(pack({ ...h, mac, settings: 5 }), 0), /auth\.settings: expected a map/);
    const ack = { protocolVersion: 4, nodeId: 2, nodeName: 'n2', haId: 'test-ha', incarnation: '', knownIncarnation: '', mac };
    assert.deepStrictEqual(decodeHelloAck(encodeHelloAck({ ...ack, settings }), 0).settings, settings);
    assert.equal(decodeHelloAck(encodeHelloAck(ack), 0).settings, undefined);
    expectFrameError(() => decodeHelloAck(pack({ ...ack, settings: { ...settings, heartbeatIntervalMs: 'x' } }), 0), /helloAck\.settings\.heartbeatIntervalMs/);
  });
});

describe('msgpack pre-scan', () => {
  /**
   * A msgpackr structured-clone + record payload whose values share
   * references 40 levels deep, plus one trailing byte: on the old decoder the
   * trailing-byte error serialized the 2^40-node value into its message.
   */
  function stallPayload(): Uint8Array {
    let v: unknown = { haId: 'x' };
    for (let i = 0; i < 40; i++) v = [v, v];
    const body = new Packr({ useRecords: true, structuredClone: true }).pack(v);
    return new Uint8Array([...body, 0]);
  }

  it('refuses the shared-structure/record stall payload within milliseconds, without quoting the value', () => {
    const payload = stallPayload();
    assert.ok(payload.length < 1024, `payload of ${payload.length} bytes`);
    const t0 = performance.now();
    const err = expectFrameError(() => unpack(payload, 5, 'hello'), /byte offset 5: undecodable hello payload: msgpack extension type \(0x[0-9a-f]+\) at byte \d+: not accepted$/);
    assert.ok(performance.now() - t0 < 50, `took ${performance.now() - t0} ms`);
    assert.ok(err.message.length < 120);
  });

  it('accepts what the codec writes and refuses ext types, reserved bytes, depth, lying lengths, trailing bytes', () => {
    assert.equal(scanMsgpack(encodeMessages(sample)), undefined);
    assert.equal(scanMsgpack(pack({ a: [1, 'x', new Uint8Array(300), -5, 1.5, null, true, 2 ** 40] })), undefined);
    assert.match(scanMsgpack(new Uint8Array([0xd4, 0x72, 0x00])) ?? '', /extension type \(0xd4\) at byte 0/);
    assert.match(scanMsgpack(new Uint8Array([0x92, 0x01, 0xc7, 0x01, 0x70, 0x00])) ?? '', /extension type \(0xc7\) at byte 2/);
    assert.match(scanMsgpack(new Uint8Array([0xc1])) ?? '', /reserved msgpack byte 0xc1/);
    assert.equal(scanMsgpack(new Uint8Array([...new Array<number>(8).fill(0x91), 0x01])), undefined);
    assert.match(scanMsgpack(new Uint8Array([...new Array<number>(9).fill(0x91), 0x01])) ?? '', /nesting deeper than 8 at byte 8/);
    assert.match(scanMsgpack(new Uint8Array([0xdc, 0xff, 0xff, 0x01])) ?? '', /declares 65535 elements, more than the 1 bytes that remain/);
    assert.match(scanMsgpack(new Uint8Array([0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00])) ?? '', /declares 2147483647 bytes, more than the 1 that remain/);
    assert.match(scanMsgpack(new Uint8Array([0x01, 0x02])) ?? '', /1 trailing bytes after the value/);
    assert.match(scanMsgpack(new Uint8Array([0x92, 0x01])) ?? '', /declares 2 elements, more than the 1 bytes that remain/);
    assert.match(scanMsgpack(new Uint8Array([0xc4])) ?? '', /truncated at byte 1/);
    // Siblings after a closed container do not count as deeper.
    assert.equal(scanMsgpack(new Uint8Array([0x93, 0x91, 0x91, 0x01, 0x91, 0x01, 0x02])), undefined);
  });
});

describe('handshake proofs', () => {
  const nD = new Uint8Array(32).fill(3);
  const nA = new Uint8Array(32).fill(4);
  const h = defaultHello({ fromId: 1, toId: 2, apiUrl: 'http://127.0.0.1:7101', role: 'voter', incarnation: 'i1' });

  it('bind both nonces, the secret and every claimed field', () => {
    const mac = dialerMac(TEST_SECRET, nD, nA, h);
    assert.ok(macEqual(mac, dialerMac(TEST_SECRET, nD, nA, { ...h })));
    const variants = [
      dialerMac(new Uint8Array(32).fill(8), nD, nA, h), dialerMac(TEST_SECRET, nA, nD, h), dialerMac(TEST_SECRET, nD, new Uint8Array(32), h),
      ...(['haId', 'fromName', 'apiUrl', 'incarnation'] as const).map((k) => dialerMac(TEST_SECRET, nD, nA, { ...h, [k]: `${h[k]}x` })),
      dialerMac(TEST_SECRET, nD, nA, { ...h, fromId: 3 }), dialerMac(TEST_SECRET, nD, nA, { ...h, toId: 3 }),
      dialerMac(TEST_SECRET, nD, nA, { ...h, role: 'dr' }), dialerMac(TEST_SECRET, nD, nA, { ...h, channel: 'snapshot' }),
      dialerMac(TEST_SECRET, nD, nA, { ...h, protocolVersion: h.protocolVersion + 1 }), dialerMac(TEST_SECRET, nD, nA, { ...h, minCompatibleVersion: 1 }),
      // Field boundaries are length-prefixed: moving a character between fields changes the proof.
      dialerMac(TEST_SECRET, nD, nA, { ...h, haId: `${h.haId}r`, fromName: h.fromName.slice(1) }),
    ];
    for (const v of variants) assert.ok(!macEqual(mac, v));
    // The feature level, when sent, is bound too (and sending none is not the same as sending 1).
    const withLevel = dialerMac(TEST_SECRET, nD, nA, { ...h, featureLevel: 2 });
    assert.ok(!macEqual(withLevel, mac));
    assert.ok(!macEqual(withLevel, dialerMac(TEST_SECRET, nD, nA, { ...h, featureLevel: 3 })));
    assert.ok(!macEqual(mac, dialerMac(TEST_SECRET, nD, nA, { ...h, featureLevel: 1 })));
    // Cluster settings, when sent, are bound: each key, and with or without a feature level.
    const settings = { writeQuorum: 2, electionTimeoutMs: 1000, heartbeatIntervalMs: 100 };
    const withSettings = dialerMac(TEST_SECRET, nD, nA, { ...h, settings });
    assert.ok(!macEqual(withSettings, mac));
    for (const k of ['writeQuorum', 'electionTimeoutMs', 'heartbeatIntervalMs'] as const) {
      assert.ok(!macEqual(withSettings, dialerMac(TEST_SECRET, nD, nA, { ...h, settings: { ...settings, [k]: settings[k] + 1 } })), k);
    }
    assert.ok(!macEqual(dialerMac(TEST_SECRET, nD, nA, { ...h, featureLevel: 2, settings }), withSettings));
  });

  it('are separated per direction: a dialer proof is never a valid acceptor proof', () => {
    const dm = dialerMac(TEST_SECRET, nD, nA, h);
    const ack = { protocolVersion: 2, nodeId: 2, nodeName: 'node2', haId: 'test-ha', incarnation: '', knownIncarnation: 'abc' };
    const am = acceptorMac(TEST_SECRET, nD, nA, dm, 1, 'messages', ack);
    assert.ok(!macEqual(dm, am));
    assert.ok(!macEqual(am, acceptorMac(TEST_SECRET, nD, nA, new Uint8Array(32), 1, 'messages', ack)), 'binds the dialer proof');
    assert.ok(!macEqual(am, acceptorMac(TEST_SECRET, nD, nA, dm, 1, 'messages', { ...ack, nodeId: 3 })));
    assert.ok(!macEqual(am, acceptorMac(TEST_SECRET, nD, nA, dm, 1, 'messages', { ...ack, knownIncarnation: 'xyz' })), 'binds what it records of the dialer');
    assert.ok(!macEqual(am, acceptorMac(TEST_SECRET, nD, nA, dm, 1, 'messages', { ...ack, featureLevel: 2 })), 'binds its feature level when sent');
    const settings = { writeQuorum: 0, electionTimeoutMs: 1000, heartbeatIntervalMs: 100 };
    const withSettings = acceptorMac(TEST_SECRET, nD, nA, dm, 1, 'messages', { ...ack, settings });
    assert.ok(!macEqual(am, withSettings), 'binds its settings when sent');
    assert.ok(!macEqual(withSettings, acceptorMac(TEST_SECRET, nD, nA, dm, 1, 'messages', { ...ack, settings: { ...settings, electionTimeoutMs: 1001 } })));
    assert.equal(macEqual(am, new Uint8Array(31)), false);
  });
});

describe('certificate ↔ host', () => {
  it('matches IP SANs to IP hosts and DNS SANs to names only', () => {
    const san = 'DNS:node2.example, IP Address:10.0.1.12, IP Address:0:0:0:0:0:0:0:1, DNS:*.nodes.example';
    assert.ok(certificateNamesHost(san, '10.0.1.12'));
    assert.ok(certificateNamesHost(san, '::1'));
    assert.ok(certificateNamesHost(san, '[::1]'));
    assert.ok(certificateNamesHost(san, 'NODE2.example'));
    assert.ok(certificateNamesHost(san, 'n3.nodes.example'));
    for (const host of ['10.0.1.11', 'node3.example', 'a.b.nodes.example', 'nodes.example', '127.0.0.1']) assert.ok(!certificateNamesHost(san, host), host);
    assert.ok(!certificateNamesHost(undefined, '10.0.1.12'));
    assert.ok(!certificateNamesHost('DNS:10.0.1.12', '10.0.1.12'), 'a DNS SAN spelling an IP is not an IP SAN');
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
  const hello = defaultHello({ protocolVersion: 3, minCompatibleVersion: 2, haId: 'prod', fromId: 2, fromName: 'b', toId: 1 });

  it('negotiates the lower version when the ranges overlap', () => {
    assert.equal(negotiateVersion(me, { protocolVersion: 2, minCompatibleVersion: 1 }), 2);
    assert.equal(negotiateVersion(me, { protocolVersion: 5, minCompatibleVersion: 3 }), 3);
    assert.equal(negotiateVersion(me, { protocolVersion: 5, minCompatibleVersion: 4 }), undefined);
    assert.equal(negotiateVersion(me, { protocolVersion: 1, minCompatibleVersion: 1 }), undefined);
  });

  it('refuses another cluster, an unknown id, a wrong target and a duplicate id (reasons for the local log)', () => {
    const r = (h: object, m: object = me) => judgeHello({ ...hello, ...h }, { ...me, ...m });
    assert.deepStrictEqual(r({}), { ok: true, version: 3 });
    assert.match(JSON.stringify(r({ haId: 'dev' })), /belongs to cluster \\"dev\\", this node to \\"prod\\"/);
    assert.match(JSON.stringify(r({}, { isAllowed: (id: number) => id === 3 })), /peer_unknown/);
    assert.match(JSON.stringify(r({ toId: 9 })), /wrong_node/);
    assert.match(JSON.stringify(r({ fromId: 1 })), /duplicate_id/);
  });

  it('compares cluster settings key by key and refuses only a different database.writeQuorum', () => {
    const mine = { writeQuorum: 0, electionTimeoutMs: 1000, heartbeatIntervalMs: 100 };
    assert.deepStrictEqual(settingsDiffer(mine, mine), []);
    assert.deepStrictEqual(settingsDiffer(mine, { writeQuorum: 2, electionTimeoutMs: 3000, heartbeatIntervalMs: 200 }), [
      { key: 'database.writeQuorum', mine: 'unset (a majority of the voters)', theirs: '2' },
      { key: 'cluster.electionTimeoutMs', mine: '1000', theirs: '3000' },
      { key: 'cluster.heartbeatIntervalMs', mine: '100', theirs: '200' },
    ]);
    const r = (h: object, m: object = me) => judgeHello({ ...hello, ...h }, { ...me, ...m });
    assert.deepStrictEqual(r({ settings: { ...mine, electionTimeoutMs: 3000 } }, { settings: mine }), { ok: true, version: 3 }, 'timing differences are warnings, not refusals');
    assert.deepStrictEqual(r({}, { settings: mine }), { ok: true, version: 3 }, 'a dialer that sends none is not compared');
    const v = r({ settings: { ...mine, writeQuorum: 3 } }, { settings: { ...mine, writeQuorum: 2 } });
    assert.equal(v.ok, false);
    assert.match(JSON.stringify(v), /config_mismatch.*node \\"b\\" \(id 2\) has database\.writeQuorum 3, this node \\"a\\" has 2/);
  });
});
