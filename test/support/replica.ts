// Defaults for Replica unit tests: hooks that admit everything and fail the test on a fatal error, and metrics
// that record nothing (a test passes its own where it checks them).
import assert from 'node:assert/strict';
import { NodeError } from '../../src/node/errors.js';
import type { ReplicaHooks, ReplicaMetrics } from '../../src/node/replica.js';

export const QUIET_METRICS: ReplicaMetrics = { committed: () => undefined, failed: () => undefined, commitLatency: () => undefined, fsyncLatency: () => undefined };

export function testReplicaHooks(): ReplicaHooks {
  return {
    admit: () => true, onSoftState: () => undefined, afterReady: () => undefined, onConfApplied: () => undefined,
    onFatal: (e) => assert.fail(e), notLeader: () => new NodeError('not_leader', 'not the leader'), nameOf: (id) => `n${id}`,
  };
}
