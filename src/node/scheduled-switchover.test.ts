import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { parseSwitchover, parseSwitchoverAt } from '../api/validate.js';
import { NodeError } from './errors.js';
import { SwitchoverScheduler } from './scheduled-switchover.js';

const log = pino({ level: 'silent' });
const notLeader = () => new NodeError('not_leader', 'not the leader');

test('switchover --at: ISO times with a zone and +DURATION parse; anything else is refused', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');
  assert.equal(parseSwitchoverAt('2026-12-01T02:00:00Z', now), Date.parse('2026-12-01T02:00:00Z'));
  assert.equal(parseSwitchoverAt('2026-12-01T03:00:00+01:00', now), Date.parse('2026-12-01T02:00:00Z'));
  assert.equal(parseSwitchoverAt('+10m', now), now + 600_000);
  assert.equal(parseSwitchoverAt('+1.5s', now), now + 1500);
  assert.equal(parseSwitchoverAt('+250ms', now), now + 250);
  assert.equal(parseSwitchoverAt('+2h', now), now + 7_200_000);
  for (const bad of ['2026-12-01T02:00:00', '2026-12-01', 'tomorrow', '10m', '+10d', '+', '2026-13-45T99:00:00Z']) assert.equal(parseSwitchoverAt(bad, now), undefined, bad);
  assert.deepEqual(parseSwitchover({ to: 'node2', at: '+1s' }), { to: 'node2', at: '+1s' });
  assert.throws(() => parseSwitchover({ at: 'soon' }), /at: must be an ISO 8601 time/);
  assert.throws(() => parseSwitchover({ when: '+1s' }), /unknown field/);
});

test('scheduler: runs the switchover at the time, one at a time, cancellable; leader only; a leadership loss cancels it', async () => {
  const calls: (string | undefined)[] = [];
  let fail = false;
  const s = new SwitchoverScheduler({
    log, nodeName: 'node1', notLeader,
    switchover: async (to) => {
      calls.push(to);
      if (fail) throw new NodeError('target_not_caught_up', 'node3 is not caught up: 42 entries and 1500 ms behind');
      return { from: 'node1', to: to ?? 'node2', term: 3, pauseMs: 12 };
    },
    checkTarget: (to) => { if (to === 'nope') throw new NodeError('invalid_transfer', 'no member named "nope"'); },
  });
  assert.throws(() => s.schedule(Date.now() + 1000, undefined), { code: 'not_leader' });
  s.start();
  assert.throws(() => s.schedule(Date.now() - 5000, undefined), /in the past/);
  assert.throws(() => s.schedule(Date.now() + 8 * 24 * 3600_000, undefined), /more than 7 days ahead/);
  assert.throws(() => s.schedule(Date.now() + 1000, 'nope'), { code: 'invalid_transfer' });
  const p = s.schedule(Date.now() + 60, 'node2', 'admin');
  assert.equal(s.current().scheduled, p);
  assert.throws(() => s.schedule(Date.now() + 60, undefined), { code: 'switchover_scheduled' });
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(calls, ['node2']);
  assert.equal(s.current().scheduled, undefined);
  assert.equal(s.current().last?.outcome.ok, true);
  assert.equal(s.current().last?.outcome.to, 'node2');

  // Cancelled: never runs.
  s.schedule(Date.now() + 60, undefined);
  assert.equal(s.cancel('admin')?.to, undefined);
  assert.equal(s.cancel('admin'), undefined);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(calls.length, 1);

  // A failure is recorded with its code.
  fail = true;
  s.schedule(Date.now() + 10, 'node3');
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(s.current().last?.outcome.ok, false);
  assert.equal(s.current().last?.outcome.error?.code, 'target_not_caught_up');

  // Leadership lost: the pending one is cancelled.
  s.schedule(Date.now() + 60, 'node2');
  s.stop();
  assert.throws(() => s.current(), { code: 'not_leader' });
  s.start();
  assert.equal(s.current().scheduled, undefined);
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(calls.length, 2);
});
