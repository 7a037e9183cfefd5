// forceNewCluster: the offline rewrite behind promote-dr and
// `quorate recover --force-new-cluster`, on a real WAL in a temp dir.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { decodeConfEntry, encodeConfEntry } from '../raft/index.js';
import { WalStorage } from '../storage/index.js';
import { describeLoss, forceNewCluster } from './generation.js';
import { parseBootstrap, writeBootstrap } from './members.js';

async function dataDir(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'quorate-gen-'));
  await writeBootstrap(dir, { haId: 'h', members: [{ id: 1, peerUrl: 'a:1' }, { id: 2, peerUrl: 'b:1' }, { id: 3, peerUrl: 'c:1' }] });
  const { storage } = await WalStorage.open(join(dir, 'raft'));
  const membership = { members: [{ id: 1, role: 'voter' as const, name: 'n1' }, { id: 2, role: 'voter' as const, name: 'n2' }, { id: 3, role: 'learner' as const, name: 'dr', catchUpTo: 2 }], removed: [] };
  await storage.append([
    { term: 1, index: 1, type: 'conf', data: encodeConfEntry({ change: { op: 'add', id: 3, role: 'learner' }, membership }) },
    ...[2, 3, 4, 5].map((index) => ({ term: 2, index, type: 'normal' as const, data: new Uint8Array([index]) })),
  ]);
  await storage.sync();
  storage.setHardState({ term: 3, vote: 1, commit: 3 });
  await storage.sync();
  await storage.close();
  return dir;
}

describe('forceNewCluster', () => {
  it('reports without changing anything on a dry run, then makes the node the only voter of the next generation with every entry committed', async () => {
    const dir = await dataDir();
    try {
      const dry = await forceNewCluster({ dataDir: dir, kind: 'promote-dr', nodeId: 3, dryRun: true });
      assert.deepEqual(dry.generation, { from: 0, to: 1 });
      assert.deepEqual(dry.notKnownCommitted, { from: 4, to: 5, count: 2 });
      assert.deepEqual(dry.dropped, ['n1', 'n2']);
      assert.equal(parseBootstrap(readFileSync(join(dir, 'bootstrap.json'), 'utf8'), 'b').generation, undefined, 'the dry run changed nothing');
      assert.match(describeLoss(dry).join('\n'), /Entries 4\.\.5 \(2\) were not known committed/);

      const r = await forceNewCluster({ dataDir: dir, kind: 'promote-dr', nodeId: 3 });
      assert.equal(r.confIndex, 6);
      const b = parseBootstrap(readFileSync(join(dir, 'bootstrap.json'), 'utf8'), 'b');
      assert.equal(b.generation, 1);
      assert.equal(b.promoted?.kind, 'promote-dr');
      assert.equal(b.promoted?.index, 6);
      const { storage, state } = await WalStorage.open(join(dir, 'raft'));
      await storage.close();
      const last = state.entries.at(-1)!;
      assert.equal(last.index, 6);
      assert.equal(last.type, 'conf');
      assert.equal(last.term, 3);
      assert.deepEqual(decodeConfEntry(last.data).membership, { members: [{ id: 3, role: 'voter', name: 'dr' }], removed: [1, 2] });
      assert.deepEqual(state.hardState, { term: 3, vote: 1, commit: 6 });

      // Again (a second recovery): the generation moves on.
      const again = await forceNewCluster({ dataDir: dir, kind: 'force-new-cluster', nodeId: 3 });
      assert.deepEqual(again.generation, { from: 1, to: 2 });
      assert.deepEqual(again.dropped, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a data dir whose node was removed or superseded, and one that is not a member, changing nothing', async () => {
    const dir = await dataDir();
    try {
      await assert.rejects(forceNewCluster({ dataDir: dir, kind: 'force-new-cluster', nodeId: 9 }), /node id 9 is not a member/);
      writeFileSync(join(dir, 'removed'), 'x');
      await assert.rejects(forceNewCluster({ dataDir: dir, kind: 'force-new-cluster', nodeId: 1 }), /"removed" marker/);
      assert.equal(parseBootstrap(readFileSync(join(dir, 'bootstrap.json'), 'utf8'), 'b').generation, undefined);
      await assert.rejects(forceNewCluster({ dataDir: join(dir, 'nope'), kind: 'force-new-cluster' }), /holds no cluster data/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
