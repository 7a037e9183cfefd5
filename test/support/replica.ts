// Defaults for Replica unit tests: hooks that admit everything and fail the test on a fatal error, and metrics
// that record nothing (a test passes its own where it checks them).
import assert from 'node:assert/strict';
import { NodeError } from '../../src/node/errors.js';
import type { ReplicaHooks, ReplicaMetrics, StateMachine } from '../../src/node/replica.js';
import type { ApplyResult } from '../../src/state/index.js';

export const QUIET_METRICS: ReplicaMetrics = { committed: () => undefined, failed: () => undefined, commitLatency: () => undefined, fsyncLatency: () => undefined };

export function testReplicaHooks(): ReplicaHooks {
  return {
    admit: () => true, onSoftState: () => undefined, afterReady: () => undefined, onConfApplied: () => undefined,
    onFatal: (e) => assert.fail(e), notLeader: () => new NodeError('not_leader', 'not the leader'), nameOf: (id) => `n${id}`,
  };
}

/** A state machine that only moves its applied index (`restore` sets it to `restoredIndex`); `applied()` reads it. */
export function countingStateMachine(restoredIndex = 0): { sm: StateMachine; applied: () => number } {
  let appliedIndex = 0;
  const sm: StateMachine = {
    get appliedIndex() {
      return appliedIndex;
    },
    apply: (index) => {
      appliedIndex = index;
      return { kind: 'write', revision: index } as unknown as ApplyResult;
    },
    markApplied: (index) => void (appliedIndex = index),
    snapshot: () => (async function* () {})(),
    restore: async () => {
      appliedIndex = restoredIndex;
    },
  };
  return { sm, applied: () => appliedIndex };
}
