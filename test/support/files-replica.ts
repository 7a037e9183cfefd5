// A files machine in a registry, on a temporary dir, and the leader's side of
// uploads applied to it: shared by the files machine's unit tests.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { FILES_MACHINE_ID, FILE_CHUNK_BYTES, encodeFilesPayload, type FilesCommand } from '../../src/files/command.js';
import { FilesStateMachine } from '../../src/files/machine.js';
import { encodeEnvelope } from '../../src/state/envelope.js';
import { KvStateMachine } from '../../src/state/kv.js';
import { MachineRegistry } from '../../src/state/machines.js';
import type { ApplyResult } from '../../src/state/results.js';

const dirs: string[] = [];
/** Removes every dir replica() made (call it in after()). */
export async function removeReplicaDirs(): Promise<void> {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
}

export interface Replica {
  readonly registry: MachineRegistry;
  readonly files: FilesStateMachine;
  readonly dir: string;
  index: number;
}

/** A registry with the KV and a files machine in `dir` (a new temporary dir by default). */
export async function replica(dir?: string): Promise<Replica> {
  if (dir === undefined) {
    dir = await mkdtemp(join(tmpdir(), 'quorate-files-'));
    dirs.push(dir);
  }
  const files = await FilesStateMachine.open({ dir, logger: pino({ level: 'silent' }) });
  const registry = new MachineRegistry();
  registry.register(new KvStateMachine());
  registry.register(files);
  return { registry, files, dir, index: 0 };
}

export const T0 = 1_700_000_000_000;
export const entry = (c: FilesCommand, at = T0, ik?: string): Uint8Array =>
  encodeEnvelope({ machine: FILES_MACHINE_ID, at, ...(ik !== undefined ? { idempotencyKey: ik } : {}), payload: encodeFilesPayload(c) });

export async function apply(r: Replica, c: FilesCommand, at = T0, ik?: string): Promise<ApplyResult> {
  const res = r.registry.apply(++r.index, entry(c, at, ik));
  assert.ok(res instanceof Promise, 'the files machine answers with a promise');
  return res;
}

export const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const newId = (): string => randomBytes(16).toString('hex');

/** The leader's side of an upload: chunks, then the commit. */
export async function upload(r: Replica, path: string, content: Uint8Array, o: { at?: number; ik?: string } = {}): Promise<ApplyResult> {
  const id = newId();
  for (let off = 0; off < content.length; off += FILE_CHUNK_BYTES) {
    const res = await apply(r, { op: 'chunk', uploadId: id, offset: off, bytes: content.subarray(off, off + FILE_CHUNK_BYTES) }, o.at);
    assert.ok('data' in res && (res.data as { staged?: number }).staged !== undefined, JSON.stringify(res));
  }
  return apply(r, { op: 'commit', uploadId: id, path, size: content.length, sha256: sha(content) }, o.at, o.ik);
}

export async function read(r: Replica, path: string): Promise<Buffer | undefined> {
  await r.files.caughtUp();
  const f = await r.files.openFile(path);
  if (f === undefined) return undefined;
  try {
    await FilesStateMachine.verify(f);
    return await f.handle.readFile();
  } finally {
    await f.handle.close();
  }
}

