// Restoring a backup into a running cluster, through the log
// (`POST /v1/cluster/restore`, SPEC §4; docs/operations.md "Restore a backup
// into a running cluster"). Every node ends at the same state because every
// step is an entry:
//
// 1. The leader checks the uploaded archive end to end (every part's
//    SHA-256 against its manifest, the cluster id) before anything is
//    proposed.
// 2. It uploads the archive's state (a composite snapshot) as a replicated
//    file under the reserved `.quorate/restore/` prefix: chunks through the
//    log, committed whole with its SHA-256 (src/files), so every node holds
//    the same bytes.
// 3. It proposes one "restore" entry naming that file. Applying it, every
//    node replaces the state of the data machines (RESTORED_MACHINES: KV,
//    SQL, files, queues/locks/outbox) with the backup's and keeps the rest:
//    membership (not in the state machines), tokens, revocations, audit,
//    history, settings, scheduler slots, client sessions and the applied
//    index. The replica applies nothing after that entry until the
//    replacement is complete (MachineRegistry.holdUntil), so every later
//    entry applies on the restored state, on every node. The staged file is
//    not part of the backup's files, so it disappears with the restore.
//
// A node that cannot read the staged state (I/O error, corruption on its
// disk) stops rather than diverge; a missing or mismatching staged file is
// the same on every node and makes the entry a no-op everywhere.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ProposeOptions } from '../api/ports.js';
import { FILE_HARD_MAX_BYTES, RESERVED_FILES_PREFIX } from '../files/command.js';
import type { FilesStateMachine } from '../files/machine.js';
import { packCanonical, unpackVersionedArray } from '../state/commands.js';
import { InvalidCommandError } from '../state/errors.js';
import type { ApplyContext, MachineRegistry, RestoreCommit, StateMachine } from '../state/machines.js';
import type { ApplyResult } from '../state/results.js';
import { checkArchive, stateChunks } from './backup-archive.js';
import { uploadThroughLog } from './files-service.js';

export const RESTORE_MACHINE_ID = 'restore';
/** The machines a restore into a running cluster replaces (the data); the others keep their state. */
export const RESTORED_MACHINES: readonly string[] = ['app', 'files', 'kv', 'sql'];
const STAGING_PREFIX = `${RESERVED_FILES_PREFIX}restore/`;
const OUTCOMES_KEPT = 16;

export interface RestoreCommand {
  /** The staged state: a replicated file, its SHA-256 and size. */
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly machines: readonly string[];
  /** What the backup was (for the log and the answer). */
  readonly clusterId: string;
  readonly backupIndex: number;
}

export interface RestoreOutcome {
  readonly restored: boolean;
  readonly reason?: string;
}

const bad = (field: string, reason: string): never => {
  throw new InvalidCommandError(field, reason);
};

export function encodeRestorePayload(c: RestoreCommand): Uint8Array {
  return packCanonical([1, 'restore', c.path, c.sha256, c.size, [...c.machines], c.clusterId, c.backupIndex]);
}

export function decodeRestorePayload(payload: Uint8Array): RestoreCommand {
  const r = unpackVersionedArray(payload, 1);
  if (!r.ok) return bad(r.field, r.reason);
  const v = r.v;
  if (v[0] !== 1 || v[1] !== 'restore' || v.length !== 8) return bad('payload', 'expected [1, "restore", path, sha256, size, machines, clusterId, backupIndex]');
  const [, , path, sha256, size, machines, clusterId, backupIndex] = v as unknown[];
  if (typeof path !== 'string' || !path.startsWith(STAGING_PREFIX)) bad('path', `must be under ${STAGING_PREFIX}`);
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) bad('sha256', 'must be 64 hex digits');
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) bad('size', 'must be a non-negative integer');
  if (!Array.isArray(machines) || machines.some((m) => !RESTORED_MACHINES.includes(m as string))) bad('machines', `must be some of ${RESTORED_MACHINES.join(', ')}`);
  if (typeof clusterId !== 'string') bad('clusterId', 'must be a string');
  if (typeof backupIndex !== 'number' || !Number.isSafeInteger(backupIndex) || backupIndex < 0) bad('backupIndex', 'must be a non-negative integer');
  return { path: path as string, sha256: sha256 as string, size: size as number, machines: machines as string[], clusterId: clusterId as string, backupIndex: backupIndex as number };
}

/** The "restore" machine: no state of its own; applying its entry replaces the data machines' state (above). */
export class ClusterRestoreMachine implements StateMachine<RestoreCommand> {
  readonly id = RESTORE_MACHINE_ID;
  readonly #registry: MachineRegistry;
  readonly #files: FilesStateMachine;
  readonly #log: Logger;
  /** Outcome by entry index, for the leader's answer (node-local, the newest few). */
  readonly #outcomes = new Map<number, Promise<RestoreOutcome>>();

  constructor(o: { registry: MachineRegistry; files: FilesStateMachine; logger: Logger }) {
    this.#registry = o.registry;
    this.#files = o.files;
    this.#log = o.logger;
  }

  decode(payload: Uint8Array): RestoreCommand {
    return decodeRestorePayload(payload);
  }

  fingerprint(c: RestoreCommand): string {
    return createHash('sha256').update(RESTORE_MACHINE_ID).update(encodeRestorePayload(c)).digest('hex').slice(0, 32);
  }

  apply(cmd: RestoreCommand, ctx: ApplyContext): ApplyResult {
    const outcome = this.#restore(cmd, ctx.index);
    outcome.catch(() => undefined);
    this.#outcomes.set(ctx.index, outcome);
    for (const k of this.#outcomes.keys()) if (this.#outcomes.size > OUTCOMES_KEPT) this.#outcomes.delete(k);
    // Nothing after this entry applies until the state is replaced (a failure stops the node).
    this.#registry.holdUntil(outcome.then(() => undefined));
    return { data: { index: ctx.index } };
  }

  async #restore(cmd: RestoreCommand, index: number): Promise<RestoreOutcome> {
    await this.#files.caughtUp();
    const f = await this.#files.openFile(cmd.path);
    if (f === undefined) return this.#skip(index, `the staged state ${cmd.path} is not in the replicated files`);
    try {
      if (f.meta.sha256 !== cmd.sha256 || f.meta.size !== cmd.size) return this.#skip(index, `the staged state ${cmd.path} is not the one the entry names (size or SHA-256 differ)`);
      const t0 = performance.now();
      this.#log.warn({ event: 'cluster_restore_started', index, backupIndex: cmd.backupIndex, clusterId: cmd.clusterId, machines: cmd.machines, bytes: cmd.size },
        `restoring the backup of ${cmd.clusterId} at index ${cmd.backupIndex} into the running cluster (${cmd.machines.join(', ')}; ${cmd.size} bytes): nothing else applies until it is done`);
      await this.#registry.restoreMachines(f.handle.createReadStream({ start: 0, autoClose: false, highWaterMark: 1024 * 1024 }) as AsyncIterable<Uint8Array> & Readable, new Set(cmd.machines));
      this.#log.warn({ event: 'cluster_restored', index, backupIndex: cmd.backupIndex, ms: Math.round(performance.now() - t0) },
        `restored the backup of ${cmd.clusterId} at index ${cmd.backupIndex} (entry ${index}, ${Math.round(performance.now() - t0)} ms)`);
      return { restored: true };
    } finally {
      await f.handle.close();
    }
  }

  #skip(index: number, reason: string): RestoreOutcome {
    this.#log.error({ event: 'cluster_restore_skipped', index, reason }, `restore entry ${index} changed nothing: ${reason}`);
    return { restored: false, reason };
  }

  /** The outcome of the restore entry at `index` on this node (while it is among the newest few). */
  outcome(index: number): Promise<RestoreOutcome> | undefined {
    return this.#outcomes.get(index);
  }

  isEmpty(): boolean {
    return true;
  }

  async *snapshot(): AsyncGenerator<Uint8Array> {
    // No state of its own.
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<RestoreCommit> {
    await this.validate(chunks);
    return () => undefined;
  }

  async validate(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks) if (c.length > 0) throw new InvalidCommandError('restore', 'the "restore" machine has no state: its section must be empty');
  }

  checksum(): string {
    return createHash('sha256').update(RESTORE_MACHINE_ID).digest('hex');
  }
}

/** Refused: the message says what to change (HTTP 409 restore_refused; 400 backup_corrupt for a damaged archive). */
export class ClusterRestoreError extends Error {
  constructor(readonly code: 'restore_refused' | 'confirm_required', message: string, readonly field?: string) {
    super(message);
    this.name = 'ClusterRestoreError';
  }
}

export interface ClusterRestoreNode {
  featureLevel(): number;
  proposeEnvelope(machine: string, payload: Uint8Array, options?: ProposeOptions): Promise<ApplyResult>;
  readBarrier(timeoutMs?: number): Promise<void>;
  isLeader(): boolean;
  notLeader(): Error;
}

export interface ClusterRestoreResult {
  readonly restored: true;
  readonly clusterId: string;
  readonly backupIndex: number;
  readonly takenAt: string;
  /** The log index of the restore entry: the restored state is in effect from there on. */
  readonly index: number;
  readonly machines: readonly string[];
  readonly bytes: number;
}

/** The leader's side (POST /v1/cluster/restore). */
export class ClusterRestore {
  #busy = false;

  constructor(private readonly o: { node: ClusterRestoreNode; machine: ClusterRestoreMachine; dataDir: string; clusterId: string; logger: Logger }) {}

  async restore(archive: AsyncIterable<Uint8Array>): Promise<ClusterRestoreResult> {
    const { node, machine } = this.o;
    if (!node.isLeader()) throw node.notLeader();
    if (node.featureLevel() < 2) throw new ClusterRestoreError('restore_refused', 'a restore into a running cluster needs every member at feature level 2; upgrade every member, then retry');
    if (this.#busy) throw new ClusterRestoreError('restore_refused', 'another restore is in progress on this leader; wait for it to finish');
    this.#busy = true;
    // Under the files dir: removed with it at the next start if this node dies meanwhile.
    const tmp = join(this.o.dataDir, 'files', `restore-upload-${randomBytes(6).toString('hex')}.tmp`);
    try {
      let bytes = 0;
      await pipeline(archive, async function* (src: AsyncIterable<Uint8Array>) {
        for await (const c of src) {
          bytes += c.length;
          if (bytes > FILE_HARD_MAX_BYTES) throw new ClusterRestoreError('restore_refused', `the archive is over ${FILE_HARD_MAX_BYTES} bytes`, 'body');
          yield c;
        }
      }, createWriteStream(tmp));
      // Every part's SHA-256 against the manifest, before anything is proposed (ArchiveError: backup_corrupt).
      const { manifest } = await checkArchive(tmp);
      if (manifest.clusterId !== this.o.clusterId) {
        throw new ClusterRestoreError('restore_refused', `the backup is of cluster ${JSON.stringify(manifest.clusterId)}, this cluster is ${JSON.stringify(this.o.clusterId)} (cluster.haId): restore it into its own cluster, or into a new one with \`quorate backup restore\``, 'clusterId');
      }
      const path = `${STAGING_PREFIX}${randomBytes(8).toString('hex')}.qsms`;
      this.o.logger.warn({ event: 'cluster_restore_staging', path, backupIndex: manifest.index, bytes: manifest.state.bytes }, `staging the backup's state (${manifest.state.bytes} bytes) through the log as ${path}`);
      const staged = await uploadThroughLog(node, path, stateChunks(tmp, manifest), FILE_HARD_MAX_BYTES, {});
      const r = await node.proposeEnvelope(RESTORE_MACHINE_ID, encodeRestorePayload({ path, sha256: staged.sha256, size: staged.size, machines: RESTORED_MACHINES, clusterId: manifest.clusterId, backupIndex: manifest.index }));
      if (!('data' in r)) throw new Error(`the restore entry was refused: ${'message' in r ? r.message : JSON.stringify(r)}`);
      const index = (r.data as { index: number }).index;
      const outcome = await machine.outcome(index);
      if (outcome === undefined) throw new Error('the restore entry applied but its outcome is not known on this node');
      const o = await outcome;
      if (!o.restored) throw new ClusterRestoreError('restore_refused', `the restore entry (index ${index}) changed nothing: ${o.reason ?? 'unknown reason'}`);
      // Later reads on this node see the restored state.
      await node.readBarrier(10_000).catch(() => undefined);
      return { restored: true, clusterId: manifest.clusterId, backupIndex: manifest.index, takenAt: manifest.takenAt, index, machines: RESTORED_MACHINES, bytes: manifest.state.bytes };
    } finally {
      this.#busy = false;
      await rm(tmp, { force: true });
    }
  }
}
