// Per-period handshake keys (protocol version 6, ./handshake.ts): the token in use changes every period with no
// exchange; an acceptor takes its previous, current and next period; a farther one is refused as clock skew,
// named on both sides; a dialer that does not use them yet (cluster below feature level 4) is still accepted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeAuth, decodeChallenge, encodeAuth, encodeChallenge } from './codec.js';
import { FrameError } from './errors.js';
import { describeSkew, dialerMac, periodKey, periodKeyRef } from './handshake.js';
import { connectedPair, mesh, startNode, TEST_SECRET, until } from '../../test/support/transport.js';

const P = 60_000;
const T = 1000 * P + 10; // inside period 1000

describe('per-period handshake keys', () => {
  it('derives one key per period from the secret: the same on every member, another each period and for another secret or cluster', () => {
    const k = periodKey(TEST_SECRET, 'test-ha', 1000);
    assert.deepEqual(periodKey(new Uint8Array(TEST_SECRET), 'test-ha', 1000), k);
    assert.notDeepEqual(periodKey(TEST_SECRET, 'test-ha', 1001), k);
    assert.notDeepEqual(periodKey(TEST_SECRET, 'other-ha', 1000), k);
    assert.notDeepEqual(periodKey(new Uint8Array(32).fill(9), 'test-ha', 1000), k);
    assert.equal(k.length, 32);
    const ref = periodKeyRef(TEST_SECRET, 'test-ha', 1000);
    assert.match(ref, /^sha256:[0-9a-f]{32}$/);
    assert.notEqual(periodKeyRef(TEST_SECRET, 'test-ha', 1001), ref, 'the Token changes every period');
    assert.ok(!ref.includes(Buffer.from(k).toString('hex').slice(0, 16)) && !ref.includes(Buffer.from(TEST_SECRET).toString('hex').slice(0, 16)));
    assert.match(describeSkew(1003, 1000, P), /about 180 s ahead of this node's \(its key period 1003, this node's 1000; periods of 60 s/);
    assert.match(describeSkew(990, 1000, P), /about 600 s behind/);
  });

  it('codec: the challenge and auth carry the key period; a bad one is refused naming the field', () => {
    const nonce = new Uint8Array(32).fill(1);
    assert.deepEqual(decodeChallenge(encodeChallenge({ nonce, protocolVersion: 6, keyPeriod: 1000 }), 0), { nonce, protocolVersion: 6, keyPeriod: 1000 });
    assert.deepEqual(decodeChallenge(encodeChallenge({ nonce, protocolVersion: 5 }), 0), { nonce, protocolVersion: 5 });
    const hello = {
      protocolVersion: 6, minCompatibleVersion: 2, haId: 'test-ha', fromId: 1, fromName: 'node1', toId: 2, channel: 'messages' as const, apiUrl: '', role: '' as const,
      incarnation: '', keyPeriod: 1000,
    };
    const mac = dialerMac(periodKey(TEST_SECRET, 'test-ha', 1000), nonce, nonce, hello);
    assert.deepEqual(decodeAuth(encodeAuth({ hello, mac }), 0).hello.keyPeriod, 1000);
    assert.notDeepEqual(dialerMac(periodKey(TEST_SECRET, 'test-ha', 1000), nonce, nonce, { ...hello, keyPeriod: 1001 }), mac, 'the key period is covered by the MAC');
    assert.throws(() => decodeAuth(encodeAuth({ hello: { ...hello, keyPeriod: -1 }, mac }), 0), (e: unknown) => e instanceof FrameError && /auth\.keyPeriod/.test(e.message));
  });

  it('members dial with period keys once enabled; a period of skew either way is accepted', async () => {
    const [a, b] = await connectedPair({ usePeriodKeys: () => true, keyPeriodMs: P, clock: () => T + P }, { usePeriodKeys: () => true, keyPeriodMs: P, clock: () => T });
    try {
      const inB = b.log.lines.find((l) => l['event'] === 'peer_connected' && l['direction'] === 'in');
      const inA = a.log.lines.find((l) => l['event'] === 'peer_connected' && l['direction'] === 'in');
      assert.equal(inB?.['keyPeriod'], 1001, 'node 1 (a period ahead) keyed its proof with period 1001');
      assert.equal(inA?.['keyPeriod'], 1000);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('a dialer that does not use them yet (feature level below 4) still gets in: no key period on the wire', async () => {
    const [a, b] = await connectedPair({ usePeriodKeys: () => false, keyPeriodMs: P, clock: () => T }, { usePeriodKeys: () => true, keyPeriodMs: P, clock: () => T });
    try {
      assert.equal(b.log.lines.find((l) => l['event'] === 'peer_connected' && l['direction'] === 'in')?.['keyPeriod'], undefined);
      assert.equal(a.log.lines.find((l) => l['event'] === 'peer_connected' && l['direction'] === 'in')?.['keyPeriod'], 1000);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });

  it('more than a period of skew: refused with code clock_skew, the skew named in both logs', async () => {
    const a = await startNode(1, { usePeriodKeys: () => true, keyPeriodMs: P, clock: () => T + 3 * P, backoff: { initialMs: 20, maxMs: 50 } });
    const b = await startNode(2, { usePeriodKeys: () => true, keyPeriodMs: P, clock: () => T });
    try {
      mesh([a, b]);
      await until(() => b.log.lines.some((l) => l['event'] === 'peer_clock_skew'), 'the acceptor logged the skew');
      const skew = b.log.lines.find((l) => l['event'] === 'peer_clock_skew')!;
      assert.equal(skew['code'], 'clock_skew');
      assert.equal(skew['skewMs'], 3 * P);
      assert.match(String(skew['reason']), /node "node1" \(id 1\) proved the cluster secret with the handshake key of another period: its clock is about 180 s ahead of this node's \(its key period 1003, this node's 1000; periods of 60 s; handshake keys are accepted 1 period either way\); fix the clocks \(NTP\)/);
      await until(() => a.log.lines.some((l) => l['event'] === 'peer_refused' && l['code'] === 'clock_skew'), 'the dialer heard why');
      assert.match(String(a.log.lines.find((l) => l['event'] === 'peer_refused' && l['code'] === 'clock_skew')?.['reason']), /about 180 s ahead/);
      assert.equal(a.t.stats().get(2)?.connected, false);
      // The other way round, node 2's key (period 1000) is 3 periods behind node 1's clock: refused as well, named there.
      await until(() => a.log.lines.some((l) => l['event'] === 'peer_clock_skew' && /about 180 s behind/.test(String(l['reason']))), 'node 1 names the skew too');
      assert.equal(b.t.stats().get(1)?.connected, false);
    } finally {
      await Promise.all([a.t.close(), b.t.close()]);
    }
  });
});
