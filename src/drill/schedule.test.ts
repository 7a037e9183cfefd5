import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drillSchedule, spanText } from './schedule.js';

const H = 3_600_000;
const rec = (at: number, passed: boolean, extra: Record<string, unknown> = {}) => ({ at, report: JSON.stringify({ id: `d-${at}`, rtoTargetMs: 5000, summary: { passed, lostTotal: passed ? 0 : 1, rtoMsMax: 1200, failures: passed ? [] : ['round 1: 1 acknowledged write(s) lost (RPO must be 0)'] }, ...extra }) });

test('drillSchedule: the newest report, the newest passing one, when the next is due and whether it is overdue', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');
  assert.deepEqual(drillSchedule([], 0, now), { maxIntervalHours: 0, last: null, lastPassedAt: null, dueAt: null, overdue: false });
  assert.equal(drillSchedule([], 24, now).overdue, true, 'a period and no drill at all: overdue');
  const s = drillSchedule([rec(now - 50 * H, true), rec(now - 10 * H, true), rec(now - H, false)], 24, now);
  assert.deepEqual(s.last, { id: `d-${now - H}`, at: new Date(now - H).toISOString(), passed: false, lost: 1, rtoMsMax: 1200, rtoTargetMs: 5000, failures: ['round 1: 1 acknowledged write(s) lost (RPO must be 0)'] });
  assert.equal(s.lastPassedAt, new Date(now - 10 * H).toISOString());
  assert.equal(s.dueAt, new Date(now + 14 * H).toISOString());
  assert.equal(s.overdue, false);
  assert.equal(drillSchedule([rec(now - 25 * H, true)], 24, now).overdue, true);
  assert.equal(drillSchedule([rec(now - 25 * H, true)], 0, now).overdue, false, 'no period: never overdue');
  // A record that is not a drill report (an admin may keep any JSON object) is skipped.
  const odd = [rec(now - 2 * H, true), { at: now - H, report: '{"note":"not a report"}' }, { at: now - H, report: 'not json' }];
  assert.equal(drillSchedule(odd, 24, now).last?.at, new Date(now - 2 * H).toISOString());
});

test('spanText', () => {
  assert.equal(spanText(40 * 60_000), '40 min');
  assert.equal(spanText(5 * H + 12 * 60_000), '5 h 12 min');
  assert.equal(spanText(76 * H), '3 d 4 h');
});
