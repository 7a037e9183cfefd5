// Fuzzing a live node's peer port while the cluster keeps committing: random
// bytes, frames with random types and payloads, and mutations of well-formed
// handshake frames are thrown at one member's peer port from many short
// connections, while a client writes through the cluster. The node must
// refuse each connection (the handshake never completes without the cluster
// secret) and go on: no crash, no stall of the commits, every acknowledged
// write readable afterwards.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import fc from 'fast-check';
import { FrameType, encodeFrame } from '../../src/transport/codec.js';
import { TestCluster } from '../integration/harness.js';
import { budget, timeoutMs } from './budget.js';

const FRAME_TYPES = Object.keys(FrameType) as (keyof typeof FrameType)[];

/** Random bytes; a frame of a random type with a random payload; a header that claims a huge or odd length; several frames at once. */
const garbage = fc.oneof(
  fc.uint8Array({ maxLength: 256 }),
  fc.tuple(fc.constantFrom(...FRAME_TYPES), fc.uint8Array({ maxLength: 512 })).map(([t, p]) => Uint8Array.from(encodeFrame(t, p))),
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 })).map(([len, type, rest]) => {
    const b = Buffer.alloc(5 + rest.length);
    b.writeUInt32BE(len, 0);
    b.writeUInt8(type, 4);
    b.set(rest, 5);
    return Uint8Array.from(b);
  }),
  fc.array(fc.tuple(fc.constantFrom(...FRAME_TYPES), fc.uint8Array({ maxLength: 64 })), { minLength: 2, maxLength: 6 })
    .map((fs) => Uint8Array.from(Buffer.concat(fs.map(([t, p]) => encodeFrame(t, p))))),
);

/** Sends `bytes` on a fresh connection and waits until the node closes it (or 2 s pass: then we close it). */
function throwAt(port: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve();
    };
    const t = setTimeout(done, 2000);
    s.on('connect', () => s.write(bytes, () => s.end()));
    s.on('data', () => undefined);
    s.on('close', done);
    s.on('error', done);
  });
}

let c: TestCluster | undefined;
after(async () => {
  await c?.stop();
});

test('a live node refuses random frames on its peer port and the cluster keeps committing meanwhile', { timeout: timeoutMs(120_000) }, async () => {
  c = await TestCluster.start({ nodes: 3 });
  await c.waitLeader(40_000);
  const victim = 1;
  const peerAddress = (JSON.parse(readFileSync(c.nodes[victim]!.configPath, 'utf8')) as { node: { peerAddress: string } }).node.peerAddress;
  const port = Number(peerAddress.slice(peerAddress.lastIndexOf(':') + 1));
  const client = c.client();
  const acked: string[] = [];
  let writing = true;
  let failures = 0;
  const writer = (async () => {
    for (let n = 0; writing; n++) {
      try {
        await client.kvPut(`fuzz/${n}`, String(n));
        acked.push(`fuzz/${n}`);
      } catch {
        failures++;
      }
    }
  })();

  let thrown = 0;
  const ackedBefore = acked.length;
  await fc.assert(fc.asyncProperty(garbage, async (bytes) => {
    await throwAt(port, bytes);
    thrown++;
  }), budget(150));
  // How many writes land while the frames fly depends on how fast the node
  // refuses them, not on whether commits go on: keep throwing until 20 writes
  // were acknowledged under fire (a stalled cluster fails at the deadline).
  const deadline = Date.now() + 30_000;
  while (acked.length - ackedBefore < 20 && Date.now() < deadline) {
    for (const bytes of fc.sample(garbage, 10)) await throwAt(port, bytes);
    thrown += 10;
  }
  const during = acked.length - ackedBefore;
  writing = false;
  await writer;

  assert.ok(thrown >= 150, `frames thrown: ${thrown}`);
  assert.ok(during >= 20, `the cluster kept committing while the peer port was fuzzed (${during} writes acknowledged in 30 s of fuzzing, ${failures} failed)`);
  for (let i = 0; i < 3; i++) assert.equal(c.nodes[i]!.exitCode, undefined, `${c.nodes[i]!.name} is still running`);
  // The fuzzed node still serves and is still a member that follows the leader.
  const st = await c.client({ urls: [c.nodes[victim]!.url] }).clusterStatus();
  assert.ok(typeof st.leader === 'string' && st.leader !== '', `${c.nodes[victim]!.name} follows a leader: ${JSON.stringify(st).slice(0, 200)}`);
  // Every acknowledged write is there.
  const list = await client.kvList('fuzz/', 100_000);
  const keys = new Set(list.items.map((x) => x.key));
  const missing = acked.filter((k) => !keys.has(k));
  assert.deepEqual(missing, [], 'no acknowledged write lost');
  // The node said why it refused (and rate-limits what it logs).
  assert.match(c.log(victim), /"event":"(peer_frame_invalid|peer_auth_failed|peer_refused_inbound|peer_connections_refused)"/);
});
