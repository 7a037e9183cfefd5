import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCommand, encodeCommand, packCanonical } from './commands.js';
import type { CommandEnvelope } from './commands.js';
import { InvalidCommandError, InvalidKeyError, TooLargeError, UnsupportedCommandVersionError } from './errors.js';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES, validateKey } from './limits.js';

const samples: CommandEnvelope[] = [
  { at: 0, command: { type: 'noop' } },
  { at: 1_700_000_000_000, idempotencyKey: 'req-1', command: { type: 'put', key: 'a/b', value: 'héllo ✓', ifRevision: 0, ttlMs: 5000 } },
  { at: 5, command: { type: 'put', key: 'k', value: '' } },
  { at: 6, command: { type: 'delete', key: 'k', ifRevision: 3 } },
  { at: 7, command: { type: 'delete', key: 'k' } },
  {
    at: 8,
    command: {
      type: 'txn',
      compare: [
        { key: 'a', target: 'revision', op: '=', value: 3 },
        { key: 'b', target: 'value', op: '>', value: 'x' },
        { key: 'c', target: 'exists', op: '!=', value: true },
        { key: 'd', target: 'createRevision', op: '<', value: 9 },
        { key: 'e', target: 'version', op: '!=', value: 0 },
      ],
      success: [{ type: 'put', key: 'a', value: '1', ttlMs: 10 }, { type: 'delete', key: 'b' }],
      failure: [{ type: 'put', key: 'z', value: '2' }],
    },
  },
  { at: 9, command: { type: 'expire', keys: [{ key: 'a', modRevision: 4 }] } },
];

describe('command encoding', () => {
  it('round-trips every command type', () => {
    for (const env of samples) assert.deepEqual(decodeCommand(encodeCommand(env)), env);
  });

  it('gives identical bytes for equal commands whatever the property order', () => {
    const a = encodeCommand({ at: 1, idempotencyKey: 'x', command: { type: 'put', key: 'k', value: 'v', ttlMs: 3 } });
    const b = encodeCommand({ command: { ttlMs: 3, value: 'v', key: 'k', type: 'put' }, idempotencyKey: 'x', at: 1 });
    assert.deepEqual(a, b);
  });

  it('rejects invalid commands naming the field', () => {
    const bad = (env: unknown, field: string): void => {
      assert.throws(() => encodeCommand(env as CommandEnvelope), (e: unknown) => e instanceof InvalidCommandError && e.code === 'invalid_command' && e.field === field);
    };
    bad({ at: -1, command: { type: 'noop' } }, 'at');
    bad({ at: 1, command: { type: 'put', key: '', value: 'v' } }, 'put.key');
    bad({ at: 1, command: { type: 'put', key: 'k', value: 'v', ifRevision: 1.5 } }, 'put.ifRevision');
    bad({ at: 1, command: { type: 'put', key: 'k', value: 'x'.repeat(MAX_VALUE_BYTES + 1) } }, 'put.value');
    bad({ at: 1, command: { type: 'put', key: 'k', value: 'v', ttlMs: 0 } }, 'put.ttlMs');
    bad({ at: 1, command: { type: 'txn', compare: [], success: [{ type: 'put', key: 'a', value: '' }, { type: 'delete', key: 'a' }], failure: [] } }, 'txn.success[1].key');
    bad({ at: 1, command: { type: 'txn', compare: [{ key: 'a', target: 'exists', op: '<', value: true }], success: [], failure: [] } }, 'txn.compare[0].op');
    bad({ at: 1, command: { type: 'txn', compare: [{ key: 'a', target: 'revision', op: '=', value: 'x' }], success: [], failure: [] } }, 'txn.compare[0].value');
    bad({ at: 1, command: { type: 'bogus' } }, 'type');
  });

  it('rejects garbage data and throws on a newer format version', () => {
    assert.throws(() => decodeCommand(new Uint8Array([0xc1])), InvalidCommandError);
    assert.throws(() => decodeCommand(packCanonical([1, 0, null, 99])), InvalidCommandError);
    assert.throws(() => decodeCommand(packCanonical([2, 0, null, 0])), UnsupportedCommandVersionError);
  });
});

describe('validateKey', () => {
  it('accepts ordinary keys and rejects empty, NUL, lone surrogates and oversize keys', () => {
    assert.equal(validateKey('app/config/ü'), 'app/config/ü');
    assert.throws(() => validateKey(''), InvalidKeyError);
    assert.throws(() => validateKey('a\u0000b'), InvalidKeyError);
    assert.throws(() => validateKey('a\ud800'), InvalidKeyError);
    assert.equal(validateKey('é'.repeat(MAX_KEY_BYTES / 2)).length, MAX_KEY_BYTES / 2);
    assert.throws(() => validateKey('é'.repeat(MAX_KEY_BYTES / 2 + 1)), (e: unknown) => e instanceof TooLargeError && e.code === 'key_too_large');
  });
});
