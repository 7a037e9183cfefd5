import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Fencing, type FencingDeps } from './fencing.js';
import type { LeaderService } from './leadership.js';
import type { FenceTarget } from './vip-commands.js';

const prev: FenceTarget = { nodeName: 'node1', apiUrl: 'http://a:1', peerUrl: 'a:2', term: 4 };
const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

function recorder(): LeaderService & { events: string[] } {
  const events: string[] = [];
  return { name: 'jobs', events, start: (t) => events.push(`start ${t}`), stop: () => events.push('stop') };
}

function fencing(over: Partial<FencingDeps>, results: boolean[] = []): { f: Fencing; runs: string[] } {
  const runs: string[] = [];
  const f = new Fencing({
    fenceScript: '/bin/fence', log: pino({ level: 'silent' }), wonByTransfer: () => false, previousLeader: () => prev, backoffMs: () => 10,
    runFence: (t) => {
      runs.push(`${t.nodeName} ${t.term}`);
      const ok = results.shift() ?? true;
      return Promise.resolve(ok ? { ok: true, command: 'fence', detail: 'off' } : { ok: false, command: 'fence', detail: 'exit 1: no power switch' });
    },
    ...over,
  });
  return { f, runs };
}

test('without cluster.fenceScript, gated leader work starts at once with the term and the script never runs', async () => {
  const { f, runs } = fencing({ fenceScript: '' });
  const jobs = recorder();
  const g = f.gate(jobs);
  g.start(5);
  f.start(5);
  await tick();
  assert.deepEqual(jobs.events, ['start 5']);
  assert.deepEqual(runs, []);
  assert.equal(f.status(), undefined);
});

test('a new leader starts jobs, outbox delivery and backups only after the fence script succeeded against the previous leader', async () => {
  const { f, runs } = fencing({}, [false, false, true]);
  const jobs = recorder();
  const g = f.gate(jobs);
  f.start(5);
  g.start(5);
  await tick(15);
  assert.deepEqual(jobs.events, [], 'held back while the fence fails');
  assert.equal(f.status()?.ok, false);
  assert.equal(f.status()?.lastError, 'exit 1: no power switch');
  for (let i = 0; i < 100 && jobs.events.length === 0; i++) await tick();
  assert.deepEqual(runs, ['node1 4', 'node1 4', 'node1 4'], 'retried against the previous leader and its term');
  assert.deepEqual(jobs.events, ['start 5'], 'started once fenced');
  assert.deepEqual(f.status(), { target: 'node1', term: 4, attempts: 3, ok: true });
  assert.equal(await f.whenReady(5), 'fenced');
  g.stop();
  f.stop();
  assert.deepEqual(jobs.events, ['start 5', 'stop']);
});

test('after a clean switchover, or with no previous leader known, no fencing is needed and the script is not run', async () => {
  for (const over of [{ wonByTransfer: () => true }, { previousLeader: () => undefined }]) {
    const { f, runs } = fencing(over);
    const jobs = recorder();
    f.start(7);
    f.gate(jobs).start(7);
    await tick();
    assert.deepEqual(jobs.events, ['start 7']);
    assert.deepEqual(runs, []);
    assert.equal(await f.whenReady(7), 'not-needed');
  }
});

test('leadership lost while fencing: the gated work never starts, the retries stop, and the next term fences again', async () => {
  const { f, runs } = fencing({}, [false, false, false, false, false, false]);
  const jobs = recorder();
  const g = f.gate(jobs);
  f.start(5);
  g.start(5);
  await tick(15);
  g.stop();
  f.stop();
  const n = runs.length;
  await tick(50);
  assert.equal(runs.length, n, 'no retries after the term ended');
  assert.deepEqual(jobs.events, [], 'never started, so never stopped');
  const { f: f2 } = fencing({}, [true]);
  const g2 = f2.gate(jobs);
  g2.start(6);
  f2.start(6);
  for (let i = 0; i < 100 && jobs.events.length === 0; i++) await tick();
  assert.deepEqual(jobs.events, ['start 6']);
});

test('witness mode: gated work stops at the lease step-down deadline by itself (a renewal moves it), and does not start without a lease', async () => {
  let deadline: number | undefined = performance.now() + 40;
  const { f } = fencing({ fenceScript: '', leaseDeadline: () => deadline });
  const jobs = recorder();
  const g = f.gate(jobs);
  g.start(7);
  f.start(7);
  await tick();
  assert.deepEqual(jobs.events, ['start 7']);
  assert.equal(f.leaseOk(), true);
  // A renewal before the deadline moves it: the work goes on past the first deadline.
  const first = deadline!;
  deadline = performance.now() + 1500;
  await waitUntil(() => performance.now() > first + 50);
  assert.deepEqual(jobs.events, ['start 7']);
  // No renewal: stopped at the deadline, without anyone stepping the core down.
  await waitUntil(() => jobs.events.length > 1, 10_000);
  assert.ok(performance.now() >= deadline);
  assert.deepEqual(jobs.events, ['start 7', 'stop']);
  assert.equal(f.leaseOk(), false);
  assert.match(f.leaseProblem(), /not renewed before its step-down deadline/);
  // The core's stop later is a no-op; a new term without a lease does not start the work.
  g.stop();
  f.stop();
  deadline = undefined;
  g.start(8);
  f.start(8);
  await tick(20);
  assert.deepEqual(jobs.events, ['start 7', 'stop']);
  assert.match(f.leaseProblem(), /holds no witness lease/);
});

test('outside witness mode the lease never gates anything', () => {
  const { f } = fencing({ fenceScript: '' });
  assert.equal(f.leaseOk(), true);
});

async function waitUntil(cond: () => boolean, limitMs = 2000): Promise<void> {
  const end = performance.now() + limitMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await tick(2);
  }
}
