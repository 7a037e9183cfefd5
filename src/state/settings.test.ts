import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createKvState } from './kv-state.js';
import { encodeEnvelope } from './envelope.js';
import { SETTINGS_MACHINE_ID, encodeSettingsPayload, type SettingsCommand } from './settings.js';

const entry = (c: SettingsCommand) => encodeEnvelope({ machine: SETTINGS_MACHINE_ID, at: 1, payload: encodeSettingsPayload(c) });

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

test('settings: applied through the registry, kept in composite snapshots, restored elsewhere', async () => {
  const a = createKvState();
  assert.deepEqual(a.settings.view, { failover: undefined, paused: false, drained: [] });
  a.registry.apply(1, entry({ key: 'failover', value: 'manual' }));
  a.registry.apply(2, entry({ key: 'paused', value: true }));
  a.registry.apply(3, entry({ key: 'drained', nodeName: 'n2', value: true }));
  a.registry.apply(4, entry({ key: 'drained', nodeName: 'n1', value: true }));
  a.registry.apply(5, entry({ key: 'drained', nodeName: 'n2', value: false }));
  assert.deepEqual(a.settings.view, { failover: 'manual', paused: true, drained: ['n1'] });
  const chunks = await collect(a.registry.snapshot('composite'));
  const b = createKvState();
  await b.registry.restore((async function* () { yield* chunks; })());
  assert.deepEqual(b.settings.view, a.settings.view);
  assert.equal(b.settings.checksum(), a.settings.checksum());
});

test('settings: a bad payload applies as invalid_command and changes nothing', () => {
  const a = createKvState();
  const r = a.registry.apply(1, encodeEnvelope({ machine: SETTINGS_MACHINE_ID, at: 1, payload: new Uint8Array([0x93, 1, 0xa1, 0x78, 2]) }));
  assert.equal((r as { error: string }).error, 'invalid_command');
  assert.equal(a.settings.isEmpty(), true);
});

test('settings: a legacy snapshot may be written while the settings are empty, not once set', async () => {
  const a = createKvState();
  await collect(a.registry.snapshot('legacy'));
  a.registry.apply(1, entry({ key: 'paused', value: true }));
  assert.throws(() => a.registry.snapshot('legacy'), /composite/);
});
