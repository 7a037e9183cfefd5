import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommand } from './commands.js';
import type { Command } from './commands.js';
import { CompactedError } from './errors.js';
import { TestKv } from '../../test/support/kv-state.js';
import { collectSnapshot, snapshotChunksOf } from './snapshot.js';
import type { KvStateOptions as KvOptions } from './kv-state.js';
import type { WatchEvent } from './watch.js';

function driver(options: KvOptions = {}) {
  const kv = new TestKv(options);
  let index = 0;
  return {
    kv,
    run(command: Command) {
      return kv.apply(++index, encodeCommand({ at: index, command }));
    },
  };
}

describe('watch', () => {
  it('replays history from a revision, then streams live events under the prefix', () => {
    const d = driver();
    d.run({ type: 'put', key: 'app/a', value: '1' }); // rev 1
    d.run({ type: 'put', key: 'other', value: '1' }); // rev 2
    d.run({ type: 'put', key: 'app/b', value: '2' }); // rev 3
    d.run({ type: 'delete', key: 'app/a' }); // rev 4
    const got: WatchEvent[] = [];
    const stop = d.kv.watch('app/', 3, (e) => got.push(e));
    assert.deepEqual(got, [
      { type: 'put', key: 'app/b', value: '2', revision: 3, createRevision: 3, modRevision: 3 },
      { type: 'delete', key: 'app/a', revision: 4, createRevision: 1, modRevision: 1 },
    ]);
    d.run({ type: 'txn', compare: [], success: [{ type: 'put', key: 'app/c', value: '3' }, { type: 'put', key: 'x', value: '' }, { type: 'delete', key: 'app/b' }], failure: [] });
    assert.deepEqual(got.slice(2), [
      { type: 'put', key: 'app/c', value: '3', revision: 5, createRevision: 5, modRevision: 5 },
      { type: 'delete', key: 'app/b', revision: 5, createRevision: 3, modRevision: 3 },
    ]);
    stop();
    d.run({ type: 'put', key: 'app/d', value: '4' });
    assert.equal(got.length, 4);
  });

  it('a watch without fromRevision gets only live events', () => {
    const d = driver();
    d.run({ type: 'put', key: 'a', value: '1' });
    const got: number[] = [];
    d.kv.watch('', undefined, (e) => got.push(e.revision));
    d.run({ type: 'put', key: 'a', value: '2' });
    assert.deepEqual(got, [2]);
  });

  it('a revision older than the retained history throws CompactedError with the oldest available', () => {
    const d = driver({ watchHistoryEvents: 3 });
    for (let i = 0; i < 6; i++) d.run({ type: 'put', key: `k${i}`, value: 'v' }); // revs 1..6, keeps 4..6
    assert.equal(d.kv.oldestWatchRevision, 4);
    assert.throws(
      () => d.kv.watch('', 3, () => {}),
      (e: unknown) => e instanceof CompactedError && e.code === 'compacted' && e.oldestRevision === 4 && e.requestedRevision === 3,
    );
    const got: number[] = [];
    d.kv.watch('', 4, (e) => got.push(e.revision));
    assert.deepEqual(got, [4, 5, 6]);
  });

  it('evicts whole revisions so a txn is never half retained', () => {
    const d = driver({ watchHistoryEvents: 3 });
    d.run({ type: 'put', key: 'a', value: '1' }); // rev 1
    d.run({ type: 'txn', compare: [], success: [{ type: 'put', key: 'b', value: '' }, { type: 'put', key: 'c', value: '' }], failure: [] }); // rev 2
    d.run({ type: 'put', key: 'd', value: '1' }); // rev 3: 4 events > 3, evict rev 1
    assert.equal(d.kv.oldestWatchRevision, 2);
    d.run({ type: 'put', key: 'e', value: '1' }); // rev 4: evict both events of rev 2
    assert.equal(d.kv.oldestWatchRevision, 3);
  });

  it('a throwing listener cannot break apply or other listeners', () => {
    const errors: unknown[] = [];
    const d = driver({ onListenerError: (err) => errors.push(err) });
    const got: string[] = [];
    d.kv.watch('', undefined, () => {
      throw new Error('boom');
    });
    d.kv.watch('', undefined, (e) => got.push(e.key));
    assert.deepEqual(d.run({ type: 'put', key: 'a', value: '1' }), { revision: 1 });
    assert.deepEqual(got, ['a']);
    assert.equal(errors.length, 1);
    assert.equal(d.kv.get('a')?.value, '1');
  });

  it('restore cancels open watches with a CompactedError', async () => {
    const d = driver();
    d.run({ type: 'put', key: 'a', value: '1' });
    const snap = await collectSnapshot(d.kv.snapshot());
    const other = driver();
    let cancelled: CompactedError | undefined;
    other.kv.watch('', 1, () => {}, { onCancel: (err) => (cancelled = err) });
    await other.kv.restore(snapshotChunksOf(snap));
    assert.ok(cancelled instanceof CompactedError);
    assert.equal(other.kv.oldestWatchRevision, 2);
  });
});
