// The secrets machine: sealed rotations, the chain from an old secret, snapshots.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { SecretsMachine, decodeSecretsPayload, encodeSecretsPayload, latestSecret, openRotation, sealRotation } from './secrets.js';

const ctx = { index: 1, at: 0, clockMs: 0, idempotencyKey: undefined };

describe('secrets machine', () => {
  it('seals a new secret that only the old one opens, and follows a chain of rotations through a snapshot', async () => {
    const s0 = new Uint8Array(randomBytes(32));
    const a = sealRotation(s0, 'node3', 3);
    assert.deepEqual(openRotation(a.rotation, s0), a.secret);
    assert.throws(() => openRotation(a.rotation, new Uint8Array(randomBytes(32))));
    const b = sealRotation(a.secret, 'node4', 4);
    const m = new SecretsMachine();
    const seen: number[] = [];
    m.onChange = (r) => seen.push(r.length);
    m.apply(decodeSecretsPayload(encodeSecretsPayload(a.rotation)), ctx);
    m.apply(decodeSecretsPayload(encodeSecretsPayload(b.rotation)), ctx);
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(latestSecret(m.rotations, s0), b.secret, 'a member that missed both catches up from the secret it holds');
    assert.deepEqual(latestSecret(m.rotations, b.secret), b.secret);
    const copy = new SecretsMachine();
    const commit = await copy.restore(m.snapshot());
    commit();
    assert.equal(copy.checksum(), m.checksum());
    assert.deepEqual(copy.isolatedIds(), [3, 4]);
    assert.deepEqual(latestSecret(copy.rotations, a.secret), b.secret);
  });

  it('refuses a malformed rotation payload naming the field', () => {
    const r = sealRotation(new Uint8Array(randomBytes(32)), 'n', 1).rotation;
    assert.throws(() => decodeSecretsPayload(encodeSecretsPayload({ ...r, salt: new Uint8Array(3) })), /secrets\.salt/);
    assert.throws(() => decodeSecretsPayload(new Uint8Array([1, 2, 3])), /secrets/);
  });
});
