// The "restore" machine on a node's real set of machines (./node-state.ts):
// a composite snapshot staged as a replicated file, then one restore entry
// replaces the data machines and keeps the others, the applied index and
// the sessions; later entries wait for it (MachineRegistry.holdUntil).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { FILES_MACHINE_ID, FILE_CHUNK_BYTES, encodeFilesPayload, type FilesCommand } from '../files/command.js';
import { encodeCommand } from '../state/commands.js';
import { encodeEnvelope } from '../state/envelope.js';
import { TOKENS_MACHINE_ID, encodeTokensPayload } from '../state/tokens.js';
import { collectSnapshot } from '../state/snapshot.js';
import { RESTORE_MACHINE_ID, RESTORED_MACHINES, encodeRestorePayload } from './cluster-restore.js';
import { createNodeState, type NodeState } from './node-state.js';

const states: NodeState[] = [];
const dirs: string[] = [];
after(async () => {
  for (const s of states) await s.sql.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const T0 = 1_700_000_000_000;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

class Node {
  index = 0;
  constructor(readonly s: NodeState) {}

  /** Applies one entry as the replica does: then awaits a hold the entry set. */
  async entry(data: Uint8Array): Promise<unknown> {
    const r = this.s.registry.apply(++this.index, data);
    const hold = this.s.registry.takeHold();
    if (hold !== undefined) await hold;
    return r instanceof Promise ? await r : r;
  }
  kvPut(key: string, value: string): Promise<unknown> {
    return this.entry(encodeCommand({ at: T0 + this.index, command: { type: 'put', key, value } }));
  }
  files(c: FilesCommand): Promise<unknown> {
    return this.entry(encodeEnvelope({ machine: FILES_MACHINE_ID, at: T0 + this.index, payload: encodeFilesPayload(c) }));
  }
  async upload(path: string, content: Uint8Array): Promise<void> {
    const uploadId = randomBytes(16).toString('hex');
    for (let off = 0; off < content.length; off += FILE_CHUNK_BYTES) await this.files({ op: 'chunk', uploadId, offset: off, bytes: content.subarray(off, off + FILE_CHUNK_BYTES) });
    const r = await this.files({ op: 'commit', uploadId, path, size: content.length, sha256: sha(content) });
    assert.ok(typeof r === 'object' && r !== null && 'revision' in r, JSON.stringify(r));
  }
  async read(path: string): Promise<string | undefined> {
    await this.s.files.caughtUp();
    const f = await this.s.files.openFile(path);
    if (f === undefined) return undefined;
    try {
      return (await f.handle.readFile()).toString();
    } finally {
      await f.handle.close();
    }
  }
}

async function node(): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'quorate-restore-'));
  dirs.push(dir);
  const s = await createNodeState({ dataDir: dir, logger: pino({ level: 'silent' }), onFatal: () => undefined });
  states.push(s);
  return new Node(s);
}

describe('cluster restore: the restore entry', () => {
  it('replaces KV, files (and the other data machines) with the staged snapshot\'s, keeps tokens, the applied index and sessions; the staged file goes with it', async () => {
    const n = await node();
    await n.kvPut('k', 'v1');
    await n.upload('docs/a', Buffer.from('A'));
    const backupState = Buffer.from(await collectSnapshot(n.s.registry.snapshot('composite')));
    // After the backup: data changes and a token.
    await n.kvPut('k', 'v2');
    await n.kvPut('k2', 'x');
    await n.upload('docs/a', Buffer.from('B'));
    await n.upload('docs/b', Buffer.from('later'));
    await n.entry(encodeEnvelope({ machine: TOKENS_MACHINE_ID, at: T0 + 100, payload: encodeTokensPayload({ op: 'create', name: 'kept', role: 'reader', sha256: new Uint8Array(32).fill(1), expiresAt: undefined, createdBy: 'test' }) }));
    // Stage, then restore.
    const path = '.quorate/restore/x.qsms';
    await n.upload(path, backupState);
    const r = await n.entry(encodeEnvelope({ machine: RESTORE_MACHINE_ID, at: T0 + 200, payload: encodeRestorePayload({ path, sha256: sha(backupState), size: backupState.length, machines: RESTORED_MACHINES, clusterId: 'c', backupIndex: 4 }) }));
    const index = n.index;
    assert.deepEqual(r, { data: { index } });
    assert.deepEqual(await n.s.restore.outcome(index), { restored: true });
    assert.equal(n.s.kv.get('k')?.value, 'v1');
    assert.equal(n.s.kv.get('k2'), undefined);
    assert.equal(await n.read('docs/a'), 'A');
    assert.equal(await n.read('docs/b'), undefined);
    assert.equal(await n.read(path), undefined, 'the staged state is not among the backup\'s files');
    assert.equal(n.s.tokens.get('kept')?.role, 'reader', 'tokens are kept');
    assert.equal(n.s.registry.appliedIndex, index, 'the applied index stays the log\'s');
    // Entries after it apply on the restored state.
    await n.kvPut('k3', 'after');
    assert.equal(n.s.kv.get('k3')?.value, 'after');
  });

  it('a restore entry whose staged file is missing or differs changes nothing (the same on every node)', async () => {
    const n = await node();
    await n.kvPut('k', 'v');
    const before = (await n.s.registry.checksumAsync()).checksum;
    const sum = 'ab'.repeat(32);
    await n.entry(encodeEnvelope({ machine: RESTORE_MACHINE_ID, at: T0, payload: encodeRestorePayload({ path: '.quorate/restore/none', sha256: sum, size: 1, machines: RESTORED_MACHINES, clusterId: 'c', backupIndex: 1 }) }));
    const o = await n.s.restore.outcome(n.index);
    assert.equal(o?.restored, false);
    assert.match(o?.reason ?? '', /not in the replicated files/);
    assert.equal(n.s.kv.get('k')?.value, 'v');
    const after = await n.s.registry.checksumAsync();
    assert.notEqual(after.checksum, before, 'only the applied index moved');
    assert.equal(after.appliedIndex, n.index);
  });
});
