// The witness simulator's CI budget (seconds): two- and three-node clusters
// in witness mode, with and without inSyncDegrade, under the usual faults,
// no violation; and each planted bug caught by a safety oracle (not by the
// liveness check) within a fixed seed budget. Every run's clocks (each node's
// and the witness's) run at their own rate within the bound ρ; the drift
// check spreads them over 3ρ, past the bound the leader's deadline assumes,
// and the lease oracle must see a leader outlive its lease. Campaigns:
// `npm run sim:witness`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runWitnessSim, type WitnessSimMutation } from './witness-sim.js';

const CLEAN: readonly { nodes: number; degrade: boolean; from: number; seeds: number }[] = [
  { nodes: 2, degrade: false, from: 1, seeds: 12 },
  { nodes: 2, degrade: true, from: 1, seeds: 12 },
  { nodes: 3, degrade: false, from: 1, seeds: 6 },
  { nodes: 3, degrade: true, from: 1, seeds: 6 },
];

for (const c of CLEAN) {
  test(`witness sim: ${c.nodes} nodes${c.degrade ? ', inSyncDegrade' : ''}, seeds ${c.from}..${c.from + c.seeds - 1}: no violation`, () => {
    let acked = 0;
    let appointments = 0;
    let readsWithNodeDown = 0;
    for (let s = c.from; s < c.from + c.seeds; s++) {
      const r = runWitnessSim({ seed: s, nodes: c.nodes, degrade: c.degrade });
      assert.deepEqual(r.violations, [], `seed ${s}: ${r.violations.map((v) => `${v.oracle}: ${v.message} (${v.replay})`).join('\n')}`);
      acked += r.acked;
      appointments += r.appointments;
      readsWithNodeDown += r.readsWithNodeDown;
    }
    // The runs did something: writes acknowledged and leadership moved through the witness.
    assert.ok(acked > c.seeds * 50, `only ${acked} writes acknowledged`);
    assert.ok(appointments > c.seeds, `only ${appointments} appointments`);
    // Linearizable reads go on with a node down (default mode: once the in-sync set is the leader alone), checked above.
    assert.ok(readsWithNodeDown > c.seeds, `only ${readsWithNodeDown} linearizable reads answered with a node down`);
  });
}

// Regression (found by the two-leaders oracle, seed 904): the witness lost its record while the leader was cut off
// from it, and the operator confirmed on the other node 0.1 s before the old leader's own deadline. Confirm used to
// let that node take the lease at once (two leaders acting together); it now holds every node off for one TTL.
test('witness sim: a confirm right after the witness lost its record does not let a second leader act beside a cut-off one (seed 904)', () => {
  const r = runWitnessSim({ seed: 904, nodes: 2, degrade: true });
  assert.deepEqual(r.violations, [], r.violations.map((v) => `${v.oracle}: ${v.message} (${v.replay})`).join('\n'));
  assert.ok(r.appointments > 0);
});

// The in-sync-set mutations run on one shared clock (drift 0), the schedule their seed budgets were found on:
// their catch depends on timing (commitBeforeShrinkCas is caught on 3 or 4 of seeds 1–200 with drift 0, none of 1–100
// with drift 1; which seeds moved when the leader began to send one read round at a time: 18, 155, 163, 191 before,
// 72, 166, 191 after), so it runs all 200.
const MUTATIONS: readonly { mutation?: WitnessSimMutation; drift: number; name: string; from: number; seeds: number }[] = [
  { mutation: 'promoteOutsideInSync', drift: 0, name: 'promoteOutsideInSync', from: 1, seeds: 30 },
  { mutation: 'shrinkWithoutCas', drift: 0, name: 'shrinkWithoutCas', from: 1, seeds: 30 },
  { mutation: 'commitBeforeShrinkCas', drift: 0, name: 'commitBeforeShrinkCas', from: 1, seeds: 200 },
  // Clock rates spread over 3ρ: the (1+ρ) margin of the leader's deadline no longer covers them (first caught at seed 11).
  { drift: 3, name: 'clock drift 3ρ (past the bound)', from: 1, seeds: 40 },
];

for (const m of MUTATIONS) {
  test(`witness sim mutation ${m.name} is caught by a safety oracle within seeds ${m.from}..${m.from + m.seeds - 1}`, () => {
    for (let s = m.from; s < m.from + m.seeds; s++) {
      const r = runWitnessSim({ seed: s, nodes: 2, degrade: true, ...(m.mutation ? { mutation: m.mutation } : {}), drift: m.drift });
      const safety = r.violations.filter((v) => v.oracle !== 'liveness');
      if (safety.length > 0) {
        assert.match(safety[0]!.replay, m.mutation ? new RegExp(`--mutation ${m.mutation}`) : new RegExp(`--drift ${m.drift}`));
        if (!m.mutation) assert.equal(safety[0]!.oracle, 'lease', safety[0]!.message);
        return;
      }
    }
    assert.fail(`${m.name} survived seeds ${m.from}..${m.from + m.seeds - 1}`);
  });
}
