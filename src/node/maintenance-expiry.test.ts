// The maintenance history records and the leader's expiry check (./maintenance-expiry.ts), and their round trip through the history machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { HISTORY_MACHINE_ID, createKvState, encodeEnvelope, encodeHistoryPayload, type HistoryCommand, type MaintenanceBy, type SettingsCommand } from '../state/index.js';
import { collectSnapshot } from '../state/snapshot.js';
import { MaintenanceExpiry, maintenanceRecord } from './maintenance-expiry.js';
import type { ModesView } from './modes.js';

test('maintenanceRecord: a pause carries its own reason and expiry; a resume by expiry the ended one\'s; failover changes are not recorded', () => {
  assert.deepEqual(maintenanceRecord({ key: 'paused', value: true, reason: 'r', expiresAt: 9 }, 'operator', undefined, 4, 100),
    { kind: 'maintenance', max: 100, term: 4, op: 'pause', nodeName: undefined, reason: 'r', by: 'operator', expiresAt: 9 });
  assert.deepEqual(maintenanceRecord({ key: 'drained', nodeName: 'n2', value: false }, 'expiry', { reason: 'disk', expiresAt: 5, since: 1 }, 4, 100),
    { kind: 'maintenance', max: 100, term: 4, op: 'undrain', nodeName: 'n2', reason: 'disk', by: 'expiry', expiresAt: 5 });
  assert.equal(maintenanceRecord({ key: 'failover', value: 'manual' }, 'operator', undefined, 1, 1), undefined);
});

test('history: maintenance records apply, survive a snapshot, and bad ones are invalid_command', async () => {
  const a = createKvState();
  const entry = (c: HistoryCommand, at: number) => encodeEnvelope({ machine: HISTORY_MACHINE_ID, at, payload: encodeHistoryPayload(c) });
  a.registry.apply(1, entry({ kind: 'maintenance', max: 10, term: 2, op: 'pause', reason: 'kernel upgrade', by: 'operator', expiresAt: 5000 }, 1000));
  a.registry.apply(2, entry({ kind: 'maintenance', max: 10, term: 2, op: 'undrain', nodeName: 'n3', by: 'expiry' }, 2000));
  const recs = a.history.records();
  assert.deepEqual(recs.map((r) => (r.kind === 'maintenance' ? [r.op, r.by, r.reason, r.nodeName, r.expiresAt] : [])), [['pause', 'operator', 'kernel upgrade', undefined, 5000], ['undrain', 'expiry', undefined, 'n3', undefined]]);
  const b = createKvState();
  const bytes = await collectSnapshot(a.registry.snapshot('composite'));
  await b.registry.restore((async function* () { yield bytes; })());
  assert.deepEqual(b.history.records(), recs);
  assert.throws(() => encodeHistoryPayload({ kind: 'maintenance', max: 10, term: 2, op: 'drain', by: 'operator' }), /nodeName/);
  assert.throws(() => encodeHistoryPayload({ kind: 'maintenance', max: 10, term: 2, op: 'pause', by: 'whim' as MaintenanceBy }), /by/);
});

test('MaintenanceExpiry.tick: ends an expired pause and expired drains once each, on the leader only', async () => {
  const proposed: [SettingsCommand, MaintenanceBy][] = [];
  let leader = true;
  let now = 10_000;
  const view: ModesView = {
    failoverMode: 'automatic', failoverModeSource: 'file', paused: true, drained: ['n2', 'n3'], autoFailover: false, notice: undefined,
    pause: { reason: 'kernel', expiresAt: 12_000, since: 1 },
    drains: { n2: { reason: 'disk', expiresAt: 11_000, since: 1 }, n3: { reason: 'no expiry', since: 1 } },
  };
  let release: () => void = () => {};
  const e = new MaintenanceExpiry({
    log: pino({ level: 'silent' }), historyMax: 10, isLeader: () => leader, featureLevel: () => 3, term: () => 1, modes: () => view, now: () => now,
    proposeSetting: (c, by) => {
      proposed.push([c, by]);
      return new Promise<void>((r) => { release = r; });
    },
    proposeEntry: () => Promise.resolve(),
  });
  e.tick();
  assert.equal(proposed.length, 0, 'nothing expired yet');
  now = 11_500;
  e.tick();
  e.tick();
  assert.deepEqual(proposed, [[{ key: 'drained', nodeName: 'n2', value: false }, 'expiry']], 'the drain of n2 once, while its proposal is in flight');
  release();
  await new Promise((r) => setImmediate(r));
  leader = false;
  now = 13_000;
  e.tick();
  assert.equal(proposed.length, 1, 'a follower ends nothing');
  leader = true;
  e.tick();
  assert.deepEqual(proposed.map(([c]) => c.key === 'drained' ? `drain ${c.nodeName}` : c.key), ['drain n2', 'paused', 'drain n2'], 'the pause; n2 again since the view still shows it drained; never n3');
});
