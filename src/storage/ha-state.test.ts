import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readHaState, writeHaState } from './ha-state.js';
import type { HaState } from './ha-state.js';
import { InvalidHaStateError } from './errors.js';
import { tempDir } from '../../test/support/storage.js';

const fields: HaState = {
  ConsensusID: 'node1',
  ConsensusAddr: '10.0.1.10:5201',
  HaID: 'prod-ha',
  Observer: false,
  Passive: true,
  ApiUrl: 'https://10.0.1.10:7101',
  Enabled: true,
};

test('ha-state.json is written atomically as readable JSON and read back', async (t) => {
  const dir = await tempDir(t);
  const path = await writeHaState(dir, fields);
  assert.equal(path, join(dir, 'ha-state.json'));
  assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), fields);
  assert.deepEqual(await readHaState(dir), fields);
  assert.deepEqual(await readdir(dir), ['ha-state.json']);
});

test('ha-state.json refuses a token or a wrong type, naming the field', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(writeHaState(dir, { ...fields, Token: 'secret' } as HaState), (e: unknown) => e instanceof InvalidHaStateError && /Token/.test(e.message));
  await assert.rejects(writeHaState(dir, { ...fields, Passive: 'yes' } as unknown as HaState), (e: unknown) => e instanceof InvalidHaStateError && /Passive/.test(e.message));
  assert.equal(await readHaState(dir), undefined, 'nothing was written');
  await writeFile(join(dir, 'ha-state.json'), '{"HaID": 3}');
  await assert.rejects(readHaState(dir), (e: unknown) => e instanceof InvalidHaStateError && /HaID/.test(e.message));
});
