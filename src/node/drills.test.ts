import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { DrillsMachine } from '../state/index.js';
import { NodeDrills, type NodeDrillsOptions } from './drills.js';
import { NodeError } from './errors.js';

function drills(enabled: boolean, over: Partial<NodeDrillsOptions> = {}): { d: NodeDrills; dropped: boolean[] } {
  const dropped: boolean[] = [];
  const d = new NodeDrills({
    config: { drills: { enabled, rtoTargetMs: 4321, maxIntervalHours: 0 }, node: { nodeName: 'n1' } as NodeDrillsOptions['config']['node'] },
    log: pino({ level: 'silent' }), machine: new DrillsMachine(), appliedIndex: () => 0, isLeader: () => false,
    notLeader: () => new NodeError('not_leader', 'n2 leads', { leaderName: 'n2' }), term: () => 3, featureLevel: () => 2,
    proposeEnvelope: async () => ({ revision: 0 }), switchover: async () => ({ to: 'n2' }), dropPeerTraffic: (on) => { dropped.push(on); },
    ...over,
  });
  return { d, dropped };
}

test('drill faults: refused with drills_disabled (naming drills.enabled) unless the node\'s config enables them, dry run included', async () => {
  const { d } = drills(false);
  for (const fault of ['crash', 'pause', 'isolate', 'switchover'] as const) {
    await assert.rejects(d.fault({ fault, durationMs: 1000, dryRun: fault === 'crash' }), (e: unknown) => e instanceof NodeError && e.code === 'drills_disabled' && /drills\.enabled is false in n1's config/.test(e.message));
  }
});

test('drill faults: a dry run does nothing and reports the RTO target; isolate drops peer traffic for the duration', async () => {
  const { d, dropped } = drills(true);
  const dry = await d.fault({ fault: 'isolate', durationMs: 50, dryRun: true });
  assert.equal(dry.result.rtoTargetMs, 4321);
  assert.equal(dry.afterAnswer, undefined);
  assert.deepEqual(dropped, []);
  const r = await d.fault({ fault: 'isolate', durationMs: 50, dryRun: false });
  assert.equal(r.result.durationMs, 50);
  assert.deepEqual(dropped, [true]);
  // One fault at a time.
  await assert.rejects(d.fault({ fault: 'isolate', durationMs: 50, dryRun: false }), /still under a drill fault/);
  const until = Date.now() + 5000;
  while (dropped.length < 2 && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
  assert.deepEqual(dropped, [true, false]);
});

test('drill faults: a switchover drill targets the leader; reports are recorded by the leader only', async () => {
  const { d } = drills(true);
  await assert.rejects(d.fault({ fault: 'switchover', durationMs: 1, dryRun: false }), /n1 is not the leader/);
  await assert.rejects(d.record('{"id":"x"}'), (e: unknown) => e instanceof NodeError && e.code === 'not_leader');
  const { d: leader } = drills(true, { isLeader: () => true });
  const sw = await leader.fault({ fault: 'switchover', durationMs: 1, dryRun: false });
  assert.equal(sw.result.newLeader, 'n2');
  assert.equal(sw.result.wasLeader, true);
});
