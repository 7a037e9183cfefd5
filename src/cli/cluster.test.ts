import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderHealth } from './cluster.js';

test('quorate status shows configWarnings as Warning lines', () => {
  const w = 'config_mismatch: cluster.electionTimeoutMs is 1500 on node3 but 1000 on node1; keys that must agree across members differ: …';
  const base = { clusterHealthy: true, leaderNode: 'node1', term: 2, nodes: [], writeQuorum: 2, quorumMet: true, failoverSafe: true, failureTolerance: 1 };
  assert.ok(renderHealth({ ...base, configWarnings: [w] }).includes(`\nWarning: ${w}\n`));
  assert.ok(!renderHealth({ ...base, configWarnings: [] }).includes('Warning:'));
  assert.ok(!renderHealth(base).includes('Warning:'));
});
