import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  deriveJoinKeys, isJoinToken, joinTokenId, joinerMac, leaderMac, macMatches, newJoinToken, openSecret, sealSecret, type JoinAnswer, type JoinClaims,
} from './join.js';
import { newNonce } from './handshake.js';
import { decodeJoinAck, encodeJoinAck } from './handshake-codec.js';

const claims: JoinClaims = { tokenId: '', haId: 'prod', nodeName: 'node4', apiUrl: 'http://127.0.0.1:7104', peerUrl: '127.0.0.1:5204', featureLevel: 2, incarnation: '' };
const answer: JoinAnswer = { haId: 'prod', nodeId: 4, leaderId: 1, bootstrap: '[{"id":1,"peerUrl":"127.0.0.1:5201"}]', peers: '[]' };
const secret = new Uint8Array(32).fill(7);

test('tokens: format, id is stable and reveals nothing of the token', () => {
  const t = newJoinToken();
  assert.ok(isJoinToken(t));
  assert.equal(joinTokenId(t), joinTokenId(t));
  assert.notEqual(joinTokenId(t), joinTokenId(newJoinToken()));
  assert.ok(!t.includes(joinTokenId(t)));
  assert.throws(() => joinTokenId('qjt-xyz'), /64 hex digits/);
});

test('both sides derive the same keys; proofs verify only with the same token and nonces', () => {
  const t = newJoinToken();
  const nj = newNonce();
  const nl = newNonce();
  const a = deriveJoinKeys(t, nj, nl);
  const b = deriveJoinKeys(t, nj, nl);
  const c = { ...claims, tokenId: joinTokenId(t) };
  assert.ok(macMatches(joinerMac(a, nj, nl, c), joinerMac(b, nj, nl, c)));
  // Another token, other nonces (a replay), or altered claims: no match.
  assert.ok(!macMatches(joinerMac(deriveJoinKeys(newJoinToken(), nj, nl), nj, nl, c), joinerMac(a, nj, nl, c)));
  const nl2 = newNonce();
  assert.ok(!macMatches(joinerMac(deriveJoinKeys(t, nj, nl2), nj, nl2, c), joinerMac(a, nj, nl, c)));
  assert.ok(!macMatches(joinerMac(a, nj, nl, { ...c, peerUrl: '10.0.0.9:5201' }), joinerMac(a, nj, nl, c)));
});

test('the cluster secret is sealed (AES-256-GCM): opens with the right key and answer, fails when anything differs', () => {
  const t = newJoinToken();
  const nj = newNonce();
  const nl = newNonce();
  const keys = deriveJoinKeys(t, nj, nl);
  const { iv, sealed } = sealSecret(keys, secret, answer);
  assert.ok(!Buffer.from(sealed).includes(Buffer.from(secret)));
  assert.deepEqual(openSecret(keys, iv, sealed, answer), secret);
  assert.throws(() => openSecret(deriveJoinKeys(newJoinToken(), nj, nl), iv, sealed, answer));
  assert.throws(() => openSecret(keys, iv, sealed, { ...answer, nodeId: 5 }));
  const flipped = new Uint8Array(sealed);
  flipped[0] = flipped[0]! ^ 1;
  assert.throws(() => openSecret(keys, iv, flipped, answer));
  // The leader's proof covers the joiner's proof, the answer and the sealed secret.
  const jp = joinerMac(keys, nj, nl, { ...claims, tokenId: joinTokenId(t) });
  const lp = leaderMac(keys, nj, nl, jp, answer, iv, sealed);
  assert.ok(macMatches(lp, leaderMac(deriveJoinKeys(t, nj, nl), nj, nl, jp, answer, iv, sealed)));
  assert.ok(!macMatches(lp, leaderMac(keys, nj, nl, jp, { ...answer, leaderId: 2 }, iv, sealed)));
});

test('the CA epoch in the join answer (after `ca rotate`) is covered by the leader proof and the sealing, and round-trips the codec', () => {
  const t = newJoinToken();
  const nj = newNonce();
  const nl = newNonce();
  const keys = deriveJoinKeys(t, nj, nl);
  const rotated: JoinAnswer = { ...answer, caEpoch: 3 };
  const { iv, sealed } = sealSecret(keys, secret, rotated);
  assert.throws(() => openSecret(keys, iv, sealed, { ...rotated, caEpoch: 2 }), /auth/i, 'another epoch does not open');
  assert.throws(() => openSecret(keys, iv, sealed, answer));
  const jp = joinerMac(keys, nj, nl, { ...claims, tokenId: joinTokenId(t) });
  const lp = leaderMac(keys, nj, nl, jp, rotated, iv, sealed);
  assert.ok(!macMatches(lp, leaderMac(keys, nj, nl, jp, { ...rotated, caEpoch: 2 }, iv, sealed)));
  // Epoch 0 is sent as nothing: the answer and its proof are those of the releases before epochs.
  assert.ok(macMatches(leaderMac(keys, nj, nl, jp, { ...answer, caEpoch: 0 }, iv, sealed), leaderMac(keys, nj, nl, jp, answer, iv, sealed)));
  const frame = { ...rotated, iv, sealed, mac: lp };
  assert.equal(decodeJoinAck(encodeJoinAck(frame), 0).caEpoch, 3);
  assert.equal(decodeJoinAck(encodeJoinAck({ ...answer, iv, sealed, mac: lp }), 0).caEpoch, undefined);
  assert.throws(() => decodeJoinAck(encodeJoinAck({ ...frame, caEpoch: -1 }), 0), /joinAck\.caEpoch/);
});
