import { test } from 'node:test';
import assert from 'node:assert/strict';
import { failureTolerance, majority, quorumMet, writeQuorum } from './quorum.js';

test('majority of n voters', () => {
  const table: Array<[number, number]> = [[1, 1], [2, 2], [3, 2], [4, 3], [5, 3], [6, 4], [7, 4]];
  for (const [n, q] of table) assert.equal(majority(n), q, `majority(${n})`);
});

test('write quorum: a majority, a larger configured value, never more than the voters', () => {
  const table: Array<[number, number | undefined, number]> = [
    [3, undefined, 2], [3, 0, 2], [3, 1, 2], [3, 2, 2], [3, 3, 3], [3, 5, 3],
    [2, undefined, 2], [1, undefined, 1], [5, 4, 4], [0, undefined, 0],
  ];
  for (const [n, configured, q] of table) assert.equal(writeQuorum(n, configured), q, `writeQuorum(${n}, ${configured})`);
});

test('failure tolerance is what the cluster can still lose now', () => {
  const table: Array<[number, number, number, number]> = [
    // voters, reachable, configured write quorum, tolerance
    [3, 3, 2, 1], [3, 2, 2, 0], [3, 1, 2, 0], [5, 5, 3, 2], [5, 4, 3, 1], [5, 3, 3, 0], [3, 3, 3, 0], [1, 1, 1, 0],
  ];
  for (const [voters, reachable, configured, tol] of table) {
    assert.equal(failureTolerance(reachable, writeQuorum(voters, configured)), tol, `${reachable} of ${voters} reachable, writeQuorum ${configured}`);
  }
});

test('quorum met', () => {
  assert.equal(quorumMet(2, 2), true);
  assert.equal(quorumMet(1, 2), false);
  assert.equal(quorumMet(0, 0), false);
});
