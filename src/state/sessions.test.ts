import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommand, packCanonical } from './commands.js';
import type { Command } from './commands.js';
import { TestKv } from '../../test/support/kv-state.js';
import { frameSnapshot, snapshotChunksOf } from './snapshot.js';
import type { KvStateOptions as KvOptions } from './kv-state.js';
import { resultToTuple } from './results.js';

function driver(options: KvOptions = {}) {
  const kv = new TestKv(options);
  let index = 0;
  return {
    kv,
    run(at: number, command: Command, idempotencyKey?: string) {
      return kv.apply(++index, encodeCommand(idempotencyKey === undefined ? { at, command } : { at, idempotencyKey, command }));
    },
  };
}

describe('client sessions', () => {
  it('a retry with the same idempotency key returns the original result and does not apply again', () => {
    const d = driver();
    const first = d.run(10, { type: 'put', key: 'a', value: '1' }, 'req-1');
    d.run(11, { type: 'put', key: 'b', value: '1' });
    const retry = d.run(12, { type: 'put', key: 'a', value: '1' }, 'req-1');
    assert.deepEqual(retry, first);
    assert.deepEqual(first, { revision: 1 });
    assert.equal(d.kv.revision, 2);
    assert.equal(d.kv.get('a')?.version, 1);
    assert.equal(d.kv.appliedIndex, 3);
  });

  it('records failures too: a retried CAS that lost still reports the mismatch', () => {
    const d = driver();
    d.run(1, { type: 'put', key: 'a', value: '1' });
    const lost = d.run(2, { type: 'put', key: 'a', value: '2', ifRevision: 0 }, 'cas');
    d.run(3, { type: 'delete', key: 'a' });
    assert.deepEqual(d.run(4, { type: 'put', key: 'a', value: '2', ifRevision: 0 }, 'cas'), lost);
    assert.equal(d.kv.get('a'), undefined);
  });

  it('records expire after the TTL measured in command time, not local time', () => {
    const d = driver({ sessionTtlMs: 1000 });
    d.run(1000, { type: 'put', key: 'a', value: '1' }, 'req');
    d.run(1999, { type: 'noop' });
    assert.deepEqual(d.run(1999, { type: 'put', key: 'a', value: '1' }, 'req'), { revision: 1 });
    d.run(2000, { type: 'noop' }); // record made at 1000 expires at 2000
    assert.equal(d.kv.sessionCount, 0);
    assert.deepEqual(d.run(2001, { type: 'put', key: 'a', value: '1' }, 'req'), { revision: 2 });
  });

  it('a command with an older at does not move the session clock back', () => {
    const d = driver({ sessionTtlMs: 1000 });
    d.run(5000, { type: 'put', key: 'a', value: '1' }, 'r1');
    d.run(100, { type: 'put', key: 'b', value: '1' }, 'r2'); // a new leader with a slow clock
    assert.equal(d.kv.clockMs, 5000);
    d.run(6000, { type: 'noop' });
    assert.equal(d.kv.sessionCount, 0);
  });

  it('evicts the oldest records first when over the count limit', () => {
    const d = driver({ sessionMax: 3 });
    for (let i = 1; i <= 5; i++) d.run(i, { type: 'put', key: `k${i}`, value: 'v' }, `r${i}`);
    assert.equal(d.kv.sessionCount, 3);
    // r1 was evicted: its retry applies again; r5 is remembered.
    assert.deepEqual(d.run(10, { type: 'put', key: 'k5', value: 'v' }, 'r5'), { revision: 5 });
    assert.deepEqual(d.run(11, { type: 'put', key: 'k1', value: 'v' }, 'r1'), { revision: 6 });
  });

  it('sessions survive snapshot and restore, fingerprints included', async () => {
    const d = driver();
    const cmd: Command = { type: 'txn', compare: [], success: [{ type: 'put', key: 'a', value: '1' }], failure: [] };
    const first = d.run(10, cmd, 'tx');
    const other = new TestKv();
    await other.restore(d.kv.snapshot());
    assert.equal(other.sessionCount, 1);
    assert.deepEqual(other.apply(2, encodeCommand({ at: 11, idempotencyKey: 'tx', command: cmd })), first);
    // The restored replica refuses the key for another command exactly like the original.
    const reused = other.apply(3, encodeCommand({ at: 12, idempotencyKey: 'tx', command: { type: 'put', key: 'zzz', value: 'no' } }));
    assert.equal((reused as { error?: string }).error, 'idempotency_key_reused');
    assert.equal(other.get('zzz'), undefined);
    assert.deepEqual(d.run(11, cmd, 'tx'), first);
    assert.deepEqual(reused, d.run(12, { type: 'put', key: 'zzz', value: 'no' }, 'tx'));
    assert.equal(other.checksum(), d.kv.checksum());
  });

  it('an idempotency key reused for a different command is refused and changes nothing; the key keeps its first result', () => {
    const d = driver();
    const first = d.run(10, { type: 'put', key: 'a', value: '1' }, 'req');
    const before = d.kv.checksum();
    const variants: Command[] = [
      { type: 'put', key: 'a', value: '2' }, // other body
      { type: 'put', key: 'b', value: '1' }, // other path
      { type: 'put', key: 'a', value: '1', ifRevision: 1 }, // other precondition
      { type: 'put', key: 'a', value: '1', ttlMs: 1000 },
      { type: 'delete', key: 'a' }, // other method
      { type: 'txn', compare: [], success: [{ type: 'put', key: 'a', value: '1' }], failure: [] }, // other command
    ];
    for (const c of variants) {
      const r = d.run(11, c, 'req') as { error?: string; message?: string };
      assert.equal(r.error, 'idempotency_key_reused', JSON.stringify(c));
      assert.match(String(r.message), /Idempotency-Key "req" was already used for a different request/);
    }
    assert.equal(d.kv.revision, 1);
    assert.equal(d.kv.get('a')?.value, '1');
    // Only the applied index moved (checksum covers it); state and the session are as before.
    assert.notEqual(d.kv.checksum(), before);
    assert.deepEqual(d.run(12, { type: 'put', key: 'a', value: '1' }, 'req'), first);
    assert.equal(d.kv.sessionCount, 1);
  });

  it('a format-1 snapshot (sessions without fingerprints) still restores; its records answer any command with their result', async () => {
    // Body as format 1 wrote it: session tuples [key, atMs, result].
    const body = packCanonical([1, 1, 10, [['a', '1', 1, 1, 1, null]], [['old', 10, resultToTuple({ revision: 1 })]]]);
    const kv = new TestKv();
    await kv.restore(snapshotChunksOf(frameSnapshot(body, 1)));
    assert.equal(kv.sessionCount, 1);
    assert.equal(kv.get('a')?.value, '1');
    assert.deepEqual(kv.apply(2, encodeCommand({ at: 11, idempotencyKey: 'old', command: { type: 'put', key: 'a', value: '1' } })), { revision: 1 });
    assert.deepEqual(kv.apply(3, encodeCommand({ at: 12, idempotencyKey: 'old', command: { type: 'delete', key: 'a' } })), { revision: 1 });
    assert.equal(kv.revision, 1);
    // Written back in format 3 (fingerprint nil) and read again.
    const again = new TestKv();
    await again.restore(kv.snapshot());
    assert.equal(again.checksum(), kv.checksum());
  });

  it('a format-2 snapshot with a malformed fingerprint is refused naming the field', async () => {
    const body = packCanonical([1, 1, 10, [], [['k', 10, resultToTuple({ revision: 1 }), 'not-hex']]]);
    await assert.rejects(new TestKv().restore(snapshotChunksOf(frameSnapshot(body, 2))), /sessions\[0\]\.fingerprint/);
    const short = packCanonical([1, 1, 10, [], [['k', 10, resultToTuple({ revision: 1 })]]]);
    await assert.rejects(new TestKv().restore(snapshotChunksOf(frameSnapshot(short, 2))), /sessions\[0\].*expected \[idempotencyKey, atMs, result, fingerprint\]/);
  });
});
