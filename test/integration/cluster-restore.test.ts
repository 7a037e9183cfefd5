// POST /v1/cluster/restore with real processes: a backup taken from the
// running cluster, the data changed afterwards (KV, SQL, files) and a token
// created, then the backup restored through a follower: every node holds
// the backup's data again (equal checksums), the token created after the
// backup still works, the restore is audited, writes go on. Refusals: no
// confirm, a reader token, a damaged archive (nothing changes).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, READER_TOKEN, TOKEN, TestCluster, http, waitFor } from './harness.js';

async function raw(url: string, method: string, path: string, o: { token?: string; body?: Buffer; headers?: Record<string, string> } = {}): Promise<{ status: number; bytes: Buffer; json: Record<string, unknown> }> {
  const r = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${o.token ?? TOKEN}`, ...(o.headers ?? {}) }, ...(o.body !== undefined ? { body: o.body } : {}), signal: AbortSignal.timeout(60_000) });
  const bytes = Buffer.from(await r.arrayBuffer());
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch { /* binary */ }
  return { status: r.status, bytes, json };
}

const sql = async (url: string, statements: unknown[][]): Promise<void> => {
  const r = await http(url, 'POST', '/v1/db/execute', { token: TOKEN, body: { statements } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
};
const rows = async (url: string): Promise<unknown> => (await http(url, 'POST', '/v1/db/query', { token: TOKEN, body: { sql: 'SELECT id, v FROM t ORDER BY id', consistency: 'stale' } })).body['rows'];
const octet = { 'content-type': 'application/octet-stream' };

describe('restore a backup into a running cluster (real processes)', () => {
  let c: TestCluster | undefined;
  after(async () => {
    await c?.stop();
  });

  test('the data returns to the backup on every node through the log; membership and tokens are kept; refusals change nothing', async () => {
    c = await TestCluster.start({ nodes: 3 });
    const cl = c;
    const leader = await cl.waitLeader(60_000);
    for (let i = 0; i < 3; i++) await cl.waitReady(i, 30_000);
    const L = cl.nodes[leader]!.url;
    const follower = cl.nodes[(leader + 1) % 3]!.url;

    // The state the backup holds.
    assert.equal((await http(L, 'PUT', '/v1/kv/k1', { token: TOKEN, body: { value: 'v1' } })).status, 200);
    await sql(L, [['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)'], ['INSERT INTO t VALUES (1, ?)', 'one']]);
    assert.equal((await raw(L, 'PUT', '/v1/files/docs/a.txt', { body: Buffer.from('version A'), headers: octet })).status, 200);
    const backup = await raw(follower, 'GET', '/v1/cluster/backup');
    assert.equal(backup.status, 200);

    // Changed afterwards.
    assert.equal((await http(L, 'PUT', '/v1/kv/k1', { token: TOKEN, body: { value: 'v2' } })).status, 200);
    assert.equal((await http(L, 'PUT', '/v1/kv/k2', { token: TOKEN, body: { value: 'new' } })).status, 200);
    await sql(L, [['INSERT INTO t VALUES (2, ?)', 'two']]);
    assert.equal((await raw(L, 'PUT', '/v1/files/docs/a.txt', { body: Buffer.from('version B'), headers: octet })).status, 200);
    assert.equal((await raw(L, 'PUT', '/v1/files/docs/b.txt', { body: Buffer.from('later'), headers: octet })).status, 200);
    const tok = await http(L, 'POST', '/v1/tokens', { token: TOKEN, body: { name: 'after-backup', role: 'reader' } });
    assert.equal(tok.status, 201, JSON.stringify(tok.body));
    const newToken = String(tok.body['token']);

    // Refusals.
    const noConfirm = await raw(follower, 'POST', '/v1/cluster/restore', { body: backup.bytes, headers: octet });
    assert.equal(noConfirm.status, 400);
    assert.equal(noConfirm.json['error'], 'confirm_required');
    assert.equal(noConfirm.json['field'], 'confirm');
    assert.equal((await raw(follower, 'POST', '/v1/cluster/restore?confirm=true', { token: READER_TOKEN, body: backup.bytes, headers: octet })).status, 403);
    const damaged = Buffer.from(backup.bytes);
    const mid = Math.floor(damaged.length / 2);
    damaged[mid] = damaged[mid]! ^ 0x40;
    const bad = await raw(follower, 'POST', '/v1/cluster/restore?confirm=true', { body: damaged, headers: octet });
    assert.equal(bad.status, 400, JSON.stringify(bad.json));
    assert.equal(bad.json['error'], 'backup_corrupt');
    assert.equal((await http(L, 'GET', '/v1/kv/k2', { token: TOKEN })).status, 200, 'a refused restore changes nothing');

    // The restore, through a follower (the archive streamed to the leader).
    const done = await raw(follower, 'POST', '/v1/cluster/restore?confirm=true', { body: backup.bytes, headers: octet });
    assert.equal(done.status, 200, JSON.stringify(done.json));
    assert.equal(done.json['restored'], true);
    assert.deepEqual(done.json['machines'], ['app', 'files', 'kv', 'sql']);

    // Every node: the backup's data, the same checksums.
    let sums = '';
    await waitFor('every node at the same applied index with equal checksums', async () => {
      const d = await Promise.all(cl.nodes.map((n) => http(n.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN })));
      sums = [...new Set(d.map((x) => `${x.body['appliedIndex']}/${x.body['checksum']}/${x.body['sqlChecksum']}/${x.body['filesChecksum']}`))].join(' ');
      return !sums.includes(' ') && !sums.includes('undefined');
    }, 30_000).catch((e: Error) => { throw new Error(`${e.message}: ${sums}`); });
    // The restore entry's index is applied before its replacement of the state completes (the replica applies
    // nothing after it meanwhile): wait for every node to have finished it.
    await waitFor('every node finished the restore', () => [0, 1, 2].every((i) => cl.log(i).includes('"event":"cluster_restored"')), 30_000);
    for (const n of cl.nodes) {
      const k1 = await http(n.url, 'GET', '/v1/kv/k1?consistency=stale', { token: TOKEN });
      assert.equal(k1.body['value'], 'v1', `${n.name}: k1 is back to v1`);
      assert.equal((await http(n.url, 'GET', '/v1/kv/k2?consistency=stale', { token: TOKEN })).status, 404, `${n.name}: k2 did not exist at the backup`);
      assert.deepEqual(await rows(n.url), [[1, 'one']], `${n.name}: the SQL table as in the backup`);
      assert.equal((await raw(n.url, 'GET', '/v1/files/docs/a.txt?consistency=stale')).bytes.toString(), 'version A');
      assert.equal((await raw(n.url, 'GET', '/v1/files/docs/b.txt?consistency=stale')).status, 404);
      const listing = await http(n.url, 'GET', '/v1/files?consistency=stale', { token: TOKEN });
      assert.deepEqual((listing.body['files'] as { path: string }[]).map((f) => f.path), ['docs/a.txt'], 'the staged state is not left behind');
    }
    // Kept: the token created after the backup, the membership; the restore is audited.
    assert.equal((await http(follower, 'GET', '/v1/kv/k1', { token: newToken })).status, 200);
    const status = await http(L, 'GET', '/system/health/cluster', { token: TOKEN });
    assert.equal((status.body['nodes'] as unknown[]).length, 3);
    const audit = await http(L, 'GET', '/v1/audit', { token: TOKEN });
    assert.match(JSON.stringify(audit.body), /POST \/v1\/cluster\/restore/);
    // Writes go on.
    assert.equal((await http(follower, 'PUT', '/v1/kv/k3', { token: TOKEN, body: { value: 'after' } })).status, 200);
    await sql(follower, [['INSERT INTO t VALUES (3, ?)', 'three']]);
    assert.deepEqual(await rows(L), [[1, 'one'], [3, 'three']]);

    // The CLI: backup restore FILE --running --confirm (without --confirm: a usage error, nothing sent).
    const work = mkdtempSync(join(tmpdir(), 'quorate-restore-cli-'));
    const file = join(work, 'b.qbak');
    writeFileSync(file, backup.bytes);
    const cli = (...args: string[]) => spawnSync(process.execPath, [MAIN, 'backup', 'restore', file, ...args, '--url', follower, '--token', TOKEN], { encoding: 'utf8', timeout: 60_000 });
    const unconfirmed = cli('--running');
    assert.equal(unconfirmed.status, 2, unconfirmed.stderr);
    assert.match(unconfirmed.stderr, /--confirm/);
    const viaCli = cli('--running', '--confirm', '--json');
    assert.equal(viaCli.status, 0, viaCli.stderr);
    assert.equal((JSON.parse(viaCli.stdout) as { backupIndex: number }).backupIndex, done.json['backupIndex']);
    assert.equal((await http(L, 'GET', '/v1/kv/k3', { token: TOKEN })).status, 404, 'k3 was written after the backup');
    rmSync(work, { recursive: true, force: true });
  });
});
