import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JoinTokens, checkRemoval, evenVotersWarning } from './enroll.js';
import type { Member } from '../raft/index.js';

const v = (id: number, role: Member['role'] = 'voter'): Member => ({ id, role });
const name = (id: number) => `node${id}`;

test('remove: refused when the live voters left are fewer than the new write quorum, with the arithmetic', () => {
  const three = [v(1), v(2), v(3)];
  assert.equal(checkRemoval(three, 3, new Set([1, 2, 3]), undefined, name).ok, true);
  // 3 voters, node3 down: removing node2 leaves {1,3}, quorum 2, 1 reachable.
  const r = checkRemoval(three, 2, new Set([1, 2]), undefined, name);
  assert.equal(r.ok, false);
  assert.match(r.message, /removing node2 would leave 2 voters \(write quorum 2\) of which only 1 is reachable/);
  // Removing the dead one is fine: {1,2} both reachable.
  assert.equal(checkRemoval(three, 3, new Set([1, 2]), undefined, name).ok, true);
  // writeQuorum configured higher than a majority counts.
  const five = [v(1), v(2), v(3), v(4), v(5)];
  assert.equal(checkRemoval(five, 5, new Set([1, 2, 3]), undefined, name).ok, true);
  assert.equal(checkRemoval(five, 5, new Set([1, 2, 3]), 4, name).ok, false);
  // A learner (dr) does not count; removing it never hurts a quorum.
  assert.equal(checkRemoval([v(1), v(2), v(3, 'learner')], 3, new Set([1, 2]), undefined, name).ok, true);
  // The last voter that can lead cannot go.
  assert.match(checkRemoval([v(1), v(2, 'observer')], 1, new Set([1, 2]), undefined, name).message, /no voter that can lead/);
  assert.match(checkRemoval(three, 9, new Set([1]), undefined, name).message, /not a member/);
});

test('even voter sets warn that failure tolerance does not grow', () => {
  assert.equal(evenVotersWarning(3), undefined);
  assert.match(evenVotersWarning(2)!, /2 voters tolerate 0 failures, as 1 do/);
  assert.match(evenVotersWarning(4)!, /4 voters tolerate 1 failure, as 3 do/);
});

test('join tokens: found until expiry, consumed by first use', () => {
  const t = new JoinTokens();
  const a = t.create(1000, 0);
  assert.equal(t.find(a.tokenId, 500), a.token);
  assert.equal(t.find(a.tokenId, 1000), undefined);
  const b = t.create(1000, 2000);
  t.consume(b.tokenId);
  assert.equal(t.find(b.tokenId, 2100), undefined);
});
