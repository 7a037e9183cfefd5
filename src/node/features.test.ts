import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BASE_FEATURE_LEVEL, FEATURE_LEVEL, clusterFeatureLevel, featureLevelFromEnv } from './features.js';

const members = (...ids: number[]) => ids.map((id) => ({ id }));

describe('cluster feature level', () => {
  it('is the lowest level over every member; one not heard from counts as level 1', () => {
    const self = { id: 1, level: 2 };
    assert.equal(clusterFeatureLevel(members(1, 2, 3), self, new Map([[2, 2], [3, 2]])), 2);
    assert.equal(clusterFeatureLevel(members(1, 2, 3), self, new Map([[2, 2]])), BASE_FEATURE_LEVEL, 'node 3 not heard yet');
    assert.equal(clusterFeatureLevel(members(1, 2, 3), self, new Map([[2, 2], [3, 1]])), 1);
    // Learners and observers are members like any other (the caller passes all roles); non-members do not count.
    assert.equal(clusterFeatureLevel(members(1, 2), self, new Map([[2, 2], [9, 1]])), 2);
    // This node counts with its own level, whatever a peer said about it.
    assert.equal(clusterFeatureLevel(members(1, 2), { id: 1, level: 1 }, new Map([[1, 2], [2, 2]])), 1);
    assert.equal(clusterFeatureLevel(members(1), self, new Map()), 2, 'a single-node cluster');
    // A peer announcing a future level does not lift the cluster above this node's.
    assert.equal(clusterFeatureLevel(members(1, 2), self, new Map([[2, 7]])), 2);
  });

  it('QUORATE_TEST_FEATURE_LEVEL caps this build for tests; refuses nonsense', () => {
    assert.equal(featureLevelFromEnv({}), FEATURE_LEVEL);
    assert.equal(featureLevelFromEnv({ QUORATE_TEST_FEATURE_LEVEL: '1' }), 1);
    assert.equal(featureLevelFromEnv({ QUORATE_TEST_FEATURE_LEVEL: '9' }), FEATURE_LEVEL);
    assert.throws(() => featureLevelFromEnv({ QUORATE_TEST_FEATURE_LEVEL: '0' }), /must be an integer >= 1/);
    assert.throws(() => featureLevelFromEnv({ QUORATE_TEST_FEATURE_LEVEL: 'x' }), /must be an integer >= 1/);
  });
});
