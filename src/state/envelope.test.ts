import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeCommand, encodeKvPayload } from './commands.js';
import { decodeEntry, encodeEnvelope, peekMachineId } from './envelope.js';

const machineId = fc.stringMatching(/^[a-z][a-z0-9_-]{0,63}$/);

test('peekMachineId reads the machine of every encoded envelope whose id is under 32 characters, without decoding', () => {
  fc.assert(fc.property(machineId, fc.integer({ min: 0, max: 2 ** 48 }), fc.option(fc.string({ maxLength: 40 }), { nil: undefined }), fc.uint8Array({ maxLength: 300 }), (machine, at, ik, payload) => {
    const data = encodeEnvelope({ machine, at, ...(ik !== undefined && ik.length > 0 ? { idempotencyKey: ik } : {}), payload });
    const peeked = peekMachineId(data);
    if (machine.length < 32) assert.equal(peeked, machine);
    else assert.equal(peeked, undefined);
  }));
});

test('peekMachineId never names a machine decodeEntry would not: arbitrary bytes, and format-1 entries', () => {
  const v1 = encodeCommand({ at: 1, command: { type: 'put', key: 'a', value: '1' } });
  assert.equal(peekMachineId(v1), undefined);
  assert.equal(peekMachineId(encodeKvPayload({ type: 'put', key: 'a', value: '1' })), undefined);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (tail, prefixed) => {
    const data = prefixed ? Uint8Array.from([0x95, 0x02, ...tail]) : tail;
    const peeked = peekMachineId(data);
    if (peeked === undefined) return;
    let decoded: string | undefined;
    try {
      const d = decodeEntry(data);
      decoded = d.version === 2 ? d.envelope.machine : undefined;
    } catch {
      return; // rejected as a whole: the caller's decode says so too
    }
    assert.equal(decoded, peeked);
  }), { numRuns: 2000 });
});
