import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createKvState } from './kv-state.js';
import { encodeEnvelope } from './envelope.js';
import { DRILLS_MACHINE_ID, DRILL_REPORT_MAX, decodeDrillsPayload, encodeDrillsPayload } from './drills.js';
import { InvalidCommandError } from './errors.js';

const entry = (report: string, max = 2, at = 7000) => encodeEnvelope({ machine: DRILLS_MACHINE_ID, at, payload: encodeDrillsPayload({ max, report }) });

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

test('drills: reports are kept in order, bounded by the max each command carries; seq counts every report', () => {
  const a = createKvState();
  for (let i = 1; i <= 3; i++) a.registry.apply(i, entry(JSON.stringify({ id: `d${i}` }), 2, 1000 * i));
  assert.equal(a.drills.seq, 3);
  assert.deepEqual(a.drills.records().map((r) => [r.seq, r.index, r.at, JSON.parse(r.report).id]), [[2, 2, 2000, 'd2'], [3, 3, 3000, 'd3']]);
  assert.deepEqual(a.drills.records(1).map((r) => r.seq), [3]);
});

test('drills: a snapshot restores the same reports and checksum; an empty machine writes no section bytes', async () => {
  const a = createKvState();
  assert.equal((await collect(a.drills.snapshot())).length, 0);
  a.registry.apply(1, entry('{"id":"x"}'));
  a.registry.apply(2, entry('{"id":"y"}'));
  const b = createKvState();
  const commit = await b.drills.restore((async function* () { yield* await collect(a.drills.snapshot()); })());
  commit();
  assert.equal(b.drills.checksum(), a.drills.checksum());
  assert.deepEqual(b.drills.records(), a.drills.records());
  assert.equal(b.drills.seq, 2);
});

test('drills: malformed commands are refused naming the field', () => {
  assert.throws(() => decodeDrillsPayload(encodeDrillsPayload({ max: 0, report: '{}' })), (e: unknown) => e instanceof InvalidCommandError && /drills\.max/.test(e.message));
  assert.throws(() => decodeDrillsPayload(encodeDrillsPayload({ max: 5, report: '' })), (e: unknown) => e instanceof InvalidCommandError && /drills\.report/.test(e.message));
  assert.throws(() => decodeDrillsPayload(encodeDrillsPayload({ max: 5, report: 'x'.repeat(DRILL_REPORT_MAX + 1) })), /drills\.report/);
  // An invalid entry changes nothing on any node.
  const a = createKvState();
  a.registry.apply(1, encodeEnvelope({ machine: DRILLS_MACHINE_ID, at: 1, payload: encodeDrillsPayload({ max: 0, report: '{}' }) }));
  assert.equal(a.drills.seq, 0);
});
