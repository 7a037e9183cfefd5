// Verify and restore backup archives offline (`quorate backup verify`,
// `quorate backup restore`): local file work, no running node involved.
//
// - verify: reads the whole archive and checks every part's SHA-256 against
//   the manifest, restores the state into a scratch copy of the node's state
//   machines (./node-state.ts, file-backed machines under a scratch dir: every
//   machine's own checks run), then takes the snapshot of the restored state
//   and compares its parts with the manifest again (a restore that does not
//   give back the same state fails).
// - restore: makes a stopped node's empty data dir the first node of a new
//   one-node cluster holding the backup's state: bootstrap.json from its
//   config (no peerEndpoints), and the archive's state installed into the WAL
//   as its snapshot at the backup's index (membership: this node alone, as a
//   voter), with the hard state at the backup's term. The node then starts
//   as usual; other nodes are enrolled into it (`quorate enroll`).
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { QuorateConfig } from '../config/index.js';
import { WalStorage } from '../storage/index.js';
import { ArchiveError, PartHasher, checkArchive, compareParts, stateChunks, type BackupManifest } from './backup-archive.js';
import { loadOrCreateBootstrap, selfId } from './members.js';
import { createNodeState } from './node-state.js';

export type Progress = (phase: string, bytes: number, total: number) => void;

export interface VerifyResult {
  readonly manifest: BackupManifest;
  readonly fileBytes: number;
  /** Each machine's checksum after the restore (equal on every node at the backup's index). */
  readonly checksums: Readonly<Record<string, string>>;
}

/** Checks an archive end to end (see the top of this file); throws ArchiveError (or the state's SnapshotCorruptError) naming the problem. */
export async function verifyBackup(path: string, scratchParent: string, progress?: Progress): Promise<VerifyResult> {
  const { manifest, fileBytes } = await checkArchive(path, (n, t) => progress?.('read', n, t));
  const scratch = await mkdtemp(join(scratchParent, 'quorate-verify-'));
  try {
    const state = createNodeState({ dataDir: scratch });
    await state.registry.restore(stateChunks(path, manifest, (n) => progress?.('restore', n, manifest.state.bytes)));
    const hasher = new PartHasher();
    for await (const c of state.registry.snapshot('composite')) {
      hasher.update(c);
      progress?.('compare', hasher.bytes, manifest.state.bytes);
    }
    const diff = compareParts(manifest, hasher.finish());
    if (diff !== undefined) throw new ArchiveError(manifest.state.offset, 'state', `the restored state differs from the manifest: ${diff}`);
    const checksums: Record<string, string> = {};
    for (const p of manifest.parts) if (p.name !== 'registry') checksums[p.name] = state.registry.machine(p.name)?.checksum() ?? '';
    return { manifest, fileBytes, checksums };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Restore refused: the message says what to change. */
export class RestoreError extends Error {
  readonly code = 'restore_refused';
}

/** Makes `config`'s (stopped, empty) data dir a new one-node cluster holding the archive's state. Verifies the archive first. */
export async function restoreBackup(path: string, config: QuorateConfig, progress?: Progress): Promise<{ manifest: BackupManifest; nodeId: number; dataDir: string }> {
  const dataDir = config.node.dataDir;
  if (config.cluster.peerEndpoints.length > 0) {
    throw new RestoreError(`restore starts a new one-node cluster, but this config lists cluster.peerEndpoints (${config.cluster.peerEndpoints.join(', ')}): remove them for the restore, start the node, then enroll the other nodes (\`quorate join-token create\`, \`quorate enroll\`)`);
  }
  if (config.node.role !== 'voter') throw new RestoreError(`node.role is ${JSON.stringify(config.node.role)}: the first node of the restored cluster must be a voter`);
  for (const f of ['raft', 'bootstrap.json', 'removed']) {
    if (existsSync(join(dataDir, f))) {
      throw new RestoreError(`${dataDir} holds a node's data (${f}): restore writes only into a data dir without one. Stop the node, move the data dir aside (keep it until the restored cluster runs), and retry`);
    }
  }
  const v = await verifyBackup(path, existsSync(dataDir) ? dataDir : join(dataDir, '..'), progress);
  const m = v.manifest;
  if (m.clusterId !== config.cluster.haId) {
    throw new RestoreError(`the backup is of cluster ${JSON.stringify(m.clusterId)} but cluster.haId is ${JSON.stringify(config.cluster.haId)}: set cluster.haId to ${JSON.stringify(m.clusterId)} in the config of the node you restore into`);
  }
  const bootstrap = await loadOrCreateBootstrap(dataDir, config);
  const id = selfId(bootstrap, config);
  const { storage } = await WalStorage.open(join(dataDir, 'raft'));
  try {
    await storage.installSnapshot(
      { index: m.index, term: m.term, membership: { members: [{ id, role: 'voter' }], removed: [] } },
      stateChunks(path, m, (n) => progress?.('install', n, m.state.bytes)),
    );
    storage.setHardState({ term: m.term, vote: 0, commit: m.index });
    await storage.sync();
  } finally {
    await storage.close();
  }
  return { manifest: m, nodeId: id, dataDir };
}

/** The files a data dir holds (for messages). */
export function dataDirEntries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
