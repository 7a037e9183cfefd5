// Streamed uploads and the request deadline, with real processes: a file
// upload has no total deadline, only an idle one (files.uploadIdleTimeoutMs).
// An upload through a follower that pauses below the idle limit completes
// and is whole on every node; one whose client stops sending is answered 408
// request_timeout, and what it had staged is aborted on every node (the
// files checksum, which covers uploads in progress, goes back to what it was).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { READER_TOKEN, TOKEN, TestCluster, http, sleep, waitFor } from './harness.js';

const IDLE_MS = 1500;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Every node at the same applied index and files checksum; returns that checksum. */
async function converge(c: TestCluster): Promise<string> {
  let sum = '';
  await waitFor('every node at the same applied index with the same files checksum', async () => {
    const dumps = await Promise.all(c.nodes.map((n) => http(n.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined)));
    const sums = new Set(dumps.map((d) => (d?.status === 200 ? `${d.body['appliedIndex']}/${d.body['filesChecksum']}` : 'down')));
    if (sums.size !== 1 || sums.has('down')) return false;
    sum = String(dumps[0]!.body['filesChecksum']);
    return sum !== 'undefined';
  }, 30_000);
  return sum;
}

interface Raw {
  readonly socket: Socket;
  received(): string;
  readonly closed: Promise<void>;
}

function rawPut(url: string, path: string, length: number): Promise<Raw> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname, port: Number(u.port) });
    let data = '';
    socket.on('data', (b: Buffer) => { data += b.toString('latin1'); });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () => {
      socket.write(`PUT /v1/files/${path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`);
      resolve({ socket, received: () => data, closed });
    });
    socket.once('error', reject);
  });
}

describe('file uploads and the request deadline (real processes)', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('an upload that pauses below files.uploadIdleTimeoutMs completes; one whose client stops gets 408 and is aborted everywhere', async () => {
    c = await TestCluster.start({ nodes: 3, extraConfig: () => ({ files: { uploadIdleTimeoutMs: IDLE_MS } }) });
    const cl = c;
    const leader = await cl.waitLeader(60_000);
    for (let i = 0; i < 3; i++) await cl.waitReady(i, 30_000);
    const follower = cl.nodes[(leader + 1) % 3]!;

    // Through a follower: 3 MiB in pieces, with pauses of a third of the idle limit between them.
    const body = randomBytes(3 * 1024 * 1024);
    const slow = await rawPut(follower.url, 'slow/steady.bin', body.length);
    const piece = 256 * 1024;
    for (let off = 0; off < body.length; off += piece) {
      slow.socket.write(body.subarray(off, off + piece));
      await sleep(IDLE_MS / 3);
    }
    await waitFor('the answer to the paced upload', () => /\r\n\r\n\{.*\}$/s.test(slow.received()), 60_000);
    assert.match(slow.received(), /^HTTP\/1\.1 200 /, slow.received());
    assert.match(slow.received(), new RegExp(`"sha256":"${sha(body)}"`));
    slow.socket.destroy();
    const before = await converge(cl);
    for (const n of cl.nodes) {
      const r = await fetch(`${n.url}/v1/files/slow/steady.bin?consistency=stale`, { headers: { authorization: `Bearer ${READER_TOKEN}` } });
      assert.equal(r.status, 200);
      assert.equal(sha(Buffer.from(await r.arrayBuffer())), sha(body), `${n.name} holds the whole file`);
    }

    // Through a follower and on the leader: 2.5 MiB sent (chunks staged on every node), then nothing.
    for (const target of [follower, cl.nodes[leader]!]) {
      const stalled = await rawPut(target.url, 'slow/stalled.bin', 8 * 1024 * 1024);
      stalled.socket.write(randomBytes(2.5 * 1024 * 1024));
      await stalled.closed;
      assert.match(stalled.received(), /^HTTP\/1\.1 408 /, `${target.name}: ${stalled.received()}`);
      assert.match(stalled.received(), /"error":"request_timeout"/);
      assert.match(stalled.received(), /files\.uploadIdleTimeoutMs/);
      // The staged chunks are aborted through the log: the files state is as before the upload, on every node.
      await waitFor(`the stalled upload through ${target.name} to be aborted on every node`, async () => (await converge(cl)) === before, 30_000);
      const listed = await http(target.url, 'GET', '/v1/files?prefix=slow/', { token: READER_TOKEN });
      assert.deepEqual((listed.body['files'] as { path: string }[]).map((f) => f.path), ['slow/steady.bin']);
    }
  });
});
