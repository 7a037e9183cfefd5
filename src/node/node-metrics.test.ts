// The drill and certificate gauges as Prometheus text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsRegistry } from '../ops/metrics.js';
import { drillSchedule } from '../drill/schedule.js';
import { certificateGauges, drillGauges } from './node-metrics.js';

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
