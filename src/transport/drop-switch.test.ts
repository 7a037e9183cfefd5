// The drop switch of a drill's isolate fault (src/node/drills.ts): while on,
// every Raft message in and out of the node is dropped (and counted), the
// connections stay up, and traffic flows again the moment it is switched off.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { connectedPair, msg, until } from '../../test/support/transport.js';

it('setDropAll: messages in and out are dropped while on, delivered again once off', async () => {
  const [a, b] = await connectedPair();
  try {
    a.t.setDropAll(true);
    assert.equal(a.t.droppingAll, true);
    a.t.send([msg({ from: 1, to: 2, type: 'heartbeat', term: 2 })]);
    b.t.send([msg({ from: 2, to: 1, type: 'heartbeatResp', term: 2 })]);
    // b's message reaches a's socket (b counts it sent) but a does not hand it on.
    await until(() => (b.t.stats().get(1)?.msgsSent ?? 0) === 1, 'node 2 sent its message');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(b.received.length, 0);
    assert.equal(a.received.length, 0);
    assert.equal(a.t.stats().get(2)!.dropped, 1);
    assert.equal(a.t.stats().get(2)!.connected, true, 'the connection stays up');
    a.t.setDropAll(false);
    a.t.send([msg({ from: 1, to: 2, type: 'heartbeat', term: 3 })]);
    b.t.send([msg({ from: 2, to: 1, type: 'heartbeatResp', term: 3 })]);
    await until(() => a.received.length === 1 && b.received.length === 1, 'both messages after the switch is off');
    assert.equal(b.received[0]!.term, 3);
    assert.equal(a.received[0]!.term, 3);
  } finally {
    await a.t.close();
    await b.t.close();
  }
});
