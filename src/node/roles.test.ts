// The role vocabulary (docs/concepts.md "Roles"), row by row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configRole, memberRole, statusRole } from './roles.js';

const none = { leads: false, catchingUp: false, campaigning: false };

test('config role -> membership role -> config word', () => {
  assert.equal(memberRole('voter'), 'voter');
  assert.equal(memberRole('observer'), 'observer');
  assert.equal(memberRole('dr'), 'learner');
  assert.equal(memberRole(''), undefined);
  assert.equal(memberRole(undefined), undefined);
  for (const r of ['voter', 'observer', 'dr'] as const) assert.equal(configRole(memberRole(r)!), r);
});

test('membership role + facts -> status role, as in the table', () => {
  assert.equal(statusRole('voter', none), 'standby');
  assert.equal(statusRole('voter', { ...none, leads: true }), 'primary');
  assert.equal(statusRole('voter', { ...none, campaigning: true }), 'candidate');
  assert.equal(statusRole('observer', none), 'observer');
  assert.equal(statusRole('observer', { ...none, campaigning: true }), 'observer');
  assert.equal(statusRole('learner', none), 'dr');
  assert.equal(statusRole('learner', { ...none, catchingUp: true }), 'rejoining');
  assert.equal(statusRole(undefined, { ...none, leads: true }), 'removed');
});
