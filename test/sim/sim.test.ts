// The CI seed budget: fixed seeds for 3, 5 and 7 nodes, every oracle on, and
// the determinism check. A failure prints each violation with its seed and a
// one-line replay command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed } from './cluster.js';
import { formatViolation, runCampaign, type CampaignOptions } from './campaign.js';

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

async function assertClean(o: CampaignOptions): Promise<void> {
  const details: string[] = [];
  const sum = await runCampaign(o, (v) => details.push(formatViolation(v)));
  const head = `${sum.seedsRun} seeds, ${sum.steps} steps, ${sum.opsChecked} ops checked, ${sum.stepsPerSecond} steps/s`;
  assert.equal(sum.violations.length, 0, `${head}\n${details.join('\n\n')}`);
  assert.equal(sum.linearizabilityGaveUp, 0, `${head}: the linearizability search gave up on some seed`);
  assert.ok(sum.opsChecked > sum.seedsRun * 20, `${head}: too few client ops completed`);
}

test('3 nodes: seeds 1..400', () => assertClean({ seeds: range(1, 400), nodes: 3 }));
test('5 nodes: seeds 1..250', () => assertClean({ seeds: range(1, 250), nodes: 5 }));
test('7 nodes: seeds 1..60', () => assertClean({ seeds: range(1, 60), nodes: 7 }));

test('same seed, same trace; another seed, another trace', async () => {
  for (const nodes of [3, 5]) {
    const a = await runSeed({ seed: 4242, nodes });
    const b = await runSeed({ seed: 4242, nodes });
    assert.equal(a.traceHash, b.traceHash);
    assert.equal(a.steps, b.steps);
    assert.equal(a.opsChecked, b.opsChecked);
    assert.deepEqual(a.faults, b.faults);
    const c = await runSeed({ seed: 4243, nodes });
    assert.notEqual(a.traceHash, c.traceHash);
  }
});

test('the fault mix actually injects every kind of fault', async () => {
  const sum = await runCampaign({ seeds: range(500, 30), nodes: 5 });
  for (const kind of ['crash', 'midOpCrash', 'powerLoss', 'tornWrite', 'pause', 'partition', 'oneWayPartition', 'bridgePartition', 'heal', 'weather', 'conf-add', 'conf-setRole', 'conf-remove', 'transfer', 'burst', 'leaderKill', 'manual', 'manualFailover']) {
    assert.ok((sum.faults[kind] ?? 0) > 0, `no '${kind}' fault in 30 seeds: ${JSON.stringify(sum.faults)}`);
  }
});
