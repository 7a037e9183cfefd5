import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reportMarkdown, summarize, type DrillReport, type DrillRoundReport } from './report.js';

const round = (over: Partial<DrillRoundReport> = {}): DrillRoundReport => ({
  round: 1, target: 'n1', targetWasLeader: true, leaderBefore: 'n1', termBefore: 2, leaderAfter: 'n2', termAfter: 3, faultAt: '2026-01-01T00:00:00.000Z',
  detectMs: 200, newLeaderMs: 250, rtoMs: 300, readRecoveryMs: 320, writesAcked: 100, writesUnknown: 1, unknownApplied: 1, writesFailed: 0,
  readsOk: 50, readsFailed: 0, lost: 0, rejoinMs: 5000, passed: true, notes: [], ...over,
});

test('summarize: passes only when every round met the RTO target and lost nothing; names each failure', () => {
  assert.deepEqual(summarize([round(), round({ round: 2, rtoMs: 100 })], 1000), { roundsRun: 2, rtoMsMax: 300, rtoMsAvg: 200, lostTotal: 0, unknownTotal: 2, passed: true, failures: [] });
  const bad = summarize([round({ rtoMs: 1500 }), round({ round: 2, lost: 2 }), round({ round: 3, rtoMs: null })], 1000);
  assert.equal(bad.passed, false);
  assert.equal(bad.lostTotal, 2);
  assert.deepEqual(bad.failures, [
    'round 1: RTO 1500 ms is above the target drills.rtoTargetMs = 1000 ms',
    'round 2: 2 acknowledged write(s) lost (RPO must be 0)',
    'round 3: no write was acknowledged after the fault (RTO unknown, target 1000 ms)',
  ]);
  const stopped = summarize([round()], 1000, ['round 2 did not run: x']);
  assert.equal(stopped.passed, false);
  assert.deepEqual(stopped.failures, ['round 2 did not run: x']);
  assert.equal(summarize([], 1000).passed, false);
});

test('reportMarkdown: one table row per round, the summary, failures and notes', () => {
  const rounds = [round(), round({ round: 2, target: 'n3', targetWasLeader: false, leaderAfter: 'n1', newLeaderMs: null, lost: 1, passed: false, notes: ['n3 did not rejoin'] })];
  const r: DrillReport = {
    id: 'd1', runner: 'cli', startedAt: 's', finishedAt: 'f', kill: 'leader', fault: 'pause', durationMs: 4000, intervalMs: 0, rtoTargetMs: 1000, forced: false,
    rounds, summary: summarize(rounds, 1000),
  };
  const md = reportMarkdown(r);
  assert.match(md, /^### Drill d1: pause of leader, 2 round\(s\), FAILED/);
  assert.match(md, /fault duration 4000 ms/);
  assert.match(md, /^\| 1 \| n1 \(leader\) \| n1 → n2 \| 200 \| 250 \| 300 \| 320 \| 100 \| 1 \(1\) \| 0 \| 0 \| 5000 \| ok \|$/m);
  assert.match(md, /^\| 2 \| n3 \| n1 → n1 \| 200 \| - \| 300 \| 320 \| 100 \| 1 \(1\) \| 0 \| 1 \| 5000 \| FAILED \|$/m);
  assert.match(md, /- FAILED: round 2: 1 acknowledged write\(s\) lost/);
  assert.match(md, /- round 2: n3 did not rejoin/);
});
