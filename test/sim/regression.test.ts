// Every seed that once failed, by name. Each replays exactly (determinism), so
// a fix stays fixed; "why" says what it caught. Seeds found with earlier
// simulator builds replay a different trace now but stay as extra coverage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatViolation, runSeed } from './cluster.js';

const REGRESSIONS: readonly { name: string; seed: number; nodes: number; why: string }[] = [
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
];

for (const r of REGRESSIONS) {
  test(`regression ${r.name} (seed ${r.seed}, ${r.nodes} nodes)`, async () => {
    const res = await runSeed({ seed: r.seed, nodes: r.nodes });
    assert.equal(res.violation, undefined, res.violation ? `${r.why}\n${formatViolation(res.violation)}` : '');
  });
}
