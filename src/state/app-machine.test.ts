// The "app" machine: queue claims, visibility timeouts, stale claim tokens,
// dead-lettering, lock fencing tokens, the outbox; snapshot round trip and
// malformed payloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppStateMachine } from './app-machine.js';
import { decodeAppPayload, encodeAppPayload, type AppCommand } from './app-commands.js';
import { InvalidCommandError } from './errors.js';

function harness() {
  const m = new AppStateMachine();
  let index = 0;
  const run = (c: AppCommand, clockMs: number) => m.apply(decodeAppPayload(encodeAppPayload(c)), { index: ++index, at: clockMs, clockMs, idempotencyKey: undefined }).data as Record<string, unknown>;
  return { m, run };
}

test('queue: claim hides a message until its visibility timeout; a stale claim token is refused; an expired claim returns the message', () => {
  const { m, run } = harness();
  const a = run({ op: 'enqueue', queue: 'jobs', body: 'a', delayMs: 0, maxDeliveries: 5 }, 1000);
  run({ op: 'enqueue', queue: 'jobs', body: 'b', delayMs: 500, maxDeliveries: 5 }, 1000);
  const c1 = run({ op: 'claim', queue: 'jobs', max: 10, visibilityMs: 100 }, 1001) as { claimToken: string; messages: { id: string; body: string }[] };
  assert.deepEqual(c1.messages.map((x) => x.body), ['a'], 'b is delayed');
  assert.deepEqual(run({ op: 'claim', queue: 'jobs', max: 10, visibilityMs: 100 }, 1050)['messages'], [], 'a is hidden while claimed');
  // The claim expires: a is claimed again with a new token; the old token is stale.
  const c2 = run({ op: 'claim', queue: 'jobs', max: 1, visibilityMs: 100 }, 1101) as { claimToken: string; messages: { id: string; deliveries: number }[] };
  assert.equal(c2.messages[0]!.id, a['id']);
  assert.equal(c2.messages[0]!.deliveries, 2);
  assert.deepEqual(run({ op: 'ack', queue: 'jobs', claimToken: c1.claimToken, ids: [String(a['id'])] }, 1102)['refused'], [{ id: a['id'], reason: 'stale_claim' }]);
  assert.deepEqual(run({ op: 'extend', queue: 'jobs', claimToken: c2.claimToken, ids: [String(a['id'])], visibilityMs: 1000 }, 1150)['done'], [a['id']]);
  assert.deepEqual(run({ op: 'ack', queue: 'jobs', claimToken: c2.claimToken, ids: [String(a['id'])] }, 1900)['done'], [a['id']], 'extended, so still valid');
  assert.deepEqual(run({ op: 'ack', queue: 'jobs', claimToken: c2.claimToken, ids: [String(a['id'])] }, 1901)['refused'], [{ id: a['id'], reason: 'not_found' }]);
  assert.deepEqual(m.queueStats('jobs', 1901), { queue: 'jobs', ready: 1, delayed: 0, inFlight: 0, enqueued: 2, acked: 1, deadLettered: 0, deadLetterQueue: 'jobs.dlq', deadLetterDepth: 0 });
});

test('queue: nack with delay; after maxDeliveries the message moves to the dead-letter queue', () => {
  const { m, run } = harness();
  run({ op: 'enqueue', queue: 'q', body: 'x', delayMs: 0, maxDeliveries: 2 }, 0);
  const c1 = run({ op: 'claim', queue: 'q', max: 1, visibilityMs: 1000 }, 1) as { claimToken: string; messages: { id: string }[] };
  const id = c1.messages[0]!.id;
  run({ op: 'nack', queue: 'q', claimToken: c1.claimToken, ids: [id], delayMs: 50 }, 2);
  assert.deepEqual(run({ op: 'claim', queue: 'q', max: 1, visibilityMs: 10 }, 30)['messages'], [], 'nack delay');
  assert.equal((run({ op: 'claim', queue: 'q', max: 1, visibilityMs: 10 }, 60)['messages'] as unknown[]).length, 1);
  // Second delivery expires: the message is dead-lettered at the next claim.
  assert.deepEqual(run({ op: 'claim', queue: 'q', max: 1, visibilityMs: 10 }, 100)['messages'], []);
  assert.equal(m.queueStats('q', 100).deadLettered, 1);
  const d = run({ op: 'claim', queue: 'q.dlq', max: 1, visibilityMs: 10 }, 101) as { messages: { id: string; body: string }[] };
  assert.deepEqual(d.messages.map((x) => [x.id, x.body]), [[id, 'x']]);
});

test('locks: strictly increasing fencing tokens; an expired holder cannot renew or release', () => {
  const { m, run } = harness();
  const a = run({ op: 'lock', name: 'L', owner: 'A', ttlMs: 100 }, 0);
  assert.equal(a['acquired'], true);
  assert.deepEqual(run({ op: 'lock', name: 'L', owner: 'B', ttlMs: 100 }, 50), { acquired: false, holder: 'A', fencingToken: a['fencingToken'], expiresInMs: 50 });
  assert.equal(run({ op: 'lock', name: 'L', owner: 'A', ttlMs: 100 }, 60)['fencingToken'], a['fencingToken'], 'the holder re-acquires with its token');
  const b = run({ op: 'lock', name: 'L', owner: 'B', ttlMs: 100 }, 200);
  assert.equal(b['acquired'], true);
  assert.ok((b['fencingToken'] as number) > (a['fencingToken'] as number));
  assert.deepEqual(run({ op: 'renew', name: 'L', owner: 'A', fencingToken: a['fencingToken'] as number, ttlMs: 100 }, 210), { ok: false, reason: 'not_holder' });
  assert.equal(run({ op: 'unlock', name: 'L', owner: 'B', fencingToken: b['fencingToken'] as number }, 220)['ok'], true);
  assert.equal(m.lock('L', 220), undefined);
});

test('outbox in order; snapshot round trip keeps everything; malformed payloads name the field', async () => {
  const { m, run } = harness();
  const ids = [run({ op: 'outbox-add', body: '1', contentType: 'text/plain' }, 0)['id'], run({ op: 'outbox-add', body: '2', contentType: 'text/plain' }, 0)['id']];
  assert.deepEqual(m.outbox().map((x) => x.id), ids);
  assert.deepEqual(run({ op: 'outbox-done', id: String(ids[0]) }, 1), { removed: true });
  run({ op: 'enqueue', queue: 'q', body: 'b', delayMs: 0, maxDeliveries: 0 }, 1);
  run({ op: 'lock', name: 'L', owner: 'o', ttlMs: 5 }, 1);
  const copy = new AppStateMachine();
  const commit = await copy.restore(m.snapshot());
  commit();
  assert.equal(copy.checksum(), m.checksum());
  assert.deepEqual(copy.outbox().map((x) => x.body), ['2']);
  const empty = new AppStateMachine();
  (await empty.restore((async function* () { /* no bytes */ })()))();
  assert.equal(empty.isEmpty(), true);
  assert.throws(() => encodeAppPayload({ op: 'claim', queue: 'bad name', max: 1, visibilityMs: 1 }), (e: unknown) => e instanceof InvalidCommandError && e.field === 'queue');
  assert.throws(() => encodeAppPayload({ op: 'claim', queue: 'q', max: 0, visibilityMs: 1 }), (e: unknown) => e instanceof InvalidCommandError && e.field === 'max');
  await assert.rejects(copy.validate((async function* () { yield new Uint8Array([0x93, 1, 2, 3]); })()), /app\.section/);
});
