import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommand, packCanonical } from './commands.js';
import type { Command, TxnCommand } from './commands.js';
import { ApplyOrderError, UnsupportedCommandVersionError } from './errors.js';
import { TestKv } from '../../test/support/kv-state.js';
import type { ApplyResult } from './results.js';

/** Drives a state machine with consecutive indexes and command time `at`. */
function driver(kv = new TestKv()) {
  let index = kv.appliedIndex;
  let at = 1000;
  return {
    kv,
    run(command: Command, opts: { at?: number; idempotencyKey?: string } = {}): ApplyResult {
      at = opts.at ?? at + 1;
      const env = opts.idempotencyKey === undefined ? { at, command } : { at, idempotencyKey: opts.idempotencyKey, command };
      return kv.apply(++index, encodeCommand(env));
    },
    put(key: string, value: string, extra: { ifRevision?: number; ttlMs?: number } = {}): ApplyResult {
      return this.run({ type: 'put', key, value, ...extra });
    },
  };
}

describe('put and delete', () => {
  it('put with ifRevision 0 succeeds only if the key does not exist', () => {
    const d = driver();
    assert.deepEqual(d.put('a', '1', { ifRevision: 0 }), { revision: 1 });
    assert.deepEqual(d.put('a', '2', { ifRevision: 0 }), { error: 'revision_mismatch', currentRevision: 1 });
    assert.equal(d.kv.get('a')?.value, '1');
    assert.equal(d.kv.revision, 1);
  });

  it('put with ifRevision compares against the modRevision (CAS)', () => {
    const d = driver();
    d.put('a', '1');
    d.put('b', 'x');
    assert.deepEqual(d.put('a', '2', { ifRevision: 2 }), { error: 'revision_mismatch', currentRevision: 1 });
    assert.deepEqual(d.put('a', '2', { ifRevision: 1 }), { revision: 3 });
    assert.deepEqual(d.kv.get('a'), { key: 'a', value: '2', createRevision: 1, modRevision: 3, version: 2 });
  });

  it('delete with ifRevision deletes only at that revision', () => {
    const d = driver();
    d.put('a', '1');
    assert.deepEqual(d.run({ type: 'delete', key: 'a', ifRevision: 7 }), { error: 'revision_mismatch', currentRevision: 1 });
    assert.deepEqual(d.run({ type: 'delete', key: 'a', ifRevision: 1 }), { revision: 2, deleted: true });
    assert.equal(d.kv.get('a'), undefined);
    assert.deepEqual(d.run({ type: 'delete', key: 'a', ifRevision: 0 }), { revision: 2, deleted: false });
  });

  it('revisions are monotonic: each change bumps once, a no-change delete or noop does not', () => {
    const d = driver();
    const seen: number[] = [];
    for (const r of [d.put('a', '1'), d.put('a', '1'), d.run({ type: 'delete', key: 'zz' }), d.run({ type: 'noop' }), d.put('b', '2'), d.run({ type: 'delete', key: 'a' })]) {
      seen.push((r as { revision: number }).revision);
    }
    assert.deepEqual(seen, [1, 2, 2, 2, 3, 4]);
    assert.equal(d.kv.get('b')?.createRevision, 3);
  });

  it('recreating a deleted key starts a new createRevision and version', () => {
    const d = driver();
    d.put('a', '1');
    d.put('a', '2');
    d.run({ type: 'delete', key: 'a' });
    d.put('a', '3');
    assert.deepEqual(d.kv.get('a'), { key: 'a', value: '3', createRevision: 4, modRevision: 4, version: 1 });
  });
});

describe('range', () => {
  it('returns keys under a prefix sorted, limited, with more and paging', () => {
    const d = driver();
    for (const k of ['b/3', 'a/1', 'b/1', 'c', 'b/2', 'b', 'b/10', 'ba']) d.put(k, k.toUpperCase());
    const r = d.kv.range('b/', 2);
    assert.deepEqual(r.records.map((x) => x.key), ['b/1', 'b/10']);
    assert.equal(r.more, true);
    assert.equal(r.revision, 8);
    const r2 = d.kv.range('b/', 10, 'b/10');
    assert.deepEqual(r2.records.map((x) => x.key), ['b/2', 'b/3']);
    assert.equal(r2.more, false);
    assert.deepEqual(d.kv.range('', 100).records.map((x) => x.key), ['a/1', 'b', 'b/1', 'b/10', 'b/2', 'b/3', 'ba', 'c']);
    assert.deepEqual(d.kv.range('zz', 5).records, []);
  });

  it('stays correct and fast with 100k keys', () => {
    const d = driver();
    const t0 = process.hrtime.bigint();
    // Insert in a scrambled order so the index really has to sort.
    for (let i = 0; i < 100_000; i++) {
      const n = (i * 7919) % 100_000;
      d.put(`user/${String(n).padStart(6, '0')}`, 'v');
    }
    const r = d.kv.range('user/0500', 3);
    assert.deepEqual(r.records.map((x) => x.key), ['user/050000', 'user/050001', 'user/050002']);
    assert.equal(d.kv.range('user/', 100_000).records.length, 100_000);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 20_000, `100k puts + ranges took ${ms} ms`);
  });
});

describe('txn', () => {
  it('applies the success branch atomically at one revision', () => {
    const d = driver();
    d.put('a', '1');
    d.put('b', '1');
    const r = d.run({
      type: 'txn',
      compare: [{ key: 'a', target: 'value', op: '=', value: '1' }, { key: 'c', target: 'exists', op: '=', value: false }],
      success: [{ type: 'put', key: 'c', value: '3' }, { type: 'delete', key: 'b' }, { type: 'delete', key: 'nope' }],
      failure: [{ type: 'put', key: 'f', value: 'x' }],
    });
    assert.deepEqual(r, { succeeded: true, revision: 3, responses: [{ type: 'put', revision: 3 }, { type: 'delete', deleted: true }, { type: 'delete', deleted: false }] });
    assert.equal(d.kv.get('c')?.modRevision, 3);
    assert.equal(d.kv.get('b'), undefined);
    assert.equal(d.kv.get('f'), undefined);
  });

  it('a failed compare applies only the failure branch and none of the success ops', () => {
    const d = driver();
    d.put('a', '1');
    const before = d.kv.checksum();
    const r = d.run({
      type: 'txn',
      compare: [{ key: 'a', target: 'revision', op: '=', value: 1 }, { key: 'a', target: 'version', op: '>', value: 5 }],
      success: [{ type: 'put', key: 's1', value: 'x' }, { type: 'delete', key: 'a' }, { type: 'put', key: 's2', value: 'y' }],
      failure: [],
    });
    assert.deepEqual(r, { succeeded: false, revision: 1, responses: [] });
    assert.equal(d.kv.get('s1'), undefined);
    assert.equal(d.kv.get('a')?.value, '1');
    assert.equal(d.kv.revision, 1);
    // Only appliedIndex and the clock moved.
    assert.notEqual(d.kv.checksum(), before);
    const r2 = d.run({ type: 'txn', compare: [{ key: 'a', target: 'createRevision', op: '<', value: 1 }], success: [], failure: [{ type: 'put', key: 'f', value: '1' }] });
    assert.deepEqual(r2, { succeeded: false, revision: 2, responses: [{ type: 'put', revision: 2 }] });
  });

  it('an invalid op in either branch rejects the whole txn with nothing applied', () => {
    const d = driver();
    d.put('a', '1');
    // Forge an entry that skipped the proposer's validation: duplicate key in a branch.
    const data = packCanonical([1, 5000, null, 3, [], [[1, 'x', 'v', null], [1, 'x', 'w', null]], []]);
    const r = d.kv.apply(d.kv.appliedIndex + 1, data);
    assert.ok('error' in r && r.error === 'invalid_command');
    assert.equal(d.kv.get('x'), undefined);
    assert.equal(d.kv.revision, 1);
  });

  it('value compares on a missing key are false; numeric targets read 0', () => {
    const d = driver();
    const t = (compare: TxnCommand['compare']) => d.run({ type: 'txn', compare, success: [], failure: [] }) as { succeeded: boolean };
    assert.equal(t([{ key: 'm', target: 'value', op: '!=', value: 'x' }]).succeeded, false);
    assert.equal(t([{ key: 'm', target: 'revision', op: '=', value: 0 }]).succeeded, true);
    assert.equal(t([{ key: 'm', target: 'exists', op: '!=', value: true }]).succeeded, true);
  });
});

describe('TTL expiry', () => {
  it('expiredKeys lists keys past their deadline, earliest first', () => {
    const d = driver();
    d.put('late', 'v', { ttlMs: 500 }); // at 1001 -> 1501
    d.put('early', 'v', { ttlMs: 100 }); // at 1002 -> 1102
    d.put('forever', 'v');
    assert.deepEqual(d.kv.expiredKeys(1000, 10), []);
    assert.deepEqual(d.kv.expiredKeys(1200, 10), [{ key: 'early', modRevision: 2 }]);
    assert.deepEqual(d.kv.expiredKeys(2000, 10), [{ key: 'early', modRevision: 2 }, { key: 'late', modRevision: 1 }]);
    assert.deepEqual(d.kv.expiredKeys(2000, 1), [{ key: 'early', modRevision: 2 }]);
    assert.equal(d.kv.get('late')?.leaseDeadlineMs, 1501);
  });

  it('expire deletes only keys whose modRevision is unchanged', () => {
    const d = driver();
    d.put('a', '1', { ttlMs: 10 });
    d.put('b', '1', { ttlMs: 10 });
    const due = d.kv.expiredKeys(5000, 10);
    assert.equal(due.length, 2);
    d.put('b', '2', { ttlMs: 10 }); // rewritten after the leader looked
    const r = d.run({ type: 'expire', keys: due }, { at: 5000 });
    assert.deepEqual(r, { revision: 4, expired: 1 });
    assert.equal(d.kv.get('a'), undefined);
    assert.equal(d.kv.get('b')?.value, '2');
  });

  it('expire does not delete a key whose deadline has not passed in command time, nor a key without a lease', () => {
    const d = driver();
    d.put('a', '1', { ttlMs: 10_000 });
    d.put('p', '1');
    const r = d.run({ type: 'expire', keys: [{ key: 'a', modRevision: 1 }, { key: 'p', modRevision: 2 }] });
    assert.deepEqual(r, { revision: 2, expired: 0 });
    assert.ok(d.kv.get('a') && d.kv.get('p'));
  });

  it('a put without ttlMs clears the lease', () => {
    const d = driver();
    d.put('a', '1', { ttlMs: 10 });
    d.put('a', '2');
    assert.equal(d.kv.get('a')?.leaseDeadlineMs, undefined);
    assert.deepEqual(d.kv.expiredKeys(1e12, 10), []);
  });
});

describe('apply contract', () => {
  it('empty data is a no-op that advances appliedIndex; gaps are allowed', () => {
    const kv = new TestKv();
    assert.deepEqual(kv.apply(1, new Uint8Array()), { revision: 0 });
    assert.equal(kv.appliedIndex, 1);
    kv.apply(5, encodeCommand({ at: 1, command: { type: 'put', key: 'a', value: 'b' } }));
    assert.equal(kv.appliedIndex, 5);
  });

  it('rejects an index that is not past appliedIndex', () => {
    const kv = new TestKv();
    kv.apply(3, new Uint8Array());
    assert.throws(() => kv.apply(3, new Uint8Array()), ApplyOrderError);
    assert.throws(() => kv.apply(2, new Uint8Array()), (e: unknown) => e instanceof ApplyOrderError && e.code === 'apply_out_of_order');
  });

  it('malformed data yields invalid_command and changes nothing but appliedIndex', () => {
    const kv = new TestKv();
    const r = kv.apply(1, new Uint8Array([1, 2, 3]));
    assert.ok('error' in r && r.error === 'invalid_command');
    assert.equal(kv.appliedIndex, 1);
    assert.equal(kv.revision, 0);
  });

  it('a newer command format stops apply without advancing', () => {
    const kv = new TestKv();
    assert.throws(() => kv.apply(1, packCanonical([9, 0, null, 0])), UnsupportedCommandVersionError);
    assert.equal(kv.appliedIndex, 0);
  });
});
