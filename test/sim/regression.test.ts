// quorate-test: serial (CPU-bound simulator seeds; see scripts/run-tests.mjs)
// Every seed that once failed, by name. Each replays exactly (determinism), so
// a fix stays fixed; "why" says what it caught. Seeds found with earlier
// simulator builds replay a different trace now but stay as extra coverage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatViolation, runSeed, type SimScenario } from './cluster.js';

const REGRESSIONS: readonly { name: string; seed: number; nodes: number; why: string; scenario?: SimScenario }[] = [
  { name: 'stale-read-answered-to-later-op', seed: 4, nodes: 7, why: 'sim bug: a ReadState for a timed-out read answered the client\'s next read' },
  { name: 'replicate-stall-after-lost-appends-3', seed: 13, nodes: 3, why: 'F1: follower stuck in replicate with full inflights (found before the sim reported unreachable peers)' },
  { name: 'replicate-stall-after-lost-appends-7', seed: 28, nodes: 7, why: 'F1: follower stuck in replicate with full inflights' },
  { name: 'replicate-stall-needs-snapshot', seed: 31, nodes: 3, why: 'F1: stalled follower is behind the leader\'s compacted log' },
  { name: 'replicate-stall-two-followers', seed: 20, nodes: 5, why: 'F1: two followers stalled, commit stuck after heal' },
  { name: 'replicate-stall-5-40', seed: 40, nodes: 5, why: 'F1' },
  { name: 'replicate-stall-5-124', seed: 124, nodes: 5, why: 'F1' },
  { name: 'replicate-stall-3-273', seed: 273, nodes: 3, why: 'F1' },
  { name: 'replicate-stall-3-452', seed: 452, nodes: 3, why: 'F1: follower 11 entries behind, frozen' },
  { name: 'replicate-stall-5-73', seed: 73, nodes: 5, why: 'F1' },
  { name: 'replicate-stall-5-349', seed: 349, nodes: 5, why: 'F1: follower 42 entries behind, frozen' },
  { name: 'replicate-stall-3-124', seed: 124, nodes: 3, why: 'F1 after the first fix attempt (#sendAppend still returns on isPaused)' },
  { name: 'replicate-stall-3-341', seed: 341, nodes: 3, why: 'F1 after the first fix attempt; commit stuck, liveness phase missed' },
  { name: 'replicate-stall-5-243', seed: 243, nodes: 5, why: 'F1 after the first fix attempt; five followers frozen' },
  { name: 'replicate-stall-7-20', seed: 20, nodes: 7, why: 'F1 after the first fix attempt' },
  { name: 'wipe-two-voters-of-three', seed: 42, nodes: 3, scenario: 'wipe', why: 'sim bug: the operator wiped a second voter before the first had rejoined (two amnesiac voters elected an empty leader); wipes now wait for a healthy status' },
  { name: 'wipe-one-of-two-voters', seed: 51, nodes: 3, scenario: 'wipe', why: 'sim bug: wiping one of two voters leaves no quorum until the leader records it (inherent: its vote cannot count); wipes now need 3+ voters' },
  { name: 'promote-dr-sole-voter-forgot-term', seed: 9102, nodes: 5, scenario: 'promote-dr', why: 'oracle: the promoted sole voter (node 6) crashed inside the first Ready of term 4 (its term and its entries from 67 not yet durable, nothing sent: a leader sends before its own fsync only once its term is durable), restarted at term 3 and led term 4 again with another entry 69; log matching had kept the lost one. Entries that only one node wrote, of a term its restart shows it never made durable, are forgotten (GenOracles.forgetLostTerms). Found on the tenth session\'s seed 11 first, with the commit-only append change that was reverted with this refinement; 9102 fails the same way without that change' },
  { name: 'promote-dr-voter-and-observer', seed: 34, nodes: 5, scenario: 'promote-dr', why: 'liveness: the promoted voter + one observer with a longer log never elected (observers never campaigned); fixed by the observer stand-in (src/raft rawnode #mayStandIn)' },
];

for (const r of REGRESSIONS) {
  test(`regression ${r.name} (seed ${r.seed}, ${r.nodes} nodes${r.scenario !== undefined ? `, ${r.scenario}` : ''})`, async () => {
    const res = await runSeed({ seed: r.seed, nodes: r.nodes, ...(r.scenario !== undefined ? { scenario: r.scenario } : {}) });
    assert.equal(res.violation, undefined, res.violation ? `${r.why}\n${formatViolation(res.violation)}` : '');
  });
}
