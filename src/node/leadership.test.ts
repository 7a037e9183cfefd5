import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderServices, RaftLeadership, type LeaderService } from './leadership.js';
import { captureLogger } from '../../test/support/log.js';

function recorder(name: string): LeaderService & { events: string[] } {
  const events: string[] = [];
  return { name, events, start: (term) => events.push(`start ${term}`), stop: () => events.push('stop') };
}

test('leader services run only while this node leads with a quorum, started with the term as fencing token', () => {
  const lead = new RaftLeadership();
  const services = new LeaderServices(lead, captureLogger());
  const a = recorder('a');
  services.add(a);
  assert.deepEqual(a.events, [], 'a follower runs nothing');
  lead.update({ leading: true, term: 3, quorum: false });
  assert.deepEqual(a.events, [], 'leading without a quorum runs nothing');
  lead.update({ leading: true, term: 3, quorum: true });
  assert.deepEqual(a.events, ['start 3']);
  lead.update({ leading: true, term: 3, quorum: true });
  assert.deepEqual(a.events, ['start 3'], 'no restart without a change');
  lead.update({ leading: true, term: 3, quorum: false });
  assert.deepEqual(a.events, ['start 3', 'stop'], 'stopped when the quorum is lost');
  lead.update({ leading: true, term: 3, quorum: true });
  lead.update({ leading: true, term: 5, quorum: true });
  assert.deepEqual(a.events, ['start 3', 'stop', 'start 3', 'stop', 'start 5'], 'a new term restarts with the new token');
  lead.update({ leading: false, term: 6, quorum: false });
  assert.deepEqual(a.events.at(-1), 'stop', 'stopped when leadership is lost');
});

test('a service added while leading starts at once; close stops everything; a failing service does not stop the others', () => {
  const lead = new RaftLeadership();
  const log = captureLogger();
  const services = new LeaderServices(lead, log);
  lead.update({ leading: true, term: 2, quorum: true });
  const bad: LeaderService = { name: 'bad', start: () => { throw new Error('boom'); }, stop: () => undefined };
  const b = recorder('b');
  services.add(bad);
  services.add(b);
  assert.deepEqual(b.events, ['start 2']);
  assert.ok(log.lines.some((l) => l['event'] === 'leader_service_failed' && l['service'] === 'bad'));
  services.close();
  assert.deepEqual(b.events, ['start 2', 'stop']);
  lead.update({ leading: true, term: 9, quorum: true });
  assert.deepEqual(b.events, ['start 2', 'stop'], 'closed: no longer follows leadership');
});

test('an observer standing in as leader runs no leader services (it only hands over to a voter)', () => {
  const lead = new RaftLeadership();
  const services = new LeaderServices(lead, captureLogger());
  const a = recorder('a');
  services.add(a);
  const membership = { members: [{ id: 1, role: 'voter' as const }, { id: 2, role: 'voter' as const }, { id: 3, role: 'observer' as const }], removed: [] };
  lead.updateFrom({ id: 3, role: 'leader', term: 4, reachableVoters: 2, membership });
  assert.deepEqual(a.events, [], 'the stand-in observer starts nothing');
  assert.equal(lead.current().leading, false);
  lead.updateFrom({ id: 1, role: 'leader', term: 5, reachableVoters: 2, membership });
  assert.deepEqual(a.events, ['start 5'], 'a voter leading with a quorum does');
});
