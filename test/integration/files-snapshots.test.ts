// Replicated files and the nodes' own (local) snapshots, with real processes:
// a 24 MiB upload makes every node snapshot more than once
// (cluster.snapshotBytes, 8 MiB of entries) with the files' content held by
// reference (files/held/), so the stored snapshots stay small; the leader
// killed with -9 in the middle of a second upload leaves that file absent on
// every node (never partial); the old leader restarts from its own local
// snapshot and the log with every file whole; the re-upload succeeds and the
// checksums agree.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { READER_TOKEN, TOKEN, TestCluster, http as call, waitFor } from './harness.js';

const MiB = 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function put(url: string, path: string, body: Buffer): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${url}/v1/files/${path}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream' }, body, signal: AbortSignal.timeout(60_000) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function get(url: string, path: string): Promise<{ status: number; bytes: Buffer }> {
  const r = await fetch(`${url}/v1/files/${path}?consistency=stale`, { headers: { authorization: `Bearer ${READER_TOKEN}` }, signal: AbortSignal.timeout(60_000) });
  return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()) };
}

async function filesChecksum(url: string): Promise<string | undefined> {
  const d = await call(url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined);
  return d?.status === 200 ? `${String(d.body['appliedIndex'])}/${String(d.body['filesChecksum'])}` : undefined;
}

async function converge(c: TestCluster, nodes: number[]): Promise<void> {
  let last = '';
  await waitFor('the nodes at the same applied index with the same files checksum', async () => {
    const sums = new Set(await Promise.all(nodes.map((i) => filesChecksum(c.nodes[i]!.url))));
    last = [...sums].join(' ');
    return sums.size === 1 && !sums.has(undefined);
  }, 60_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${last}`);
  });
}

const snapFiles = (dir: string): string[] => readdirSync(join(dir, 'raft', 'snap')).filter((f) => f.endsWith('.snap')).map((f) => join(dir, 'raft', 'snap', f));

describe('replicated files in local snapshots (real processes)', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('snapshots hold the files by reference; the leader killed mid-upload leaves no half file; it restarts from its own snapshot with every file whole', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const cl = c;
    const leader = await cl.waitLeader(60_000);
    for (let i = 0; i < 3; i++) await cl.waitReady(i, 30_000);
    const all = [0, 1, 2];

    const a = randomBytes(24 * MiB);
    const ra = await put(cl.nodes[leader]!.url, 'big/a.bin', a);
    assert.equal(ra.status, 200, JSON.stringify(ra.body));
    await converge(cl, all);
    for (const n of cl.nodes) {
      const held = readdirSync(join(n.dir, 'files', 'held'));
      assert.ok(held.length >= 1, `${n.name} took a local snapshot during the upload (files/held: ${held.join(', ')})`);
      for (const f of snapFiles(n.dir)) assert.ok(statSync(f).size < MiB, `${n.name}: ${f} holds records, not the 24 MiB (${statSync(f).size} bytes)`);
    }

    // A second upload, cut by kill -9 of the leader once some of its chunks were applied.
    const f1 = (leader + 1) % 3;
    const f2 = (leader + 2) % 3;
    const before = await filesChecksum(cl.nodes[f1]!.url);
    const url = new URL(cl.nodes[leader]!.url);
    const req = http.request({ host: url.hostname, port: url.port, method: 'PUT', path: '/v1/files/big/b.bin', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', 'content-length': 32 * MiB } });
    const answered = new Promise<string>((resolve) => {
      req.on('response', (res) => resolve(`answered ${res.statusCode}`));
      req.on('error', (e) => resolve(`failed: ${e.message}`));
    });
    for (let i = 0; i < 12; i++) req.write(randomBytes(MiB));
    await waitFor('chunks of the second upload applied on a follower', async () => {
      const now = await filesChecksum(cl.nodes[f1]!.url);
      return now !== undefined && now.split('/')[1] !== before?.split('/')[1];
    }, 30_000);
    cl.kill(leader);
    await cl.waitExit(leader);
    assert.match(await answered, /failed/);
    const next = await cl.waitLeader(60_000, [leader]);
    await converge(cl, [f1, f2]);
    for (const i of [f1, f2]) {
      assert.equal((await get(cl.nodes[i]!.url, 'big/b.bin')).status, 404, `${cl.nodes[i]!.name}: no half file`);
      assert.equal(sha((await get(cl.nodes[i]!.url, 'big/a.bin')).bytes), sha(a));
    }

    // The old leader comes back from its own (local) snapshot and the log.
    cl.startNode(leader);
    await cl.waitReady(leader, 60_000);
    const starts = [...cl.log(leader).matchAll(/"event":"node_started".*?"firstIndex":(\d+)/g)].map((m) => Number(m[1]));
    assert.ok(starts.length === 2 && starts[1]! > 1, `the restarted node started from its snapshot (first log index at each start: ${starts.join(', ')})`);
    await converge(cl, all);
    assert.equal(sha((await get(cl.nodes[leader]!.url, 'big/a.bin')).bytes), sha(a), 'the restarted node has the file whole');
    assert.equal((await get(cl.nodes[leader]!.url, 'big/b.bin')).status, 404);

    // The upload again, through the new leader: whole everywhere.
    const b = randomBytes(32 * MiB);
    const rb = await put(cl.nodes[next]!.url, 'big/b.bin', b);
    assert.equal(rb.status, 200, JSON.stringify(rb.body));
    await converge(cl, all);
    for (const n of cl.nodes) assert.equal(sha((await get(n.url, 'big/b.bin')).bytes), sha(b), `${n.name} has the re-upload whole`);
  });
});
