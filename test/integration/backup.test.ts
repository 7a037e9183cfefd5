// Backups with real node processes: the leader-only schedule across a kill
// of the leader, retention, and backup → verify → restore into a new
// one-node cluster under write load.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { archiveChunks, readManifest, type BackupManifest } from '../../src/node/backup-archive.js';
import pino from 'pino';
import { createNodeState } from '../../src/node/node-state.js';
import { encodeCommand } from '../../src/state/index.js';
import { MAIN, TOKEN, TestCluster, freePorts, http, sleep, waitFor } from './harness.js';

const run = promisify(execFile);

async function cli(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { ...(cwd ? { cwd } : {}), env: { ...process.env, QUORATE_TOKEN: TOKEN }, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

function archives(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.qbak') && !f.startsWith('.')).sort() : [];
}

async function manifests(dir: string): Promise<BackupManifest[]> {
  const out: BackupManifest[] = [];
  for (const f of archives(dir)) out.push((await readManifest(join(dir, f))).manifest);
  return out;
}

/** A valid archive taken 10 days ago (for retention). */
async function plantOldArchive(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  // A scratch state of its own (its SQL machine keeps a database in its data dir), not in the backup dir.
  const s = await createNodeState({ dataDir: mkdtempSync(join(tmpdir(), 'quorate-plant-')), logger: pino({ level: 'silent' }), onFatal: (e) => { throw e; } });
  s.registry.apply(1, encodeCommand({ at: 1, command: { type: 'put', key: 'old', value: 'old' } }));
  const takenAt = new Date(Date.now() - 10 * 86_400_000);
  const file = join(dir, `quorate-it-old-${takenAt.getTime()}.qbak`);
  const fh = await open(file, 'w');
  const base = { clusterId: 'it', takenBy: 'planted', index: 1, term: 1, takenAt: takenAt.toISOString(), quorateVersion: '0.1.0', kind: 'manual', membership: null };
  for await (const c of archiveChunks(s.registry.snapshot('composite'), base)) await fh.write(c);
  await fh.close();
  return file;
}

describe('backups (real processes)', { concurrency: false }, () => {
  const clusters: TestCluster[] = [];
  after(async () => {
    for (const c of clusters) await c.stop();
  });

  it('scheduled backups run on the leader only, each slot at most once across a kill -9 of the leader; retention deletes old archives', async () => {
    const c = await TestCluster.start({ nodes: 3, database: { backup: { enabled: true, schedule: '*/2 * * * * *', retentionDays: 1 } } });
    clusters.push(c);
    const dirs = c.nodes.map((n) => join(n.dir, 'backups'));
    const planted = await Promise.all(dirs.map((d) => plantOldArchive(d)));
    const first = await c.waitLeader();
    await c.client().kvPut('k', 'v1');
    const ours = (i: number) => archives(dirs[i]!).filter((f) => !f.startsWith('quorate-it-old-'));
    await waitFor('the leader wrote two scheduled backups', () => ours(first).length >= 2, 30_000);
    await waitFor('retention deleted the 10-day-old archive on the leader', () => !existsSync(planted[first]!), 10_000);
    for (let i = 0; i < 3; i++) {
      if (i === first) continue;
      assert.deepEqual(archives(dirs[i]!), [planted[i]!.split('/').pop()], `follower ${c.nodes[i]!.name} wrote no backup`);
    }
    c.kill(first);
    await c.waitExit(first);
    const second = await c.waitLeader(20_000, [first]);
    await c.client({ urls: [c.nodes[second]!.url] }).kvPut('k', 'v2');
    await waitFor('the new leader wrote two scheduled backups', () => ours(second).length >= 2, 30_000);

    const all = [...(await manifests(dirs[first]!)), ...(await manifests(dirs[second]!))].filter((m) => m.takenBy !== 'planted');
    const slots = all.map((m) => m.slot);
    assert.ok(slots.every((s) => typeof s === 'string'), 'scheduled archives name their slot');
    assert.equal(new Set(slots).size, slots.length, `no slot was backed up twice: ${slots.join(', ')}`);
    const byFirst = all.filter((m) => m.takenBy === c.nodes[first]!.name);
    const bySecond = all.filter((m) => m.takenBy === c.nodes[second]!.name);
    assert.ok(byFirst.length >= 2 && bySecond.length >= 2);
    assert.ok(Math.min(...bySecond.map((m) => m.fencingTerm!)) > Math.max(...byFirst.map((m) => m.fencingTerm!)), 'each run is fenced by its leader\'s term');
    assert.ok(bySecond.filter((m) => m.kind === 'catch-up').length <= 1, 'a missed slot is caught up at most once');
    const third = c.nodes.findIndex((_, i) => i !== first && i !== second);
    assert.deepEqual(archives(dirs[third]!), [planted[third]!.split('/').pop()], 'the remaining follower never wrote one');
    // The list endpoint and CLI see them.
    const list = await cli(['backup', 'list', '--json', '--url', c.nodes[second]!.url]);
    assert.equal(list.code, 0, list.stderr);
    assert.ok((JSON.parse(list.stdout) as { backups: unknown[] }).backups.length >= 2);
  });

  it('a backup taken under write load verifies, catches a corrupted byte, and restores into a new one-node cluster at exactly its index', async () => {
    const c = await TestCluster.start({ nodes: 3 });
    clusters.push(c);
    const leader = await c.waitLeader();
    const client = c.client();
    // Writers: unique keys, so the state at revision R is exactly the R puts with revision <= R.
    const acked = new Map<string, number>();
    let stop = false;
    let n = 0;
    let failures = 0;
    let lastError = '';
    const writers = Array.from({ length: 4 }, async () => {
      // Bounded: a failed assertion leaves `stop` false, and the loop must not keep the test process alive.
      const until = Date.now() + 300_000;
      while (!stop && Date.now() < until) {
        const key = `w/${String(n++).padStart(6, '0')}`;
        try {
          acked.set(key, (await client.kvPut(key, `value of ${key}`)).revision);
        } catch (e) {
          // Unknown outcome: not counted as acknowledged.
          failures++;
          lastError = (e as Error).message;
        }
      }
    });
    const file = join(c.root, 'under-load.qbak');
    let created: Awaited<ReturnType<typeof cli>>;
    try {
      await waitFor(`some writes (failures: ${failures} ${lastError})`, () => acked.size >= 100, 60_000);
      created = await cli(['backup', 'create', '--out', file, '--json', '--url', c.nodes[leader]!.url]);
      await waitFor('more writes after the backup', () => acked.size >= 200, 60_000);
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    assert.equal(created.code, 0, created.stderr);
    const manifest = (JSON.parse(created.stdout) as { manifest: BackupManifest }).manifest;

    const verified = await cli(['backup', 'verify', file, '--json']);
    assert.equal(verified.code, 0, verified.stderr);
    const checksums = (JSON.parse(verified.stdout) as { checksums: Record<string, string> }).checksums;
    assert.equal(checksums['kv'], manifest.parts.find((p) => p.name === 'kv')!.sha256);

    // One flipped bit in the middle of the state is caught.
    const bytes = readFileSync(file);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = bytes[mid]! ^ 0x04;
    writeFileSync(join(c.root, 'corrupt.qbak'), bytes);
    const bad = await cli(['backup', 'verify', join(c.root, 'corrupt.qbak')]);
    assert.equal(bad.code, 1);
    // Where the bit lands decides which check fires first (a record's checksum, a length that now runs past the end, ...): each names the byte offset.
    assert.match(bad.stderr, /backup archive state at byte \d+: /);

    // Restore into a fresh single node (its own config, no peers), start it.
    const [api, peer] = await freePorts(2);
    const dir = join(c.root, 'restored');
    mkdirSync(dir);
    const config = { node: { nodeName: 'restored', dataDir: dir, apiAddress: `127.0.0.1:${api}`, peerAddress: `127.0.0.1:${peer}` }, cluster: { haId: 'it', peerEndpoints: [] }, security: { tls: 'off' } };
    writeFileSync(join(dir, 'quorate.json'), JSON.stringify(config));
    writeFileSync(join(dir, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'cluster.secret'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
    const restored = await cli(['backup', 'restore', file, '--config', join(dir, 'quorate.json')]);
    assert.equal(restored.code, 0, restored.stderr);
    const again = await cli(['backup', 'restore', file, '--config', join(dir, 'quorate.json')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /holds a node's data \(raft\).*move the data dir aside/);
    c.nodes.push({ name: 'restored', dir, configPath: join(dir, 'quorate.json'), url: `http://127.0.0.1:${api}`, logPath: join(dir, 'node.log'), proc: undefined, exitCode: undefined });
    const ri = c.nodes.length - 1;
    c.startNode(ri);
    await waitFor('the restored node leads its one-node cluster', async () => (await http(c.nodes[ri]!.url, 'GET', '/system/health/leader').catch(() => ({ status: 0 }))).status === 200, 30_000);

    const dump = await http(c.nodes[ri]!.url, 'GET', '/v1/cluster/dump?checksum=1', { token: TOKEN });
    assert.equal(dump.body['checksum'], checksums['kv'], 'the restored KV has the backup\'s checksum');
    const R = dump.body['revision'] as number;
    assert.ok(R >= 100, `revision ${R}`);
    const rc = c.client({ urls: [c.nodes[ri]!.url] });
    const restoredKeys = new Map<string, number>();
    let startAfter: string | undefined;
    for (;;) {
      const page = (await rc.request<{ items: { key: string; value: string; revision: number }[]; more?: boolean }>('GET', '/v1/kv', { query: { prefix: 'w/', limit: 10_000, ...(startAfter ? { startAfter } : {}) } })).body;
      for (const it2 of page.items) {
        assert.equal(it2.value, `value of ${it2.key}`);
        restoredKeys.set(it2.key, it2.revision);
      }
      if (page.more !== true || page.items.length === 0) break;
      startAfter = page.items[page.items.length - 1]!.key;
    }
    assert.equal(restoredKeys.size, R, 'exactly the R puts with revision <= R (one key each)');
    for (const [k, rev] of acked) {
      if (rev <= R) assert.equal(restoredKeys.get(k), rev, `${k} (acknowledged at revision ${rev} <= ${R}) is in the backup`);
      else assert.equal(restoredKeys.has(k), false, `${k} (revision ${rev} > ${R}) is not`);
    }
    assert.ok([...acked.values()].some((r) => r > R), 'writes went on after the backup');
    // The restored cluster takes writes.
    assert.ok((await rc.kvPut('after-restore', 'yes')).revision > R);
    await sleep(10);
  });
});
