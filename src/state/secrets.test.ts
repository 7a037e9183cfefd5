// The secrets machine: sealed rotations, the chain from an old secret, snapshots.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { packCanonical } from './commands.js';
import { SecretsMachine, decodeSecretsCommand, decodeSecretsPayload, encodeCaEpochPayload, encodeSecretsPayload, latestSecret, openRotation, sealRotation } from './secrets.js';

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

  it('CA epochs (feature level 4): reroot opens a grace, reroot-done ends it; stale or out-of-order commands are no-ops', async () => {
    const m = new SecretsMachine();
    const seen: string[] = [];
    m.onCaChange = (ca) => seen.push(`${ca.epoch}/${ca.graceEpoch ?? '-'}`);
    const apply = (kind: 'reroot' | 'reroot-done', epoch: number) => m.apply(decodeSecretsCommand(encodeCaEpochPayload({ kind, epoch })), ctx);
    const empty = m.checksum();
    apply('reroot-done', 1); // no grace open
    apply('reroot', 2); // not the next epoch
    assert.deepEqual(m.ca, { epoch: 0, graceEpoch: undefined });
    assert.equal(m.checksum(), empty, 'no-ops change nothing');
    apply('reroot', 1);
    assert.deepEqual(m.ca, { epoch: 1, graceEpoch: 0 });
    apply('reroot', 2); // a second rotation while the grace is open: refused at apply too
    apply('reroot-done', 2);
    assert.deepEqual(m.ca, { epoch: 1, graceEpoch: 0 });
    apply('reroot-done', 1);
    assert.deepEqual(m.ca, { epoch: 1, graceEpoch: undefined });
    apply('reroot', 2);
    assert.deepEqual(seen, ['1/0', '1/-', '2/1']);
    assert.equal(m.isEmpty(), false);
    // Snapshot [2, rotations, epoch, grace] round-trips, grace and all; the copy reports the change.
    const copy = new SecretsMachine();
    const got: string[] = [];
    copy.onCaChange = (ca) => got.push(`${ca.epoch}/${ca.graceEpoch ?? '-'}`);
    (await copy.restore(m.snapshot()))();
    assert.deepEqual(copy.ca, { epoch: 2, graceEpoch: 1 });
    assert.deepEqual(got, ['2/1']);
    assert.equal(copy.checksum(), m.checksum());
  });

  it('without a CA epoch the snapshot section stays version 1 (what a level-3 member reads)', async () => {
    const m = new SecretsMachine();
    m.apply(decodeSecretsCommand(encodeSecretsPayload(sealRotation(new Uint8Array(randomBytes(32)), 'node3', 3).rotation)), ctx);
    const chunks: Uint8Array[] = [];
    for await (const c of m.snapshot()) chunks.push(c);
    assert.equal(Buffer.concat(chunks)[1], 1, 'fixarray of 2, then version 1');
  });

  it('refuses malformed CA epoch commands and snapshot sections naming the field', async () => {
    assert.throws(() => decodeSecretsCommand(packCanonical([2, 'reroot', 0])), /secrets\.epoch/);
    assert.throws(() => decodeSecretsCommand(packCanonical([2, 'reroot', 1.5])), /secrets\.epoch/);
    assert.throws(() => decodeSecretsCommand(packCanonical([2, 'rotate', 1])), /secrets\.payload/);
    assert.throws(() => decodeSecretsCommand(packCanonical([2, 'reroot'])), /secrets\.payload/);
    assert.throws(() => decodeSecretsPayload(encodeCaEpochPayload({ kind: 'reroot', epoch: 1 })), /secrets\.payload/, 'the level-3 decoder refuses it: hence the feature level');
    const restore = async (v: unknown) => (new SecretsMachine()).validate((async function* () { yield packCanonical(v); })());
    await assert.rejects(restore([2, [], 0, null]), /secrets\.epoch/);
    await assert.rejects(restore([2, [], 3, 1]), /secrets\.graceEpoch/);
    await assert.rejects(restore([2, []]), /expected \[2, rotations, epoch, graceEpoch\]/);
    await restore([2, [], 3, 2]);
  });
});
