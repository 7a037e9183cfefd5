// Pause and drain with a reason and an expiry are settings version 2: the leader writes them only at cluster feature level 3.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FEATURE_LEVEL } from './features.js';
import { HOLD_FEATURE_LEVEL, encodeSetting, settingsCommandOf } from './modes.js';

test('encodeSetting: a reason or expiry needs feature level 3; plain pause and drain still work at level 2', () => {
  assert.ok(FEATURE_LEVEL >= HOLD_FEATURE_LEVEL, 'this build writes holds');
  const held = { key: 'paused', value: true, reason: 'kernel upgrade', expiresAt: 5_000 } as const;
  assert.throws(() => encodeSetting(held, 2, 1), /feature level 3 \(this cluster is at 2.*retry without reason and expiresInMs/);
  assert.throws(() => encodeSetting({ key: 'drained', nodeName: 'n1', value: true, expiresAt: 9 }, 2, 1), /feature level 3/);
  assert.deepEqual(settingsCommandOf(encodeSetting({ key: 'paused', value: true }, 2, 1)), { key: 'paused', value: true });
  assert.deepEqual(settingsCommandOf(encodeSetting(held, 3, 1)), held);
  assert.throws(() => encodeSetting({ key: 'paused', value: true }, 1, 1), /feature level 2/);
});
