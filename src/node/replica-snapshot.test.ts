// A follower verifying a snapshot from the leader: the leader's appends that
// arrive meanwhile (its probe after the transport acknowledged the stream) are
// stepped after the snapshot, so they are accepted instead of refused (a
// refusal would make the leader send the whole snapshot again).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { RawNode } from '../raft/rawnode.js';
import { SeededRandom } from '../raft/prng.js';
import type { Message, SnapshotMeta } from '../raft/types.js';
import { REAL_CLOCK, Replica, type LogStore } from './replica.js';
import { QUIET_METRICS, countingStateMachine, testReplicaHooks } from '../../test/support/replica.js';
import { until } from '../../test/support/transport.js';

const membership = { members: [{ id: 1, role: 'voter' as const }, { id: 2, role: 'voter' as const }, { id: 3, role: 'voter' as const }], removed: [] };
const SNAP: SnapshotMeta = { index: 100, term: 2, membership };

function message(p: Partial<Message> & Pick<Message, 'type'>): Message {
  return { from: 1, to: 2, term: 2, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: 0, ...p };
}

function follower(o: { snapshotEntries?: number; saveSnapshot?: LogStore['saveSnapshot'] } = {}) {
  const raw = new RawNode(
    { id: 2, electionTicks: 10, heartbeatTicks: 1, random: new SeededRandom(2), ...(o.snapshotEntries !== undefined ? { snapshotEntries: o.snapshotEntries } : {}) },
    { hardState: { term: 1, vote: 0, commit: 1 }, snapshot: { index: 0, term: 0, membership }, entries: [{ index: 1, term: 1, type: 'normal', data: new Uint8Array(0) }] },
  );
  const sent: Message[] = [];
  const snaps: [string, number, number][] = [];
  const bytes = (async function* () {})();
  const log: LogStore = {
    save: () => Promise.resolve(),
    saveSnapshot: o.saveSnapshot ?? (() => Promise.reject(new Error('not in this test'))),
    installSnapshot: async (_meta, chunks) => {
      for await (const _ of chunks) void _;
      return '/snap';
    },
    readSnapshot: (meta) => Promise.resolve({ meta: meta as SnapshotMeta, path: '/snap', bytes: 0, read: () => bytes }),
    compact: () => Promise.resolve(0),
  };
  const { sm } = countingStateMachine(SNAP.index);
  const replica = new Replica({
    raw, log, sm, clock: REAL_CLOCK, tickMs: 1_000_000, logger: pino({ level: 'silent' }),
    net: { send: (ms) => void sent.push(...ms), sendSnapshot: () => Promise.resolve() },
    metrics: { ...QUIET_METRICS, snapshot: (kind, sec, n) => void snaps.push([kind, sec, n]) },
    hooks: testReplicaHooks(),
    lastSnapshot: undefined,
  });
  return { raw, replica, sent, snaps };
}

test("the leader's append that arrives while its snapshot is verified is stepped after the snapshot, and accepted", async (t) => {
  const f = follower();
  f.replica.start();
  t.after(() => f.replica.stop());
  let verified!: () => void;
  const verifying = new Promise<void>((r) => (verified = r));
  const source = { bytes: 123, read: () => (async function* () {})(), discard: () => Promise.resolve() };
  f.replica.receiveSnapshot(1, SNAP, source, message({ type: 'snap', snapshot: SNAP }), () => verifying);
  // The leader probes right after the stream: an append right after the snapshot index.
  const entry = { index: SNAP.index + 1, term: 2, type: 'normal' as const, data: new Uint8Array([7]) };
  f.replica.receive([message({ type: 'app', index: SNAP.index, logTerm: SNAP.term, entries: [entry], commit: SNAP.index })]);
  // Heartbeats are not held.
  f.replica.receive([message({ type: 'heartbeat', commit: 0 })]);
  await until(() => f.sent.some((m) => m.type === 'heartbeatResp'), 'the heartbeat answered', 10_000);
  assert.equal(f.sent.filter((m) => m.type === 'appResp').length, 0, 'the append was stepped before the snapshot was verified');
  verified();
  await until(() => f.sent.filter((m) => m.type === 'appResp').length >= 2, 'the append answered', 10_000);
  const resps = f.sent.filter((m) => m.type === 'appResp');
  assert.ok(resps.every((m) => !m.reject), `an append was refused: ${JSON.stringify(resps)}`);
  assert.equal(Math.max(...resps.map((m) => m.index)), SNAP.index + 1);
  // The install is reported to the metrics (quorate_snapshot_duration_seconds, quorate_snapshot_bytes) with its size.
  assert.deepEqual(f.snaps.map(([k, sec, n]) => [k, sec >= 0, n]), [['install', true, 123]]);
});

test('a snapshot that fails verification releases the held appends (the follower refuses them, as before)', async (t) => {
  const f = follower();
  f.replica.start();
  t.after(() => f.replica.stop());
  let fail!: () => void;
  const verifying = new Promise<void>((_, reject) => (fail = () => reject(new Error('bad content'))));
  const source = { bytes: 0, read: () => (async function* () {})(), discard: () => Promise.resolve() };
  f.replica.receiveSnapshot(1, SNAP, source, message({ type: 'snap', snapshot: SNAP }), () => verifying);
  f.replica.receive([message({ type: 'app', index: SNAP.index, logTerm: SNAP.term, entries: [], commit: SNAP.index })]);
  fail();
  await until(() => f.sent.some((m) => m.type === 'appResp'), 'the append answered', 10_000);
  assert.ok(f.sent.filter((m) => m.type === 'appResp').every((m) => m.reject), 'without the snapshot the append does not match');
});

test('a snapshot the core asks for while one is being written is taken right after it (the entries are not kept until the next request)', async (t) => {
  const saves: { index: number; done: () => void }[] = [];
  const f = follower({
    snapshotEntries: 2,
    saveSnapshot: async (meta, chunks) => {
      for await (const _ of chunks) void _;
      await new Promise<void>((done) => saves.push({ index: meta.index, done }));
    },
  });
  f.replica.start();
  t.after(() => f.replica.stop());
  const entries = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ index: from + i, term: 1, type: 'normal' as const, data: new Uint8Array([i]) }));
  f.replica.receive([message({ type: 'app', term: 1, index: 1, logTerm: 1, entries: entries(2, 3), commit: 3 })]);
  await until(() => saves.length === 1, 'the first snapshot asked for', 10_000);
  assert.equal(saves[0]!.index, 3);
  // Two more entries applied while it is written: the core asks again, and the request must not be lost.
  f.replica.receive([message({ type: 'app', term: 1, index: 3, logTerm: 1, entries: entries(4, 5), commit: 5 })]);
  await until(() => f.sent.filter((m) => m.type === 'appResp' && m.index === 5).length > 0, 'the entries appended', 10_000);
  saves[0]!.done();
  await until(() => saves.length === 2, 'a second snapshot taken once the first was written, with nothing more applied', 10_000);
  assert.equal(saves[1]!.index, 5);
  saves[1]!.done();
});
