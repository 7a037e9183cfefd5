import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { SCHEDULER_RUNS_KEPT, SchedulerMachine, decodeSchedulerPayload, encodeSchedulerPayload, type SchedulerCommand } from '../state/scheduler-machine.js';
import { InvalidCommandError } from '../state/errors.js';
import { LeaderScheduler, checkSchedule, type CatchUp, type JobContext } from './scheduler.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One replicated "log": every proposal applies at once, in order, to one machine (as a committed entry would on every node). */
function log1(): { machine: SchedulerMachine; propose: (c: SchedulerCommand) => Promise<ReturnType<SchedulerMachine['apply']>> } {
  const machine = new SchedulerMachine();
  let index = 0;
  return { machine, propose: async (c) => machine.apply(decodeSchedulerPayload(encodeSchedulerPayload(c)), { index: ++index, at: Date.now(), clockMs: Date.now(), idempotencyKey: undefined }) };
}

function leader(l: ReturnType<typeof log1>, runs: JobContext[], catchUp: CatchUp, name = 'tick'): LeaderScheduler {
  const s = new LeaderScheduler({ log, nodeName: 'n1', claims: l.machine, propose: l.propose, featureLevel: () => 2, barrier: async () => undefined });
  s.add({ name, schedule: '* * * * * *', catchUp, run: async (ctx) => void runs.push(ctx) });
  return s;
}

describe('scheduler machine', () => {
  it('a slot is claimed once: a claim not later than the last one is refused with the last slot, on every replica alike', () => {
    const m = new SchedulerMachine();
    const ctx = (index: number) => ({ index, at: 1000 + index, clockMs: 1000 + index, idempotencyKey: undefined });
    assert.deepEqual(m.apply({ op: 'arm', name: 'j', slotMs: 100 }, ctx(1)), { revision: 0 });
    assert.deepEqual(m.apply({ op: 'claim', name: 'j', slotMs: 100, term: 2, kind: 'scheduled', node: 'n1' }, ctx(2)), { error: 'revision_mismatch', currentRevision: 100 }, 'armed: slots <= 100 are not due');
    assert.deepEqual(m.apply({ op: 'claim', name: 'j', slotMs: 200, term: 2, kind: 'scheduled', node: 'n1' }, ctx(3)), { revision: 1 });
    assert.deepEqual(m.apply({ op: 'claim', name: 'j', slotMs: 200, term: 3, kind: 'catch-up', node: 'n2' }, ctx(4)), { error: 'revision_mismatch', currentRevision: 200 }, 'a second leader loses the same slot');
    assert.deepEqual(m.apply({ op: 'arm', name: 'j', slotMs: 999 }, ctx(5)), { revision: 0 });
    assert.equal(m.job('j')!.lastSlotMs, 200, 'arm is a no-op for a known job');
    m.apply({ op: 'finish', name: 'j', seq: 1, ok: false, message: 'disk full' }, ctx(6));
    assert.deepEqual(m.job('j')!.runs, [{ seq: 1, slotMs: 200, term: 2, kind: 'scheduled', node: 'n1', index: 3, at: 1003, ok: false, finishedAt: 1006, message: 'disk full' }]);
    for (let k = 0; k < SCHEDULER_RUNS_KEPT + 5; k++) m.apply({ op: 'claim', name: 'j', slotMs: 300 + k, term: 3, kind: 'scheduled', node: 'n1' }, ctx(10 + k));
    assert.equal(m.job('j')!.runs.length, SCHEDULER_RUNS_KEPT, 'runs are bounded');
    assert.equal(m.job('j')!.seq, SCHEDULER_RUNS_KEPT + 6);
    assert.throws(() => decodeSchedulerPayload(encodeSchedulerPayload({ op: 'arm', name: '', slotMs: 1 })), InvalidCommandError);
  });

  it('snapshot round-trips, and equal state gives equal checksums', async () => {
    const a = new SchedulerMachine();
    a.apply({ op: 'claim', name: 'b', slotMs: 5, term: 1, kind: 'manual', node: 'n1' }, { index: 1, at: 9, clockMs: 9, idempotencyKey: undefined });
    a.apply({ op: 'arm', name: 'a', slotMs: 7 }, { index: 2, at: 10, clockMs: 10, idempotencyKey: undefined });
    const b = new SchedulerMachine();
    (await b.restore(a.snapshot()))();
    assert.equal(b.checksum(), a.checksum());
    assert.deepEqual(b.jobs(), a.jobs());
    assert.equal(new SchedulerMachine().isEmpty(), true);
  });
});

describe('leader scheduler', () => {
  it('rejects a bad cron pattern with croner\'s reason', () => {
    assert.throws(() => checkSchedule('every minute'), /five, six, or seven/);
  });

  it('runs each slot at most once across a change of leader, and catches up the missed slot once (catchUp once)', async () => {
    const l = log1();
    const runsA: JobContext[] = [];
    const runsB: JobContext[] = [];
    const a = leader(l, runsA, 'once');
    const b = leader(l, runsB, 'once');
    a.start(1);
    await sleep(2600);
    a.stop();
    const aSlots = runsA.map((r) => r.slotMs);
    assert.ok(aSlots.length >= 1, `the first leader ran its slots (${aSlots.length})`);
    await sleep(1300); // no leader: at least one slot passes unclaimed
    b.start(2);
    await sleep(2200);
    b.stop();
    const bSlots = runsB.map((r) => r.slotMs);
    const all = [...aSlots, ...bSlots];
    assert.equal(new Set(all).size, all.length, `no slot ran twice: ${all.join(', ')}`);
    assert.equal(runsB[0]!.kind, 'catch-up', 'the new leader first runs the missed slot');
    assert.ok(runsB[0]!.slotMs > Math.max(...aSlots), 'the catch-up slot is one the old leader did not run');
    assert.equal(runsB.filter((r) => r.kind === 'catch-up').length, 1, 'caught up once, not once per missed slot');
    const superseded = l.machine.job('tick')!.runs.filter((r) => r.kind === 'skipped');
    assert.ok(superseded.length <= 1, 'one skipped record stands for the earlier missed slots');
    if (superseded.length === 1) assert.ok(superseded[0]!.slotMs < runsB[0]!.slotMs && superseded[0]!.slotMs > Math.max(...aSlots), 'it is the missed slot just before the catch-up');
    assert.ok(runsA.every((r) => r.term === 1) && runsB.every((r) => r.term === 2), 'each run carries its leader\'s term as fencing token');
    // The replicated record shows the runs (and the skipped slot standing for the earlier missed ones) in slot order.
    const rec = l.machine.job('tick')!;
    assert.deepEqual(rec.runs.filter((r) => r.kind !== 'skipped').map((r) => r.slotMs), [...all].sort((x, y) => x - y));
    assert.deepEqual(rec.runs.map((r) => r.slotMs), [...rec.runs.map((r) => r.slotMs)].sort((x, y) => x - y));
    assert.ok(rec.runs.every((r) => r.ok === true));
  });

  it('catchUp skip does not run a missed slot; two leaders at once still never run one slot twice', async () => {
    const l = log1();
    const runsA: JobContext[] = [];
    const runsB: JobContext[] = [];
    const a = leader(l, runsA, 'skip');
    a.start(1);
    await sleep(1500);
    a.stop();
    await sleep(1300);
    const b = leader(l, runsB, 'skip');
    const c = leader(l, runsB, 'skip'); // a deposed leader that has not noticed yet
    b.start(2);
    c.start(2);
    await sleep(1700);
    b.stop();
    c.stop();
    assert.ok(runsB.length >= 1);
    assert.ok(runsB.every((r) => r.kind === 'scheduled'), 'no catch-up run with skip');
    const slots = [...runsA, ...runsB].map((r) => r.slotMs);
    assert.equal(new Set(slots).size, slots.length, `no slot ran twice: ${slots.join(', ')}`);
    // The missed slot is in the replicated history as skipped, not silently absent.
    const skipped = l.machine.job('tick')!.runs.filter((r) => r.kind === 'skipped');
    assert.equal(skipped.length, 1, 'the missed slot is recorded once');
    assert.equal(skipped[0]!.message, 'skipped: missed (catchUp skip)');
    assert.ok(!slots.includes(skipped[0]!.slotMs), 'and was not run');
  });

  it('a slot that comes while the previous run is still going is skipped and recorded as such', async () => {
    const l = log1();
    const s = new LeaderScheduler({ log, nodeName: 'n1', claims: l.machine, propose: l.propose, featureLevel: () => 2, barrier: async () => undefined });
    s.add({ name: 'slow', schedule: '* * * * * *', catchUp: 'skip', run: () => sleep(1600).then(() => undefined) });
    s.start(1);
    for (let i = 0; i < 80 && !(l.machine.job('slow')?.runs.some((r) => r.kind === 'skipped') ?? false); i++) await sleep(50);
    s.stop();
    const runs = l.machine.job('slow')!.runs;
    const skip = runs.find((r) => r.kind === 'skipped');
    assert.ok(skip, `a skipped slot is recorded: ${JSON.stringify(runs)}`);
    assert.equal(skip.message, 'skipped: the previous run was still going');
    assert.equal(skip.ok, true);
    assert.equal(skip.finishedAt, skip.at, 'it ends when it is decided');
    const kinds = new Set(runs.map((r) => r.slotMs));
    assert.equal(kinds.size, runs.length, 'each slot is decided once');
  });

  it('a skipped claim decodes only with its reason, and a normal claim never carries one', () => {
    const skip: SchedulerCommand = { op: 'claim', name: 'j', slotMs: 5, term: 2, kind: 'skipped', node: 'n1', reason: 'missed' };
    assert.deepEqual(decodeSchedulerPayload(encodeSchedulerPayload(skip)), skip);
    assert.throws(() => decodeSchedulerPayload(encodeSchedulerPayload({ op: 'claim', name: 'j', slotMs: 5, term: 2, kind: 'skipped', node: 'n1', reason: 'bogus' } as unknown as SchedulerCommand)), InvalidCommandError);
  });
});
