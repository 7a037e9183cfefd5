import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createKvState } from './kv-state.js';
import { encodeEnvelope } from './envelope.js';
import { packCanonical } from './commands.js';
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

test('settings version 2: pause and drain with reason and expiry; resume/undrain clear them; the snapshot keeps them, version 1 again once none is left', async () => {
  const a = createKvState();
  const at = 1_000; // entry() stamps at = 1
  a.registry.apply(1, entry({ key: 'paused', value: true, reason: 'kernel upgrade', expiresAt: at + 7_200_000 }));
  a.registry.apply(2, entry({ key: 'drained', nodeName: 'n2', value: true, reason: 'disk swap', expiresAt: at + 1_800_000 }));
  a.registry.apply(3, entry({ key: 'drained', nodeName: 'n3', value: true }));
  assert.deepEqual(a.settings.view, {
    failover: undefined, paused: true, drained: ['n2', 'n3'],
    pause: { reason: 'kernel upgrade', expiresAt: at + 7_200_000, since: 1 },
    drains: { n2: { reason: 'disk swap', expiresAt: at + 1_800_000, since: 1 } },
  });
  const chunks = await collect(a.registry.snapshot('composite'));
  const b = createKvState();
  await b.registry.restore((async function* () { yield* chunks; })());
  assert.deepEqual(b.settings.view, a.settings.view);
  assert.equal(b.settings.checksum(), a.settings.checksum());
  // A plain pause replaces the hold; resume and undrain clear them (the reason on a resume is for the history only).
  a.registry.apply(4, entry({ key: 'paused', value: false, reason: 'expired' }));
  a.registry.apply(5, entry({ key: 'drained', nodeName: 'n2', value: false }));
  assert.deepEqual(a.settings.view, { failover: undefined, paused: false, drained: ['n3'] });
  const plain = createKvState();
  plain.registry.apply(1, entry({ key: 'drained', nodeName: 'n3', value: true }));
  assert.equal(a.settings.checksum(), plain.settings.checksum(), 'back to the version 1 section');
});

test('settings version 2 payloads: version 1 bytes without reason and expiry; bad reasons and expiries refused', () => {
  assert.equal(encodeSettingsPayload({ key: 'paused', value: true })[1], 1, 'version 1');
  assert.equal(encodeSettingsPayload({ key: 'paused', value: true, reason: 'x' })[1], 2, 'version 2');
  const a = createKvState();
  let i = 0;
  for (const bad of [[2, 'paused', true, '', null], [2, 'paused', true, 'x'.repeat(501), null], [2, 'paused', true, null, -5], [2, 'drained', 'n1', true, 5, null], [2, 'paused', true, null]]) {
    const r = a.registry.apply(++i, encodeEnvelope({ machine: SETTINGS_MACHINE_ID, at: 1, payload: packCanonical(bad) }));
    assert.equal((r as { error: string }).error, 'invalid_command', JSON.stringify(bad));
  }
  assert.equal(a.settings.isEmpty(), true);
});
