// Failover mode approval (./approval.ts): the candidate is computed
// deterministically from what the voters report; anything but the proposal
// is refused; the probe's proof binds the cluster secret, the target and time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { approvalMismatch, computeProposal, probeProof, verifyProbeProof, type ApprovalState, type ProbeInfo } from './approval.js';

const p = (nodeName: string, term: number, lastTerm: number, lastIndex: number, o: Partial<ProbeInfo> = {}): ProbeInfo =>
  ({ nodeName, term, lastTerm, lastIndex, role: 'follower', healthy: true, leader: null, ...o });
const inputs = { voting: ['a', 'b', 'c'], candidates: ['a', 'b', 'c'], drained: new Set<string>() };

test('the candidate: highest (lastTerm, lastIndex), ties by name; term = its term + 1; same answer in any order', () => {
  const seen = [p('c', 4, 3, 10), p('b', 5, 3, 12), p('a', 4, 3, 12)];
  const want = { candidate: 'a', term: 5, eligible: ['a', 'b', 'c'] };
  assert.deepEqual(computeProposal(seen, inputs), want);
  assert.deepEqual(computeProposal([...seen].reverse(), inputs), want);
  assert.deepEqual(computeProposal([seen[1]!, seen[0]!, seen[2]!], inputs), want);
  // lastTerm wins over lastIndex.
  assert.deepEqual(computeProposal([p('a', 6, 4, 12), p('b', 6, 5, 9)], inputs), { candidate: 'b', term: 7, eligible: ['b', 'a'] });
});

test('drained, unhealthy and non-candidate voters are skipped; a minority or a known leader proposes nothing', () => {
  const seen = [p('a', 4, 3, 20), p('b', 4, 3, 12), p('c', 4, 3, 11)];
  assert.equal((computeProposal(seen, { ...inputs, drained: new Set(['a']) }) as { candidate: string }).candidate, 'b');
  assert.equal((computeProposal([p('a', 4, 3, 20, { healthy: false }), ...seen.slice(1)], inputs) as { candidate: string }).candidate, 'b');
  assert.equal((computeProposal(seen, { ...inputs, candidates: ['c'] }) as { candidate: string }).candidate, 'c');
  assert.match((computeProposal([p('a', 4, 3, 20)], inputs) as { reason: string }).reason, /only 1 of 3 voters answer \(a\); a majority \(2\)/);
  assert.match((computeProposal([p('a', 4, 3, 20), p('b', 4, 3, 12, { leader: 'c' })], inputs) as { reason: string }).reason, /b knows a leader \(c\)/);
  // A node that is no voter is not counted.
  assert.match((computeProposal([p('a', 4, 3, 20), p('x', 4, 3, 99)], inputs) as { reason: string }).reason, /only 1 of 3/);
});

test('approval: only the proposed candidate and term are accepted', () => {
  const st: ApprovalState = { candidate: 'b', term: 7, since: '2026-01-01T00:00:00.000Z', command: 'quorate failover --approve b --term 7', seen: [] };
  assert.equal(approvalMismatch(st, 'b', 7), undefined);
  assert.match(approvalMismatch(st, 'a', 7)!, /the proposed candidate is b, not a; to approve the current proposal run `quorate failover --approve b --term 7`/);
  assert.match(approvalMismatch(st, 'b', 6)!, /the proposed term is 7, not 6/);
  assert.match(approvalMismatch({ ...st, candidate: null, term: null, command: null, reason: 'only 1 of 3 voters answer' }, 'b', 7)!, /no proposal to approve: only 1 of 3/);
});

test('probe proof: needs the cluster secret, names the target, expires', () => {
  const secret = new Uint8Array(32).fill(7);
  const now = 1_800_000_000_000;
  const proof = probeProof(secret, 'b', now);
  assert.equal(verifyProbeProof(secret, 'b', proof, now + 1000), true);
  assert.equal(verifyProbeProof(secret, 'c', proof, now), false, 'meant for another node');
  assert.equal(verifyProbeProof(new Uint8Array(32).fill(8), 'b', proof, now), false, 'another secret');
  assert.equal(verifyProbeProof(secret, 'b', proof, now + 31_000), false, 'stale');
  assert.equal(verifyProbeProof(secret, 'b', undefined, now), false);
  assert.equal(verifyProbeProof(secret, 'b', 'garbage', now), false);
});
