// The witness agent's ordering rules (WITNESS.md), step by step: a shrink
// reaches the core only after its script succeeded, a grow before its script
// is sent, an answer that never came keeps both sets, a failed renewal's
// deadline deposes the leader, and a standby outside the in-sync set says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WitnessAgent, type AgentEffect, type CoreView } from './witness-agent.js';
import { transition, type WitnessOp, type WitnessRecord } from './witness-record.js';

const cfg = { id: 1, voters: [1, 2], ttlMs: 1000, renewMs: 250, pollMs: 100, stopBudgetMs: 50, degradeAfterMs: 600 };
const view = (o: Partial<CoreView> = {}): CoreView => ({ leader: false, term: 0, commit: 0, fresh: false, peers: [], ...o });
const commitSets = (es: readonly AgentEffect[]) => es.flatMap((e) => (e.kind === 'commitSet' ? [e.ids] : []));

function leaderAgent(degrade: boolean): { a: WitnessAgent; rec: WitnessRecord } {
  const a = new WitnessAgent({ ...cfg, degrade });
  const rec0: WitnessRecord = { leader: 0, epoch: 0, expires: 0, insync: [1, 2], stamp: 's' };
  const { op } = a.next(0, view());
  assert.equal(op?.op, 'acquire');
  const r = transition(rec0, op!, 0, 's');
  const effects = a.result(op!, r, 0, 5, view());
  assert.deepEqual(effects[0], { kind: 'appoint', epoch: 1, inSync: [1, 2] });
  return { a, rec: r.record! };
}

test('shrink: the commit set keeps the silent node until the script succeeded', () => {
  const { a, rec } = leaderAgent(true);
  const silent = view({ leader: true, term: 1, commit: 5, peers: [{ id: 2, match: 5, silentMs: 700 }] });
  const { op, effects } = a.next(10, silent);
  assert.equal(op?.op, 'shrink');
  assert.deepEqual(commitSets(effects), []);
  assert.deepEqual(a.commitSet(), [1, 2], 'in flight: still both');
  // No answer (timeout): the outcome is unknown, both stay, and the same script is retried.
  assert.deepEqual(commitSets(a.result(op!, undefined, 10, 150, silent)), []);
  assert.deepEqual(a.commitSet(), [1, 2]);
  const retry = a.next(160, silent).op!;
  assert.deepEqual(retry, op);
  const r = transition(rec, retry, 160, 's');
  assert.ok(r.ok);
  assert.deepEqual(commitSets(a.result(retry, r, 160, 170, silent)), [[1]], 'only now the leader commits alone');
  assert.deepEqual(a.status().inSync, [1]);
});

test('grow: the node enters the commit set first, the witness only once it holds every committed entry', () => {
  const { a, rec: rec1 } = leaderAgent(true);
  const rec: WitnessRecord = { ...rec1, insync: [1] };
  (a as unknown as { result: WitnessAgent['result'] }).result({ op: 'shrink', me: 1, epoch: 1, from: [1, 2], to: [1] } as WitnessOp, { ok: true, record: rec, now: 0 }, 0, 0, view({ leader: true }));
  // result() ignores a script that is not in flight: the agent still has both.
  assert.deepEqual(a.status().inSync, [1, 2]);
  // Drive a real shrink first.
  const s = a.next(10, view({ leader: true, term: 1, commit: 5, peers: [{ id: 2, match: 5, silentMs: 700 }] })).op!;
  a.result(s, transition(rec1, s, 10, 's'), 10, 12, view({ leader: true }));
  assert.deepEqual(a.commitSet(), [1]);
  const back = view({ leader: true, term: 1, commit: 9, peers: [{ id: 2, match: 5, silentMs: 10 }] });
  const g1 = a.next(20, back);
  assert.equal(g1.op, undefined, 'no grow script yet');
  assert.deepEqual(commitSets(g1.effects), [[1, 2]], 'first into the commit set');
  assert.equal(a.next(30, back).op, undefined, 'behind the commit index: not yet');
  const g = a.next(40, view({ leader: true, term: 1, commit: 9, peers: [{ id: 2, match: 9, silentMs: 10 }] })).op!;
  assert.equal(g.op, 'grow');
  assert.deepEqual(a.commitSet(), [1, 2]);
});

test('a leader whose renewals fail steps down at sent + TTL/1.01 − stop budget, before the lease can expire in Redis', () => {
  const { a } = leaderAgent(false);
  const v = view({ leader: true, term: 1, commit: 1, peers: [{ id: 2, match: 1, silentMs: 0 }] });
  const renew = a.next(250, v).op!;
  assert.equal(renew.op, 'renew');
  a.result(renew, undefined, 250, 550, v);
  assert.ok(a.mayAct(939));
  const { effects } = a.next(940, v);
  assert.equal(effects[0]?.kind, 'stepDown');
  assert.equal(a.mayAct(940), false);
  assert.equal(a.leading, false);
});

test('a standby outside the in-sync set does not lead and says why; a missing record is not recreated by a node that has data', () => {
  const a = new WitnessAgent({ ...cfg, id: 2, degrade: true });
  const rec: WitnessRecord = { leader: 1, epoch: 3, expires: 0, insync: [1], stamp: 's' };
  const op = a.next(0, view({ term: 3 })).op!;
  const r = transition(rec, op, 5000, 's');
  assert.equal(r.ok, false);
  assert.deepEqual(a.result(op, r, 0, 10, view({ term: 3 })), []);
  assert.match(a.status().waiting ?? '', /not in the in-sync set \(1\)/);
  const b = new WitnessAgent({ ...cfg, id: 1, degrade: false });
  const op2 = b.next(0, view({ term: 3 })).op!;
  b.result(op2, transition(undefined, op2, 0, 's'), 0, 1, view({ term: 3 }));
  assert.match(b.status().waiting ?? '', /quorate witness confirm/);
  assert.equal(b.next(500, view({ term: 3 })).op?.op, 'acquire', 'it keeps asking, never creates');
});

test('default mode: a silent standby leaves the in-sync set by the CAS but stays in the commit set (writes wait); the core then knows the set is the leader alone', () => {
  const { a, rec } = leaderAgent(false);
  const silent = view({ leader: true, term: 1, commit: 5, peers: [{ id: 2, match: 5, silentMs: 700 }] });
  const { op } = a.next(10, silent);
  assert.equal(op?.op, 'shrink');
  assert.deepEqual(a.syncSet(), [1, 2], 'in flight: the core still counts both');
  const effects = a.result(op!, transition(rec, op!, 10, 's'), 10, 12, silent);
  const sets = effects.flatMap((e) => (e.kind === 'commitSet' ? [e] : []));
  assert.deepEqual(sets, [{ kind: 'commitSet', ids: [1, 2], inSync: [1] }]);
  assert.ok((a.deadline() ?? 0) > 12, 'it holds the lease (services check this deadline)');
  // Back and caught up: grown back in Patroni's order (in the sync set first, the witness after).
  const back = view({ leader: true, term: 1, commit: 9, peers: [{ id: 2, match: 9, silentMs: 10 }] });
  const g1 = a.next(20, back);
  assert.deepEqual(g1.effects.flatMap((e) => (e.kind === 'commitSet' ? [e.inSync] : [])), [[1, 2]]);
  assert.equal(a.next(30, back).op?.op, 'grow');
});
