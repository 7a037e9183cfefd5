// The drill, certificate, peer and leader-safety metrics as Prometheus text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsRegistry } from '../ops/metrics.js';
import { drillSchedule } from '../drill/schedule.js';
import type { NodeStatus, VipView } from '../api/ports.js';
import { MachineRegistry } from '../state/index.js';
import { certificateGauges, drillGauges, metricsText, nodeMetrics, peerRttGauge, peerTrafficCounters } from './node-metrics.js';

const NOW = Date.parse('2026-11-30T12:00:00Z');
const rec = (at: number, passed: boolean, lost = 0) => ({ at, report: JSON.stringify({ id: 'd', rtoTargetMs: 15000, summary: { passed, lostTotal: lost, rtoMsMax: 2500, failures: [] } }) });

test('drill gauges: the period, the last passing drill, the last drill and its result; zeros when none is kept', async () => {
  const m = new MetricsRegistry();
  drillGauges(m, drillSchedule([], 0, NOW));
  let t = await m.text();
  for (const line of ['quorate_drill_period_seconds 0', 'quorate_drill_last_success_timestamp_seconds 0', 'quorate_drill_last_timestamp_seconds 0', 'quorate_drill_last_passed 0', 'quorate_drill_last_lost_writes 0', 'quorate_drill_last_rto_seconds 0']) {
    assert.ok(t.includes(`\n${line}\n`), `${line} in\n${t}`);
  }
  drillGauges(m, drillSchedule([rec(NOW - 7_200_000, true), rec(NOW - 3_600_000, false, 2)], 168, NOW));
  t = await m.text();
  for (const line of ['quorate_drill_period_seconds 604800', `quorate_drill_last_success_timestamp_seconds ${(NOW - 7_200_000) / 1000}`, `quorate_drill_last_timestamp_seconds ${(NOW - 3_600_000) / 1000}`, 'quorate_drill_last_passed 0', 'quorate_drill_last_lost_writes 2', 'quorate_drill_last_rto_seconds 2.5']) {
    assert.ok(t.includes(`\n${line}\n`), `${line} in\n${t}`);
  }
  assert.match(t, /# TYPE quorate_drill_last_success_timestamp_seconds gauge/);
});

test('certificate gauges: one series per readable certificate (an unreadable one is left out), the renewal period of auto ones; a gone certificate disappears', async () => {
  const m = new MetricsRegistry();
  certificateGauges(m, [
    { cert: 'peer+api', source: 'auto', file: null, notAfter: '2027-01-29T00:00:00.000Z', subject: 'CN=n1', renewPeriodSeconds: 2_592_000 },
    { cert: 'api', source: 'file', file: '/etc/q/api.crt', notAfter: null, subject: null, error: 'cannot read /etc/q/api.crt: ENOENT' },
  ]);
  let t = await m.text();
  assert.ok(t.includes(`quorate_certificate_expiry_timestamp_seconds{cert="peer+api",source="auto",file=""} ${Date.parse('2027-01-29T00:00:00Z') / 1000}\n`), t);
  assert.ok(t.includes('quorate_certificate_renew_period_seconds{cert="peer+api"} 2592000\n'), t);
  assert.doesNotMatch(t, /api\.crt/);
  certificateGauges(m, [{ cert: 'peer', source: 'file', file: '/etc/q/peer.crt', notAfter: '2026-12-10T00:00:00.000Z', subject: 'CN=n1' }]);
  t = await m.text();
  assert.doesNotMatch(t, /^quorate_certificate_\w+\{cert="peer\+api"/m);
  assert.ok(t.includes('quorate_certificate_expiry_timestamp_seconds{cert="peer",source="file",file="/etc/q/peer.crt"}'), t);
});

const status = (over: Partial<NodeStatus> = {}): NodeStatus => ({
  id: 1, nodeName: 'n1', haId: 'h', role: 'primary', raftRole: 'leader', term: 2, leaderId: 1, leaderName: 'n1', leaderApiUrl: undefined,
  commitIndex: 1, appliedIndex: 1, lastIndex: 1, firstIndex: 1, snapshotIndex: 0, revision: 1, quorumMet: true, votersReachable: 3, votersTotal: 3, writeQuorum: 2,
  failureTolerance: 1, peers: [], storageHealthy: true, storageError: undefined, splitBrainWarning: undefined, startedAt: '', version: '', featureLevel: 2, ...over,
});
const vip = (holding: boolean): VipView => ({ address: '10.0.0.9/24', interface: 'eth0', script: '', state: holding ? 'holding' : 'standby', holding, leaseSeconds: 10 });

test('failover-safe, VIP held and pending proposals gauges: from the node; no VIP series without a virtual IP', async () => {
  const m = new MetricsRegistry();
  const machines = new MachineRegistry();
  let t = await metricsText(m, status(), machines, undefined, undefined, { failoverSafe: true, pendingProposals: 7 });
  assert.ok(t.includes('\nquorate_failover_safe 1\n'), t);
  assert.ok(t.includes('\nquorate_proposals_pending 7\n'), t);
  assert.doesNotMatch(t, /quorate_vip_held/);
  t = await metricsText(m, status({ raftRole: 'follower', vip: vip(false) }), machines, undefined, undefined, { pendingProposals: 0 });
  assert.ok(t.includes('\nquorate_failover_safe 0\n'), t);
  assert.ok(t.includes('\nquorate_vip_held 0\n'), t);
  t = await metricsText(m, status({ vip: vip(true) }), machines);
  assert.ok(t.includes('\nquorate_vip_held 1\n'), t);
  assert.match(t, /# HELP quorate_failover_safe Leader only/);
});

test('peer byte counters add what the transport totals grew by, and never go back when a link starts again at 0', async () => {
  const m = new MetricsRegistry();
  peerTrafficCounters(m, [{ peer: 'n2', sentBytes: 100, receivedBytes: 40 }, { peer: 'n3', sentBytes: 0, receivedBytes: 0 }]);
  let t = await m.text();
  assert.ok(t.includes('quorate_peer_sent_bytes_total{peer="n2"} 100\n'), t);
  assert.ok(t.includes('quorate_peer_received_bytes_total{peer="n2"} 40\n'), t);
  assert.ok(t.includes('quorate_peer_sent_bytes_total{peer="n3"} 0\n'), t);
  assert.match(t, /# TYPE quorate_peer_sent_bytes_total counter/);
  peerTrafficCounters(m, [{ peer: 'n2', sentBytes: 250, receivedBytes: 40 }]);
  peerTrafficCounters(m, [{ peer: 'n2', sentBytes: 30, receivedBytes: 5 }]); // the link was made anew
  t = await m.text();
  assert.ok(t.includes('quorate_peer_sent_bytes_total{peer="n2"} 280\n'), t);
  assert.ok(t.includes('quorate_peer_received_bytes_total{peer="n2"} 45\n'), t);
});

test('peer round trip gauge: seconds of the newest answered ping; a peer that did not answer has no series', async () => {
  const m = new MetricsRegistry();
  peerRttGauge(m, [{ nodeName: 'n2', ms: 1.5, at: '' }, { nodeName: 'n3', ms: null, at: '', error: 'no answer within 2000 ms' }]);
  let t = await m.text();
  assert.ok(t.includes('quorate_peer_round_trip_seconds{peer="n2"} 0.0015\n'), t);
  assert.doesNotMatch(t, /peer="n3"/);
  peerRttGauge(m, [{ nodeName: 'n3', ms: 20, at: '' }]);
  t = await m.text();
  assert.doesNotMatch(t, /peer="n2"/);
  assert.ok(t.includes('quorate_peer_round_trip_seconds{peer="n3"} 0.02\n'), t);
});

test('snapshot metrics: a duration histogram and the newest size, by kind', async () => {
  const m = new MetricsRegistry();
  const { replica } = nodeMetrics(m);
  replica.snapshot?.('take', 0.2, 4096);
  replica.snapshot?.('take', 0.3, 8192);
  replica.snapshot?.('install', 1.2, 10000);
  const t = await m.text();
  assert.ok(t.includes('quorate_snapshot_duration_seconds_count{kind="take"} 2\n'), t);
  assert.ok(t.includes('quorate_snapshot_duration_seconds_count{kind="install"} 1\n'), t);
  assert.ok(t.includes('quorate_snapshot_bytes{kind="take"} 8192\n'), t);
  assert.ok(t.includes('quorate_snapshot_bytes{kind="install"} 10000\n'), t);
});
