// The bound on peer connections per remote address, before any handshake.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { connected, mesh, startNode, until, type Node } from '../../test/support/transport.js';

function open(port: number, localAddress: string): Promise<{ socket: Socket; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    let closed = false;
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    socket.on('close', () => { closed = true; });
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed: () => closed }));
    socket.once('error', reject);
  });
}

describe('peer connections per address', () => {
  const nodes: Node[] = [];
  after(async () => {
    for (const n of nodes) await n.t.close();
  });

  it('cuts connections past the bound at accept, logs it, and leaves other addresses and members alone', async () => {
    const a = await startNode(1, { maxConnectionsPerAddress: 3, handshakeTimeoutMs: 60_000 });
    const b = await startNode(2);
    nodes.push(a, b);
    const flood = [];
    for (let i = 0; i < 3; i++) flood.push(await open(a.port, '127.0.0.2'));
    const extra = await open(a.port, '127.0.0.2');
    await until(() => extra.closed(), 'the connection past the bound is closed');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(flood.every((c) => !c.closed()), 'connections within the bound stay open (until their handshake timeout)');
    assert.ok(a.log.lines.some((l) => l['event'] === 'peer_connections_refused' && l['address'] === '127.0.0.2'));
    // A member dialing from another address still connects and exchanges messages.
    mesh([a, b]);
    await connected(b, a);
    await connected(a, b);
    // Once the flood closes, that address may connect again.
    for (const c of flood) c.socket.destroy();
    await until(async () => {
      const again = await open(a.port, '127.0.0.2');
      await new Promise((r) => setTimeout(r, 50));
      const ok = !again.closed();
      again.socket.destroy();
      return ok;
    }, 'the address may connect again after its connections closed');
  });
});
