// Replicated files as the HTTP API's FilesService (src/api/ports-files.ts):
// the "files" machine (src/files), opened in the node's data dir and
// registered by ./node-state.ts. An upload is cut into chunks of
// FILE_CHUNK_BYTES, each proposed as its own format-2 entry (a few in flight
// at a time, so memory stays bounded by the window whatever the file's
// size), then a commit entry with the size and SHA-256 the leader computed
// while reading the body; the machine checks the staged bytes against them.
// A failed or interrupted upload proposes an abort (and is dropped by every
// node after UPLOAD_IDLE_MS anyway): no half file is ever visible.
import { createHash, randomBytes } from 'node:crypto';
import type { FilesService } from '../api/ports-files.js';
import type { ProposeOptions } from '../api/ports.js';
import { FILES_MACHINE_ID, FILE_CHUNK_BYTES, FilePathError, RESERVED_FILES_PREFIX, encodeChunkPayload, encodeFilesPayload, validateFilePath, type FilesCommand } from '../files/command.js';
import { FilesError } from '../files/errors.js';
import { FilesStateMachine } from '../files/machine.js';
import type { ApplyResult } from '../state/index.js';

/** The feature level at which members apply "files" entries (format-2 envelopes). */
const FILES_FEATURE_LEVEL = 2;
/** Chunk entries proposed and not yet applied, per upload. */
const WINDOW = 4;

export interface FilesNode extends UploadNode {
  featureLevel(): number;
  readBarrier(timeoutMs?: number): Promise<void>;
  readonly machines: { readonly appliedIndex: number };
}

/** The machine's own error results (`{data: {error, message}}`) as thrown errors. */
function check(r: ApplyResult, path: string): ApplyResult {
  if ('data' in r && typeof r.data === 'object' && r.data !== null && 'error' in r.data) {
    const d = r.data as { error: string; message: string };
    const code = d.error === 'file_too_large' || d.error === 'file_checksum_mismatch' || d.error === 'upload_unknown' || d.error === 'upload_out_of_order' ? d.error : 'upload_unknown';
    throw new FilesError(code, d.message, { path });
  }
  if ('error' in r) {
    if (r.error === 'idempotency_key_reused') throw Object.assign(new Error(r.message), { code: 'idempotency_key_reused', field: 'Idempotency-Key' });
    throw Object.assign(new Error('message' in r ? r.message : r.error), { code: 'invalid_command' });
  }
  return r;
}

export interface UploadNode {
  proposeEnvelope(machine: string, payload: Uint8Array, options?: ProposeOptions): Promise<ApplyResult>;
}

/**
 * Streams `body` through the log as chunk entries (at most WINDOW in flight)
 * and commits it at `path` with the size and SHA-256 computed here; the
 * machine checks the staged bytes against them. On any failure the upload
 * is aborted (best effort) and the error rethrown. Leader only (the
 * proposals throw not_leader elsewhere).
 */
export async function uploadThroughLog(node: UploadNode, path: string, body: AsyncIterable<Uint8Array>, maxBytes: number, options: ProposeOptions & { readonly contentLength?: number }): Promise<{ revision: number; size: number; sha256: string }> {
  const propose = (c: FilesCommand, o: ProposeOptions = {}): Promise<ApplyResult> => node.proposeEnvelope(FILES_MACHINE_ID, encodeFilesPayload(c), o);
  const uploadId = randomBytes(16).toString('hex');
  const hash = createHash('sha256');
  const inflight: Promise<ApplyResult>[] = [];
  let sent = 0;
  let size = 0;
  const pending: Uint8Array[] = [];
  let pendingBytes = 0;
  // The body's pieces are copied once, into the chunk's payload (encodeChunkPayload), never concatenated first.
  const send = async (parts: readonly Uint8Array[], bytes: number): Promise<void> => {
    if (inflight.length >= WINDOW) check(await inflight.shift()!, path);
    const p = node.proposeEnvelope(FILES_MACHINE_ID, encodeChunkPayload(uploadId, sent, parts));
    p.catch(() => undefined);
    inflight.push(p);
    sent += bytes;
  };
  try {
    for await (const c of body) {
      size += c.length;
      if (size > maxBytes) throw tooLarge(maxBytes, `over ${maxBytes} bytes`);
      hash.update(c);
      pending.push(c);
      pendingBytes += c.length;
      while (pendingBytes >= FILE_CHUNK_BYTES) {
        // The first FILE_CHUNK_BYTES of the pending pieces (the last one split).
        const take: Uint8Array[] = [];
        let n = 0;
        while (n < FILE_CHUNK_BYTES) {
          const p = pending.shift()!;
          if (n + p.length <= FILE_CHUNK_BYTES) {
            take.push(p);
            n += p.length;
          } else {
            take.push(p.subarray(0, FILE_CHUNK_BYTES - n));
            pending.unshift(p.subarray(FILE_CHUNK_BYTES - n));
            n = FILE_CHUNK_BYTES;
          }
        }
        pendingBytes -= FILE_CHUNK_BYTES;
        await send(take, FILE_CHUNK_BYTES);
      }
    }
    if (options.contentLength !== undefined && size !== options.contentLength) {
      throw Object.assign(new Error(`the body ended after ${size} of ${options.contentLength} bytes (Content-Length); nothing was written`), { code: 'invalid_request', field: 'body' });
    }
    if (pendingBytes > 0) await send(pending, pendingBytes);
    while (inflight.length > 0) check(await inflight.shift()!, path);
    const sha256 = hash.digest('hex');
    const { contentLength: _l, ...proposeOptions } = options;
    const r = check(await propose({ op: 'commit', uploadId, path, size, sha256 }, proposeOptions), path);
    if (!('revision' in r)) throw new Error('the files machine answered a commit without a revision');
    return { revision: r.revision, size, sha256 };
  } catch (e) {
    // Best effort: the staged chunks are dropped now rather than after the idle timeout.
    if (sent > 0) propose({ op: 'abort', uploadId }).catch(() => undefined);
    throw e;
  }
}

const tooLarge = (maxFileBytes: number, bytes: string): FilesError =>
  new FilesError('file_too_large', `the file is ${bytes}; the limit is ${maxFileBytes} bytes (files.maxFileBytes)`, { limit: `${maxFileBytes} bytes`, limitBytes: maxFileBytes, field: 'body' });

/** The cluster's own paths are not the API's to write, delete or list. */
function notReserved(path: string): string {
  validateFilePath(path);
  if (path.startsWith(RESERVED_FILES_PREFIX)) throw new FilePathError('path', `path: ${JSON.stringify(path.slice(0, 80))} is under ${RESERVED_FILES_PREFIX}, which the cluster keeps for itself; choose another path`);
  return path;
}

export function filesServiceOf(node: FilesNode, files: FilesStateMachine, maxFileBytes: number): FilesService {
  const propose = (c: FilesCommand, options: ProposeOptions = {}): Promise<ApplyResult> => node.proposeEnvelope(FILES_MACHINE_ID, encodeFilesPayload(c), options);
  const available = (): void => {
    const level = node.featureLevel();
    if (level < FILES_FEATURE_LEVEL) {
      throw new FilesError('files_unavailable', `replicated files need every member at feature level ${FILES_FEATURE_LEVEL} (the cluster is at ${level}: a member runs the previous release or has not been heard from yet); upgrade every member, then retry`);
    }
  };
  return {
    maxFileBytes,
    async put(path, body, options) {
      available();
      notReserved(path);
      if (options.contentLength !== undefined && options.contentLength > maxFileBytes) throw tooLarge(maxFileBytes, `${options.contentLength} bytes (Content-Length)`);
      return uploadThroughLog(node, path, body, maxFileBytes, options);
    },
    async delete(path, options = {}) {
      available();
      notReserved(path);
      const r = check(await propose({ op: 'delete', path }, options), path);
      if (!('deleted' in r)) throw new Error('the files machine answered a delete without deleted');
      return { revision: r.revision, deleted: r.deleted };
    },
    async readBarrier(timeoutMs) {
      await node.readBarrier(timeoutMs);
      await files.caughtUp();
    },
    caughtUp: () => files.caughtUp(),
    list(prefix, limit, startAfter) {
      const { files: list, more } = files.list(prefix, limit, startAfter, RESERVED_FILES_PREFIX);
      return { files: list, more, appliedIndex: node.machines.appliedIndex };
    },
    async open(path) {
      const f = await files.openFile(path);
      return f === undefined ? undefined : { info: f.meta, handle: f.handle, diskFile: f.diskFile };
    },
    async verify(f) {
      await FilesStateMachine.verify({ meta: f.info, handle: f.handle, diskFile: f.diskFile });
    },
    async checksum() {
      // Both asked in this tick: the checksum is of the state at this applied index.
      const appliedIndex = node.machines.appliedIndex;
      return { appliedIndex, checksum: await files.checksum() };
    },
  };
}
