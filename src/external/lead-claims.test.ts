import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeClaim, encodeClaim, nextToken, TokenClaims, type ClaimRequest } from './lead-claims.js';

const claim = (o: Partial<ClaimRequest> = {}): ClaimRequest => ({ floor: 0, term: 1, by: 1, nodeName: 'n1', apiUrl: 'http://127.0.0.1:8001', ...o });

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(Buffer.from(c));
  return out;
}

async function* chunks(parts: Uint8Array[]): AsyncIterable<Uint8Array> {
  await Promise.resolve();
  yield* parts;
}

test('a claim takes max(last token, the fence row\'s floor) + 1: tokens strictly increase and pass a Redis-era leftover', () => {
  assert.equal(nextToken(0, 0), 1);
  assert.equal(nextToken(7, 3), 8);
  assert.equal(nextToken(7, 1_000_000), 1_000_001);
  const m = new TokenClaims();
  const seen: number[] = [];
  m.onClaim((c) => seen.push(c.token));
  m.apply(1, new Uint8Array(0)); // a new leader's no-op: the applied index moves, no token
  assert.equal(m.token, 0);
  assert.equal(m.appliedIndex, 1);
  m.apply(2, encodeClaim(claim({ term: 1, floor: 0 })));
  // A fence row pre-seeded by an earlier era (Redis-led, token 5000): the next claim passes it.
  m.apply(3, encodeClaim(claim({ term: 2, by: 2, nodeName: 'n2', floor: 5000 })));
  // A stale floor (read before the last claim raised the row): the counter still goes up.
  m.apply(4, encodeClaim(claim({ term: 3, by: 3, nodeName: 'n3', floor: 1 })));
  // The same term claiming again (after a step-down on the fence row's evidence): a newer token too.
  m.apply(5, encodeClaim(claim({ term: 3, by: 3, nodeName: 'n3', floor: 5001 })));
  assert.deepEqual(seen, [1, 5001, 5002, 5003]);
  assert.deepEqual(m.last, { floor: 5001, term: 3, by: 3, nodeName: 'n3', apiUrl: 'http://127.0.0.1:8001', token: 5003, index: 5 });
  m.markApplied(6);
  assert.equal(m.appliedIndex, 6);
});

test('every member applying the same log computes the same tokens (an earlier term\'s claim committed late does not make a later one fail)', () => {
  const log = [
    encodeClaim(claim({ term: 4, by: 1, floor: 10 })),
    // Proposed in term 5 by a leader that had not applied term 4's claim yet: its floor is older, its token is still above.
    encodeClaim(claim({ term: 5, by: 2, floor: 10 })),
  ];
  const a = new TokenClaims();
  const b = new TokenClaims();
  log.forEach((d, i) => { a.apply(i + 1, d); b.apply(i + 1, d); });
  assert.equal(a.token, 12);
  assert.deepEqual(a.last, b.last);
});

test('the claims survive a snapshot and restore; a snapshot that is not one is refused and changes nothing', async () => {
  const m = new TokenClaims();
  m.apply(1, encodeClaim(claim({ floor: 41 })));
  m.apply(2, new Uint8Array(0));
  const snap = await collect(m.snapshot());
  const r = new TokenClaims();
  await r.validate(chunks(snap));
  await r.restore(chunks(snap));
  assert.equal(r.appliedIndex, 2);
  assert.equal(r.token, 42);
  assert.deepEqual(r.last, m.last);
  r.apply(3, encodeClaim(claim({ term: 2 })));
  assert.equal(r.token, 43);
  // An empty state's snapshot restores to an empty state.
  const empty = new TokenClaims();
  const e2 = new TokenClaims();
  await e2.restore(chunks(await collect(empty.snapshot())));
  assert.equal(e2.token, 0);
  await assert.rejects(r.restore(chunks([Buffer.from('{"magic":"other","applied":1,"last":null}')])), /lacks its magic/);
  await assert.rejects(r.validate(chunks([Buffer.from('not json')])), /not JSON/);
  await assert.rejects(r.restore(chunks([Buffer.from(JSON.stringify({ magic: 'quorate-lead-claims', applied: 3, last: { floor: 0, term: 1, by: 1, nodeName: 'x', apiUrl: '', token: 0, index: 1 } }))])), /malformed claim/);
  assert.equal(r.token, 43, 'a refused restore changed nothing');
});

test('an entry that is not a claim stops the group (it holds entries quorate did not write), naming the index', () => {
  const m = new TokenClaims();
  assert.throws(() => m.apply(7, Buffer.from('{"put":1}')), /not a token claim \(index 7\)/);
  assert.throws(() => m.apply(8, Buffer.from('\u0001binary')), /not JSON/);
  assert.ok(decodeClaim(Buffer.from(JSON.stringify({ claim: { floor: -1, term: 1, by: 1, nodeName: 'a', apiUrl: '' } }))) instanceof Error, 'a negative floor');
  assert.ok(decodeClaim(Buffer.from(JSON.stringify({ claim: { floor: 0, term: 0, by: 1, nodeName: 'a', apiUrl: '' } }))) instanceof Error, 'term 0');
  assert.deepEqual(decodeClaim(encodeClaim(claim())), claim());
});
