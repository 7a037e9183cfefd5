// GET /v1/events: a baseline, then what changes as it changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKENS, harness } from '../../test/support/api.js';
import { diffStatus } from './events.js';

type S = Parameters<typeof diffStatus>[1];
const base: S = {
  nodeName: 'n1', role: 'primary', raftRole: 'leader', term: 3, leader: 'n1', quorumMet: true, failureTolerance: 1, commitIndex: 9,
  peers: [
    { nodeName: 'n1', id: 1, role: 'primary', status: 'healthy', self: true, matchIndex: 9, replicationLagEntries: 0, replicationLagMs: 0 },
    { nodeName: 'n2', id: 2, role: 'standby', status: 'healthy', self: false, matchIndex: 9, replicationLagEntries: 0, replicationLagMs: 0 },
  ],
};

test('diffStatus: nothing but a lag sample when a leader\'s state is unchanged; role, health and membership when they change', () => {
  assert.deepEqual(diffStatus(base, base).map((e) => e.type), ['lag']);
  const lag = diffStatus(base, base)[0]!.data['peers'] as Record<string, unknown>[];
  assert.deepEqual(lag, [{ nodeName: 'n2', matchIndex: 9, lagEntries: 0, lagMs: 0 }], 'the leader itself is not a follower');
  const follower: S = { ...base, raftRole: 'follower', role: 'standby', leader: 'n2', term: 4 };
  assert.deepEqual(diffStatus(base, follower).map((e) => e.type), ['role']);
  const down: S = { ...base, peers: [base.peers[0]!, { ...base.peers[1]!, status: 'unreachable' }], failureTolerance: 0 };
  assert.deepEqual(diffStatus(base, down).map((e) => e.type), ['health', 'lag']);
  const grown: S = { ...base, peers: [...base.peers, { nodeName: 'n3', id: 3, role: 'standby', status: 'healthy', self: false, matchIndex: 0, replicationLagEntries: 9, replicationLagMs: 5 }] };
  assert.deepEqual(diffStatus(base, grown).map((e) => e.type), ['health', 'membership', 'lag']);
  assert.deepEqual(diffStatus(undefined, follower).map((e) => e.type), ['role', 'health', 'membership']);
});

test('diffStatus: a pause or drain re-applied with a new reason or expiry is a health event; the shrinking expiresInMs alone is not', () => {
  const hold = (reason: string, expiresAt: string, expiresInMs: number) => ({ reason, since: '2026-11-30T08:00:00.000Z', expiresAt, expiresInMs });
  const paused: S = { ...base, paused: true, pause: hold('patching', '2026-11-30T09:00:00.000Z', 60_000) };
  const later: S = { ...paused, pause: hold('patching', '2026-11-30T09:00:00.000Z', 59_000) };
  assert.deepEqual(diffStatus(paused, later).map((e) => e.type), ['lag'], 'only the time left changed');
  const reasoned: S = { ...paused, pause: hold('kernel update', '2026-11-30T09:00:00.000Z', 59_000) };
  const ev = diffStatus(paused, reasoned);
  assert.deepEqual(ev.map((e) => e.type), ['health', 'lag']);
  assert.deepEqual(ev[0]!.data['pause'], { reason: 'kernel update', since: '2026-11-30T08:00:00.000Z', expiresAt: '2026-11-30T09:00:00.000Z' });
  const extended: S = { ...paused, pause: hold('patching', '2026-11-30T10:00:00.000Z', 3_600_000) };
  assert.deepEqual(diffStatus(paused, extended).map((e) => e.type), ['health', 'lag']);
  const drained: S = { ...base, drained: ['n2'], drains: { n2: hold('disk swap', '2026-11-30T09:00:00.000Z', 1000) } };
  const redrained: S = { ...drained, drains: { n2: hold('disk swap, second try', '2026-11-30T09:00:00.000Z', 1000) } };
  assert.deepEqual(diffStatus(drained, redrained).map((e) => e.type), ['health', 'lag']);
  assert.deepEqual((diffStatus(drained, redrained)[0]!.data['drains'] as Record<string, Record<string, unknown>>)['n2']!['reason'], 'disk swap, second try');
});

async function* sse(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: Record<string, unknown> }> {
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined) yield { event, data: JSON.parse(data) as Record<string, unknown> };
    }
  }
}

test('GET /v1/events: a status baseline, then a role event when this node stops leading; needs a token', async () => {
  const h = await harness();
  const ac = new AbortController();
  try {
    assert.equal((await fetch(`${h.url}/v1/events`)).status, 401);
    const r = await fetch(`${h.url}/v1/events`, { headers: { authorization: `Bearer ${TOKENS.reader}` }, signal: ac.signal });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
    const events = sse(r.body!);
    const first = await events.next();
    assert.equal(first.value?.event, 'status');
    assert.equal(first.value?.data['raftRole'], 'leader');
    h.node.leader = false;
    h.node.leaderName = 'node2';
    const deadline = Date.now() + 10_000;
    let role: Record<string, unknown> | undefined;
    while (role === undefined && Date.now() < deadline) {
      const e = await events.next();
      if (e.value?.event === 'role') role = e.value.data;
    }
    assert.ok(role, 'a role event arrived');
    assert.equal(role['raftRole'], 'follower');
    assert.equal(role['leader'], 'node2');
  } finally {
    ac.abort();
    await h.close();
  }
});
