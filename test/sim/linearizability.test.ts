import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHistory, checkKey, type HistoryEntry, type KvOp, type KvOutput } from './linearizability.js';

const OK: KvOutput = { kind: 'ok' };
const FAIL: KvOutput = { kind: 'fail' };
const seen = (value: string | null): KvOutput => ({ kind: 'read', value });
const w = (key: string, value: string): KvOp => ({ kind: 'write', key, value });
const r = (key: string): KvOp => ({ kind: 'read', key });
const cas = (key: string, expected: string | null, value: string): KvOp => ({ kind: 'cas', key, expected, value });
const h = (client: number, op: KvOp, output: KvOutput | undefined, invokeAt: number, returnAt: number | undefined): HistoryEntry => ({
  client,
  op,
  output,
  invokeAt,
  returnAt,
});

test('sequential write then read is linearizable', () => {
  const res = checkHistory([h(1, w('x', 'a'), OK, 0, 10), h(2, r('x'), seen('a'), 20, 30)]);
  assert.equal(res.result, 'linearizable');
});

test('read of a missing key sees null', () => {
  assert.equal(checkHistory([h(1, r('x'), seen(null), 0, 1)]).result, 'linearizable');
  assert.equal(checkHistory([h(1, r('x'), seen('a'), 0, 1)]).result, 'violation');
});

test('stale read after a completed write is a violation', () => {
  const res = checkHistory([h(1, w('x', 'a'), OK, 0, 10), h(1, w('x', 'b'), OK, 11, 20), h(2, r('x'), seen('a'), 25, 30)]);
  assert.equal(res.result, 'violation');
});

test('a read concurrent with a write may see either value', () => {
  const base = [h(1, w('x', 'a'), OK, 0, 10), h(1, w('x', 'b'), OK, 11, 20)];
  assert.equal(checkHistory([...base, h(2, r('x'), seen('a'), 15, 30)]).result, 'linearizable');
  assert.equal(checkHistory([...base, h(2, r('x'), seen('b'), 15, 30)]).result, 'linearizable');
});

test('two concurrent writes: readers agreeing on an order are fine, disagreeing ones are not', () => {
  const writes = [h(1, w('x', 'a'), OK, 0, 10), h(2, w('x', 'b'), OK, 0, 10)];
  // Both readers after both writes see the same final value.
  assert.equal(checkHistory([...writes, h(3, r('x'), seen('b'), 20, 25), h(4, r('x'), seen('b'), 30, 35)]).result, 'linearizable');
  // Sequential readers see a, then b, then a again: no single order explains it.
  const res = checkHistory([
    ...writes,
    h(3, r('x'), seen('a'), 20, 25),
    h(4, r('x'), seen('b'), 30, 35),
    h(3, r('x'), seen('a'), 40, 45),
  ]);
  assert.equal(res.result, 'violation');
  // Readers both after the writes disagree on the final value.
  assert.equal(checkHistory([...writes, h(3, r('x'), seen('a'), 20, 25), h(4, r('x'), seen('b'), 20, 25)]).result, 'violation');
});

test('a lost CAS (acknowledged, then not visible) is a violation', () => {
  const res = checkHistory([
    h(1, w('x', 'a'), OK, 0, 10),
    h(2, cas('x', 'a', 'b'), OK, 20, 30),
    h(3, r('x'), seen('a'), 40, 50),
  ]);
  assert.equal(res.result, 'violation');
  // Two CASes from the same expected value cannot both succeed.
  assert.equal(
    checkHistory([h(1, w('x', 'a'), OK, 0, 10), h(2, cas('x', 'a', 'b'), OK, 20, 30), h(3, cas('x', 'a', 'c'), OK, 20, 30)]).result,
    'violation',
  );
  // ... but one may fail.
  assert.equal(
    checkHistory([h(1, w('x', 'a'), OK, 0, 10), h(2, cas('x', 'a', 'b'), OK, 20, 30), h(3, cas('x', 'a', 'c'), FAIL, 20, 30)]).result,
    'linearizable',
  );
  // cas with expected null means "must not exist".
  assert.equal(checkHistory([h(1, cas('x', null, 'a'), OK, 0, 1), h(1, r('x'), seen('a'), 2, 3)]).result, 'linearizable');
  assert.equal(checkHistory([h(1, w('x', 'z'), OK, 0, 1), h(1, cas('x', null, 'a'), OK, 2, 3)]).result, 'violation');
  assert.equal(checkHistory([h(1, cas('x', null, 'a'), FAIL, 0, 1)]).result, 'violation');
});

test('an indeterminate write that later appears is linearizable', () => {
  const res = checkHistory([
    h(1, w('x', 'a'), OK, 0, 10),
    h(2, w('x', 'b'), undefined, 20, undefined),
    h(3, r('x'), seen('a'), 30, 40),
    h(3, r('x'), seen('b'), 100, 110),
    h(3, r('x'), seen('b'), 120, 130),
  ]);
  assert.equal(res.result, 'linearizable');
});

test('an indeterminate write that never appears is linearizable', () => {
  const res = checkHistory([
    h(1, w('x', 'a'), OK, 0, 10),
    h(2, w('x', 'b'), undefined, 20, undefined),
    h(3, r('x'), seen('a'), 30, 40),
    h(3, r('x'), seen('a'), 1000, 1010),
  ]);
  assert.equal(res.result, 'linearizable');
});

test('an indeterminate write cannot take effect before it was invoked', () => {
  const res = checkHistory([h(1, r('x'), seen('b'), 0, 10), h(2, w('x', 'b'), undefined, 20, undefined)]);
  assert.equal(res.result, 'violation');
});

test('an indeterminate write that appears and then disappears is a violation', () => {
  const res = checkHistory([
    h(1, w('x', 'a'), OK, 0, 10),
    h(2, w('x', 'b'), undefined, 20, undefined),
    h(3, r('x'), seen('b'), 30, 40),
    h(3, r('x'), seen('a'), 50, 60),
  ]);
  assert.equal(res.result, 'violation');
});

test('keys are checked independently', () => {
  const res = checkHistory([
    h(1, w('x', 'a'), OK, 0, 10),
    h(2, w('y', 'b'), OK, 0, 10),
    h(3, r('y'), seen('b'), 20, 30),
    h(3, r('x'), seen(null), 40, 50),
  ]);
  assert.equal(res.result, 'violation');
  if (res.result === 'violation') assert.equal(res.key, 'x');
});

test('the search gives up with a clear result when the bound is hit', () => {
  // Many concurrent writes of distinct values and a final read of the first: a wide search.
  const hist: HistoryEntry[] = [];
  for (let i = 0; i < 40; i++) hist.push(h(i, w('x', `v${i}`), OK, 0, 100));
  hist.push(h(99, r('x'), seen('nope'), 200, 210));
  const res = checkKey(hist, 1000);
  assert.equal(res.result, 'gaveUp');
  const full = checkHistory(hist, { maxStatesPerKey: 1000 });
  assert.equal(full.result, 'gaveUp');
  if (full.result === 'gaveUp') assert.match(full.detail, /gave up after \d+ states/);
});

test('memoization keeps a wide concurrent history fast', () => {
  // 200 overlapping write/read pairs: without Lowe's cache this explodes.
  const hist: HistoryEntry[] = [];
  for (let i = 0; i < 200; i++) {
    hist.push(h(i % 5, w('x', `v${i}`), OK, i * 10, i * 10 + 25));
    hist.push(h(5 + (i % 5), r('x'), seen(`v${i}`), i * 10 + 26, i * 10 + 30));
  }
  const t0 = performance.now();
  assert.equal(checkHistory(hist).result, 'linearizable');
  assert.ok(performance.now() - t0 < 2000);
});
