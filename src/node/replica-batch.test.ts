// The Replica's group commit: proposals that arrive while a persist is in
// flight go into the next Ready (one save for all of them), bounded by
// proposal bytes per Ready; nothing is acknowledged before its save resolved.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { RawNode } from '../raft/rawnode.js';
import { SeededRandom } from '../raft/prng.js';
import type { Entry, HardState } from '../raft/types.js';
import type { ApplyResult } from '../state/index.js';
import { REAL_CLOCK, Replica, type LogStore, type StateMachine } from './replica.js';
import { QUIET_METRICS, countingStateMachine, testReplicaHooks } from '../../test/support/replica.js';
import { until } from '../../test/support/transport.js';

interface Save {
  readonly entries: readonly Entry[];
  readonly hs: HardState | undefined;
  done: boolean;
  finish(): void;
}

/** A one-voter replica whose log store holds every save until the test finishes it. */
function harness() {
  const raw = new RawNode(
    { id: 1, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(1) },
    { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: { index: 0, term: 0, membership: { members: [{ id: 1, role: 'voter' }], removed: [] } }, entries: [] },
  );
  const saves: Save[] = [];
  const durable = new Set<number>();
  const applied: number[] = [];
  const log: LogStore = {
    save: (hs, entries) =>
      new Promise<void>((resolve) => {
        const s: Save = {
          entries: [...entries], hs, done: false,
          finish: () => {
            s.done = true;
            for (const e of entries) durable.add(e.index);
            resolve();
          },
        };
        saves.push(s);
      }),
    saveSnapshot: () => Promise.reject(new Error('not in this test')),
    installSnapshot: () => Promise.reject(new Error('not in this test')),
    readSnapshot: () => Promise.resolve(undefined),
    compact: () => Promise.resolve(0),
  };
  let appliedIndex = 0;
  const sm: StateMachine = {
    get appliedIndex() {
      return appliedIndex;
    },
    apply: (index) => {
      assert.ok(durable.has(index), `entry ${index} applied before its save resolved`);
      appliedIndex = index;
      applied.push(index);
      return { kind: 'write', revision: index } as unknown as ApplyResult;
    },
    markApplied: (index) => void (appliedIndex = index),
    snapshot: () => (async function* () {})(),
    restore: () => Promise.resolve(),
  };
  const replica = new Replica({
    raw, log, sm, clock: REAL_CLOCK, tickMs: 1_000_000, logger: pino({ level: 'silent' }),
    net: { send: () => undefined, sendSnapshot: () => Promise.resolve() },
    metrics: QUIET_METRICS,
    hooks: testReplicaHooks(),
    lastSnapshot: undefined,
  });
  return { raw, replica, saves, applied };
}

/** Finishes every pending save until `cond` holds. */
async function drive(saves: Save[], cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) {
    for (const s of saves) if (!s.done) s.finish();
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.ok(cond(), 'timed out driving the replica');
}

async function leader(h: ReturnType<typeof harness>): Promise<void> {
  h.replica.start();
  h.replica.run((raw) => raw.campaign());
  await drive(h.saves, () => h.raw.status().role === 'leader' && h.saves.every((s) => s.done) && h.raw.status().commit >= 1);
}

test('proposals arriving while a save is in flight go into the next one, and none is acknowledged before its save resolves', async () => {
  const h = harness();
  await leader(h);
  const before = h.saves.length;
  const first = h.replica.propose(new Uint8Array(10), 10_000);
  await until(() => h.saves.length === before + 1, 'the first save', 10_000);
  const held = h.saves[before]!;
  // While that save is held (the fsync in flight), ten more proposals arrive.
  const rest = Array.from({ length: 10 }, () => h.replica.propose(new Uint8Array(10), 10_000));
  let settled = 0;
  for (const p of [first, ...rest]) void p.then(() => settled++);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.saves.length, before + 1, 'a second save started before the first resolved');
  assert.equal(settled, 0, 'a proposal was acknowledged before its save resolved');
  assert.equal(h.replica.pendingProposals, 11, 'one proposed and in its save, ten in the inbox: all pending');
  held.finish();
  await until(() => h.saves.length === before + 2, 'the next save', 10_000);
  assert.equal(h.saves[before + 1]!.entries.length, 10, 'the ten proposals go into one save');
  await drive(h.saves, () => settled === 11);
  assert.equal(h.replica.pendingProposals, 0, 'nothing pending once every proposal is applied');
  await h.replica.stop();
});

test('one Ready takes at most 1 MiB of proposals; the rest follow in the next ones, in order', async () => {
  const h = harness();
  await leader(h);
  const before = h.saves.length;
  const block = h.replica.propose(new Uint8Array(1), 10_000);
  await until(() => h.saves.length === before + 1, 'the blocking save', 10_000);
  const sizes = [600_000, 600_000, 300_000, 200_000, 1_500_000, 10];
  const ps = sizes.map((n, i) => h.replica.propose(new Uint8Array(n).fill(i + 1), 10_000));
  h.saves[before]!.finish();
  await drive(h.saves, () => h.applied.length >= 1 + sizes.length + 1);
  await Promise.all([block, ...ps]);
  const batches = h.saves.slice(before + 1).map((s) => s.entries.filter((e) => e.data.length > 1).map((e) => e.data.length)).filter((b) => b.length > 0);
  // 600k alone (600k+600k > 1 MiB); 600k+300k; 200k; 1.5 MiB alone (over the bound, but a proposal is never split); 10 bytes.
  assert.deepEqual(batches, [[600_000], [600_000, 300_000], [200_000], [1_500_000], [10]]);
  for (const b of batches) assert.ok(b.length === 1 || b.reduce((x, y) => x + y, 0) <= 1024 * 1024, `batch ${b.join('+')} exceeds the bound`);
  const order = h.saves.slice(before + 1).flatMap((s) => s.entries.filter((e) => e.data.length > 1).map((e) => e.data[0]));
  assert.deepEqual(order, [1, 2, 3, 4, 5, 6], 'proposals reach the log in the order they were made');
  await h.replica.stop();
});

test('a long batch of committed entries (a restart\'s replay) lets the event loop run between slices of 1024 entries', async () => {
  const n = 3000;
  const entries: Entry[] = Array.from({ length: n }, (_, i) => ({ term: 1, index: i + 1, type: 'normal' as const, data: new Uint8Array([1]) }));
  const raw = new RawNode(
    { id: 1, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(1) },
    { hardState: { term: 1, vote: 1, commit: n }, snapshot: { index: 0, term: 0, membership: { members: [{ id: 1, role: 'voter' }], removed: [] } }, entries },
  );
  const { sm, applied } = countingStateMachine();
  const replica = new Replica({
    raw, sm, clock: REAL_CLOCK, tickMs: 1_000_000, logger: pino({ level: 'silent' }),
    log: { save: () => Promise.resolve(), saveSnapshot: () => Promise.reject(new Error('not in this test')), installSnapshot: () => Promise.reject(new Error('not in this test')), readSnapshot: () => Promise.resolve(undefined), compact: () => Promise.resolve(0) },
    net: { send: () => undefined, sendSnapshot: () => Promise.resolve() },
    metrics: QUIET_METRICS,
    hooks: testReplicaHooks(),
    lastSnapshot: undefined,
  });
  // Another task of the event loop's check phase (as the loop's own turns are): it sees what was applied so far.
  const seen: number[] = [];
  let watching = true;
  const watch = (): void => {
    seen.push(applied());
    if (watching) setImmediate(watch);
  };
  replica.start();
  setImmediate(watch);
  await until(() => applied() === n, 'the replay', 10_000);
  watching = false;
  assert.ok(seen.some((i) => i > 0 && i < n), `other work ran while the ${n} entries were applied (saw ${seen.join(', ')})`);
  await replica.stop();
});
