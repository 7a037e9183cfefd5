// quorate-test: serial (CPU-bound simulator campaign; see scripts/run-tests.mjs)
// Mutation checks: a planted bug must be caught by a safety oracle within a
// fixed seed budget. Three are planted in the core (RaftConfig.testMutation),
// one in the replica's log store ('ackBeforePersist': save() resolves before
// the write is durable, so a crash loses acknowledged entries) and one in the
// storage layer ('walSkipsFsync': the WAL's hot-path fdatasync does nothing).
// A liveness failure does not count as "caught": the planted bugs are safety bugs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SimMutation, SimScenario } from './cluster.js';
import { runCampaign } from './campaign.js';

const BUDGET: readonly { mutation: SimMutation; nodes: number; from: number; seeds: number; scenario?: SimScenario }[] = [
  { mutation: 'voteWithoutLogCheck', nodes: 3, from: 1, seeds: 40 },
  { mutation: 'voteWithoutLogCheck', nodes: 5, from: 1, seeds: 40 },
  { mutation: 'ignoreCommitQuorum', nodes: 3, from: 1, seeds: 40 },
  { mutation: 'ignoreCommitQuorum', nodes: 5, from: 1, seeds: 40 },
  { mutation: 'ackBeforePersist', nodes: 3, from: 1, seeds: 200 },
  { mutation: 'walSkipsFsync', nodes: 3, from: 1, seeds: 20 },
  // Rare: it needs a Figure-8 history. Caught at seed 4734 of a mixed-scenario campaign from 2080 (2655 seeds, the first
  // catch from 2080; leader-completeness oracle); the budget starts just before it so that CI spends seconds,
  // not minutes, on it. Changes to the core's timing change every history: it was seed 1366 until the leader filled
  // its replication window on each acknowledgement, and seed 1512 until followers campaigned within half a heartbeat
  // of a leader's connection reset and a leader heartbeated a peer as soon as its connection came up. Seed 2052's
  // catch was log matching's, on an entry the promoted-or-restarted writer alone had written in a term it never made
  // durable: that is no violation (GenOracles.forgetLostTerms), and nothing else in that seed saw the damage.
  { mutation: 'commitPreviousTermByCounting', nodes: 5, from: 4720, seeds: 40, scenario: 'mixed' },
  // The network delivers messages between generations (no handshake gate): the old site's
  // higher-term leader reaches the promoted node. The gate oracle itself is off under this
  // mutation; log matching, linearizability or another safety oracle must see the damage.
  { mutation: 'deliverCrossGeneration', nodes: 3, from: 1, seeds: 60, scenario: 'promote-dr' },
];

for (const b of BUDGET) {
  test(`mutation ${b.mutation} (${b.nodes} nodes) is caught within seeds ${b.from}..${b.from + b.seeds - 1}`, async () => {
    const sum = await runCampaign({
      seeds: Array.from({ length: b.seeds }, (_, i) => b.from + i),
      nodes: b.nodes,
      mutation: b.mutation,
      ...(b.scenario !== undefined ? { scenario: b.scenario } : {}),
      stopWhen: (v) => v.oracle !== 'liveness' && v.oracle !== 'generation-gate',
    });
    const caught = sum.violations.filter((v) => v.oracle !== 'liveness' && v.oracle !== 'generation-gate');
    assert.ok(caught.length > 0, `${b.mutation} survived ${sum.seedsRun} seeds (${sum.steps} steps)`);
    const first = caught[0]!;
    assert.ok(first.replay.includes(`--mutation ${b.mutation}`));
  });
}
