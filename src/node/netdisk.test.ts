// The fsync histogram deltas of the network and disk view, and the leadership changes a node sees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsRegistry } from '../ops/metrics.js';
import type { NodeStatus } from '../api/ports.js';
import { fsyncDelta, parseHistogram } from './netdisk.js';
import { LeaderWatch } from './leader-watch.js';

test('parseHistogram and fsyncDelta: count, mean and the p99 bucket bound of one interval', async () => {
  const m = new MetricsRegistry();
  const h = m.histogram('quorate_fsync_latency_seconds', 'x', [0.001, 0.01, 0.1]);
  for (let i = 0; i < 10; i++) h.observe(0.0005);
  const a = parseHistogram(await m.text(), 'quorate_fsync_latency_seconds')!;
  assert.equal(a.count, 10);
  for (let i = 0; i < 98; i++) h.observe(0.005);
  h.observe(0.05);
  h.observe(0.05);
  const b = parseHistogram(await m.text(), 'quorate_fsync_latency_seconds')!;
  const d = fsyncDelta(a, b, 'T');
  assert.equal(d.count, 100);
  assert.equal(d.p99UpperMs, 100, '2 of 100 above 10 ms: the 99th percentile lies under the 100 ms bound');
  assert.ok(Math.abs(d.meanMs! - (98 * 5 + 2 * 50) / 100) < 0.01);
  assert.deepEqual(fsyncDelta(b, b, 'T'), { at: 'T', count: 0, meanMs: null, p99UpperMs: null });
  assert.equal(parseHistogram('nothing', 'quorate_fsync_latency_seconds'), undefined);
});

test('the sampler reads the fsync histogram alone: metricText renders one metric, and nothing for an unknown name', async () => {
  const m = new MetricsRegistry({ processMetrics: true });
  const h = m.histogram('quorate_fsync_latency_seconds', 'x', [0.001, 0.01]);
  m.counter('quorate_other_total', 'y').inc();
  h.observe(0.005);
  const text = await m.metricText('quorate_fsync_latency_seconds');
  assert.equal(parseHistogram(text, 'quorate_fsync_latency_seconds')?.count, 1);
  assert.ok(!text.includes('quorate_other_total') && !text.includes('process_'), text);
  assert.equal(await m.metricText('quorate_missing_seconds'), '');
});

test('LeaderWatch: a change is recorded with the time no working leader was seen; a leader without quorum is not working', () => {
  let st = { leaderId: 1, leaderName: 'n1', raftRole: 'follower', quorumMet: true, term: 2 } as unknown as NodeStatus;
  const w = new LeaderWatch(() => st);
  w.poll(1000);
  st = { ...st, leaderId: 0, leaderName: undefined } as NodeStatus;
  w.poll(1100);
  w.poll(1200);
  st = { ...st, leaderId: 2, leaderName: 'n2', raftRole: 'leader', quorumMet: false, term: 3 } as NodeStatus;
  w.poll(1300);
  assert.deepEqual(w.changes(), [], 'leading without a quorum is no working leader yet');
  st = { ...st, quorumMet: true } as NodeStatus;
  w.poll(1450);
  w.poll(1550);
  assert.deepEqual(w.changes(), [{ term: 3, from: 'n1', to: 'n2', at: new Date(1450).toISOString(), noLeaderMs: 450, pollMs: 100 }]);
});
