import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeCommand, encodeKvPayload, packCanonical } from './commands.js';
import type { Command } from './commands.js';
import { decodeEntry, encodeEnvelope } from './envelope.js';
import { ApplyOrderError, InvalidCommandError, UnsupportedCommandVersionError, UnsupportedMachineError } from './errors.js';
import { TestKv, counterMachine } from '../../test/support/kv-state.js';
import { MachineRegistry } from './machines.js';
import { collectSnapshot } from './snapshot.js';

const v2 = (command: Command, at: number, idempotencyKey?: string): Uint8Array =>
  encodeEnvelope({ machine: 'kv', at, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}), payload: encodeKvPayload(command) });
const v1 = (command: Command, at: number, idempotencyKey?: string): Uint8Array =>
  encodeCommand({ at, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}), command });

const counter = (): ReturnType<typeof counterMachine> => counterMachine();

describe('entry envelope format 2', () => {
  it('round-trips and is canonical', () => {
    const payload = encodeKvPayload({ type: 'put', key: 'a', value: '1' });
    const bytes = encodeEnvelope({ machine: 'kv', at: 5, idempotencyKey: 'k', payload });
    assert.deepStrictEqual(bytes, encodeEnvelope({ machine: 'kv', at: 5, idempotencyKey: 'k', payload }));
    const d = decodeEntry(bytes);
    assert.equal(d.version, 2);
    if (d.version !== 2) return;
    assert.equal(d.envelope.machine, 'kv');
    assert.equal(d.envelope.at, 5);
    assert.equal(d.envelope.idempotencyKey, 'k');
    assert.deepStrictEqual(new Uint8Array(d.envelope.payload), payload);
  });

  it('format 1 still decodes as the KV; malformed envelopes are invalid commands; a newer version is unsupported', () => {
    assert.equal(decodeEntry(v1({ type: 'noop' }, 1)).version, 1);
    assert.throws(() => decodeEntry(packCanonical([2, 'kv', 1, null])), /envelope: must have 5 elements/);
    assert.throws(() => decodeEntry(packCanonical([2, 'KV!', 1, null, new Uint8Array(1)])), InvalidCommandError);
    assert.throws(() => decodeEntry(packCanonical([2, 'kv', -1, null, new Uint8Array(1)])), /at: must be a non-negative integer/);
    assert.throws(() => decodeEntry(packCanonical([2, 'kv', 1, null, 'text'])), /payload: must be bytes/);
    assert.throws(() => decodeEntry(packCanonical([3, 'kv', 1, null, new Uint8Array(1)])), UnsupportedCommandVersionError);
    // A node run as the previous release meets format 2 as an unknown, newer version.
    assert.throws(() => decodeEntry(v2({ type: 'noop' }, 1), 1), UnsupportedCommandVersionError);
  });
});

describe('MachineRegistry', () => {
  it('routes format-2 entries by machine id with the leader clock, and owns the applied index', () => {
    const kv = new TestKv();
    const c = counter();
    kv.registry.register(c);
    assert.throws(() => kv.registry.register(counter()), /already registered/);
    kv.apply(1, v2({ type: 'put', key: 'a', value: '1' }, 100));
    const r = kv.apply(2, encodeEnvelope({ machine: 'counter', at: 90, payload: new TextEncoder().encode('7') }));
    assert.deepStrictEqual(r, { revision: 7 });
    assert.deepStrictEqual(c.seen[0], { index: 2, at: 90, clockMs: 100, idempotencyKey: undefined });
    assert.equal(kv.revision, 1);
    assert.equal(kv.clockMs, 100);
    // A membership entry: the index moves, no machine sees anything, the revision does not change.
    kv.markApplied(3);
    assert.equal(kv.appliedIndex, 3);
    assert.equal(kv.revision, 1);
    assert.equal(c.seen.length, 1);
    assert.throws(() => kv.markApplied(3), ApplyOrderError);
    assert.throws(() => kv.apply(3, v2({ type: 'noop' }, 1)), ApplyOrderError);
  });

  it('an unknown machine stops the node (throws), a malformed payload applies as invalid_command and changes nothing, not even the clock', () => {
    const reg = new MachineRegistry();
    reg.register(counter());
    assert.throws(() => reg.apply(1, encodeEnvelope({ machine: 'sql', at: 1, payload: new Uint8Array([1]) })), UnsupportedMachineError);
    const r = reg.apply(1, encodeEnvelope({ machine: 'counter', at: 50, idempotencyKey: 'k', payload: new TextEncoder().encode('"x"') }));
    assert.deepStrictEqual(r, { error: 'invalid_command', message: 'invalid command: payload: must be a number' });
    assert.equal(reg.appliedIndex, 1);
    assert.equal(reg.clockMs, 0);
    assert.equal(reg.sessionCount, 0);
    assert.equal(reg.apply(2, new Uint8Array(0)), undefined);
    assert.equal(reg.appliedIndex, 2);
  });

  it('client sessions serve every machine: a retried key returns the first result, a reused key for another command is refused', () => {
    const reg = new MachineRegistry();
    const c = counter();
    reg.register(c);
    const add = (n: number, at: number, key: string) => encodeEnvelope({ machine: 'counter', at, idempotencyKey: key, payload: new TextEncoder().encode(String(n)) });
    assert.deepStrictEqual(reg.apply(1, add(5, 10, 'k1')), { revision: 5 });
    assert.deepStrictEqual(reg.apply(2, add(5, 11, 'k1')), { revision: 5 });
    assert.equal(c.total, 5, 'applied once');
    assert.match(String((reg.apply(3, add(6, 12, 'k1')) as { error: string }).error), /idempotency_key_reused/);
    assert.equal(c.total, 5);
  });

  it('deduplicates a KV command across the format switch: recorded by a format-1 entry, retried in a format-2 one (and back)', () => {
    const kv = new TestKv();
    const put: Command = { type: 'put', key: 'a', value: '1' };
    const first = kv.apply(1, v1(put, 10, 'k'));
    assert.deepStrictEqual(kv.apply(2, v2(put, 20, 'k')), first);
    assert.equal(kv.revision, 1);
    const second = kv.apply(3, v2({ type: 'put', key: 'b', value: '2' }, 30, 'k2'));
    assert.deepStrictEqual(kv.apply(4, v1({ type: 'put', key: 'b', value: '2' }, 40, 'k2')), second);
    assert.equal(kv.revision, 2);
    assert.match(String((kv.apply(5, v2({ type: 'put', key: 'a', value: 'other' }, 50, 'k')) as { error: string }).error), /idempotency_key_reused/);
    assert.equal(kv.registry.appliedByFormat(1), 2);
    assert.equal(kv.registry.appliedByFormat(2), 3);
  });

  it('format 1 and format 2 give the same state, results and snapshot bytes', async () => {
    const cmds: [Command, number, string | undefined][] = [
      [{ type: 'put', key: 'a', value: '1', ttlMs: 1000 }, 10, 'k1'],
      [{ type: 'txn', compare: [{ key: 'a', target: 'version', op: '=', value: 1 }], success: [{ type: 'put', key: 'b', value: '2' }], failure: [] }, 20, undefined],
      [{ type: 'noop' }, 30, undefined],
      [{ type: 'delete', key: 'zz' }, 40, 'k2'],
      [{ type: 'expire', keys: [{ key: 'a', modRevision: 1 }] }, 2000, undefined],
    ];
    const a = new TestKv();
    const b = new TestKv();
    cmds.forEach(([c, at, k], i) => {
      assert.deepStrictEqual(a.apply(i + 1, v1(c, at, k)), b.apply(i + 1, v2(c, at, k)));
    });
    a.markApplied(6);
    b.markApplied(6);
    assert.deepStrictEqual(await collectSnapshot(a.snapshot()), await collectSnapshot(b.snapshot()));
    assert.deepStrictEqual(await collectSnapshot(a.snapshot('legacy')), await collectSnapshot(b.snapshot('legacy')));
    assert.equal(a.revision, 3, 'noop and a delete of a missing key do not bump; the expire does');
    const c = new TestKv();
    await c.restore(b.snapshot());
    assert.equal(c.appliedIndex, 6);
    assert.equal(c.sessionCount, 2);
    assert.equal(c.checksum(), a.checksum());
  });

  it('prepareRestore checks and builds a snapshot\'s state without changing anything until its commit is called, then equals restore()', async () => {
    const a = new TestKv();
    a.apply(1, v2({ type: 'put', key: 'a', value: '1' }, 10, 'k1'));
    a.apply(2, v2({ type: 'put', key: 'b', value: '2' }, 20));
    const c = new TestKv();
    c.apply(1, v2({ type: 'put', key: 'other', value: 'x' }, 5));
    const before = c.checksum();
    const commit = await c.registry.prepareRestore(a.snapshot());
    assert.equal(c.checksum(), before, 'nothing changes before the commit');
    assert.equal(c.appliedIndex, 1);
    commit();
    assert.equal(c.appliedIndex, 2);
    assert.equal(c.sessionCount, 1);
    assert.equal(c.checksum(), a.checksum());
    // A stream the checks refuse throws, and changes nothing, as restore() does.
    const bytes = Buffer.from(await collectSnapshot(a.snapshot()));
    bytes[bytes.length - 1]! ^= 1;
    await assert.rejects(c.registry.prepareRestore((async function* () { yield bytes; })()), /checksum/);
    assert.equal(c.checksum(), a.checksum());
  });

  it('a node run as the previous release (maxFormatVersion 1) stops on a format-2 entry and applies format 1', () => {
    const old = new TestKv({ maxFormatVersion: 1 });
    assert.deepStrictEqual(old.apply(1, v1({ type: 'put', key: 'a', value: '1' }, 1)), { revision: 1 });
    assert.throws(() => old.apply(2, v2({ type: 'put', key: 'a', value: '2' }, 2)), UnsupportedCommandVersionError);
    assert.equal(old.appliedIndex, 1);
  });
});
