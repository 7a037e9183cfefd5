// Fuzzing the peer wire: the frame decoder and every frame payload decoder
// only ever return a value or throw a typed FrameError with a byte offset,
// for random, truncated, oversized and mutated input; never another exception,
// a hang or a crash.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  FrameDecoder, FrameType, decodeAuth, decodeChallenge, decodeHelloAck, decodeHelloOpen, decodeJoinAck, decodeJoinAuth, decodeMessages,
  decodeRefusal, decodeSnapshotBegin, decodeSnapshotChunk, decodeSnapshotEnd, encodeFrame, encodeMessages, pack, unpack,
} from '../../src/transport/codec.js';
import { FrameError } from '../../src/transport/errors.js';
import type { Message } from '../../src/raft/types.js';
import { budget, timeoutMs } from './budget.js';

const typedOnly = (f: () => unknown): void => {
  try {
    f();
  } catch (e) {
    if (!(e instanceof FrameError)) throw new Error(`expected a FrameError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    assert.ok(Number.isSafeInteger(e.offset) && e.offset >= 0, 'a FrameError names a byte offset');
  }
};

const DECODERS: readonly [string, (p: Uint8Array, o: number) => unknown][] = [
  ['helloOpen', decodeHelloOpen], ['challenge', decodeChallenge], ['auth', decodeAuth], ['helloAck', decodeHelloAck], ['refusal', decodeRefusal],
  ['joinAuth', decodeJoinAuth], ['joinAck', decodeJoinAck], ['messages', decodeMessages], ['snapshotBegin', decodeSnapshotBegin],
  ['snapshotChunk', decodeSnapshotChunk], ['snapshotEnd', decodeSnapshotEnd],
];

const msg: Message = { type: 'app', from: 1, to: 2, term: 3, logTerm: 2, index: 10, entries: [{ index: 11, term: 3, type: 'normal', data: new Uint8Array([1, 2, 3]) }], commit: 9 } as unknown as Message;

/** Mutations of valid bytes: flipped bytes, truncation, appended garbage. */
const mutated = (valid: Uint8Array) => fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }), fc.nat(), fc.uint8Array({ maxLength: 16 }))
  .map(([flips, cut, tail]) => {
    const b = Uint8Array.from(valid);
    for (const [i, x] of flips) if (b.length > 0) b[i % b.length] = b[i % b.length]! ^ x;
    const keep = b.subarray(0, b.length === 0 ? 0 : cut % (b.length + 1));
    return Uint8Array.from([...keep, ...tail]);
  });

/** msgpack of random shapes: what an attacker who speaks msgpack sends. */
const msgpackish = fc.anything({ maxDepth: 4, withTypedArray: true, withBigInt: false, withNullPrototype: false }).map((v) => {
  try {
    return pack(v);
  } catch {
    return new Uint8Array();
  }
});

describe('fuzz: peer wire decoders', { timeout: timeoutMs(60_000) }, () => {
  it('every payload decoder returns a value or a FrameError, whatever the bytes', () => {
    const valid = encodeMessages([msg]);
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 256 }), mutated(valid), msgpackish), fc.nat({ max: 1 << 20 }), (bytes, offset) => {
      for (const [, decode] of DECODERS) typedOnly(() => decode(bytes, offset));
      typedOnly(() => unpack(bytes, offset, 'fuzz'));
    }), budget(400));
  });

  it('the streaming frame decoder yields frames or one FrameError for random, split, truncated and oversized streams', () => {
    const good = Buffer.concat([encodeFrame('messages', encodeMessages([msg])), encodeFrame('ping'), encodeFrame('messages', encodeMessages([msg, msg]))]);
    const stream = fc.oneof(
      fc.uint8Array({ maxLength: 512 }),
      mutated(good),
      // a header announcing an oversized or unknown frame
      fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 255 })).map(([len, type]) => {
        const h = Buffer.alloc(5);
        h.writeUInt32BE(len, 0);
        h[4] = type;
        return new Uint8Array(h);
      }),
    );
    fc.assert(fc.property(stream, fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 20 }), (bytes, cuts) => {
      const d = new FrameDecoder();
      let pos = 0;
      let failed = false;
      const frames: { type: string }[] = [];
      try {
        for (const c of [...cuts, bytes.length]) {
          if (pos >= bytes.length) break;
          frames.push(...d.push(bytes.subarray(pos, pos + c)));
          pos += c;
        }
      } catch (e) {
        if (!(e instanceof FrameError)) throw e;
        failed = true;
        assert.throws(() => d.push(new Uint8Array([0])), FrameError, 'a failed decoder stays failed');
      }
      for (const f of frames) assert.ok(f.type in FrameType);
      if (!failed) assert.ok(d.bufferedBytes <= bytes.length);
    }), budget(400));
  });

  it('valid frames split at any byte decode to the same frames', () => {
    const good = Buffer.concat([encodeFrame('messages', encodeMessages([msg])), encodeFrame('ping')]);
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 40 }), (cuts) => {
      const d = new FrameDecoder();
      const got: string[] = [];
      let pos = 0;
      for (let i = 0; pos < good.length; i++) {
        const c = cuts[i % cuts.length]!;
        got.push(...d.push(good.subarray(pos, pos + c)).map((f) => f.type));
        pos += c;
      }
      assert.deepEqual(got, ['messages', 'ping']);
    }), budget(200));
  });
});
