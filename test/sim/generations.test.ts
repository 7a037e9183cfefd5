// The log-matching oracle's memory (GenOracles): two chains at one (index,
// term) are a violation, except where one was only ever in the memory of a
// node whose restart shows it never made that term durable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GenOracles } from './generations.js';

test('log matching: two nodes with different chains at the same (index, term) is a violation', () => {
  const g = new GenOracles(0);
  assert.equal(g.recordWrite(1, 5, 2, 111), true);
  assert.equal(g.recordWrite(2, 5, 2, 111), true, 'the same chain agrees');
  assert.equal(g.recordWrite(3, 5, 2, 222), false);
});

test('log matching: an entry only its writer held, of a term its restart never made durable, is forgotten', () => {
  const g = new GenOracles(0);
  assert.equal(g.recordWrite(6, 30, 5, 111), true);
  assert.equal(g.recordWrite(6, 31, 5, 222), true);
  g.forgetLostTerms(6, 4);
  assert.equal(g.recordWrite(6, 30, 5, 111), true);
  assert.equal(g.recordWrite(6, 31, 5, 333), true, 'the leader it becomes again in term 5 writes its own entry 31');
});

test('log matching: an entry of a durable term, or one another node wrote, is never forgotten', () => {
  const g = new GenOracles(0);
  assert.equal(g.recordWrite(6, 30, 5, 111), true);
  g.forgetLostTerms(6, 5);
  assert.equal(g.recordWrite(6, 30, 5, 999), false, 'term 5 was durable: a second chain is a violation');

  const h = new GenOracles(0);
  assert.equal(h.recordWrite(6, 30, 5, 111), true);
  assert.equal(h.recordWrite(2, 30, 5, 111), true, 'node 2 persisted it too');
  h.forgetLostTerms(6, 4);
  assert.equal(h.recordWrite(6, 30, 5, 999), false, 'shared: node 6 may not write another entry there');
  assert.equal(h.recordWrite(3, 30, 5, 999), false);
});

test('log matching: forgetting one node\'s lost term leaves the other nodes\' entries of that term', () => {
  const g = new GenOracles(0);
  assert.equal(g.recordWrite(1, 40, 7, 111), true);
  assert.equal(g.recordWrite(6, 41, 7, 222), true);
  g.forgetLostTerms(6, 6);
  assert.equal(g.recordWrite(2, 40, 7, 999), false, 'node 1\'s entry stays');
  assert.equal(g.recordWrite(2, 41, 7, 333), true);
});
