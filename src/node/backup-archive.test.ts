import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { encodeCommand, encodeEnvelope, encodeSchedulerPayload, encodeSettingsPayload } from '../state/index.js';
import { ARCHIVE_TRAILER_BYTES, ArchiveError, archiveChunks, checkArchive, readManifest, type ManifestBase } from './backup-archive.js';
import { verifyBackup } from './backup-restore.js';
import { Backups, type CapturedState } from './backups.js';
import { createNodeState, type NodeState } from './node-state.js';

const root = mkdtempSync(join(tmpdir(), 'quorate-backup-unit-'));
/** Failures of a state's own storage (its SQLite database): none expected. */
const fatal: Error[] = [];
// The SQL machine's worker thread is unreferenced while idle (a node's servers keep its process
// alive); a unit test has nothing else, so this keeps the loop alive while the tests run.
const keepAlive = setInterval(() => undefined, 1000);
after(() => {
  clearInterval(keepAlive);
  rmSync(root, { recursive: true, force: true });
  assert.deepEqual(fatal.map((e) => e.message), [], 'no state machine storage failed');
});

/** A node state with KV keys (some with idempotency keys), a setting and a scheduler claim: several machines, several frames. */
async function stateWith(keys: number): Promise<NodeState> {
  // Each state its own data dir: the SQL machine keeps its database there.
  const s = await createNodeState({ dataDir: mkdtempSync(join(root, 'state-')), logger: pino({ level: 'silent' }), onFatal: (e) => { fatal.push(e); } });
  let i = 0;
  for (let k = 0; k < keys; k++) {
    s.registry.apply(++i, encodeCommand({ at: 1000 + i, ...(k % 7 === 0 ? { idempotencyKey: `ik-${k}` } : {}), command: { type: 'put', key: `key/${k}`, value: `value-${k}-${'x'.repeat(k % 300)}` } }));
  }
  s.registry.apply(++i, encodeEnvelope({ machine: 'settings', at: 1000 + i, payload: encodeSettingsPayload({ key: 'paused', value: true }) }));
  s.registry.apply(++i, encodeEnvelope({ machine: 'scheduler', at: 1000 + i, payload: encodeSchedulerPayload({ op: 'claim', name: 'backup', slotMs: 5000, term: 3, kind: 'scheduled', node: 'n1' }) }));
  s.registry.markApplied(++i);
  return s;
}

function captured(s: NodeState): CapturedState {
  return { index: s.registry.appliedIndex, term: 3, membership: { members: [{ id: 1, role: 'voter' }], removed: [] }, chunks: s.registry.snapshot('composite') };
}

const BASE: Omit<ManifestBase, 'index' | 'term' | 'membership'> = { clusterId: 'unit', takenBy: 'n1', takenAt: '2026-01-01T00:00:00.000Z', quorateVersion: '0.1.0', kind: 'manual' };

async function writeArchive(path: string, s: NodeState): Promise<void> {
  const c = captured(s);
  const fh = await open(path, 'w');
  for await (const chunk of archiveChunks(c.chunks, { ...BASE, index: c.index, term: c.term, membership: c.membership })) await fh.write(chunk);
  await fh.close();
}

describe('backup archive', () => {
  it('holds every machine as a part whose SHA-256 is the machine checksum; verify restores it and gives the same parts', async () => {
    const s = await stateWith(3000);
    const path = join(root, 'a.qbak');
    await writeArchive(path, s);
    const { manifest } = await readManifest(path);
    assert.equal(manifest.index, s.registry.appliedIndex);
    assert.deepEqual(manifest.parts.map((p) => p.name), ['registry', 'kv', 'scheduler', 'settings']);
    assert.equal(manifest.parts.find((p) => p.name === 'kv')!.sha256, s.kv.checksum(), 'the kv part is the KV checksum (`quorate dump --checksum`)');
    assert.match(manifest.secrets, /cluster secret, admin token, tokens\.json/);
    const v = await verifyBackup(path, root);
    assert.equal(v.checksums['kv'], s.kv.checksum());
    assert.equal(v.checksums['settings'], s.settings.checksum());
    assert.equal(v.checksums['scheduler'], s.scheduler.checksum());
    assert.deepEqual(readdirSync(root).filter((f) => f.startsWith('quorate-verify-')), [], 'the scratch dir is removed');
  });

  it('verify catches a single changed byte anywhere: header, state, manifest, trailer', async () => {
    const s = await stateWith(500);
    const good = join(root, 'good.qbak');
    await writeArchive(good, s);
    const bytes = readFileSync(good);
    const size = bytes.length;
    const { manifest } = await readManifest(good);
    const manifestAt = size - ARCHIVE_TRAILER_BYTES - Buffer.byteLength(JSON.stringify(manifest, null, 1));
    const offsets = [0, 5, 8, 20, 200, Math.floor(size / 2), manifestAt - 40, manifestAt - 1, manifestAt + 30, size - 30, size - 6, size - 1];
    for (const off of offsets) {
      const bad = Buffer.from(bytes);
      bad[off] = bad[off]! ^ 0x01;
      const path = join(root, `bad-${off}.qbak`);
      writeFileSync(path, bad);
      await assert.rejects(verifyBackup(path, root), (e: Error) => {
        assert.ok(e instanceof ArchiveError || /snapshot|corrupt/i.test(e.message), `byte ${off}: ${e.message}`);
        return true;
      }, `a flipped bit at byte ${off} of ${size} is caught`);
    }
    // A truncated archive too.
    writeFileSync(join(root, 'short.qbak'), bytes.subarray(0, size - 100));
    await assert.rejects(checkArchive(join(root, 'short.qbak')), ArchiveError);
  });
});

describe('backups in a dir', () => {
  const log = pino({ level: 'silent' });
  function backups(dir: string, s: NodeState, now: () => number): Backups {
    return new Backups({
      log, clusterId: 'unit/1', nodeName: 'n1', version: '0.1.0', dir, retentionDays: 7,
      capture: async () => captured(s), barrier: async () => undefined, isLeader: () => true, notLeader: () => new Error('not leader'), now,
    });
  }

  it('writes one archive per run (no temp file left), lists newest first, and retention deletes those older than retentionDays but never the newest', async () => {
    const dir = join(root, 'dir');
    const s = await stateWith(50);
    let now = Date.parse('2026-01-01T02:00:00Z');
    const b = backups(dir, s, () => now);
    const first = await b.writeToDir('scheduled', { slot: new Date(now).toISOString(), fencingTerm: 3 });
    assert.match(first.file, /^quorate-unit_1-20260101T020000Z-i\d+\.qbak$/);
    now += 3 * 86_400_000;
    await b.writeToDir('scheduled');
    now += 5 * 86_400_000; // the first is now 8 days old, the second 5
    const third = await b.writeToDir('manual');
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
    assert.equal((await b.list()).length, 3);
    assert.equal((await b.list())[0]!.file, third.file, 'newest first');
    assert.deepEqual(await b.prune(), [first.file]);
    assert.equal((await b.list()).length, 2);
    // Much later: everything is old, the newest stays.
    now += 100 * 86_400_000;
    assert.equal((await b.prune()).length, 1);
    assert.deepEqual((await b.list()).map((x) => x.file), [third.file]);
  });

  it('a stream given up before its first read still releases the captured state', async () => {
    let released = false;
    const it: AsyncIterator<Uint8Array> = { next: async () => ({ done: true, value: undefined }), return: async () => { released = true; return { done: true, value: undefined }; } };
    const b = new Backups({
      log, clusterId: 'unit', nodeName: 'n1', version: '0.1.0', dir: join(root, 'never'), retentionDays: 7,
      capture: async () => ({ index: 1, term: 1, membership: null, chunks: { [Symbol.asyncIterator]: () => it } }),
      barrier: async () => undefined, isLeader: () => true, notLeader: () => new Error('not leader'),
    });
    const s = await b.open();
    await s.chunks[Symbol.asyncIterator]().return!();
    assert.equal(released, true);
  });

  it('a scheduled run aborted by the loss of leadership leaves nothing behind', async () => {
    const dir = join(root, 'aborted');
    const s = await stateWith(2000);
    const b = backups(dir, s, () => Date.now());
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(b.writeToDir('scheduled', { signal: ac.signal }), /leadership was lost/);
    assert.deepEqual(readdirSync(dir), []);
  });
});
