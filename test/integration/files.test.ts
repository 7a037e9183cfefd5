// Replicated files with real processes: uploads through followers (the body
// streamed to the leader), reads from every node with equal content and
// SHA-256, a follower killed with -9 and restarted has every file (also one
// written while it was down, after the log was compacted past it: by
// snapshot), path validation and the size limit, a byte flipped on one
// node's disk reported naming the path, the CLI verbs.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, READER_TOKEN, TOKEN, TestCluster, http, sleep, snapshotNow, waitFor } from './harness.js';

const MAX = 8 * 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function put(url: string, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${url}/v1/files/${path}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', ...headers }, body, signal: AbortSignal.timeout(30_000) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function get(url: string, path: string, o: { stale?: boolean; headers?: Record<string, string> } = {}): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const r = await fetch(`${url}/v1/files/${path}${o.stale === true ? '?consistency=stale' : ''}`, { headers: { authorization: `Bearer ${READER_TOKEN}`, ...(o.headers ?? {}) }, signal: AbortSignal.timeout(30_000) });
  return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

async function converge(c: TestCluster, timeoutMs = 30_000): Promise<string> {
  let last = '';
  await waitFor('every node at the same applied index with the same files checksum', async () => {
    const dumps = await Promise.all(c.nodes.map((n) => http(n.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN }).catch(() => undefined)));
    const sums = new Set(dumps.map((d) => (d?.status === 200 ? `${d.body['appliedIndex']}/${d.body['filesChecksum']}` : 'down')));
    last = [...sums].join(' ');
    return sums.size === 1 && !sums.has('down') && !last.includes('undefined');
  }, timeoutMs).catch((e: Error) => {
    throw new Error(`${e.message}: ${last}`);
  });
  return last;
}

describe('replicated files (real processes)', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('uploads through a follower reach every node whole; kill -9 of a follower, restart: it has every file, checksums equal; limits, path validation, corruption, the CLI', async (t) => {
    c = await TestCluster.start({ nodes: 3, cluster: { snapshotEntries: 100, snapshotTrailingEntries: 10 }, extraConfig: () => ({ files: { maxFileBytes: MAX } }) });
    const cl = c;
    const leader = await cl.waitLeader(60_000);
    for (let i = 0; i < 3; i++) await cl.waitReady(i, 30_000);
    const f1 = (leader + 1) % 3;
    const f2 = (leader + 2) % 3;

    // 3.5 MiB through a follower: streamed to the leader, chunked through the log.
    const big = randomBytes(3.5 * 1024 * 1024);
    const r1 = await put(cl.nodes[f1]!.url, 'isos/boot.iso', big);
    assert.equal(r1.status, 200, JSON.stringify(r1.body));
    assert.equal(r1.body['sha256'], sha(big));
    assert.equal(r1.body['size'], big.length);
    await converge(cl);
    for (const n of cl.nodes) {
      const g = await get(n.url, 'isos/boot.iso', { stale: true });
      assert.equal(g.status, 200);
      assert.equal(sha(g.bytes), sha(big), `${n.name} holds the same content`);
      assert.equal(g.headers.get('etag'), `"${sha(big)}"`);
    }
    // Linearizable read through a follower (forwarded), a Range, a listing.
    const ranged = await get(cl.nodes[f2]!.url, 'isos/boot.iso', { headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.deepEqual(ranged.bytes, big.subarray(10, 20));
    assert.equal(ranged.headers.get('content-range'), `bytes 10-19/${big.length}`);
    const listed = await http(cl.nodes[f2]!.url, 'GET', '/v1/files?prefix=isos/', { token: READER_TOKEN });
    assert.deepEqual((listed.body['files'] as { path: string; sha256: string; size: number }[]).map((f) => [f.path, f.size, f.sha256]), [['isos/boot.iso', big.length, sha(big)]]);

    // Refusals: the size limit (413 naming it), bad paths (400 naming the field), a reader token (403).
    const tooBig = await put(cl.nodes[f1]!.url, 'big', Buffer.alloc(MAX + 1));
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.body['error'], 'file_too_large');
    assert.match(String(tooBig.body['message']), new RegExp(`limit is ${MAX} bytes \\(files\\.maxFileBytes\\)`));
    for (const bad of ['..%2Fescape', 'a/..%2F..%2Fb', 'a%00b', 'a//b']) {
      const r = await put(cl.nodes[leader]!.url, bad, Buffer.from('x'));
      assert.equal(r.status, 400, bad);
      assert.equal(r.body['error'], 'invalid_path');
      assert.equal(r.body['field'], 'path');
    }
    const ro = await fetch(`${cl.nodes[f1]!.url}/v1/files/x`, { method: 'PUT', headers: { authorization: `Bearer ${READER_TOKEN}` }, body: 'x' });
    assert.equal(ro.status, 403);
    assert.equal((await get(cl.nodes[f1]!.url, 'nope')).status, 404);

    // kill -9 a follower; files written while it is down, the log compacted past it.
    cl.kill(f2);
    await cl.waitExit(f2);
    const late: Buffer[] = [];
    for (let i = 0; i < 5; i++) {
      const b = randomBytes(1024 * 1024 + i);
      late.push(b);
      assert.equal((await put(cl.nodes[f1]!.url, `late/${i}.bin`, b)).status, 200);
    }
    assert.equal((await http(cl.nodes[f1]!.url, 'DELETE', '/v1/files/late/0.bin', { token: TOKEN })).body['deleted'], true);
    // An automatic snapshot may be under way: the 1 MiB files just written reach snapshotBytes.
    const snap = await snapshotNow(cl.nodes[leader]!.url, TOKEN);
    assert.equal(snap.status, 200, JSON.stringify(snap.body));
    cl.startNode(f2);
    await cl.waitReady(f2, 30_000);
    const agreed = await converge(cl);
    assert.match(cl.log(f2), /installed snapshot/, 'the restarted node got the files by snapshot');
    for (let i = 1; i < 5; i++) {
      const g = await get(cl.nodes[f2]!.url, `late/${i}.bin`, { stale: true });
      assert.equal(sha(g.bytes), sha(late[i]!), `the restarted node has late/${i}.bin`);
    }
    assert.equal((await get(cl.nodes[f2]!.url, 'late/0.bin', { stale: true })).status, 404);
    assert.equal(sha((await get(cl.nodes[f2]!.url, 'isos/boot.iso', { stale: true })).bytes), sha(big));
    t.diagnostic(`converged at ${agreed}`);

    // A byte flipped on one node's disk: its read fails naming the path; the others still serve the file.
    const objects = join(cl.nodes[f2]!.dir, 'files', 'store', 'objects');
    const info = (await http(cl.nodes[f2]!.url, 'GET', '/v1/files?prefix=isos/&consistency=stale', { token: READER_TOKEN })).body['files'] as { revision: number }[];
    const obj = join(objects, String(info[0]!.revision));
    const bytes = readFileSync(obj);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(obj, bytes);
    const corrupt = await get(cl.nodes[f2]!.url, 'isos/boot.iso', { stale: true });
    assert.equal(corrupt.status, 500);
    const err = JSON.parse(corrupt.bytes.toString('utf8')) as Record<string, unknown>;
    assert.equal(err['error'], 'file_corrupt');
    assert.equal(err['path'], 'isos/boot.iso');
    assert.match(String(err['message']), /isos\/boot\.iso.*corrupt/);
    assert.equal((await get(cl.nodes[f1]!.url, 'isos/boot.iso', { stale: true })).status, 200);
    assert.match(cl.log(f2), /file_corrupt/);

    // The CLI, through a follower.
    const work = mkdtempSync(join(tmpdir(), 'quorate-files-cli-'));
    const cli = (...args: string[]): { status: number | null; out: string; err: string } => {
      const r = spawnSync(process.execPath, [MAIN, 'files', ...args, '--url', cl.nodes[f1]!.url, '--token', TOKEN], { encoding: 'utf8', timeout: 60_000 });
      return { status: r.status, out: r.stdout, err: r.stderr };
    };
    const src = join(work, 'src.bin');
    const content = randomBytes(1.5 * 1024 * 1024);
    writeFileSync(src, content);
    const up = cli('put', src, 'cli/a b.bin', '--json');
    assert.equal(up.status, 0, up.err);
    assert.equal((JSON.parse(up.out) as { sha256: string }).sha256, sha(content));
    const down = cli('get', 'cli/a b.bin', join(work, 'out.bin'));
    assert.equal(down.status, 0, down.err);
    assert.deepEqual(readFileSync(join(work, 'out.bin')), content);
    assert.deepEqual(readdirSync(work).sort(), ['out.bin', 'src.bin'], 'no temp file left');
    const lsOut = cli('ls', '--prefix', 'cli/');
    assert.equal(lsOut.status, 0, lsOut.err);
    assert.match(lsOut.out, new RegExp(`cli/a b\\.bin\\s+${content.length}\\s+\\d+\\s+\\S+\\s+${sha(content)}`));
    assert.equal(cli('rm', 'cli/a b.bin').status, 0);
    assert.match(cli('ls', '--prefix', 'cli/').out, /\(no files\)/);
    const badPath = cli('put', src, '../up');
    assert.equal(badPath.status, 2);
    assert.match(badPath.err, /PATH: "\.\.\/up" contains a "\.\." segment/);
    const help = spawnSync(process.execPath, [MAIN, 'files', 'put', '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Usage: quorate files put SOURCE PATH/);
    await sleep(0);
  });
});
