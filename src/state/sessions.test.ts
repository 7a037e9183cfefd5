import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommand } from './commands.js';
import type { Command } from './commands.js';
import { KvStateMachine } from './kv.js';
import type { KvOptions } from './kv.js';

function driver(options: KvOptions = {}) {
  const kv = new KvStateMachine(options);
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

  it('sessions survive snapshot and restore', () => {
    const d = driver();
    const first = d.run(10, { type: 'txn', compare: [], success: [{ type: 'put', key: 'a', value: '1' }], failure: [] }, 'tx');
    const other = new KvStateMachine();
    other.restore(d.kv.snapshot());
    assert.equal(other.sessionCount, 1);
    const again = other.apply(2, encodeCommand({ at: 11, idempotencyKey: 'tx', command: { type: 'put', key: 'zzz', value: 'no' } }));
    assert.deepEqual(again, first);
    assert.equal(other.get('zzz'), undefined);
  });
});
